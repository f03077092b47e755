// The search box: Mailpit's search syntax, a help popover listing the filters (click one to add
// it), and the query kept in the URL (`?q=`), so a search can be shared and the back button works.

/** [filter, what it matches] shown in the help popover. A filter that needs a value ("from:ann")
 * puts its prefix in the box; a complete one ("is:read") is searched at once. */
export const FILTERS = [
  ["from:ann", "sender address or name"],
  ["to:bob", "a To recipient"],
  ["cc:", "a Cc recipient"],
  ["bcc:", "a Bcc recipient (the envelope)"],
  ["reply-to:", "a Reply-To address"],
  ["addressed:", "From, To, Cc, Bcc or Reply-To"],
  ["subject:invoice", "words in the subject"],
  ["message-id:", "the Message-ID header"],
  ["tag:billing", "messages with this tag"],
  ["is:read", "read messages (also is:unread)"],
  ["is:tagged", "messages with any tag"],
  ["is:duplicate", "later copies of a mail (a client's retry)"],
  ["has:attachment", "messages with attachments (also has:inline)"],
  ["before:2024-01-31", "received before a date"],
  ["after:2024-01-01", "received after a date"],
  ["larger:100k", "bigger than a size (k, m)"],
  ["smaller:1m", "smaller than a size"],
  ["-word", "leave out what matches (works with any filter: -tag:x)"],
  ['"exact phrase"', "words in this order"],
];

/** The query in the page's URL. */
export function urlQuery() { return new URLSearchParams(location.search).get("q") || ""; }

/** The URL for `path` with query `q` (and nothing else). */
export function urlFor(path, q) { return q ? `${path}?${new URLSearchParams({ q })}` : path; }

/** Fill the help popover; clicking a filter appends it to the box and calls `changed`. */
export function initSearchHelp(input, changed) {
  const list = document.getElementById("search-filters");
  const help = document.getElementById("search-help");
  for (const [filter, meaning] of FILTERS) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "filter";
    button.textContent = filter;
    button.setAttribute("aria-label", `Add ${filter} to the search`);
    const complete = /^(is|has):/.test(filter);
    const insert = complete ? filter : filter.startsWith("-") ? "-" : filter.startsWith('"') ? '"' : filter.replace(/:.*$/, ":");
    button.addEventListener("click", () => {
      const value = input.value.trim();
      input.value = value ? `${value} ${insert}` : insert;
      if (help.hidePopover) help.hidePopover();
      input.focus();
      if (complete) changed();
    });
    const dt = document.createElement("dt");
    dt.append(button);
    const dd = document.createElement("dd");
    dd.textContent = meaning;
    list.append(dt, dd);
  }
}
