// Campaigns: create (list page); pause/resume/cancel/retry and the leads behind each report
// number (detail page). Live `campaign` / `campaign_progress` events refresh the view.
(function () {
  "use strict";
  const api = window.api;   // shared JSON helper (api.js)

  function showError(box, err) { box.textContent = err.message; box.hidden = false; }

  const form = document.getElementById("campaign-form");
  if (form) {
    window.messagePreview.bind(document.getElementById("campaign-preview"), {
      textField: form.elements.message, urlField: form.elements.image_url, fileField: form.elements.image_file });
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      const data = Object.fromEntries(new FormData(form));   // device_ids: the picker's "1,2,3"
      const file = data.image_file;
      delete data.image_file;
      data.failover = form.elements.failover.checked;
      (file && file.size ? api.upload(file) : Promise.resolve(null)).then(function (image) {
        if (image) data.media_id = image.id;
        return api("POST", "/api/campaigns", data);
      }).then(function (r) {
        location.href = "/campaigns/" + r.campaign.id;
      }, function (err) { showError(form.querySelector(".error"), err); });
    });
  }

  // campaign events name one campaign (id); campaign_progress from sends lists several (campaigns[].id).
  function names(data, id) {
    return (data.campaigns || [data]).some(function (c) { return String(c.id) === id; });
  }

  const box = document.getElementById("campaign");
  if (!box) {
    // bursts: one reload
    if (window.live) live.refreshOn(["campaign", "campaign_progress"], function () { location.reload(); }, { wait: 2000 });
    return;
  }
  const id = box.dataset.campaignId;

  box.addEventListener("click", function (ev) {
    const action = ev.target.dataset.action;
    if (!action) return;
    if (action === "cancel" && !confirm("Cancel this campaign? Unsent messages are skipped.")) return;
    const body = action === "retry" ? { device_id: document.getElementById("retry-device").value } : {};
    api("POST", "/api/campaigns/" + id + "/" + action, body)
      .then(function () { location.reload(); }, function (err) { showError(box.querySelector(".error"), err); });
  });

  document.getElementById("report").addEventListener("click", function (ev) {
    const bucket = ev.target.dataset.bucket;
    if (!bucket) return;
    ev.preventDefault();
    const device = ev.target.dataset.device || "";
    fetch("/api/campaigns/" + id + "/leads?bucket=" + bucket + "&device_id=" + device, { credentials: "same-origin" })
      .then(function (r) { return r.json(); })
      .then(function (data) {
        const table = document.getElementById("report-leads"), title = document.getElementById("leads-title");
        title.textContent = bucket.replace("_", " ") + (device ? " on device " + device : "") + " (first 100)";
        title.hidden = table.hidden = false;
        const tbody = table.querySelector("tbody");
        tbody.textContent = "";
        data.leads.forEach(function (l) {
          const tr = document.createElement("tr");
          [l.recipient_phone, l.recipient_name, l.device_name, l.status, l.error_message, l.sent_at, l.delivered_at, l.read_at]
            .forEach(function (v) { const td = document.createElement("td"); td.textContent = v == null ? "" : v; tr.appendChild(td); });
          tbody.appendChild(tr);
        });
      });
  });

  if (window.live) {   // coalesce bursts of progress: one reload
    live.refreshOn(["campaign", "campaign_progress"], function () { location.reload(); },
                   { wait: 2000, when: function (data) { return names(data, id); } });
  }
})();
