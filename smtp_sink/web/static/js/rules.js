// The fault rules in force: a badge in the header (the panel comes with the web-page issue).
import { api, text } from "./api.js";

/** Show how many fault rules are in force in `badge`. */
export async function initRules(badge) {
  if (!badge) return;
  const rules = await api("/api/v1/rules");
  const count = rules.length;
  badge.hidden = count === 0;
  text(badge, `${count} fault rule${count === 1 ? "" : "s"}`);
}
