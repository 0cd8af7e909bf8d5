// Devices page: add, rename, delete, pair (QR or phone code), simulate scan, log out, reconnect.
// Status, QR codes, pairing codes and command outcomes arrive live (window.live, /ws) and update
// the device's row in place; the QR payload is rendered to SVG by the server (POST, so the
// pairing secret stays out of URLs).
(function () {
  "use strict";
  const send = window.api;

  function row(deviceId) { return document.querySelector(`tr[data-device-id="${deviceId}"]`); }

  // The actions a device offers follow from its status and whether it has a session (jid).
  const offered = {
    pair: (online) => !online,
    "pair-phone": (online) => !online,
    "simulate-scan": (online) => !online,
    reconnect: (online, session) => session && !online,
    logout: (online, session) => session,
  };
  function showActions(tr) {
    const online = tr.dataset.status === "online", session = tr.dataset.session === "true";
    Object.entries(offered).forEach(([action, show]) => {
      const btn = tr.querySelector(`[data-action="${action}"]`);
      if (btn) btn.hidden = !show(online, session);
    });
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
    }
    if (d.status === "logged_out") tr.dataset.session = "false";
    showActions(tr);
  }
  document.querySelectorAll("tr[data-device-id]").forEach(showActions);

  async function showQr(deviceId, code) {
    const tr = row(deviceId);
    if (!tr) return;
    const res = await window.api.request("POST", `/api/devices/${deviceId}/qr.svg`, { code });
    if (!res.ok) return;
    const img = tr.querySelector(".pairing img");
    if (img.src) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(await res.blob());
    img.hidden = false;
    tr.querySelector(".pairing").hidden = false;
  }

  function showCode(deviceId, code) {
    const tr = row(deviceId);
    if (!tr) return;
    tr.querySelector(".pairing img").hidden = true;
    tr.querySelector(".pairing .code").textContent = "Type this code on the phone: " + code;
    tr.querySelector(".pairing").hidden = false;
  }

  const actions = {
    rename: async (id, tr) => {
      const name = prompt("New name", tr.querySelector(".name").textContent);
      if (name === null) return;
      await send("PATCH", `/api/devices/${id}`, { device_name: name });
      tr.querySelector(".name").textContent = name.trim();
    },
    "pair-phone": async (id) => {
      const phone = prompt("The phone's WhatsApp number, country code first (e.g. 60123456789)");
      if (phone) await send("POST", `/api/devices/${id}/pair-phone`, { phone });
    },
    delete: async (id, tr) => {
      if (!confirm("Delete this device? Its leads go back to the AI pool and its waiting messages are skipped.")) return;
      const out = await send("DELETE", `/api/devices/${id}`);
      if (out.pending) alert("The device is logging out; it disappears when its sender confirms.");
      else tr.remove();
    },
  };
  ["pair", "simulate-scan", "logout", "reconnect"].forEach((name) => {
    actions[name] = (id) => send("POST", `/api/devices/${id}/${name}`, {});
  });

  document.getElementById("devices").addEventListener("click", async (e) => {
    const btn = e.target.closest("[data-action]");
    if (!btn) return;
    const tr = btn.closest("tr");
    btn.disabled = true;
    try { await actions[btn.dataset.action](tr.dataset.deviceId, tr); }
    catch (err) { alert(err.message); }
    finally { btn.disabled = false; }
  });

  document.getElementById("device-add").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await send("POST", "/api/devices", { device_name: e.target.device_name.value });
      location.reload();
    } catch (err) { alert(err.message); }
  });

  if (!window.live) return;
  live.on("device_pairing", (d) => (d.kind === "qr" ? showQr(d.device_id, d.code) : showCode(d.device_id, d.code)));
  live.on("device_status", (d) => { const tr = row(d.device_id); if (tr) applyStatus(tr, d); });
  live.on("device_paired", (d) => {
    const tr = row(d.device_id);
    if (!tr) return;
    tr.dataset.session = "true";
    tr.querySelector(".phone").textContent = d.phone || "";
    showActions(tr);
  });
  live.on("device_command", (d) => { if (d.status === "failed") alert(`${d.command}: ${d.error}`); });
  live.on("device_deleted", (d) => {
    const tr = row(d.device_id);
    if (tr) tr.remove();
  });
  // Events may have been missed while the socket was down: redraw from the server.
  live.on("live.reconnected", () => location.reload());
})();
