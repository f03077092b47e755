// smtp-sink web page: plain ES modules, no build step, no CDN. Talks to the JSON API only.
import { initList } from "./list.js";
import { initMessage } from "./message.js";
import { initRules } from "./rules.js";

initMessage();
initList();
initRules(document.getElementById("rules-badge"), document.getElementById("rules-panel"));
