// Webhooks page: add, test, enable/disable and delete endpoints, redeliver dead letters (/api/webhook-*),
// then show the page again.
(function () {
  "use strict";
  const error = document.getElementById("webhook-error");
  const form = document.getElementById("endpoint-form");

  async function act(call) {
    error.hidden = true;
    try { await call(); location.reload(); }
    catch (e) { error.textContent = e.message; error.hidden = false; }
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    act(() => api("POST", "/api/webhook-endpoints",
                  { url: data.get("url"), description: data.get("description"), events: data.getAll("events") }));
  });

  document.getElementById("endpoints").addEventListener("click", (ev) => {
    const action = ev.target.dataset.action;
    const row = ev.target.closest("tr");
    if (!action || !row) return;
    const url = `/api/webhook-endpoints/${row.dataset.endpointId}`;
    if (action === "test") act(() => api("POST", `${url}/test`));
    if (action === "toggle") act(() => api("PATCH", url, { enabled: ev.target.dataset.enabled !== "true" }));
    if (action === "delete" && confirm("Delete this endpoint? Its undelivered events are dropped.")) act(() => api("DELETE", url));
  });

  document.getElementById("deliveries").addEventListener("click", (ev) => {
    const row = ev.target.closest("tr");
    if (ev.target.dataset.action === "redeliver" && row) {
      act(() => api("POST", `/api/webhook-deliveries/${row.dataset.deliveryId}/redeliver`));
    }
  });
})();
