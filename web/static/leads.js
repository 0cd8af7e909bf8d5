// Leads page: create/edit/delete through /api/leads, CSV upload with a progress bar fed by the
// upload itself and then by live `lead_import` events.
(function () {
  "use strict";
  const api = window.api;   // shared JSON helper (api.js)
  const csrf = api.csrf();  // the upload below is an XHR, for its progress events

  function showError(form, err) {
    const box = form.querySelector(".error");
    box.textContent = err.message; box.hidden = false;
  }

  const form = document.getElementById("lead-form");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const id = data.id; delete data.id;
    api(id ? "PUT" : "POST", id ? "/api/leads/" + id : "/api/leads", data)
      .then(function () { location.reload(); }, function (err) { showError(form, err); });
  });

  document.getElementById("leads-table").addEventListener("click", function (ev) {
    const row = ev.target.closest("tr[data-lead]");
    if (!row) return;
    const lead = JSON.parse(row.dataset.lead);
    if (ev.target.classList.contains("delete") && confirm("Delete " + (lead.name || lead.phone) + "?")) {
      api("DELETE", "/api/leads/" + lead.id).then(function () { row.remove(); }, alert);
    } else if (ev.target.classList.contains("edit")) {
      ["id", "device_id", "name", "phone", "niche", "target_status", "trigger"].forEach(function (k) {
        form.elements[k].value = lead[k] == null ? "" : lead[k];
      });
      form.scrollIntoView();
    }
  });

  function importRow(id) {
    let row = document.querySelector('#imports tr[data-import-id="' + id + '"]');
    if (!row) {
      row = document.createElement("tr");
      row.dataset.importId = id;
      row.innerHTML = '<td class="file"></td><td class="status"></td><td><div class="progress"><span></span></div></td>' +
        '<td class="inserted"></td><td class="merged"></td><td class="bad"></td>' +
        '<td><a href="/leads/imports/' + id + '/report.csv">Report</a></td>';
      document.querySelector("#imports tbody").prepend(row);
    }
    return row;
  }

  function showImport(i) {
    const row = importRow(i.id);
    const pct = i.status === "uploading" ? 50 * i.bytes_read / (i.bytes_total || i.bytes_read || 1)
      : i.status === "validating" ? 50 + 50 * i.lines_processed / (i.lines_total || 1) : 100;
    if (i.filename) row.querySelector(".file") && (row.querySelector(".file").textContent = i.filename);
    row.querySelector(".status").textContent = i.status + (i.error ? ": " + i.error : "");
    row.querySelector(".progress > span").style.width = pct.toFixed(1) + "%";
    row.querySelector(".inserted").textContent = i.inserted != null ? i.inserted : i.rows_inserted;
    row.querySelector(".merged").textContent = i.merged != null ? i.merged : i.rows_merged;
    row.querySelector(".bad").textContent = i.bad != null ? i.bad : i.rows_bad;
  }

  if (window.live) live.on("lead_import", showImport);

  const importForm = document.getElementById("import-form");
  importForm.addEventListener("submit", function (ev) {
    ev.preventDefault();
    const xhr = new XMLHttpRequest();
    const bar = importRow("upload");
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) bar.querySelector(".progress > span").style.width = (50 * e.loaded / e.total) + "%";
    };
    xhr.onload = function () {
      bar.remove();
      const data = JSON.parse(xhr.responseText || "{}");
      if (xhr.status >= 400) return showError(importForm, new Error(data.error || xhr.statusText));
      showImport(data);
    };
    xhr.open("POST", "/api/leads/import");
    xhr.setRequestHeader("X-CSRFToken", csrf);
    xhr.send(new FormData(importForm));
  });
})();
