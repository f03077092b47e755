// One message: envelope, HTML (sandboxed), text, headers, source, attachments.
import { addr, api, el, emit, messageURL, on, sendJSON, text } from "./api.js";

const $ = (id) => document.getElementById(id);
let current = null;

function show(tab) {
  for (const id of ["html", "text", "headers", "raw"]) $(id).hidden = id !== tab;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
}

async function open(id) {
  current = id;
  const m = await api(messageURL(id));
  $("view").hidden = false;
  document.querySelector("main").classList.add("viewing");
  text($("subject"), m.Subject || "(no subject)");
  const envelope = $("envelope");
  envelope.replaceChildren();
  const rows = [["From", addr(m.From)], ["To", m.To.map(addr).join(", ")], ["Cc", m.Cc.map(addr).join(", ")],
    ["Bcc", m.Bcc.map(addr).join(", ")], ["Envelope from", m.MailFrom], ["Envelope to", (m.RcptTo || []).join(", ")],
    ["Date", m.Date], ["Size", `${m.Size} bytes`]];
  for (const [name, value] of rows) if (value) envelope.append(el("dt", {}, name), el("dd", {}, value));
  // The HTML body is loaded from the server with a CSP that forbids scripts and remote content,
  // inside a sandboxed iframe (no allow-scripts, no allow-same-origin).
  // location.replace: loading the frame adds no history entry (the back button stays the page's).
  $("html").contentWindow.location.replace(m.HTML ? `/view/${encodeURIComponent(id)}.html` : "about:blank");
  text($("text"), m.Text);
  const headers = await api(messageURL(id, "/headers"));
  text($("headers"), Object.entries(headers).map(([k, vs]) => vs.map((v) => `${k}: ${v}`).join("\n")).join("\n"));
  text($("raw"), await api(messageURL(id, "/raw")));
  const list = $("attachments");
  list.replaceChildren();
  for (const a of [...(m.Attachments || []), ...(m.Inline || [])]) {
    const link = el("a", { href: messageURL(id, `/part/${encodeURIComponent(a.PartID)}`), download: a.FileName || "part" },
      `${a.FileName || a.PartID} (${a.ContentType}, ${a.Size} bytes)`);
    list.append(el("li", {}, link));
  }
  show(m.HTML ? "html" : "text");
  emit("changed", { reason: "read" });
}

function close() {
  current = null;
  $("view").hidden = true;
  document.querySelector("main").classList.remove("viewing");
}

/** Start the message pane: it opens what the bus says to open. */
export function initMessage() {
  on("open", ({ id }) => open(id));
  on("close", close);
  $("back").addEventListener("click", () => emit("close"));
  $("delete-one").addEventListener("click", async () => {
    if (!current) return;
    await sendJSON("/api/v1/messages", "DELETE", { IDs: [current] });
    emit("close");
    emit("changed", { reason: "delete" });
  });
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.tab));
}
