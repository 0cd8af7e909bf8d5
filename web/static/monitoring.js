// Monitoring: the tables are server-rendered; re-render the page's main on events, at most every 2 s.
(function () {
  let timer = null;
  function refresh() {
    if (timer) return;
    timer = setTimeout(function () {
      timer = null;
      fetch(location.pathname).then(function (r) { return r.text(); }).then(function (html) {
        const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
        if (fresh) document.querySelector("main").replaceWith(fresh);
      });
    }, 2000);
  }
  ["device_status", "message", "message_status", "campaign_progress", "live.reconnected"].forEach(function (t) { live.on(t, refresh); });
  setInterval(refresh, 10000);
})();
