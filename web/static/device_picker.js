// The device picker of the campaign and sequence forms: thousands of devices, searched and
// filtered by the server (/api/devices/choices, 100 at a time, "Show more" for the next), chosen
// one by one or all at once ("All online": the online ones among the search, "All shown": every
// device matching the search and status; both from /api/devices/ids). The chosen ids live in the fieldset's hidden input as "1,2,3";
// none chosen means every device.
(function () {
  "use strict";
  const PAGE = 100;

  function init(box) {
    const hidden = box.querySelector('input[type="hidden"]');
    const list = box.querySelector(".picker-list"), more = box.querySelector(".picker-more");
    const search = box.querySelector(".picker-q"), status = box.querySelector(".picker-status");
    const chosen = new Set(hidden.value.split(",").filter(Boolean));
    let shown = 0, request = 0;

    function filters(s) {
      return `q=${encodeURIComponent(search.value.trim())}&status=${encodeURIComponent(s === undefined ? status.value : s)}`;
    }
    function sync() {
      hidden.value = [...chosen].join(",");
      box.querySelector(".picker-summary").textContent = chosen.size
        ? `${chosen.size} chosen` : "all devices (none chosen)";
      list.querySelectorAll('input[type="checkbox"]').forEach((c) => { c.checked = chosen.has(c.value); });
    }
    function item(d) {
      const li = document.createElement("li"), label = document.createElement("label");
      const check = document.createElement("input");
      check.type = "checkbox";
      check.value = String(d.device_id);
      check.checked = chosen.has(check.value);
      const name = document.createElement("span");
      name.textContent = d.device_name;
      const meta = document.createElement("span");
      meta.className = "muted";
      meta.textContent = [d.phone, d.status + (d.paused ? ", paused" : "")].filter(Boolean).join(" · ");
      label.append(check, name, meta);
      li.append(label);
      return li;
    }
    async function load(reset) {
      const mine = ++request;
      if (reset) shown = 0;
      const page = await window.api("GET", `/api/devices/choices?${filters()}&offset=${shown}&limit=${PAGE}`);
      if (mine !== request) return;   // a newer search answered first
      if (reset) list.replaceChildren();
      page.devices.forEach((d) => list.append(item(d)));
      shown += page.devices.length;
      more.hidden = shown >= page.total;
      box.querySelector(".picker-total").textContent = page.total;
    }
    async function chooseAll(statusFilter) {
      const out = await window.api("GET", `/api/devices/ids?${filters(statusFilter)}`);
      out.device_ids.forEach((id) => chosen.add(String(id)));
      sync();
    }

    list.addEventListener("change", (e) => {
      if (e.target.checked) chosen.add(e.target.value); else chosen.delete(e.target.value);
      sync();
    });
    box.querySelector(".picker-actions").addEventListener("click", (e) => {
      const pick = e.target.closest("[data-pick]");
      if (!pick) return;
      if (pick.dataset.pick === "none") { chosen.clear(); sync(); }
      else chooseAll(pick.dataset.pick === "online" ? "online" : undefined).catch((err) => alert(err.message));
    });
    let typing = null;
    search.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(() => load(true), 250); });
    // Enter in the search box searches; it must not submit the campaign or sequence form.
    search.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); load(true); } });
    status.addEventListener("change", () => load(true));
    more.addEventListener("click", () => load(false));
    sync();
    load(true);
  }

  document.querySelectorAll(".device-picker").forEach(init);
})();
