// The live event stream: Mailpit's WebSocket at /api/events (frames {"Type", "Data"}: new, update,
// delete, truncate, prune, stats), reconnecting with a back-off; Server-Sent Events from the same
// URL when a WebSocket cannot be opened. `body[data-live]` is set while the stream is open.

/**
 * Connect and call `handlers.frame(type, data)` for each event, `handlers.open(reconnected)` each
 * time the stream opens (so the caller can reconcile what it missed).
 */
export function connect(handlers) {
  let everOpened = false;
  let wsFailures = 0;
  let delay = 1000;

  const opened = () => {
    document.body.dataset.live = "1";
    delay = 1000;
    handlers.open(everOpened);
    everOpened = true;
  };
  const closed = (retry) => {
    delete document.body.dataset.live;
    setTimeout(retry, delay);
    delay = Math.min(delay * 2, 15000);
  };

  function socket() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try { ws = new WebSocket(`${scheme}//${location.host}/api/events`); } catch { sse(); return; }
    let open = false;
    ws.addEventListener("open", () => { open = true; wsFailures = 0; opened(); });
    ws.addEventListener("message", (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      handlers.frame(frame.Type, frame.Data);
    });
    ws.addEventListener("close", () => {
      if (!open && ++wsFailures >= 2 && !everOpened) { sse(); return; }  // no WebSocket here: use SSE
      closed(socket);
    });
  }

  // Server-Sent Events carry new, delete {IDs, All} and read {IDs, Read}; mapped to the frames above.
  function sse() {
    const events = new EventSource("/api/events");
    events.addEventListener("open", opened);
    events.addEventListener("error", () => { delete document.body.dataset.live; });
    events.addEventListener("new", (e) => handlers.frame("new", JSON.parse(e.data)));
    events.addEventListener("delete", (e) => {
      const data = JSON.parse(e.data);
      if (data.All) handlers.frame("truncate", null);
      else for (const id of data.IDs) handlers.frame("delete", { ID: id });
    });
    events.addEventListener("read", (e) => {
      const data = JSON.parse(e.data);
      if (data.IDs === null) handlers.frame("prune", null);
      else for (const id of data.IDs) handlers.frame("update", { ID: id, Read: data.Read });
    });
  }

  socket();
}
