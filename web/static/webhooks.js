// Webhooks page: add, test, enable/disable and delete endpoints, redeliver dead letters (/api/webhook-*);
// the tables are server-rendered and drawn again after each action and on each delivery attempt.
(function () {
  "use strict";
  const error = document.getElementById("webhook-error");
  const form = document.getElementById("endpoint-form");
  const TABLES = ["endpoints", "deliveries"];

  async function redraw() {
    const html = await (await fetch(location.pathname, { credentials: "same-origin" })).text();
    const fresh = new DOMParser().parseFromString(html, "text/html");
    TABLES.forEach(function (id) { document.getElementById(id).replaceWith(fresh.getElementById(id)); });
  }

  async function act(call) {
    error.hidden = true;
    try { await call(); await redraw(); }
    catch (e) { error.textContent = e.message; error.hidden = false; }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    act(() => api("POST", "/api/webhook-endpoints",
                  { url: data.get("url"), description: data.get("description"), events: data.getAll("events") })
                  .then(() => form.reset()));
  });

  // Clicks are handled on the page, so tables drawn again keep working.
  document.querySelector("main").addEventListener("click", (ev) => {
    const action = ev.target.dataset.action;
    const row = ev.target.closest("tr");
    if (!action || !row) return;
    const url = `/api/webhook-endpoints/${row.dataset.endpointId}`;
    if (action === "test") act(() => api("POST", `${url}/test`));
    if (action === "toggle") act(() => api("PATCH", url, { enabled: ev.target.dataset.enabled !== "true" }));
    if (action === "delete" && confirm("Delete this endpoint? Its undelivered events are dropped.")) act(() => api("DELETE", url));
    if (action === "redeliver") act(() => api("POST", `/api/webhook-deliveries/${row.dataset.deliveryId}/redeliver`));
  });

  live.refreshOn(["webhook_delivery"], redraw, { wait: 300 });
})();
