// The message list: one page of summaries (Mailpit's start/limit), read/unread toggles, tag chips,
// multi-select with bulk actions, the search box and the URL, and live updates applied in place
// (at most one list request per burst of events).
import { addr, api, el, emit, formatSize, on, sendJSON, text } from "./api.js";
import { connect } from "./live.js";
import { notifyNew } from "./prefs.js";
import { initSearchHelp, urlFor, urlQuery } from "./search.js";

export const PAGE = 50;  // summaries per page
const RECONCILE_DELAY = 400;  // ms of quiet before one list request reconciles a burst
const RECONCILE_MAX = 3000;  // ms at most between the first event of a burst and its request

const ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";  // before:/after: dates are local
const $ = (id) => document.getElementById(id);
const state = {
  start: 0, query: "", messages: [], total: 0, unread: 0, matches: 0,
  selected: new Set(), anchor: null, cursor: -1, current: null, statsSeen: false,
};
// The events applied while a list request is on its way: replayed on its answer, which may predate them.
let flightLog = null;
let loading = 0;  // request generation: an older answer never replaces a newer one

/** The list request for the page and query in force. */
function listPath() {
  const paging = `start=${state.start}&limit=${PAGE}`;
  if (!state.query) return `/api/v1/messages?${paging}`;
  return `/api/v1/search?query=${encodeURIComponent(state.query)}&${paging}&tz=${encodeURIComponent(ZONE)}`;
}

/** Fetch the page in force and show it. */
export async function refresh() {
  clearTimeout(reconcileTimer); reconcileTimer = null; burstStart = 0;
  const generation = ++loading;
  const log = [];
  flightLog = log;
  let data;
  try { data = await api(listPath()); } catch (error) { showError(error); return; } finally { if (flightLog === log) flightLog = null; }
  if (generation !== loading) return;
  if (data.messages.length === 0 && state.start > 0 && data.messages_count > 0) {  // the page emptied: go back one
    state.start = Math.max(0, Math.floor((data.messages_count - 1) / PAGE) * PAGE);
    return refresh();
  }
  $("list").classList.remove("failed");
  state.messages = data.messages;
  state.total = data.total;
  state.unread = data.unread;
  state.matches = data.messages_count;
  const ids = new Set(state.messages.map((m) => m.ID));
  for (const id of [...state.selected]) if (!ids.has(id)) state.selected.delete(id);
  render();
  for (const [type, detail] of log) apply(type, detail);  // newer than the answer
}

function showError(error) {
  $("list").classList.add("failed");
  text($("page-info"), `Could not load the list: ${error.message}`);
}

// ---- reconciling bursts: one request after the events stop (or every RECONCILE_MAX ms) ----
let reconcileTimer = null;
let burstStart = 0;
function reconcileSoon() {
  const now = Date.now();
  if (!burstStart) burstStart = now;
  clearTimeout(reconcileTimer);
  const wait = Math.max(0, Math.min(RECONCILE_DELAY, burstStart + RECONCILE_MAX - now));
  reconcileTimer = setTimeout(refresh, wait);
}

// ---- rendering ----
function relativeTime(date) {
  const seconds = Math.round((Date.now() - date.getTime()) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  if (seconds < 7 * 86400) return `${Math.round(seconds / 86400)} d ago`;
  return date.toLocaleDateString();
}

function row(m, index) {
  const created = new Date(m.Created);
  const subject = m.Subject || "(no subject)";
  const checkbox = el("input", { type: "checkbox", class: "select", "aria-label": `Select: ${subject}`,
    on: { click: (event) => select(m.ID, event.target.checked, event.shiftKey) } });
  checkbox.checked = state.selected.has(m.ID);
  const toggle = el("button", { type: "button", class: "read-toggle", "aria-pressed": m.Read ? "false" : "true",
    "aria-label": m.Read ? `Mark as unread: ${subject}` : `Mark as read: ${subject}`, title: m.Read ? "Mark as unread" : "Mark as read",
    on: { click: () => setRead([m.ID], !m.Read) } });
  const chips = el("span", { class: "tags" }, ...(m.Tags || []).map((tag) => el("button", { type: "button", class: "tag",
    "aria-label": `Show messages tagged ${tag}`, title: `Search tag:${tag}`, on: { click: () => searchFor(tagQuery(tag)) } }, tag)));
  const attachments = m.Attachments > 0 ? el("span", { class: "attachment", title: `${m.Attachments} attachment${m.Attachments === 1 ? "" : "s"}`,
    "aria-label": `${m.Attachments} attachment${m.Attachments === 1 ? "" : "s"}` }, "📎") : null;
  // A later copy of an older message (a client's retry, docs/retries.md): a badge that opens the original.
  const duplicate = m.DuplicateOf ? el("button", { type: "button", class: "duplicate", title: "A copy of an older message (a retry): open the original",
    "aria-label": `Duplicate: open the original of ${subject}`, on: { click: () => openMessage(m.DuplicateOf) } }, "duplicate") : null;
  const item = el("li", {
    class: ["message", m.Read ? "read" : "unread", state.current === m.ID ? "active" : "", state.selected.has(m.ID) ? "selected" : "",
      index === state.cursor ? "cursor" : ""].join(" ").replace(/\s+/g, " ").trim(),
    dataset: { id: m.ID },
    on: { click: (event) => { if (!event.target.closest("button, input, a")) openMessage(m.ID); } },
  },
  checkbox, toggle,
  el("div", { class: "body" },
    el("div", { class: "meta" }, el("span", { class: "from" }, addr(m.From) || "(no sender)"),
      el("span", { class: "info" }, duplicate, attachments, el("span", { class: "size", title: `${m.Size} bytes` }, formatSize(m.Size)),
        el("time", { datetime: created.toISOString(), title: created.toLocaleString() }, relativeTime(created)))),
    el("a", { class: "subject", href: urlFor(`/view/${encodeURIComponent(m.ID)}`, state.query),
      on: { click: (event) => { event.preventDefault(); openMessage(m.ID); } } }, subject),
    el("div", { class: "snippet" }, m.Snippet, chips)));
  return item;
}

function render() {
  const list = $("messages");
  list.replaceChildren(...state.messages.map(row));
  $("empty").hidden = state.messages.length > 0;
  text($("empty"), state.query ? "No message matches this search." : "No messages yet. Send mail to localhost:2525.");
  renderCounts();
  renderSelection();
}

function renderCounts() {
  const shown = state.query ? state.matches : state.total;
  text($("count"), state.query ? `${state.matches} found · ${state.total} messages, ${state.unread} unread`
    : `${state.total} messages, ${state.unread} unread`);
  document.title = state.unread > 0 ? `(${state.unread}) smtp-sink` : "smtp-sink";
  const first = state.messages.length ? state.start + 1 : 0;
  text($("page-info"), state.messages.length ? `${first}–${state.start + state.messages.length} of ${shown}` : "");
  $("prev").disabled = state.start === 0;
  $("next").disabled = state.start + state.messages.length >= shown;
  $("pager").hidden = shown <= PAGE && state.start === 0;
}

function renderSelection() {
  const count = state.selected.size;
  text($("selection-count"), count ? `${count} selected` : "");
  for (const id of ["bulk-read", "bulk-unread", "bulk-tag", "bulk-delete"]) $(id).disabled = count === 0;
  const all = $("select-all");
  all.checked = count > 0 && count === state.messages.length;
  all.indeterminate = count > 0 && count < state.messages.length;
  for (const item of $("messages").children) {
    const chosen = state.selected.has(item.dataset.id);
    item.classList.toggle("selected", chosen);
    item.querySelector("input.select").checked = chosen;
  }
}

function replaceRow(id) {
  const index = state.messages.findIndex((m) => m.ID === id);
  const old = $("messages").querySelector(`li[data-id="${CSS.escape(id)}"]`);
  if (index >= 0 && old) old.replaceWith(row(state.messages[index], index));
}

// ---- actions ----
function select(id, chosen, range) {
  const ids = state.messages.map((m) => m.ID);
  const targets = range && state.anchor && ids.includes(state.anchor)
    ? ids.slice(Math.min(ids.indexOf(state.anchor), ids.indexOf(id)), Math.max(ids.indexOf(state.anchor), ids.indexOf(id)) + 1)
    : [id];
  for (const target of targets) chosen ? state.selected.add(target) : state.selected.delete(target);
  state.anchor = id;
  renderSelection();
}

async function setRead(ids, read) {
  await sendJSON("/api/v1/messages", "PUT", { IDs: ids, Read: read });
  for (const id of ids) frame("update", { ID: id, Read: read });  // the event will say so too; no list request
}

async function deleteIds(ids) {
  if (!ids.length) return;
  await sendJSON("/api/v1/messages", "DELETE", { IDs: ids });
  emit("deleted", { ids });
}

async function addTag(ids, tag) {
  // PUT /api/v1/tags sets exactly the given tags: one request per resulting set of tags.
  const groups = new Map();
  for (const id of ids) {
    const m = state.messages.find((x) => x.ID === id);
    const tags = [...new Set([...(m ? m.Tags || [] : []), tag])];
    const key = JSON.stringify(tags);
    if (!groups.has(key)) groups.set(key, { tags, ids: [] });
    groups.get(key).ids.push(id);
  }
  for (const { tags, ids: group } of groups.values()) {
    await sendJSON("/api/v1/tags", "PUT", { IDs: group, Tags: tags });
    for (const id of group) frame("update", { ID: id, Tags: tags });
  }
}

function tagQuery(tag) { return /\s/.test(tag) ? `tag:"${tag}"` : `tag:${tag}`; }

/**
 * Show the first page of `query` ("" for every message) and keep it in the URL: a new history entry,
 * or (`typed`, while the entry in force is a typed search too) replacing it, so Back skips keystrokes.
 */
export function searchFor(query, typed = false) {
  $("query").value = query;
  state.query = query.trim();
  state.start = 0;
  state.selected.clear();
  state.cursor = -1;
  const path = state.current ? `/view/${encodeURIComponent(state.current)}` : "/";
  const url = urlFor(path, state.query);
  if (url !== location.pathname + location.search) {
    if (typed && history.state && history.state.typed) history.replaceState({ typed }, "", url);
    else history.pushState({ typed }, "", url);
  }
  refresh();
}

function openMessage(id) { emit("open", { id }); }

// ---- live events, applied in place ----
function applyUpdate(data) {
  const m = state.messages.find((x) => x.ID === data.ID);
  if (!m) return;
  if ("Read" in data && data.Read !== undefined) m.Read = data.Read;
  if ("Tags" in data && data.Tags !== undefined) m.Tags = data.Tags || [];
  replaceRow(data.ID);
  if (state.query) reconcileSoon();  // the message may no longer match (is:unread, tag:x)
}

function removeIds(ids) {
  const gone = new Set(ids);
  const before = state.messages.length;
  state.messages = state.messages.filter((m) => !gone.has(m.ID));
  for (const id of ids) {
    state.selected.delete(id);
    const item = $("messages").querySelector(`li[data-id="${CSS.escape(id)}"]`);
    if (item) item.remove();
  }
  if (state.messages.length !== before) {
    if (!state.statsSeen) { state.total -= before - state.messages.length; state.matches -= before - state.messages.length; }
    $("empty").hidden = state.messages.length > 0;
    renderCounts();
    renderSelection();
    if (state.messages.length < before && (state.start > 0 || state.matches > state.messages.length)) reconcileSoon();  // fill the page
  }
}

// New summaries are shown in batches: a burst of arrivals costs one DOM update, not one each.
const ARRIVAL_BATCH = 50;  // ms
let arrivals = [];
let arrivalTimer = null;
function showArrivals() {
  arrivalTimer = null;
  const known = new Set(state.messages.map((m) => m.ID));
  const unknown = [...new Map(arrivals.map((m) => [m.ID, m])).values()].filter((m) => !known.has(m.ID));  // a replay repeats some
  const fresh = unknown.slice().reverse().slice(0, PAGE);  // newest first
  const added = unknown.length;
  arrivals = [];
  if (state.query || state.start > 0) { if (added) reconcileSoon(); return; }  // the view changed meanwhile
  state.matches += added;
  if (!state.statsSeen) { state.total += added; state.unread += fresh.filter((m) => !m.Read).length; }
  if (fresh.length) {
    state.messages = [...fresh, ...state.messages].slice(0, PAGE);
    const list = $("messages");
    list.prepend(...fresh.map(row));
    while (list.children.length > state.messages.length) list.lastElementChild.remove();
    if (state.cursor >= 0) state.cursor = Math.min(state.cursor + fresh.length, state.messages.length - 1);
    $("empty").hidden = true;
  }
  renderCounts();
}

/** An event from the stream or a local change: applied now, and again on a list answer in flight. */
function frame(type, data) {
  if (flightLog && type !== "stats") flightLog.push([type, data]);
  if (type === "new") notifyNew(data);
  apply(type, data);
}

function apply(type, data) {
  switch (type) {
    case "new":
      if (state.query || state.start > 0) {  // it may match: ask (unless the list has it already)
        if (!state.messages.some((m) => m.ID === data.ID)) reconcileSoon();
        break;
      }
      arrivals.push(data);
      if (!arrivalTimer) arrivalTimer = setTimeout(showArrivals, ARRIVAL_BATCH);
      break;
    case "update": applyUpdate(data); break;
    case "delete": removeIds([data.ID]); break;
    case "truncate":
      state.messages = []; state.selected.clear(); state.start = 0; state.matches = 0;
      if (!state.statsSeen) { state.total = 0; state.unread = 0; }
      render();
      break;
    case "prune": reconcileSoon(); break;
    case "stats":
      state.statsSeen = true;
      state.total = data.Total; state.unread = data.Unread;
      if (!state.query) state.matches = data.Total;
      renderCounts();
      break;
    default: break;
  }
  if (!state.statsSeen && type !== "new" && type !== "stats") reconcileSoon();  // no stats frames (SSE): counts from the list
}

// ---- keyboard support (used by keys.js) ----
/** Move the keyboard cursor by `step` rows. */
export function moveCursor(step) {
  if (!state.messages.length) return;
  state.cursor = Math.max(0, Math.min(state.messages.length - 1, state.cursor + step));
  const items = $("messages").children;
  for (let i = 0; i < items.length; i += 1) items[i].classList.toggle("cursor", i === state.cursor);
  const item = items[state.cursor];
  item.scrollIntoView({ block: "nearest" });
  item.querySelector("a.subject").focus({ preventScroll: true });
}

/** The message under the keyboard cursor (else the one open). */
export function cursorId() {
  return state.cursor >= 0 && state.messages[state.cursor] ? state.messages[state.cursor].ID : state.current;
}

/** Open the message under the cursor. */
export function openCursor() { const id = cursorId(); if (id) openMessage(id); }

/** Delete the selected messages, else the one under the cursor. */
export function deleteCurrent() {
  const ids = state.selected.size ? [...state.selected] : [cursorId()].filter(Boolean);
  return deleteIds(ids);
}

/** Toggle the read flag of the message under the cursor. */
export function toggleCursorRead() {
  const m = state.messages.find((x) => x.ID === cursorId());
  if (m) setRead([m.ID], !m.Read);
}

// ---- start ----
function routeFromURL() {
  const q = urlQuery();
  if (q !== state.query) { $("query").value = q; state.query = q; state.start = 0; refresh(); }
  const match = location.pathname.match(/^\/view\/([^/]+)$/);
  const id = match ? decodeURIComponent(match[1]) : null;
  if (id && id !== state.current) emit("open", { id });
  else if (!id && state.current) emit("close");
}

/** Start the list: first page, search box and URL, toolbar, paging, live events. */
export function initList() {
  const input = $("query");
  let typing = null;
  const searchNow = (typed = false) => { clearTimeout(typing); searchFor(input.value, typed); };
  $("search").addEventListener("submit", (event) => { event.preventDefault(); searchNow(); });
  input.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => searchNow(true), 300); });
  initSearchHelp(input, searchNow);
  $("home").addEventListener("click", (event) => { event.preventDefault(); emit("close"); searchFor(""); });

  $("select-all").addEventListener("change", (event) => {
    state.selected = new Set(event.target.checked ? state.messages.map((m) => m.ID) : []);
    renderSelection();
  });
  $("bulk-read").addEventListener("click", () => setRead([...state.selected], true));
  $("bulk-unread").addEventListener("click", () => setRead([...state.selected], false));
  $("bulk-delete").addEventListener("click", () => deleteIds([...state.selected]));
  const tagSelected = () => {
    const tag = $("bulk-tag-name").value.trim();
    if (!tag) { $("bulk-tag-name").focus(); return; }
    addTag([...state.selected], tag).then(() => { $("bulk-tag-name").value = ""; });
  };
  $("bulk-tag").addEventListener("click", tagSelected);
  $("bulk-tag-name").addEventListener("keydown", (event) => { if (event.key === "Enter") tagSelected(); });
  $("prev").addEventListener("click", () => { state.start = Math.max(0, state.start - PAGE); state.cursor = -1; refresh(); });
  $("next").addEventListener("click", () => { state.start += PAGE; state.cursor = -1; refresh(); });
  $("delete-all").addEventListener("click", async () => {
    if (confirm("Delete every message?")) { await sendJSON("/api/v1/messages", "DELETE", { IDs: [] }); emit("close"); frame("truncate", null); }
  });

  on("open", ({ id }) => {
    state.current = id;
    for (const item of $("messages").children) item.classList.toggle("active", item.dataset.id === id);
    const url = urlFor(`/view/${encodeURIComponent(id)}`, state.query);
    if (url !== location.pathname + location.search) history.pushState({}, "", url);
  });
  on("close", () => {
    state.current = null;
    for (const item of $("messages").querySelectorAll("li.active")) item.classList.remove("active");
    const url = urlFor("/", state.query);
    if (url !== location.pathname + location.search) history.pushState({}, "", url);
  });
  // "changed": the list should reconcile; a read flag changed by opening a message comes as an update frame.
  on("changed", ({ reason } = {}) => { if (!(reason === "read" && state.statsSeen)) reconcileSoon(); });
  on("updated", (detail) => frame("update", detail));
  on("deleted", ({ ids }) => { if (ids.includes(state.current)) emit("close"); for (const id of ids) frame("delete", { ID: id }); });
  window.addEventListener("popstate", routeFromURL);
  setInterval(() => {  // "5 min ago" stays true without asking the server
    for (const time of $("messages").querySelectorAll("time[datetime]")) text(time, relativeTime(new Date(time.dateTime)));
  }, 30_000);

  state.query = urlQuery();
  input.value = state.query;
  refresh();
  routeFromURL();
  connect({ frame, open: (reconnected) => { if (reconnected) refresh(); else reconcileSoon(); } });
}
