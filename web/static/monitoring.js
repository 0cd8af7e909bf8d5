// Monitoring: the tables are server-rendered; re-render the page's main on events, at most every 2 s.
// The page's query (search, status, sort, page) is in its address: a change of it loads that page.
(function () {
  function load() {
    return fetch(location.pathname + location.search).then(function (r) { return r.text(); }).then(function (html) {
      const fresh = new DOMParser().parseFromString(html, "text/html").querySelector("main");
      if (fresh) document.querySelector("main").replaceWith(fresh);
    });
  }
  // main is replaced on each refresh: listen on the document
  document.addEventListener("change", function (e) {
    const form = e.target.closest("#monitor-filter");
    if (form) form.requestSubmit();
  });
  const refresh = live.refreshOn(["device_status", "message", "message_status", "campaign_progress"], load, { wait: 2000 });
  setInterval(refresh, 10000);
})();
