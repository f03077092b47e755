// Keyboard shortcuts: j/k or arrows move, Enter opens, Delete deletes, r toggles read, x selects,
// `/` searches, Escape closes, `?` shows the list of keys in a dialog.
import { el, emit } from "./api.js";
import { deleteCurrent, moveCursor, openCursor, toggleCursorRead } from "./list.js";

/** [keys, what they do], shown in the dialog. */
export const KEYS = [
  ["j / ↓", "next message"],
  ["k / ↑", "previous message"],
  ["Enter", "open the message"],
  ["Delete", "delete the message (or the selected ones)"],
  ["r", "mark read / unread"],
  ["/", "search"],
  ["Escape", "close the message / leave the search box"],
  ["?", "this list"],
];

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
}

/** Start the shortcuts and fill the dialog of keys. */
export function initKeys() {
  const dialog = document.getElementById("keys-dialog");
  const list = document.getElementById("keys-list");
  for (const [keys, meaning] of KEYS) list.append(el("dt", {}, el("kbd", {}, keys)), el("dd", {}, meaning));
  document.getElementById("keys-button").addEventListener("click", () => dialog.showModal());
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (document.querySelector("dialog[open]")) return;  // a dialog has the keyboard
    const query = document.getElementById("query");
    if (typing(event.target)) {
      if (event.key === "Escape" && event.target === query) query.blur();
      return;
    }
    const actions = {
      j: () => moveCursor(1), ArrowDown: () => moveCursor(1),
      k: () => moveCursor(-1), ArrowUp: () => moveCursor(-1),
      Enter: openCursor, Delete: deleteCurrent, r: toggleCursorRead,
      "/": () => { query.focus(); query.select(); },
      "?": () => dialog.showModal(),
      Escape: () => emit("close"),
    };
    const action = actions[event.key];
    if (!action) return;
    if (event.key === "Enter" && event.target instanceof HTMLElement && event.target.closest("button, a")) return;  // their own Enter
    event.preventDefault();
    action();
  });
}
