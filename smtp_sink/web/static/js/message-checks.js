// The HTML check (caniemail support by client family) and the link check of one message, drawn
// from the API's answers with el()/text() only. caniemail's descriptions arrive as HTML the server
// rendered from Markdown (text escaped); they are parsed inertly and rebuilt from an allow-list.
import { el } from "./api.js";

const pct = (n) => `${Math.round(n * 10) / 10}%`;
const SUPPORT = { y: "yes", yes: "yes", a: "partial", partial: "partial", n: "no", no: "no" };

/**
 * caniemail's description HTML (from the server's small Markdown renderer) as DOM nodes.
 * DOMParser builds an inert document (no script runs, nothing loads); only text, <code>, <em>,
 * <strong> and <a href="http(s)://..."> are copied, element by element, so nothing else can
 * reach the page even if the data held it.
 */
export function safeRich(html) {
  const doc = new DOMParser().parseFromString(`<div>${html || ""}</div>`, "text/html");
  const copy = (node) => {
    if (node.nodeType === Node.TEXT_NODE) return document.createTextNode(node.data);
    if (node.nodeType !== Node.ELEMENT_NODE) return null;
    const name = node.localName;
    const children = [...node.childNodes].map(copy).filter(Boolean);
    if (name === "a" && /^https?:\/\//i.test(node.getAttribute("href") || "")) {
      return el("a", { href: node.getAttribute("href"), rel: "noopener noreferrer", target: "_blank" }, ...children);
    }
    if (["code", "em", "strong", "b", "i"].includes(name)) return el(name, {}, ...children);
    const span = el("span");
    span.append(...children);
    return span;
  };
  const out = el("span", { class: "rich" });
  out.append(...[...doc.body.firstChild.childNodes].map(copy).filter(Boolean));
  return out;
}

/** The support of one feature per client family: "yes", "partial", "no" or "mixed". */
function byFamily(results) {
  const families = new Map();
  for (const r of results || []) {
    const support = SUPPORT[r.Support] || "partial";
    const seen = families.get(r.Family) || new Set();
    seen.add(support);
    families.set(r.Family, seen);
  }
  return [...families].map(([family, seen]) => [family, seen.size === 1 ? [...seen][0] : "partial"]);
}

/** Draw Mailpit's HTMLCheckResponse into `box`. */
export function renderHtmlCheck(box, report) {
  const total = report.Total || {};
  const warnings = report.Warnings || [];
  box.replaceChildren(
    el("p", { id: "html-check-score", class: "score" },
      el("strong", {}, `${pct(total.Supported || 0)} supported`),
      ` \u00b7 ${pct(total.Partial || 0)} partial \u00b7 ${pct(total.Unsupported || 0)} not supported`,
      el("span", { class: "muted" }, ` (${total.Tests || 0} tests, ${total.Nodes || 0} elements)`)));
  if (warnings.length === 0) { box.append(el("p", {}, "No unsupported features found.")); return; }
  const list = el("ul", { id: "html-check-warnings", class: "warnings" });
  for (const w of warnings) {
    const score = w.Score || {};
    const families = el("ul", { class: "families", "aria-label": `Support of ${w.Title} by client family` });
    for (const [family, support] of byFamily(w.Results)) {
      families.append(el("li", { class: `support ${support}`, dataset: { family } }, `${family}: ${support}`));
    }
    const more = el("details", {}, el("summary", {}, "Description"), el("p", {}, safeRich(w.Description)));
    if (w.URL && /^https:\/\//.test(w.URL)) more.append(el("p", {}, el("a", { href: w.URL, rel: "noopener noreferrer", target: "_blank" }, "caniemail.com")));
    list.append(el("li", { class: "warning", dataset: { slug: w.Slug } },
      el("div", { class: "warning-head" }, el("strong", {}, w.Title), el("span", { class: "muted" }, ` ${w.Category}`),
        el("span", { class: "score" }, ` ${pct(score.Supported || 0)} yes, ${pct(score.Partial || 0)} partial, ${pct(score.Unsupported || 0)} no`)),
      families, more));
  }
  box.append(list, el("p", { class: "muted" }, "Data: caniemail.com (CC BY 4.0)."));
}

/** Draw Mailpit's LinkCheckResponse into `box`. */
export function renderLinkCheck(box, report) {
  const links = report.Links || [];
  const rows = el("tbody");
  for (const link of links) {
    const bad = link.StatusCode === 0 || link.StatusCode >= 400;
    rows.append(el("tr", { class: bad ? "bad" : "good" },
      el("td", { class: "url" }, link.URL), el("td", {}, String(link.StatusCode)), el("td", {}, link.Status)));
  }
  box.replaceChildren(el("p", { id: "link-check-summary" }, links.length === 0 ? "No links found."
    : `${links.length} link${links.length === 1 ? "" : "s"}, ${report.Errors} with errors`));
  if (links.length) {
    box.append(el("table", { id: "link-check-table", class: "grid" },
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Link"), el("th", { scope: "col" }, "Code"), el("th", { scope: "col" }, "Status"))),
      rows));
  }
}
