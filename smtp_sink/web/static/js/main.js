// smtp-sink web page: plain ES modules, no build step, no CDN. Talks to the JSON API only.
import { initKeys } from "./keys.js";
import { initList } from "./list.js";
import { initMessage } from "./message.js";
import { initNotifications, initTheme } from "./prefs.js";
import { initRules } from "./rules.js";

initTheme();
initMessage();
initList();
initKeys();
initNotifications();
initRules(document.getElementById("rules-badge"), document.getElementById("rules-panel"));
