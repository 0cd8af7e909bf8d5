// Devices page, built for thousands of devices: search, status filter, sort and pages come from the
// server (the list is swapped in place from /devices?fragment=list); a selection that spans pages
// (or every matching device) gets settings, pause or resume at once; many devices are added by a
// name pattern. Per device: pair (QR or phone code), simulate scan, log out, reconnect, pause,
// resume, edit, delete. Status, pause, QR codes, pairing codes and command outcomes arrive live
// (window.live, /ws) and update the device's row in place; the QR payload is rendered to SVG by
// the server (POST, so the pairing secret stays out of URLs).
(function () {
  "use strict";
  const send = window.api;
  const $ = (id) => document.getElementById(id);
  const filter = $("device-filter"), bulkBar = $("bulk-bar"), dialog = $("device-settings");
  const selected = new Set();   // device ids (strings), kept across pages and filters
  const pairing = new Map();    // device id -> the QR or code on show, redrawn when the list is swapped

  function row(deviceId) { return document.querySelector(`tr[data-device-id="${deviceId}"]`); }

  // ---- the list: server-side filter, sort and pages -------------------------------------------
  function query(page) {
    const params = new URLSearchParams(new FormData(filter));
    if (page) params.set("page", page);
    return params;
  }
  let loading = null;
  // Row events that arrive while a list is being fetched are applied again to the new rows: the
  // server may have drawn them before those changes (a scan landing during a reload left the row
  // online without its session, so without "Log out").
  let missed = null;
  async function load(page) {
    const params = query(page || $("device-list").dataset.page);
    const mine = loading = new AbortController();
    missed = [];
    const res = await fetch(`/devices?${params}&fragment=list`, { credentials: "same-origin", signal: mine.signal })
      .catch(() => null);
    if (mine !== loading) return;
    if (!res || !res.ok) { missed = null; return; }
    const box = document.createElement("div");
    box.innerHTML = await res.text();
    if (mine !== loading) return;
    $("device-list").replaceWith(box.firstElementChild);
    history.replaceState(null, "", `?${params}`);
    initRows();
    const again = missed;
    missed = null;
    again.forEach(([apply, d]) => apply(d));
  }
  function onRowEvent(type, apply) {
    window.live.on(type, (d) => { if (missed) missed.push([apply, d]); apply(d); });
  }
  let typing = null;
  filter.addEventListener("input", (e) => {
    clearTimeout(typing);
    typing = setTimeout(() => load(1), e.target.type === "search" ? 250 : 0);
  });
  filter.addEventListener("submit", (e) => { e.preventDefault(); load(1); });
  document.addEventListener("click", (e) => {
    const link = e.target.closest(".pager a[data-page]");
    if (!link) return;
    e.preventDefault();
    load(link.dataset.page);
  });

  // ---- per-row actions -------------------------------------------------------------------------
  // The actions a device offers follow from its status, whether it has a session (jid) and pause.
  const offered = {
    pair: (online) => !online,
    "pair-phone": (online) => !online,
    "simulate-scan": (online) => !online,
    reconnect: (online, session) => session && !online,
    logout: (online, session) => session,
    pause: (online, session, paused) => !paused,
    resume: (online, session, paused) => paused,
  };
  function showActions(tr) {
    const online = tr.dataset.status === "online", session = tr.dataset.session === "true";
    const paused = tr.dataset.paused === "true";
    Object.entries(offered).forEach(([action, show]) => {
      const btn = tr.querySelector(`[data-action="${action}"]`);
      if (btn) btn.hidden = !show(online, session, paused);
    });
    tr.querySelector(".paused-badge").hidden = !paused;
  }
  function initRows() {
    document.querySelectorAll("tr[data-device-id]").forEach((tr) => {
      showActions(tr);
      tr.querySelector(".pick-device").checked = selected.has(tr.dataset.deviceId);
      const shown = pairing.get(tr.dataset.deviceId);
      if (shown) showPairing(tr.dataset.deviceId, shown);
    });
    $("matching-count").textContent = $("device-list").dataset.total;
    showSelection();
  }

  function applyStatus(tr, d) {
    tr.dataset.status = d.status;
    const badge = tr.querySelector(".status");
    badge.textContent = d.status;
    badge.className = `status status-${d.status}`;
    const until = d.banned_until ? ` until ${new Date(d.banned_until).toLocaleString()}` : "";
    tr.querySelector(".reason").textContent = (d.reason || "") + until;
    tr.querySelector(".silent").hidden = true;  // a sender just reported it
    if (d.status === "online") {
      tr.querySelector(".last-seen").textContent = new Date().toLocaleString();
      tr.querySelector(".pairing").hidden = true;
      pairing.delete(tr.dataset.deviceId);
    }
    if (d.status === "logged_out") tr.dataset.session = "false";
    showActions(tr);
  }

  // A pairing QR (rendered to SVG by the server once) or phone code, in the device's row. A device
  // that came online meanwhile (the scan can land while its last QR is still being rendered) shows none.
  async function showPairing(deviceId, shown) {
    const id = String(deviceId);
    const paired = () => row(id)?.dataset.status === "online";
    if (paired()) return;
    if (shown.kind === "qr" && !shown.svg) {
      const res = await send.request("POST", `/api/devices/${id}/qr.svg`, { code: shown.code });
      if (!res.ok) return;
      shown.svg = URL.createObjectURL(await res.blob());
      if (paired()) { URL.revokeObjectURL(shown.svg); return; }
    }
    const old = pairing.get(id);
    if (old && old !== shown && old.svg) URL.revokeObjectURL(old.svg);
    pairing.set(id, shown);
    const tr = row(id);
    if (!tr) return;
    const img = tr.querySelector(".pairing img");
    img.hidden = shown.kind !== "qr";
    if (shown.kind === "qr") img.src = shown.svg;
    tr.querySelector(".pairing .code").textContent = shown.kind === "qr" ? "" : "Type this code on the phone: " + shown.code;
    tr.querySelector(".pairing").hidden = false;
  }

  const actions = {
    "pair-phone": async (id) => {
      const phone = prompt("The phone's WhatsApp number, country code first (e.g. 60123456789)");
      if (phone) await send("POST", `/api/devices/${id}/pair-phone`, { phone });
    },
    pause: (id) => send("POST", "/api/devices/pause", { device_ids: [Number(id)] }),
    resume: (id) => send("POST", "/api/devices/resume", { device_ids: [Number(id)] }),
    edit: (id, tr) => openSettings([id], JSON.parse(tr.dataset.settings)),
    delete: async (id, tr) => {
      if (!confirm("Delete this device? Its leads go back to the AI pool and its waiting messages are skipped.")) return;
      const out = await send("DELETE", `/api/devices/${id}`);
      if (out.pending) alert("The device is logging out; it disappears when its sender confirms.");
      else { tr.remove(); selected.delete(id); showSelection(); }
    },
  };
  ["pair", "simulate-scan", "logout", "reconnect"].forEach((name) => {
    actions[name] = (id) => send("POST", `/api/devices/${id}/${name}`, {});
  });

  document.addEventListener("click", async (e) => {
    const btn = e.target.closest("#devices [data-action]");
    if (!btn) return;
    const tr = btn.closest("tr");
    btn.disabled = true;
    try { await actions[btn.dataset.action](tr.dataset.deviceId, tr); }
    catch (err) { alert(err.message); }
    finally { btn.disabled = false; }
  });

  // ---- selection and bulk actions ----------------------------------------------------------------
  function showSelection() {
    bulkBar.hidden = selected.size === 0;
    $("bulk-count").textContent = `${selected.size} selected`;
    const boxes = [...document.querySelectorAll(".pick-device")];
    $("select-page").checked = boxes.length > 0 && boxes.every((b) => b.checked);
  }
  document.addEventListener("change", (e) => {
    if (e.target.classList.contains("pick-device")) {
      if (e.target.checked) selected.add(e.target.value); else selected.delete(e.target.value);
    } else if (e.target.id === "select-page") {
      document.querySelectorAll(".pick-device").forEach((b) => {
        b.checked = e.target.checked;
        if (b.checked) selected.add(b.value); else selected.delete(b.value);
      });
    } else return;
    showSelection();
  });
  $("select-matching").addEventListener("click", async () => {
    const params = query();
    const out = await send("GET", `/api/devices/ids?q=${encodeURIComponent(params.get("q") || "")}` +
                                  `&status=${encodeURIComponent(params.get("status") || "")}`);
    out.device_ids.forEach((id) => selected.add(String(id)));
    initRows();
  });
  const bulk = {
    edit: () => openSettings([...selected], null),
    pause: () => send("POST", "/api/devices/pause", { device_ids: [...selected].map(Number) }),
    resume: () => send("POST", "/api/devices/resume", { device_ids: [...selected].map(Number) }),
    clear: () => { selected.clear(); initRows(); },
  };
  bulkBar.addEventListener("click", async (e) => {
    const btn = e.target.closest("[data-bulk]");
    if (!btn) return;
    btn.disabled = true;
    try { await bulk[btn.dataset.bulk](); } catch (err) { alert(err.message); } finally { btn.disabled = false; }
  });

  // ---- settings of one device or the selection ---------------------------------------------------
  let editing = [];
  function openSettings(ids, current) {
    editing = ids;
    const form = dialog.querySelector("form");
    form.reset();
    dialog.querySelector(".one-device").hidden = !current;
    $("settings-scope").textContent = current ? current.device_name
      : `${ids.length} devices: fields left empty keep each device's value.`;
    if (current) Object.entries(current).forEach(([k, v]) => { form.elements[k].value = v; });
    $("settings-error").hidden = true;
    dialog.showModal();
  }
  $("settings-cancel").addEventListener("click", () => dialog.close());
  dialog.querySelector("form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target.elements, body = {};
    ["min_delay_seconds", "max_delay_seconds", "hourly_limit", "daily_limit"].forEach((k) => {
      if (f[k].value !== "") body[k] = Number(f[k].value);
    });
    if (!dialog.querySelector(".one-device").hidden) body.device_name = f.device_name.value;
    try {
      if (editing.length === 1) await send("PATCH", `/api/devices/${editing[0]}`, body);
      else await send("PATCH", "/api/devices", Object.assign({ device_ids: editing.map(Number) }, body));
      dialog.close();
    } catch (err) { $("settings-error").textContent = err.message; $("settings-error").hidden = false; }
  });

  // ---- adding one device or many -------------------------------------------------------------------
  $("device-add").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target.elements, count = Number(f.count.value || 1);
    const pacing = {};
    ["min_delay_seconds", "max_delay_seconds", "hourly_limit", "daily_limit"].forEach((k) => { pacing[k] = f[k].value; });
    try {
      if (count === 1) await send("POST", "/api/devices", Object.assign({ device_name: f.device_name.value }, pacing));
      else await send("POST", "/api/devices/batch", Object.assign({
        name_pattern: f.device_name.value, count, first_number: f.first_number.value }, pacing));
      f.device_name.value = "";
      load();
    } catch (err) { alert(err.message); }
  });

  initRows();
  if (!window.live) return;
  // Events may have been missed while the socket was down: redraw from the server then too.
  const reloadSoon = live.refreshOn(["devices_updated", "devices_added"], () => load(), { wait: 300 });
  live.on("device_pairing", (d) => showPairing(d.device_id, { kind: d.kind, code: d.code }));
  onRowEvent("device_status", (d) => { const tr = row(d.device_id); if (tr) applyStatus(tr, d); });
  onRowEvent("device_paired", (d) => {
    const tr = row(d.device_id);
    if (!tr) return;
    tr.dataset.session = "true";
    tr.querySelector(".phone").textContent = d.phone || "";
    showActions(tr);
  });
  onRowEvent("devices_paused", (d) => {
    if (d.truncated) { reloadSoon(); return; }
    d.device_ids.forEach((id) => {
      const tr = row(id);
      if (!tr) return;
      tr.dataset.paused = String(d.paused);
      const why = tr.querySelector(".pause-reason");
      why.textContent = d.paused ? (d.reason || "paused by the owner") : "";
      why.hidden = !d.paused;
      showActions(tr);
    });
  });
  // A reach-out timelock started, moved or ended: the row says until when new contacts wait.
  onRowEvent("device_timelock", (d) => {
    const tr = row(d.device_id);
    if (!tr) return;
    tr.querySelector(".timelock").hidden = !d.until;
    tr.querySelector(".timelock-until").textContent = d.until ? new Date(d.until).toLocaleString() : "";
  });
  live.on("device_command", (d) => { if (d.status === "failed") alert(`${d.command}: ${d.error}`); });
  live.on("device_deleted", (d) => {
    const tr = row(d.device_id);
    if (tr) tr.remove();
    selected.delete(String(d.device_id));
    pairing.delete(String(d.device_id));
    showSelection();
  });
})();
