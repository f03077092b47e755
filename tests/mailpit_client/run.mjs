// Every method of the npm Mailpit client `mailpit-api` (its MailpitClient), called against a running
// smtp-sink the way a test suite written for Mailpit calls it. Run by tests/test_mailpit_npm_client.py:
//
//   node run.mjs < context.json > results.json
//
// context.json: {"baseURL", "smtpPort", "modules" (the node_modules folder holding mailpit-api), "ids"
// (ping1, ping2, plain, rich: message ids), "parts" (expected part ids of the rich message), "logo" (a
// PNG, base64), "callTimeoutMs"}. Nothing is judged here: each call is recorded with its outcome (value
// or error, and the HTTP status of an error) and, around a call that changes the mailbox, the mailbox
// before and after it, read with a plain fetch. What a call needs is set up without the client (plain
// fetches, SMTP), so one missing feature fails its own method only. The Python test checks the values.

import { readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const ctx = JSON.parse(readFileSync(0, "utf8"));
const packageDir = join(ctx.modules, "mailpit-api");
const pkg = JSON.parse(readFileSync(join(packageDir, "package.json"), "utf8"));
// what `import { MailpitClient } from "mailpit-api"` loads (the package's "import" export)
const { MailpitClient } = await import(pathToFileURL(join(packageDir, pkg.exports["."].import.default)).href);

const client = new MailpitClient(ctx.baseURL);
const results = [];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** A value as JSON can carry it: a Blob becomes {blob, type, size, base64}. */
async function plain(value) {
  if (value instanceof Blob) {
    const bytes = Buffer.from(await value.arrayBuffer());
    return { blob: true, type: value.type, size: bytes.length, base64: bytes.toString("base64") };
  }
  return value;
}

/** Call client[method](...args), recorded under `label` (unique); the value, or undefined when it failed. */
async function call(label, method, ...args) {
  const entry = { label, method, args, ok: false };
  results.push(entry);
  const started = performance.now();
  let timer;
  try {
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ctx.callTimeoutMs} ms`)), ctx.callTimeoutMs);
    });
    const value = await Promise.race([client[method](...args), timeout]);
    entry.ok = true;
    entry.value = await plain(value);
    return value;
  } catch (error) {
    entry.error = error instanceof Error ? error.message : String(error);
    const status = /^Mailpit API Error: (\d{3}) /.exec(entry.error);
    if (status) entry.status = Number(status[1]);
    return undefined;
  } finally {
    clearTimeout(timer);
    entry.ms = Math.round(performance.now() - started);
  }
}

/** The mailbox ({id: {Read, Tags, Subject}}), read with a plain fetch (not the client). */
async function mailbox() {
  try {
    const response = await fetch(`${ctx.baseURL}/api/v1/messages?limit=1000`);
    const page = await response.json();
    return Object.fromEntries(page.messages.map((m) => [m.ID, { Read: m.Read, Tags: m.Tags, Subject: m.Subject }]));
  } catch (error) {
    return { error: String(error) };
  }
}

/** A call that changes the mailbox: recorded with the mailbox before and after it. */
async function change(label, method, ...args) {
  const before = await mailbox();
  const value = await call(label, method, ...args);
  Object.assign(results[results.length - 1], { before, after: await mailbox() });
  return value;
}

/** Before a read-status call: exactly the messages `names` read, with plain fetches. */
async function readOnly(...names) {
  const all = Object.values(ctx.ids);
  const put = (body) => fetch(`${ctx.baseURL}/api/v1/messages`, { method: "PUT", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body) });
  await put({ IDs: all, Read: false });
  if (names.length) await put({ IDs: names.map((name) => ctx.ids[name]), Read: true });
}

/** One message over SMTP (as the application under test would send it), without the client. */
function smtpSend(from, to, data) {
  return new Promise((resolve, reject) => {
    const socket = connect(ctx.smtpPort, "127.0.0.1");
    const commands = [`EHLO node.test`, `MAIL FROM:<${from}>`, `RCPT TO:<${to}>`, "DATA", `${data}\r\n.`, "QUIT"];
    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk) => {
      buffer += chunk;
      let end;
      while ((end = buffer.indexOf("\r\n")) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (line[3] === "-") continue; // more lines of a multi-line reply
        if (!/^[23]/.test(line)) return reject(new Error(`SMTP: ${line}`));
        const next = commands.shift();
        if (next === undefined) return socket.end();
        socket.write(`${next}\r\n`);
      }
    });
    socket.on("close", resolve);
    socket.on("error", reject);
  });
}

const { rich, ping1, plain: plainID } = ctx.ids;
const partOf = (detail, fileName, fallback) =>
  [...(detail?.Attachments ?? []), ...(detail?.Inline ?? [])].find((a) => a.FileName === fileName)?.PartID ?? fallback;

// -- reading (the mailbox: ping1, ping2, plain, rich; all unread) --
await call("getInfo", "getInfo");
await call("getConfiguration", "getConfiguration");
await call("listMessages", "listMessages");
await call("listMessages:page", "listMessages", 1, 2);
await call("searchMessages:subject", "searchMessages", { query: "subject:Ping" });
await call("searchMessages:substring", "searchMessages", { query: "elcome" });
await call("searchMessages:addressed", "searchMessages", { query: 'addressed:"carol@example.test"' });
await call("searchMessages:negated", "searchMessages", { query: "-subject:Ping" });
await call("searchMessages:tag", "searchMessages", { query: "tag:alpha" });
await call("searchMessages:attachment", "searchMessages", { query: "has:attachment" });
await call("searchMessages:filename", "searchMessages", { query: "photo.png" });
await call("searchMessages:page", "searchMessages", { query: "subject:Ping", start: 1, limit: 1 });
await call("getMessageHeaders", "getMessageHeaders", rich);
await call("getMessageHeaders:latest", "getMessageHeaders");
await call("getMessageSource", "getMessageSource", rich);
await call("htmlCheck", "htmlCheck", rich);
await call("spamAssassinCheck", "spamAssassinCheck", rich);
const detail = await change("getMessageSummary", "getMessageSummary", rich);
await call("getMessageSummary:latest", "getMessageSummary");
await call("getMessageSummary:unknown", "getMessageSummary", "01J00000000000000000000000");
await call("getMessageAttachment", "getMessageAttachment", rich, partOf(detail, "photo.png", ctx.parts.photo));
await call("getMessageAttachment:text", "getMessageAttachment", rich, partOf(detail, "notes.txt", ctx.parts.notes));
await call("getAttachmentThumbnail", "getAttachmentThumbnail", rich, partOf(detail, "photo.png", ctx.parts.photo));
await call("getAttachmentThumbnail:small", "getAttachmentThumbnail", rich,
  partOf(detail, "logo@example.test", ctx.parts.logo));
await call("getAttachmentThumbnail:not-image", "getAttachmentThumbnail", rich,
  partOf(detail, "notes.txt", ctx.parts.notes));
await call("renderMessageHTML", "renderMessageHTML", rich);
await call("renderMessageHTML:embed", "renderMessageHTML", rich, 1);
await call("renderMessageHTML:no-html", "renderMessageHTML", plainID);
await call("renderMessageText", "renderMessageText", rich);
await call("renderMessageText:plain", "renderMessageText", plainID);
await call("linkCheck", "linkCheck", rich);
await call("linkCheck:follow", "linkCheck", rich, true);

// -- tags --
await call("getTags", "getTags");
await change("setTags", "setTags", { IDs: [ping1], Tags: ["Gamma", "delta tag"] });
await call("getTags:after-set", "getTags");
await change("renameTag", "renameTag", "delta tag", "Epsilon Tag");
await change("deleteTag", "deleteTag", "Epsilon Tag");
await change("setTags:clear", "setTags", { IDs: [ping1] });
await call("getTags:after-clear", "getTags");

// -- read status (each call from a known state) --
await readOnly("ping1", "ping2", "plain", "rich");
await change("setReadStatus", "setReadStatus");
await readOnly();
await change("setReadStatus:ids", "setReadStatus", { IDs: [ping1], Read: true });
await readOnly();
await change("setReadStatus:search", "setReadStatus", { Search: 'subject:"Ping 2"', Read: true });
await readOnly();
await change("setReadStatus:all-read", "setReadStatus", { Read: true });
await readOnly("ping1", "ping2", "plain", "rich");
await change("setReadStatus:tz", "setReadStatus", { Search: "after:2000-01-01", Read: false }, { tz: "Pacific/Auckland" });

// -- release to the upstream --
await call("releaseMessage", "releaseMessage", rich, { To: ["relay-one@example.test"] });
await call("releaseMessage:latest", "releaseMessage", "latest", { To: ["relay-latest@example.test"] });

// -- send, and wait for mail --
const sent = await call("sendMessage", "sendMessage", {
  From: { Email: "john@example.test", Name: "John Doe" },
  To: [{ Email: "jane@example.test", Name: "Jane Doe" }],
  Cc: [{ Email: "manager@example.test" }, { Email: "ceo@example.test", Name: "The CEO" }],
  Bcc: ["jack@example.test"],
  ReplyTo: [{ Email: "secretary@example.test", Name: "Secretary" }],
  Subject: "Sent through the API",
  Text: "Text body from the API.",
  HTML: "<p>HTML body from the API.</p>",
  Attachments: [
    { Content: Buffer.from("This is a plain text attachment").toString("base64"), Filename: "Attached File.txt" },
    { Content: ctx.logo, Filename: "logo.png", ContentType: "overridden/type", ContentID: "mailpit-logo" },
  ],
  Tags: ["Tag 1", "Tag 2"],
  Headers: { "X-IP": "1.2.3.4" },
});
if (sent?.ID) {
  const sentDetail = await call("getMessageSummary:sent", "getMessageSummary", sent.ID);
  await call("getMessageHeaders:sent", "getMessageHeaders", sent.ID);
  await call("getMessageSource:sent", "getMessageSource", sent.ID);
  await call("getMessageAttachment:sent", "getMessageAttachment", sent.ID, partOf(sentDetail, "Attached File.txt", "2"));
}
await call("waitForMessage", "waitForMessage", { query: 'addressed:"carol@example.test"' });
await call("waitForMessages", "waitForMessages", { query: "subject:Ping", count: 2, exact: true }, { timeout: 3000, interval: 200 });
const late = call("waitForMessage:late", "waitForMessage", { query: 'subject:"Late arrival"' }, { timeout: 8000, interval: 200 });
await sleep(600); // the wait polls (and finds nothing) before the message exists
await smtpSend("late@example.test", "ops@example.test",
  "From: late@example.test\r\nTo: ops@example.test\r\nSubject: Late arrival\r\nMessage-ID: <late@example.test>\r\n\r\nHere at last.");
await late;
await call("waitForMessage:timeout", "waitForMessage", { query: "subject:nothing-has-this-subject" }, { timeout: 800, interval: 200 });
const total = Object.keys(await mailbox()).length;
await call("waitForMessages:list", "waitForMessages", { count: total, exact: true }, { timeout: 3000, interval: 200 });

// -- deleting --
await change("deleteMessages:ids", "deleteMessages", { IDs: [ping1] });
await change("deleteMessagesBySearch", "deleteMessagesBySearch", { query: 'subject:"Ping 2"' });
await change("deleteMessages", "deleteMessages");
await call("waitForMessages:empty", "waitForMessages", { count: 0 }, { timeout: 3000, interval: 200 });

// -- chaos (last: the Recipient trigger stays on for the Python test to try over SMTP) --
await call("getChaosTriggers", "getChaosTriggers");
await call("setChaosTriggers:auth", "setChaosTriggers", { Authentication: { ErrorCode: 535, Probability: 50 } });
await call("setChaosTriggers", "setChaosTriggers");
await call("setChaosTriggers:recipient", "setChaosTriggers", { Recipient: { ErrorCode: 452, Probability: 100 } });
await call("getChaosTriggers:after", "getChaosTriggers");

const methods = Object.getOwnPropertyNames(MailpitClient.prototype).filter((name) => !["constructor", "request"].includes(name));
process.stdout.write(JSON.stringify({ version: pkg.version, methods, results }), () => process.exit(0));
