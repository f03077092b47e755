// smtp-sink web page: plain JavaScript, no build step, no CDN. Talks to the JSON API only.
"use strict";
const $ = (id) => document.getElementById(id);
let current = null;

async function api(path, options = {}) {
  const response = await fetch(path, options);
  if (!response.ok) throw new Error(`${response.status} ${path}`);
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response.text();
}

function text(node, value) { node.textContent = value == null ? "" : String(value); return node; }
function el(tag, cls, value) { const node = document.createElement(tag); if (cls) node.className = cls; if (value !== undefined) text(node, value); return node; }
function addr(a) { return a ? (a.Name ? `${a.Name} <${a.Address}>` : a.Address) : ""; }

async function refresh() {
  const query = $("query").value.trim();
  const data = await api(query ? `/api/v1/search?query=${encodeURIComponent(query)}` : "/api/v1/messages?limit=200");
  const list = $("messages");
  list.replaceChildren();
  for (const m of data.messages) {
    const item = el("li", m.Read ? "" : "unread");
    item.dataset.id = m.ID;
    if (current === m.ID) item.classList.add("active");
    const meta = el("div", "meta");
    meta.append(el("span", "from", addr(m.From)), el("time", "", new Date(m.Created).toLocaleString()));
    item.append(meta, el("div", "subject", m.Subject || "(no subject)"), el("div", "snippet", m.Snippet));
    item.addEventListener("click", () => open(m.ID));
    list.append(item);
  }
  $("empty").hidden = data.messages.length > 0;
  text($("count"), `${data.total} messages, ${data.unread} unread`);
}

function show(tab) {
  for (const id of ["html", "text", "headers", "raw"]) $(id).hidden = id !== tab;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
}

async function open(id) {
  current = id;
  const m = await api(`/api/v1/message/${encodeURIComponent(id)}`);
  $("view").hidden = false;
  document.querySelector("main").classList.add("viewing");
  text($("subject"), m.Subject || "(no subject)");
  const envelope = $("envelope");
  envelope.replaceChildren();
  const rows = [["From", addr(m.From)], ["To", m.To.map(addr).join(", ")], ["Cc", m.Cc.map(addr).join(", ")],
    ["Bcc", m.Bcc.map(addr).join(", ")], ["Envelope from", m.MailFrom], ["Envelope to", (m.RcptTo || []).join(", ")],
    ["Date", m.Date], ["Size", `${m.Size} bytes`]];
  for (const [name, value] of rows) if (value) envelope.append(el("dt", "", name), el("dd", "", value));
  // The HTML body is loaded from the server with a CSP that forbids scripts and remote content,
  // inside a sandboxed iframe (no allow-scripts, no allow-same-origin).
  $("html").src = m.HTML ? `/view/${encodeURIComponent(id)}.html` : "about:blank";
  text($("text"), m.Text);
  const headers = await api(`/api/v1/message/${encodeURIComponent(id)}/headers`);
  text($("headers"), Object.entries(headers).map(([k, vs]) => vs.map((v) => `${k}: ${v}`).join("\n")).join("\n"));
  text($("raw"), await api(`/api/v1/message/${encodeURIComponent(id)}/raw`));
  const list = $("attachments");
  list.replaceChildren();
  for (const a of [...(m.Attachments || []), ...(m.Inline || [])]) {
    const link = el("a", "", `${a.FileName || a.PartID} (${a.ContentType}, ${a.Size} bytes)`);
    link.href = `/api/v1/message/${encodeURIComponent(id)}/part/${encodeURIComponent(a.PartID)}`;
    link.setAttribute("download", a.FileName || "part");
    const item = el("li"); item.append(link); list.append(item);
  }
  show(m.HTML ? "html" : "text");
  refresh();
}

function close() {
  current = null;
  $("view").hidden = true;
  document.querySelector("main").classList.remove("viewing");
}

async function remove(ids) {
  await api("/api/v1/messages", { method: "DELETE", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ IDs: ids }) });
}

$("search").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
$("query").addEventListener("input", () => { clearTimeout(window.searchTimer); window.searchTimer = setTimeout(refresh, 250); });
$("back").addEventListener("click", close);
$("delete-one").addEventListener("click", async () => { if (current) { await remove([current]); close(); refresh(); } });
$("delete-all").addEventListener("click", async () => { if (confirm("Delete every message?")) { await remove([]); close(); refresh(); } });
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.tab));

const events = new EventSource("/api/events");
// (Re)connected: list again, so mail that arrived while the stream was down is shown.
events.addEventListener("open", () => { document.body.dataset.live = "1"; refresh(); });
events.addEventListener("error", () => { delete document.body.dataset.live; });
events.addEventListener("new", () => refresh());
events.addEventListener("delete", () => refresh());
events.addEventListener("read", () => refresh());
