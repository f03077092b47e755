// Shared helpers of the page's modules: the JSON API, DOM building, formatting, and the page's
// event bus. Plain ES module: no build step, no CDN.

/** An API error: `status` is the HTTP status, `message` the server's `{"Error"}` text. */
export class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

/** GET (or `options.method`) `path`; JSON when the answer is JSON, else text. Throws ApiError. */
export async function api(path, options = {}) {
  const response = await fetch(path, options);
  const type = response.headers.get("Content-Type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new ApiError(response.status, (body && body.Error) || `${response.status} ${path}`);
  return body;
}

/** `method` `path` with `body` as JSON. */
export function sendJSON(path, method, body) {
  return api(path, { method, headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

/** A message route: `/api/v1/message/<id><rest>`. */
export function messageURL(id, rest = "") { return `/api/v1/message/${encodeURIComponent(id)}${rest}`; }

/** Set `node`'s text (never HTML). */
export function text(node, value) { node.textContent = value == null ? "" : String(value); return node; }

/** A new element: `el("li", {class: "unread", dataset: {id}, title: "..."}, child, "text", ...)`. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "on") for (const [event, fn] of Object.entries(value)) node.addEventListener(event, fn);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

/** `Name <address>` or the address. */
export function addr(a) { return a ? (a.Name ? `${a.Name} <${a.Address}>` : a.Address) : ""; }

/** 1234 -> "1.2 kB". */
export function formatSize(bytes) {
  const units = ["B", "kB", "MB", "GB"];
  let value = bytes, unit = 0;
  while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** The page's own events: "open" {id}, "close", "changed" {reason}, "updated" {ID, Read?, Tags?}, "deleted" {ids}. */
export const bus = new EventTarget();
export function emit(name, detail = {}) { bus.dispatchEvent(new CustomEvent(name, { detail })); }
export function on(name, fn) { bus.addEventListener(name, (event) => fn(event.detail)); }
