// Monitoring: the tables are server-rendered; re-render the page's main on events, at most every 2 s.
(function () {
  function load() {
    return fetch(location.pathname).then(function (r) { return r.text(); }).then(function (html) {
      const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
      if (fresh) document.querySelector("main").replaceWith(fresh);
    });
  }
  const refresh = live.refreshOn(["device_status", "message", "message_status", "campaign_progress"], load, { wait: 2000 });
  setInterval(refresh, 10000);
})();
