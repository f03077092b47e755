// The Session tab (issue 17): the SMTP session that delivered the open message, from
// GET /api/v1/session/{id}: who connected, how it ended, the lint findings and the dialogue,
// one C:/S: line per command and reply with its time. Text only (el()/textContent), never markup:
// every string here came from an SMTP client.
import { el } from "./api.js";

const WHO = { C: "C:", D: "C:", S: "S:", M: "", T: "", N: "", X: "" };

function when(seconds) { return new Date(seconds * 1000).toLocaleString(); }

/** Draw one session (the API's detail) into `box`. */
export function renderSession(box, s) {
  const facts = [
    ["Session", s.ID], ["Client", s.Client], ["HELO", s.Helo || "(none)"],
    ["TLS", s.TLS ? `${s.TLS.Version} ${s.TLS.Cipher}` : "no"], ["AUTH", s.AuthUser || "-"],
    ["Started", `${when(s.Started)} (${(s.Ended - s.Started).toFixed(3)} s)`],
    ["Outcome", s.Outcome + (s.Refused ? " (refused)" : "")],
    ["Messages", (s.MessageIDs || []).join(", ") || "-"],
  ];
  const info = el("dl", { id: "session-info", class: "session-info" });
  for (const [name, value] of facts) info.append(el("dt", {}, name), el("dd", {}, value));
  const findings = el("ul", { id: "session-findings", class: "warnings", "aria-label": "Findings" });
  for (const f of s.Findings || []) {
    findings.append(el("li", { class: `finding ${f.Severity}` }, el("strong", {}, `${f.Severity}: ${f.Check}`),
      ` \u2014 ${f.Evidence} `, el("span", { class: "muted" }, `(${f.Reference})`)));
  }
  const rows = el("tbody");
  for (const e of s.Events || []) {
    const shown = e.Kind === "D" ? `(${e.Text})` : ["M", "T", "N", "X"].includes(e.Kind) ? `[${e.Text}]` : e.Text;
    rows.append(el("tr", { class: `kind-${e.Kind}` }, el("td", { class: "time" }, `+${e.Time.toFixed(3)}`),
      el("td", { class: "who" }, WHO[e.Kind] ?? ""), el("td", { class: "line" }, shown)));
  }
  const table = el("table", { id: "session-events", class: "grid transcript" },
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Time (s)"), el("th", { scope: "col" }, "Side"),
      el("th", { scope: "col" }, "Line"))), rows);
  box.replaceChildren(info,
    (s.Findings || []).length ? findings : el("p", { id: "session-findings", class: "muted" }, "No findings."),
    table);
}
