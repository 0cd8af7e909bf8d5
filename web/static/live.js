// The shared live client: one websocket to /ws per page, reconnecting with back-off.
//   live.on(type, fn)   fn(data, type) for each event of that type ("*" for every event)
//   live.watch(id)      only that device's chat events (re-sent after every reconnect)
//   live.send(obj)      a message to the server
//   live.refreshOn(types, fn, opts)  the one way a page refetches on events: fn() runs once per burst
//                       of those events (opts.wait ms after the first, default 0; opts.when(data, type)
//                       may ignore one), and after a reconnect or resync (events may have been missed).
//                       fn returns its fetch's promise: refreshes never overlap, and a slow one spaces
//                       the next (SLOW_REST). Returns the trigger, to ask for a refresh by hand.
// The event types are listed once, in web/live.py (EVENTS); a test checks the pages against it.
// Events the client raises itself: "live.open", "live.closed", "live.reconnected" (refetch what
// may have been missed), and the server's "live.resync" (events were dropped: refetch).
(function () {
  "use strict";
  const handlers = {};
  const watched = new Set();
  const STALE_MS = 60000;       // the server pings every 25 s; silence past this is a dead socket
  let socket = null, attempt = 0, opened = false, lastFrame = Date.now();

  function emit(type, data) {
    (handlers[type] || []).concat(handlers["*"] || []).forEach(function (fn) {
      try { fn(data, type); } catch (err) { console.error("live handler for " + type, err); }
    });
  }

  function setState(state) {
    document.documentElement.dataset.live = state;
    emit(state === "open" ? "live.open" : "live.closed", {});
  }

  function send(obj) {
    if (socket && socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify(obj)); return true; }
    return false;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws");
    socket.onopen = function () {
      const again = opened;
      opened = true; attempt = 0; lastFrame = Date.now();
      watched.forEach(function (id) { send({ type: "watch", device_id: id }); });
      setState("open");
      if (again) emit("live.reconnected", {});
    };
    socket.onmessage = function (msg) {
      lastFrame = Date.now();
      let frame;
      try { frame = JSON.parse(msg.data); } catch (err) { return; }
      (frame.events || []).forEach(function (e) { emit(e.type, e.data || {}); });
    };
    socket.onclose = function () {
      socket = null;
      setState("closed");
      // 0.5 s, 1 s, 2 s ... capped at 30 s, with jitter so a restarted server is not stampeded.
      const delay = Math.min(30000, 500 * Math.pow(2, attempt)) * (0.5 + Math.random() / 2);
      attempt += 1;
      setTimeout(connect, delay);
    };
  }

  setInterval(function () {
    if (socket && socket.readyState === WebSocket.OPEN && Date.now() - lastFrame > STALE_MS) socket.close();
  }, 10000);

  function on(type, fn) { (handlers[type] = handlers[type] || []).push(fn); return fn; }

  // A refresh that returns a promise (its fetch) is never overlapped by the next, and a slow one
  // spaces the next: it starts no sooner than SLOW_REST times the last one's duration after it
  // ended. However slow the server (a large backlog counted, a loaded machine), an open page then
  // keeps at most a fifth of its time, and never piles its requests up on it. A refresh that hangs
  // holds the next back, and a slow one rests the page, LONGEST_MS at most.
  const SLOW_REST = 4;
  const LONGEST_MS = 30000;
  function refreshOn(types, fn, opts) {
    opts = opts || {};
    let timer = null, running = false, again = false, notBefore = 0;
    function run() {
      timer = null;
      if (running) { again = true; return; }   // events during a refresh: one more after it
      if (Date.now() < notBefore) {            // asked for before the last one ended: after its rest
        timer = setTimeout(run, notBefore - Date.now());
        return;
      }
      running = true;
      const started = Date.now();
      let giveUp;
      const hung = new Promise(function (resolve) { giveUp = setTimeout(resolve, LONGEST_MS); });
      Promise.race([Promise.resolve().then(fn), hung]).catch(function (err) { console.warn("refresh failed", err); }).then(function () {
        clearTimeout(giveUp);
        running = false;
        notBefore = Date.now() + Math.min(LONGEST_MS, SLOW_REST * (Date.now() - started));
        if (again) { again = false; soon(); }
      });
    }
    function soon() {
      if (timer === null) timer = setTimeout(run, Math.max(opts.wait || 0, notBefore - Date.now()));
    }
    types.forEach(function (type) {
      on(type, function (data) { if (!opts.when || opts.when(data, type)) soon(); });
    });
    ["live.reconnected", "live.resync"].forEach(function (type) { on(type, soon); });
    return soon;
  }

  window.live = {
    on: on,
    refreshOn: refreshOn,
    off: function (type, fn) { handlers[type] = (handlers[type] || []).filter(function (f) { return f !== fn; }); },
    send: send,
    watch: function (deviceId) { watched.add(deviceId); send({ type: "watch", device_id: deviceId }); },
    get connected() { return !!socket && socket.readyState === WebSocket.OPEN; },
  };
  connect();
})();
