// Actions on the open message: its tags editor (PUT /api/v1/tags) and release to the configured
// relay (POST /api/v1/message/{id}/release). Errors show the server's own text.
import { api, el, emit, messageURL, sendJSON, text } from "./api.js";

let tagsBox = null;
let releaseForm = null;
let currentMessage = () => null;

/** Draw message `m`'s tags as chips with a remove button, and the add field. */
export function showTags(m) {
  const chips = el("ul", { class: "chips", id: "tags", "aria-label": "Tags" });
  for (const tag of m.Tags || []) {
    chips.append(el("li", { class: "chip", dataset: { tag } }, tag,
      el("button", { type: "button", class: "remove", "aria-label": `Remove tag ${tag}`, title: `Remove tag ${tag}`,
        on: { click: () => saveTags(m, (m.Tags || []).filter((t) => t !== tag)) } }, "\u00d7")));
  }
  const input = el("input", { id: "tag-input", type: "text", placeholder: "Add a tag", "aria-label": "New tag", autocomplete: "off" });
  const form = el("form", { class: "tag-add", on: { submit: (event) => {
    event.preventDefault();
    const tag = input.value.trim();
    if (tag && !(m.Tags || []).includes(tag)) saveTags(m, [...(m.Tags || []), tag]);
  } } }, input, el("button", { type: "submit" }, "Add tag"));
  tagsBox.replaceChildren(chips, form, el("p", { id: "tags-error", class: "error", role: "alert" }));
}

/** Set message `m`'s tags to `tags`, read back what the server kept, tell the list. */
async function saveTags(m, tags) {
  try {
    await sendJSON("/api/v1/tags", "PUT", { IDs: [m.ID], Tags: tags });
    const fresh = await api(messageURL(m.ID));
    if (currentMessage() !== m) return;
    m.Tags = fresh.Tags || [];
    showTags(m);
    document.getElementById("tag-input").focus();
    emit("updated", { ID: m.ID, Tags: m.Tags });
  } catch (error) {
    if (currentMessage() === m) text(document.getElementById("tags-error"), error.message);
  }
}

/** The tags editor lives in `box`; `current()` answers the open message. */
export function initTags(box, current) {
  tagsBox = box;
  currentMessage = current;
}

/** Prefill the release form for message `m`: its envelope recipients. */
export function resetRelease(m) {
  releaseForm.elements["release-to"].value = (m.RcptTo || []).join(", ");
  text(releaseForm.querySelector("#release-status"), "");
  releaseForm.querySelector("#release-status").className = "";
}

/** The release form in `form`. */
export function initRelease(form, current) {
  const input = el("input", { id: "release-to", name: "release-to", type: "text", required: true,
    placeholder: "alice@example.com, bob@example.com" });
  const status = el("p", { id: "release-status", role: "status" });
  form.append(el("label", { for: "release-to" }, "Recipients (comma separated)"), input,
    el("button", { type: "submit", id: "release-send" }, "Release"), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const m = current();
    if (!m) return;
    const to = input.value.split(/[,;\s]+/).map((s) => s.trim()).filter(Boolean);
    status.className = "";
    text(status, "Sending\u2026");
    try {
      await sendJSON(messageURL(m.ID, "/release"), "POST", { To: to });
      status.className = "ok";
      text(status, `Released to ${to.join(", ")}.`);
    } catch (error) {
      status.className = "error";
      text(status, `Release failed: ${error.message}`);
    }
  });
  releaseForm = form;
}
