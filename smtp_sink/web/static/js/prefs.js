// Preferences kept in the browser: the colour theme (follows the system until switched, then
// remembered in localStorage; `data-theme` on <html>) and browser notifications on new mail.
import { emit, text } from "./api.js";

const THEME_KEY = "smtp-sink-theme";
const system = window.matchMedia("(prefers-color-scheme: dark)");

function stored() {
  try { return localStorage.getItem(THEME_KEY); } catch { return null; }
}

/** The theme in force: the one chosen, else the system's. */
export function theme() {
  const chosen = stored();
  return chosen === "dark" || chosen === "light" ? chosen : (system.matches ? "dark" : "light");
}

function applyTheme() {
  const current = theme();
  document.documentElement.dataset.theme = current;
  const button = document.getElementById("theme-toggle");
  if (button) {
    const other = current === "dark" ? "light" : "dark";
    text(button, other === "dark" ? "Dark" : "Light");
    button.setAttribute("aria-label", `Switch to ${other} theme`);
  }
}

/** Start the theme switch: follow the system until the button is used, then remember the choice. */
export function initTheme() {
  applyTheme();
  system.addEventListener("change", applyTheme);
  document.getElementById("theme-toggle").addEventListener("click", () => {
    try { localStorage.setItem(THEME_KEY, theme() === "dark" ? "light" : "dark"); } catch { /* private mode */ }
    applyTheme();
  });
}

let pending = [];
let timer = null;

/** Tell the user about new mail with a browser notification (when allowed), one per burst. */
export function notifyNew(summary) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  pending.push(summary);
  if (timer) return;
  timer = setTimeout(() => {
    const batch = pending;
    pending = [];
    timer = null;
    const first = batch[0];
    const from = first.From && (first.From.Name || first.From.Address);
    const title = batch.length === 1 ? (first.Subject || "(no subject)") : `${batch.length} new messages`;
    const body = batch.length === 1 ? `From ${from || "unknown"}` : `Latest: ${batch[batch.length - 1].Subject || "(no subject)"}`;
    try {
      const note = new Notification(title, { body, tag: "smtp-sink-new" });
      note.onclick = () => { window.focus(); if (batch.length === 1) emit("open", { id: first.ID }); };
    } catch { /* notifications need a service worker on some platforms */ }
  }, 300);
}

/** Offer the "Enable notifications" button while the browser has not been asked yet. */
export function initNotifications() {
  const button = document.getElementById("notify");
  if (!("Notification" in window)) return;
  const update = () => { button.hidden = Notification.permission !== "default"; };
  update();
  button.addEventListener("click", async () => { await Notification.requestPermission(); update(); });
}
