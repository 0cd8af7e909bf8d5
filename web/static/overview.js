// The overview: figures, the hourly chart and devices by health, refreshed on live events.
(function () {
  "use strict";
  let chart = null;

  function render(data) {
    Object.entries(data.today).forEach(function ([key, n]) {
      const el = document.querySelector('[data-stat="' + key + '"]');
      if (el) el.textContent = n;
    });
    Object.entries(data.devices_by_status || {}).forEach(function ([status, n]) {
      const el = document.querySelector('[data-status="' + status + '"]');
      if (el) el.textContent = n;
    });
    Object.entries(data.devices_by_score || {}).forEach(function ([band, n]) {
      const el = document.querySelector('[data-score-band="' + band + '"]');
      if (el) el.textContent = n;
    });
    const labels = data.hourly.map(function (h) { return h.hour; });
    const sent = data.hourly.map(function (h) { return h.sent; });
    const failed = data.hourly.map(function (h) { return h.failed; });
    if (!window.Chart) return;  // library missing: the figures above still work
    if (!chart) {
      chart = new Chart(document.getElementById("hourly-chart"), {
        type: "bar",
        data: { labels: labels, datasets: [
          { label: "Sent", data: sent, backgroundColor: "#00a884" },
          { label: "Failed", data: failed, backgroundColor: "#ea0038" }] },
        options: { animation: false, responsive: true, scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } },
      });
    } else {
      chart.data.labels = labels;
      chart.data.datasets[0].data = sent;
      chart.data.datasets[1].data = failed;
      chart.update();
    }
  }

  function fetchAndRender(path) {
    return api("GET", path).then(render).catch(function (err) { console.warn("overview refresh failed", err); });
  }

  render(JSON.parse(document.getElementById("overview-data").textContent));
  // Many events can arrive in a second (a campaign sending): refetch at most every 1.5 s. Every message
  // moves the figures; the devices by status and health band move with device events, and their health
  // scores cost far more to compute (250 ms for 3,000 busy devices): refetched on those, and every minute.
  live.refreshOn(["message", "message_status", "campaign_progress", "chat"],
                 function () { return fetchAndRender("/api/overview/figures"); }, { wait: 1500 });
  const refreshAll = live.refreshOn(["device_status", "device_paired", "device_timelock"],
                                    function () { return fetchAndRender("/api/overview"); }, { wait: 1500 });
  // Hour buckets and "today" move with the clock even without events.
  setInterval(refreshAll, 60000);
})();
