// One message: its pane (built here, inside <section id="view">), the envelope, tabs (HTML with
// preview widths, Text, Headers, Source, HTML check, Link check, Session: the SMTP transcript),
// attachments with thumbnails, the tags editor and release. Message data only ever goes in
// through text()/el() (textContent, attributes); the HTML body only in the sandboxed iframe.
import { ApiError, addr, api, el, emit, formatSize, messageURL, on, sendJSON, text } from "./api.js";
import { renderHtmlCheck, renderLinkCheck } from "./message-checks.js";
import { renderSession } from "./message-session.js";
import { initRelease, initTags, showTags, resetRelease } from "./message-actions.js";
import { initLint, showLint } from "./message-lint.js"; // issue 17: the client-lint badge

const $ = (id) => document.getElementById(id);
/** The tabs in order: [key, label]. Panels are #panel-<key>; the tab buttons keep data-tab=<key>. */
const TABS = [["html", "HTML"], ["text", "Text"], ["headers", "Headers"], ["raw", "Source"],
  ["checks", "HTML check"], ["links", "Link check"], ["session", "Session"]];
const WIDTHS = [["phone", "Phone (375 px)"], ["tablet", "Tablet (768 px)"], ["desktop", "Desktop"]];
let current = null; // the open message's detail
let loaded = {}; // tabs whose content was fetched for the current message
const SESSION_TRIES = 120; // x 0.5 s: how long the Session tab waits for a session to end (issue 17)

/** Build the pane's markup once (index.html keeps only the empty #view section). */
function build() {
  const view = $("view");
  const tabs = el("div", { id: "tabs", role: "tablist", "aria-label": "Message views" });
  const panels = [];
  for (const [key, label] of TABS) {
    tabs.append(el("button", { type: "button", role: "tab", id: `tab-${key}`, dataset: { tab: key },
      "aria-controls": `panel-${key}`, "aria-selected": "false", tabindex: "-1", on: { click: () => show(key, true) } }, label));
    panels.push(el("div", { id: `panel-${key}`, role: "tabpanel", "aria-labelledby": `tab-${key}`, tabindex: "0", class: "panel", hidden: true }));
  }
  tabs.addEventListener("keydown", onTabKey);
  const [html, textPanel, headers, raw, checks, links, session] = panels;
  const widths = el("div", { class: "widths", role: "group", "aria-label": "Preview width" });
  for (const [key, label] of WIDTHS) {
    widths.append(el("button", { type: "button", dataset: { width: key }, "aria-pressed": String(key === "desktop"),
      on: { click: () => setWidth(key) } }, label));
  }
  // No allow-scripts, no allow-same-origin: the message's HTML can run nothing and reach nothing.
  html.append(widths, el("div", { class: "frame-box" },
    el("iframe", { id: "html", title: "HTML body", sandbox: "", referrerpolicy: "no-referrer", class: "w-desktop" })));
  textPanel.append(el("pre", { id: "text" }));
  headers.append(el("table", { id: "headers", class: "grid" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Header"), el("th", { scope: "col" }, "Value"))), el("tbody")));
  raw.append(el("p", {}, el("a", { id: "download-eml", href: "#", download: "" }, "Download .eml")), el("pre", { id: "raw" }));
  checks.append(el("div", { id: "html-check", "aria-live": "polite" }));
  links.append(el("p", { class: "hint" }, "The link check sends a request to every link of the message."),
    el("label", { class: "follow" }, el("input", { type: "checkbox", id: "link-check-follow" }), " Follow redirects"),
    el("button", { type: "button", id: "run-link-check", on: { click: runLinkCheck } }, "Check links"),
    el("div", { id: "link-check", "aria-live": "polite" }));
  session.append(el("div", { id: "session" }));
  view.replaceChildren(
    el("div", { class: "bar" },
      el("button", { id: "back", type: "button", on: { click: () => emit("close") } }, "\u2190 List"),
      el("button", { id: "mark-unread", type: "button", on: { click: markUnread } }, "Mark unread"),
      el("button", { id: "delete-one", type: "button", on: { click: deleteCurrent } }, "Delete")),
    el("h2", { id: "subject" }),
    el("div", { id: "lint" }),
    el("div", { id: "tags-editor", class: "tags-editor" }),
    el("dl", { id: "envelope" }),
    el("details", { id: "release" }, el("summary", {}, "Release to the relay\u2026"), el("form", { id: "release-form" })),
    tabs, ...panels,
    el("h3", { id: "attachments-title", hidden: true }, "Attachments"),
    el("ul", { id: "attachments", "aria-labelledby": "attachments-title" }));
}

/** Show tab `key` (focus it when asked); load its content the first time. */
function show(key, focus = false) {
  for (const [k] of TABS) {
    const selected = k === key;
    const tab = $(`tab-${k}`);
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    tab.classList.toggle("active", selected);
    $(`panel-${k}`).hidden = !selected;
  }
  if (focus) $(`tab-${key}`).focus();
  if (current && !loaded[key]) { loaded[key] = true; load(key, current); }
}

/** Arrow keys, Home and End move between the visible tabs (WAI-ARIA tabs pattern). */
function onTabKey(event) {
  const visible = [...document.querySelectorAll("#tabs [role=tab]")].filter((t) => !t.hidden);
  const at = visible.indexOf(document.activeElement);
  if (at < 0) return;
  const moves = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: visible.length - 1 };
  if (!(event.key in moves)) return;
  event.preventDefault();
  show(visible[(moves[event.key] + visible.length) % visible.length].dataset.tab, true);
}

function setWidth(key) {
  const frame = $("html");
  frame.className = `w-${key}`;
  for (const b of document.querySelectorAll("#panel-html .widths button")) b.setAttribute("aria-pressed", String(b.dataset.width === key));
}

/** Fetch what tab `key` shows for message `m` (each once per opening). */
async function load(key, m) {
  const id = m.ID;
  try {
    if (key === "headers") {
      const headers = await api(messageURL(id, "/headers"));
      if (current !== m) return;
      const body = $("headers").tBodies[0];
      body.replaceChildren();
      for (const [name, values] of Object.entries(headers)) {
        for (const value of values) body.append(el("tr", {}, el("th", { scope: "row" }, name), el("td", {}, value)));
      }
    } else if (key === "raw") {
      const raw = await api(messageURL(id, "/raw"));
      if (current === m) text($("raw"), raw);
    } else if (key === "checks") {
      const box = $("html-check");
      text(box, "Checking\u2026");
      const report = await api(messageURL(id, "/html-check"));
      if (current === m) renderHtmlCheck(box, report);
    } else if (key === "session") { // issue 17: the SMTP session that delivered it
      const box = $("session");
      text(box, "Loading\u2026");
      const session = await sessionOf(m, box);
      if (current === m && session) renderSession(box, session);
    }
  } catch (error) {
    loaded[key] = false;
    if (current === m) showError(key, error);
  }
}

/** The session of `m`: a session is written once it ends (a client may keep it open for more
 * messages), so a 404 is waited out for a while, saying so; null if `m` is no longer open. */
async function sessionOf(m, box) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await api(`/api/v1/session/${encodeURIComponent(m.SessionID)}`);
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 404 || attempt >= SESSION_TRIES) throw error;
    }
    if (current !== m) return null;
    text(box, "The SMTP session is still open or being written; it is shown once it has ended\u2026");
    await new Promise((done) => setTimeout(done, 500));
    if (current !== m) return null;
  }
}

function showError(key, error) {
  const target = { headers: $("headers").tBodies[0], raw: $("raw"), checks: $("html-check"), session: $("session") }[key];
  if (target) target.replaceChildren(el("p", { class: "error", role: "alert" }, error.message));
}

async function runLinkCheck() {
  const m = current;
  if (!m) return;
  const box = $("link-check");
  text(box, "Checking links\u2026");
  try {
    const follow = $("link-check-follow").checked ? "?follow=true" : "";
    const report = await api(messageURL(m.ID, `/link-check${follow}`));
    if (current === m) renderLinkCheck(box, report);
  } catch (error) {
    if (current === m) box.replaceChildren(el("p", { class: "error", role: "alert" }, error.message));
  }
}

/** The envelope and headers list: [label, value] rows; empty values are left out. */
function envelopeRows(m) {
  const list = (items) => (items || []).map(addr).join(", ");
  const smtp = m.SMTP || {};
  const unsubscribe = m.ListUnsubscribe || {};
  return [["From", addr(m.From)], ["To", list(m.To)], ["Cc", list(m.Cc)], ["Bcc", list(m.Bcc)],
    ["Reply-To", list(m.ReplyTo)], ["MAIL FROM", m.MailFrom], ["RCPT TO", (m.RcptTo || []).join(", ")],
    ["AUTH user", m.Username], ["TLS", smtp.Protocol ? (smtp.TLS ? `yes (${smtp.Protocol})` : `no (${smtp.Protocol})`) : ""],
    ["Client address", smtp.Peer], ["HELO", smtp.Helo], ["Date", m.Date], ["Size", formatSize(m.Size)],
    ["List-Unsubscribe", unsubscribe.Header ? unsubscribeNode(unsubscribe) : ""]];
}

/** List-Unsubscribe: the header as text, its valid links (http(s) and mailto only) as links. */
function unsubscribeNode(u) {
  const node = el("span", { id: "unsubscribe" });
  const links = (u.Links || []).filter((link) => /^(https?:|mailto:)/i.test(link));
  if (links.length === 0) text(node, u.Header);
  links.forEach((link, i) => {
    if (i) node.append(", ");
    node.append(el("a", { href: link, rel: "noopener noreferrer", target: "_blank" }, link));
  });
  if (u.HeaderPost) node.append(el("span", { class: "muted" }, ` (one-click: ${u.HeaderPost})`));
  if (u.Errors) node.append(el("span", { class: "error" }, ` (${u.Errors})`));
  return node;
}

function renderAttachments(m) {
  const list = $("attachments");
  list.replaceChildren();
  const parts = [...(m.Attachments || []), ...(m.Inline || [])];
  $("attachments-title").hidden = parts.length === 0;
  for (const a of parts) {
    const part = messageURL(m.ID, `/part/${encodeURIComponent(a.PartID)}`);
    const name = a.FileName || `part ${a.PartID}`;
    const item = el("li", {});
    if ((a.ContentType || "").startsWith("image/")) item.append(el("img", { class: "thumb", src: `${part}/thumb`, alt: "", loading: "lazy" }));
    item.append(el("span", { class: "att-info" },
      el("a", { href: part, download: a.FileName || "part" }, name),
      el("span", { class: "muted" }, ` ${a.ContentType || "application/octet-stream"}, ${formatSize(a.Size)}`)));
    list.append(item);
  }
}

let opening = 0; // the latest "open": an older answer arriving late is dropped

async function open(id) {
  const ticket = ++opening;
  let m;
  try {
    m = await api(messageURL(id));
  } catch (error) {
    if (ticket === opening && error instanceof ApiError && error.status === 404) { emit("close"); return; }
    throw error;
  }
  if (ticket !== opening) return;
  current = m;
  loaded = {};
  $("view").hidden = false;
  document.querySelector("main").classList.add("viewing");
  text($("subject"), m.Subject || "(no subject)");
  const envelope = $("envelope");
  envelope.replaceChildren();
  for (const [name, value] of envelopeRows(m)) if (value) envelope.append(el("dt", {}, name), el("dd", {}, value));
  // The HTML body is loaded from the server with a CSP that forbids scripts and remote content
  // (embed=1: cid: images are put in as data: URLs by the server), inside the sandboxed iframe.
  // location.replace: loading the frame adds no history entry (the back button stays the page's).
  $("html").contentWindow.location.replace(m.HTML ? `/view/${encodeURIComponent(m.ID)}.html?embed=1` : "about:blank");
  $("tab-html").hidden = !m.HTML;
  $("tab-checks").hidden = !m.HTML;
  $("tab-session").hidden = !m.SessionID; // issue 17: the recorded SMTP session, "" when none
  $("session").replaceChildren();
  text($("text"), m.Text);
  $("headers").tBodies[0].replaceChildren();
  text($("raw"), "");
  $("download-eml").href = messageURL(m.ID, "/raw?dl=1");
  $("download-eml").setAttribute("download", `${m.ID}.eml`);
  $("html-check").replaceChildren();
  $("link-check").replaceChildren();
  renderAttachments(m);
  showTags(m);
  resetRelease(m);
  showLint(m, () => current === m);
  show(m.HTML ? "html" : "text");
  emit("updated", { ID: m.ID, Read: true }); // the detail request marked it read
}

function close() {
  opening += 1; // a message still loading is not shown
  current = null;
  $("view").hidden = true;
  $("html").contentWindow.location.replace("about:blank"); // no history entry
  document.querySelector("main").classList.remove("viewing");
}

/** Mailpit's "Mark unread": flag it unread and go back to the list. */
async function markUnread() {
  if (!current) return;
  const id = current.ID;
  await sendJSON("/api/v1/messages", "PUT", { IDs: [id], Read: false });
  emit("updated", { ID: id, Read: false });
  emit("close");
}

async function deleteCurrent() {
  if (!current) return;
  const ids = [current.ID];
  await sendJSON("/api/v1/messages", "DELETE", { IDs: ids });
  emit("deleted", { ids });
  emit("close");
}

/** The open message's detail (null when none is open). */
export function currentMessage() { return current; }

/** Start the message pane: it opens what the bus says to open. */
export function initMessage() {
  build();
  initTags($("tags-editor"), currentMessage);
  initRelease($("release-form"), currentMessage);
  initLint($("lint"));
  on("open", ({ id }) => open(id));
  on("close", close);
  on("deleted", ({ ids }) => { if (current && ids.includes(current.ID)) emit("close"); });
  // /view/<id> (where /view/latest redirects) is routed by list.js, which owns the URL.
}
