// The message list, the search box and the live event stream.
import { addr, api, el, emit, on, sendJSON, text } from "./api.js";

const $ = (id) => document.getElementById(id);
let current = null;

async function refresh() {
  const query = $("query").value.trim();
  const data = await api(query ? `/api/v1/search?query=${encodeURIComponent(query)}` : "/api/v1/messages?limit=200");
  const list = $("messages");
  list.replaceChildren();
  for (const m of data.messages) {
    const item = el("li", { class: [m.Read ? "" : "unread", current === m.ID ? "active" : ""].join(" ").trim(),
      dataset: { id: m.ID }, on: { click: () => emit("open", { id: m.ID }) } },
    el("div", { class: "meta" }, el("span", { class: "from" }, addr(m.From)),
      el("time", {}, new Date(m.Created).toLocaleString())),
    el("div", { class: "subject" }, m.Subject || "(no subject)"),
    el("div", { class: "snippet" }, m.Snippet));
    list.append(item);
  }
  $("empty").hidden = data.messages.length > 0;
  text($("count"), `${data.total} messages, ${data.unread} unread`);
}

/** Start the list: search box, delete-all, the event stream. */
export function initList() {
  $("search").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  $("query").addEventListener("input", () => { clearTimeout(window.searchTimer); window.searchTimer = setTimeout(refresh, 250); });
  $("delete-all").addEventListener("click", async () => {
    if (confirm("Delete every message?")) { await sendJSON("/api/v1/messages", "DELETE", { IDs: [] }); emit("close"); refresh(); }
  });
  on("open", ({ id }) => { current = id; });
  on("close", () => { current = null; });
  on("changed", () => refresh());
  const events = new EventSource("/api/events");
  // (Re)connected: list again, so mail that arrived while the stream was down is shown.
  events.addEventListener("open", () => { document.body.dataset.live = "1"; refresh(); });
  events.addEventListener("error", () => { delete document.body.dataset.live; });
  for (const kind of ["new", "delete", "read"]) events.addEventListener(kind, () => refresh());
}
