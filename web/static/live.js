// The shared live client: one websocket to /ws per page, reconnecting with back-off.
//   live.on(type, fn)   fn(data, type) for each event of that type ("*" for every event)
//   live.watch(id)      only that device's chat events (re-sent after every reconnect)
//   live.send(obj)      a message to the server
//   live.refreshOn(types, fn, opts)  the one way a page refetches on events: fn() runs once per burst
//                       of those events (opts.wait ms after the first, default 0; opts.when(data, type)
//                       may ignore one), and after a reconnect or resync (events may have been missed).
//                       Returns the trigger, to ask for a refresh by hand.
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

  function refreshOn(types, fn, opts) {
    opts = opts || {};
    let timer = null;
    function soon() {
      if (timer === null) timer = setTimeout(function () { timer = null; fn(); }, opts.wait || 0);
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
