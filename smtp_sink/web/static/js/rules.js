// The fault rules in force: a header badge (how many, chaos triggers marked) that opens a <dialog>
// panel listing the rules, adding one with a form (POST /api/v1/rules: the JSON of a [[rules]] table,
// checked by the server, whose message names the key as the config file's does) and clearing them
// (DELETE /api/v1/rules). The badge refreshes after a change, when the page gets focus, and every
// POLL_MS while the page is visible: one request at a time, never a storm.
import { api, el, sendJSON, text } from "./api.js";

const POLL_MS = 5000;
const STAGES = ["connect", "helo", "starttls", "auth", "mail", "rcpt", "data", "after-data"];
const ACTIONS = ["reply", "disconnect", "delay", "throttle", "store-then-drop"]; // store-then-drop: after-data only
const SCHEDULES = ["always", "nth", "every", "first", "probability"];
const BEFORE_MAIL = ["connect", "helo", "starttls", "auth"];
const WITH_RECIPIENTS = ["rcpt", "data", "after-data"];
// Which form fields a choice uses (a field not shown is not sent).
const ACTION_FIELDS = { reply: ["code", "text"], disconnect: [], delay: ["seconds"], throttle: ["rate"],
  "store-then-drop": [] };
const SCHEDULE_FIELDS = { always: [], nth: ["n"], every: ["n"], first: ["n"], probability: ["probability", "seed"] };
const NUMBERS = { code: "int", seconds: "float", rate: "int", n: "int", probability: "float", seed: "int" };

let badgeButton = null;
let panel = null;
let parts = null; // the panel's live elements: list, status, form, error, fields
let rules = [];
let loading = null;

/** Start the badge in `badge` and the panel in the <dialog> `dialog`. */
export function initRules(badge, dialog) {
  if (!badge) return;
  badgeButton = el("button", { type: "button", class: "rules-button", "aria-haspopup": "dialog",
    on: { click: openPanel } });
  badge.replaceChildren(badgeButton);
  badge.hidden = false;
  panel = dialog || null;
  if (panel) buildPanel(panel);
  renderBadge();
  refresh();
  window.addEventListener("focus", refresh);
  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
}

/** GET the rules (one request at a time: a refresh while one runs shares it) and show them. */
function refresh() {
  if (!loading) {
    loading = api("/api/v1/rules")
      .then((data) => { rules = data; renderBadge(); renderList(); })
      .catch(() => {}) // offline or stopped: keep what is shown, the next poll retries
      .finally(() => { loading = null; });
  }
  return loading;
}

function renderBadge() {
  const chaos = rules.filter((rule) => rule.chaos).length;
  const count = rules.length;
  badgeButton.classList.toggle("active", count > 0);
  text(badgeButton, count === 0 ? "No fault rules"
    : `${count} fault rule${count === 1 ? "" : "s"}${chaos ? ` (${chaos} chaos)` : ""}`);
  badgeButton.title = count === 0 ? "Every command gets its usual reply: open to add a fault rule"
    : "Fault rules in force: open to see or clear them";
  badgeButton.dataset.count = String(count);
}

function openPanel() {
  if (!panel) return;
  refresh();
  if (!panel.open) panel.showModal();
}

// ---- the panel ----

function field(name, label, input, hint) {
  input.id = `rule-${name}`;
  input.name = name;
  const wrap = el("div", { class: "rule-field", dataset: { field: name } },
    el("label", { for: input.id }, label), input);
  if (hint) {
    const note = el("small", { id: `rule-${name}-hint` }, hint);
    input.setAttribute("aria-describedby", note.id);
    wrap.append(note);
  }
  return wrap;
}

function select(options, value) {
  const node = el("select", {});
  for (const option of options) node.append(el("option", { value: option, selected: option === value }, option));
  return node;
}

function buildPanel(dialog) {
  dialog.classList.add("rules-panel");
  dialog.setAttribute("aria-labelledby", "rules-title");
  const list = el("div", { class: "rules-list" });
  const status = el("p", { class: "rules-status", role: "status" });
  const error = el("p", { id: "rules-error", class: "rules-error", role: "alert", hidden: true });
  const inputs = {
    stage: select(STAGES, "rcpt"),
    sender: el("input", { type: "text", placeholder: "*@example.test", autocomplete: "off" }),
    recipient: el("input", { type: "text", placeholder: "bob@example.test", autocomplete: "off" }),
    client: el("input", { type: "text", placeholder: "127.0.0.*", autocomplete: "off" }),
    action: select(ACTIONS, "reply"),
    code: el("input", { type: "number", value: "550", inputmode: "numeric" }),
    text: el("textarea", { rows: "2", placeholder: "Mailbox unavailable (one line each)" }),
    seconds: el("input", { type: "number", step: "any", value: "5" }),
    rate: el("input", { type: "number", value: "1000" }),
    schedule: select(SCHEDULES, "always"),
    n: el("input", { type: "number", value: "1" }),
    probability: el("input", { type: "number", step: "any", value: "0.5" }),
    seed: el("input", { type: "number", placeholder: "random" }),
  };
  const fields = {
    stage: field("stage", "Stage", inputs.stage),
    sender: field("sender", "Sender", inputs.sender, "glob, optional"),
    recipient: field("recipient", "Recipient", inputs.recipient, "glob, optional"),
    client: field("client", "Client IP", inputs.client, "glob, optional"),
    action: field("action", "Action", inputs.action),
    code: field("code", "Code", inputs.code, "4xx or 5xx"),
    text: field("text", "Reply text", inputs.text, "optional"),
    seconds: field("seconds", "Seconds", inputs.seconds),
    rate: field("rate", "Bytes per second", inputs.rate),
    schedule: field("schedule", "Schedule", inputs.schedule),
    n: field("n", "n", inputs.n),
    probability: field("probability", "Probability", inputs.probability, "0 to 1"),
    seed: field("seed", "Seed", inputs.seed, "optional: the same sequence every run"),
  };
  const form = el("form", { class: "rules-form", novalidate: true, "aria-labelledby": "rules-add-title",
    on: { submit: (event) => { event.preventDefault(); addRule(); }, change: showFields } },
  el("h3", { id: "rules-add-title" }, "Add a rule"),
  el("fieldset", {}, el("legend", {}, "Match"), fields.stage, fields.sender, fields.recipient, fields.client),
  el("fieldset", {}, el("legend", {}, "Action"), fields.action, fields.code, fields.text, fields.seconds, fields.rate),
  el("fieldset", {}, el("legend", {}, "Schedule"), fields.schedule, fields.n, fields.probability, fields.seed),
  error,
  el("div", { class: "rules-actions" }, el("button", { type: "submit", class: "primary" }, "Add rule")));
  const clear = el("button", { type: "button", class: "danger", on: { click: clearRules } }, "Clear all rules");
  dialog.replaceChildren(
    el("div", { class: "rules-head" },
      el("h2", { id: "rules-title" }, "Fault rules"),
      el("button", { type: "button", class: "rules-close", "aria-label": "Close", on: { click: () => dialog.close() } }, "\u00d7")),
    el("p", { class: "rules-intro" }, "Rules make the SMTP server refuse, stall or hang up on purpose; "
      + "the first rule that fires wins. The same keys as [[rules]] in the config file."),
    list, el("div", { class: "rules-actions" }, clear), status, form);
  parts = { list, status, form, error, inputs, fields, clear };
  showFields();
  renderList();
}

/** Show only the fields the chosen stage, action and schedule use. */
function showFields() {
  const { inputs, fields } = parts;
  const shown = new Set(["stage", "action", "schedule", "client",
    ...ACTION_FIELDS[inputs.action.value], ...SCHEDULE_FIELDS[inputs.schedule.value]]);
  if (!BEFORE_MAIL.includes(inputs.stage.value)) shown.add("sender");
  if (WITH_RECIPIENTS.includes(inputs.stage.value)) shown.add("recipient");
  for (const [name, wrap] of Object.entries(fields)) wrap.hidden = !shown.has(name);
}

/** The form as a [[rules]] table: shown fields only, empty optional ones left out. */
function formRule() {
  const { inputs, fields } = parts;
  const rule = {};
  for (const [name, input] of Object.entries(inputs)) {
    if (fields[name].hidden) continue;
    const raw = input.value.trim();
    if (raw === "") continue;
    if (name === "text") {
      const lines = raw.split(/\r?\n/);
      rule.text = lines.length === 1 ? lines[0] : lines;
    } else if (name in NUMBERS) {
      const number = Number(raw);
      rule[name] = Number.isFinite(number) ? number : raw;
    } else {
      rule[name] = raw;
    }
  }
  return rule;
}

async function addRule() {
  const { error, status, inputs } = parts;
  for (const input of Object.values(inputs)) input.removeAttribute("aria-invalid");
  try {
    await sendJSON("/api/v1/rules", "POST", formRule());
    error.hidden = true;
    text(status, "Rule added.");
  } catch (failure) {
    // The server's text, e.g. "rule: code: a fault rule replies with a failure (4xx or 5xx), not 250"
    text(error, failure.message);
    error.hidden = false;
    const named = /^(?:rule: )?([a-z]+)[:\s]/.exec(failure.message);
    const input = named && inputs[named[1]];
    if (input) { input.setAttribute("aria-invalid", "true"); input.setAttribute("aria-errormessage", "rules-error"); }
    return;
  }
  await refresh();
}

async function clearRules() {
  try {
    await api("/api/v1/rules", { method: "DELETE" });
    text(parts.status, "Every rule cleared.");
  } catch (failure) {
    text(parts.status, failure.message);
  }
  await refresh();
}

function describeMatch(rule) {
  const bits = [];
  if (rule.sender) bits.push(`from ${rule.sender}`);
  if (rule.recipient) bits.push(`to ${rule.recipient}`);
  if (rule.client) bits.push(`client ${rule.client}`);
  return bits.length ? bits.join(", ") : "any";
}

function describeAction(rule) {
  if (rule.action === "reply") {
    const lines = Array.isArray(rule.text) ? rule.text.join(" / ") : rule.text;
    return `reply ${rule.code}${lines ? ` ${lines}` : ""}`;
  }
  if (rule.action === "delay") return `delay ${rule.seconds} s`;
  if (rule.action === "throttle") return `throttle to ${rule.rate} B/s`;
  if (rule.action === "store-then-drop") return "store, then drop the connection before the 250";
  return rule.action;
}

function describeSchedule(rule) {
  switch (rule.schedule) {
    case "nth": return `only match #${rule.n}`;
    case "every": return `every ${rule.n}th match`;
    case "first": return `first ${rule.n} matches`;
    case "probability": return `${+(rule.probability * 100).toFixed(2)}% of matches${rule.seed >= 0 ? ` (seed ${rule.seed})` : ""}`;
    default: return "always";
  }
}

function renderList() {
  if (!parts) return;
  const { list, clear } = parts;
  clear.disabled = rules.length === 0;
  if (rules.length === 0) {
    list.replaceChildren(el("p", { class: "rules-empty" }, "No fault rules: every command gets its usual reply."));
    return;
  }
  const body = el("tbody", {});
  rules.forEach((rule, index) => {
    const stage = el("td", {}, rule.stage);
    if (rule.chaos) stage.append(" ", el("span", { class: "chip chaos", title: "A Mailpit chaos trigger (PUT /api/v1/chaos)" }, "chaos"));
    body.append(el("tr", { dataset: { stage: rule.stage }, class: rule.chaos ? "chaos" : null },
      el("td", {}, String(index + 1)), stage, el("td", {}, describeMatch(rule)),
      el("td", {}, describeAction(rule)), el("td", {}, describeSchedule(rule))));
  });
  list.replaceChildren(el("table", {},
    el("caption", {}, `${rules.length} rule${rules.length === 1 ? "" : "s"} in force, tried in this order`),
    el("thead", {}, el("tr", {}, ...["#", "Stage", "Match", "Action", "Schedule"].map((name) => el("th", { scope: "col" }, name)))),
    body));
}
