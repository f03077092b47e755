// The client-lint badge of the open message (issue 17, docs/lint.md): "2 errors · 1 warning",
// coloured by the worst severity; a click shows the findings (check, severity, evidence, RFC).
// Findings hold message data (evidence is a line or header of the message): text only, via el().
import { el, messageURL, api, text } from "./api.js";

let badge = null; // the <button>
let list = null; // the findings <ul>, shown by the badge

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** Build the badge and its list inside `box` (once). */
export function initLint(box) {
  badge = el("button", { id: "lint-badge", type: "button", class: "lint-badge", "aria-expanded": "false",
    "aria-controls": "lint-findings", title: "What the sending application did wrong (client lint)",
    on: { click: toggle } });
  list = el("ul", { id: "lint-findings", class: "lint-findings", "aria-label": "Lint findings", hidden: true });
  box.append(badge, list);
}

function toggle() {
  const open = badge.getAttribute("aria-expanded") !== "true";
  badge.setAttribute("aria-expanded", String(open));
  list.hidden = !open;
}

/** Fetch and show the lint of message `m`; `stillOpen()` false: another message opened meanwhile. */
export async function showLint(m, stillOpen) {
  badge.className = "lint-badge";
  badge.setAttribute("aria-expanded", "false");
  list.hidden = true;
  list.replaceChildren();
  text(badge, "Lint\u2026");
  let report;
  try {
    report = await api(messageURL(m.ID, "/lint"));
  } catch (error) {
    if (stillOpen()) { text(badge, "Lint: unavailable"); badge.title = error.message; }
    return;
  }
  if (!stillOpen()) return;
  const errors = report.Errors || 0, warnings = report.Warnings || 0, infos = report.Infos || 0;
  const worst = errors ? "error" : warnings ? "warning" : infos ? "info" : "clean";
  badge.classList.add(worst);
  badge.dataset.errors = String(errors);
  badge.dataset.warnings = String(warnings);
  text(badge, worst === "clean" ? "Lint: clean"
    : [errors && plural(errors, "error"), warnings && plural(warnings, "warning"), infos && `${infos} info`]
      .filter(Boolean).join(" \u00b7 "));
  for (const f of report.Findings || []) {
    list.append(el("li", { class: `finding ${f.Severity}`, dataset: { check: f.Check } },
      el("span", { class: "severity" }, f.Severity), " ",
      el("code", { class: "check" }, f.Check), " ",
      el("span", { class: "evidence" }, f.Evidence), " ",
      el("span", { class: "reference muted" }, `(${f.Reference})`)));
  }
  if (!list.firstChild) list.append(el("li", { class: "finding" }, "No findings: the message follows the checked rules."));
}
