// The WhatsApp Web view: chat list (search, previews, unread badges, WhatsApp's time labels),
// history paged backwards with day labels, the queue's sends with their ticks, received images as
// thumbnails, text (Enter sends) and image sends (compressed here to <= 350 KB), live updates via
// window.live.
(function () {
  "use strict";
  const MAX_IMAGE_BYTES = 350 * 1024;
  const wa = document.getElementById("wa");
  const deviceId = Number(wa.dataset.deviceId);
  const zone = document.body.dataset.timezone || undefined;
  const $ = function (id) { return document.getElementById(id); };
  const list = $("wa-chats"), box = $("wa-messages"), older = $("wa-older"), text = $("wa-text");
  let chats = [], open = null, cursor = null, pendingImage = null;
  let statusEvents = 0;   // device_status events seen: a fetch started before one must not undo it

  // ---- formatting: WhatsApp's way, in the user's time zone -----------------------------------
  // The chat list shows the time for today, "Yesterday", the weekday within the last week, then
  // the date; the conversation groups messages under the same day labels ("Today" for today).
  const dayKey = new Intl.DateTimeFormat("en-CA", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit" });
  const clock = new Intl.DateTimeFormat("en-GB", { timeZone: zone, hour: "2-digit", minute: "2-digit" });
  const weekday = new Intl.DateTimeFormat("en-GB", { timeZone: zone, weekday: "long" });
  const date = new Intl.DateTimeFormat("en-GB", { timeZone: zone, day: "2-digit", month: "2-digit", year: "numeric" });
  function daysAgo(d) {  // calendar days between d and today in the user's zone
    const utc = (x) => { const [y, m, day] = dayKey.format(x).split("-").map(Number); return Date.UTC(y, m - 1, day); };
    return Math.round((utc(new Date()) - utc(d)) / 86400000);
  }
  function dayLabel(d) {
    const ago = daysAgo(d);
    if (ago === 0) return "Today";
    if (ago === 1) return "Yesterday";
    if (ago > 1 && ago < 7) return weekday.format(d);
    return date.format(d);
  }
  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return daysAgo(d) === 0 ? clock.format(d) : dayLabel(d);
  }
  function el(tag, cls, txt) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (txt !== undefined) e.textContent = txt;
    return e;
  }

  // ---- chat list --------------------------------------------------------------------------
  function renderChats() {
    list.replaceChildren();
    chats.forEach(function (c) {
      const li = el("li", "wa-chat" + (c.unread_count ? " has-unread" : "") + (open && open.id === c.id ? " active" : ""));
      li.dataset.chatId = c.id;
      li.append(el("span", "name", c.lead_name || c.name || ("+" + c.phone)), el("span", "time", when(c.last_message_at)),
                el("span", "preview", c.last_message_preview));
      if (c.unread_count) li.append(el("span", "unread", String(c.unread_count)));
      li.addEventListener("click", function () { openChat(c); });
      list.append(li);
    });
    $("wa-chats-empty").hidden = chats.length > 0;
  }
  function loadChats() {
    const q = $("wa-search").value.trim();
    const asked = statusEvents;
    return api("GET", "/api/devices/" + deviceId + "/chats" + (q ? "?q=" + encodeURIComponent(q) : ""))
      .then(function (body) { chats = body.chats; renderChats();
        if (asked === statusEvents) showStatus(body.device_status);   // else a live event is newer
      });
  }
  let searchTimer = null;
  $("wa-search").addEventListener("input", function () { clearTimeout(searchTimer); searchTimer = setTimeout(loadChats, 200); });

  // ---- conversation -----------------------------------------------------------------------
  function tick(m) {
    if (!m.from_me) return null;
    if (m.status === "failed" || m.status === "skipped") { const t = el("span", "tick failed", "⚠"); t.title = m.error_message || m.status; return t; }
    if (m.read_at) return el("span", "tick read", "✓✓");
    if (m.delivered_at) return el("span", "tick delivered", "✓✓");
    if (m.status === "sent") return el("span", "tick sent", "✓");
    return el("span", "tick pending", "🕓");
  }
  function messageNode(m) {
    const div = el("div", "wa-msg " + (m.from_me ? "out" : "in"));
    div.dataset.key = m.key;
    div.dataset.at = m.at;
    // A received image shows the preview WhatsApp sent along; a sent one shows what was sent.
    const src = m.thumbnail_url || (m.from_me && m.message_type === "image" ? m.media_url : null);
    if (src) { const img = el("img", m.thumbnail_url ? "thumb" : ""); img.src = src; img.alt = "photo"; div.append(img); }
    else if (m.message_type === "image") div.append(el("span", "muted", "📷 Photo"));
    if (m.content) div.append(el("span", "body", m.content));
    const meta = el("span", "meta", clock.format(new Date(m.at)));
    const t = tick(m);
    if (t) { meta.append(" "); meta.append(t); }
    div.append(meta);
    return div;
  }
  // Day labels above the first message of each day, redrawn after every change.
  function markDays() {
    box.querySelectorAll(".wa-day").forEach(function (n) { n.remove(); });
    let last = null;
    box.querySelectorAll(".wa-msg").forEach(function (n) {
      const d = new Date(n.dataset.at), key = dayKey.format(d);
      if (key !== last) box.insertBefore(el("div", "wa-day", dayLabel(d)), n);
      last = key;
    });
  }
  function upsert(m) {
    const node = messageNode(m);
    const existing = box.querySelector('.wa-msg[data-key="' + m.key + '"]');
    if (existing) { existing.replaceWith(node); return; }
    const mine = new Date(m.at).toISOString() + "|" + m.key;
    const later = Array.from(box.querySelectorAll(".wa-msg")).find(function (n) {
      return new Date(n.dataset.at).toISOString() + "|" + n.dataset.key > mine;
    });
    box.insertBefore(node, later || null);
  }
  function show(messages) { messages.forEach(upsert); markDays(); }
  function nearBottom() { return box.scrollHeight - box.scrollTop - box.clientHeight < 80; }
  function fetchPage(before) {
    const qs = before ? "?before_at=" + encodeURIComponent(before.before_at) + "&before_key=" + encodeURIComponent(before.before_key) : "";
    return api("GET", "/api/chats/" + open.id + "/messages" + qs);
  }
  function refreshLatest() {
    if (!open) return Promise.resolve();
    const stick = nearBottom(), chatId = open.id;
    return fetchPage(null).then(function (page) {
      if (!open || open.id !== chatId) return;
      show(page.messages);
      if (stick) box.scrollTop = box.scrollHeight;
    });
  }
  function loadOlder() {
    if (!open || !cursor) return;
    const chatId = open.id, height = box.scrollHeight;
    fetchPage(cursor).then(function (page) {
      if (!open || open.id !== chatId) return;
      show(page.messages);
      cursor = page.next;
      older.hidden = !cursor;
      box.scrollTop += box.scrollHeight - height;  // keep the reader's place
    });
  }
  older.addEventListener("click", loadOlder);
  box.addEventListener("scroll", function () { if (box.scrollTop < 40 && cursor) loadOlder(); });

  function markRead(chat) {
    if (!chat.unread_count) return;
    chat.unread_count = 0;
    renderChats();
    api("POST", "/api/chats/" + chat.id + "/read").catch(function () {});
  }
  function openChat(chat) {
    open = chat;
    cursor = null;
    box.querySelectorAll(".wa-msg, .wa-day").forEach(function (n) { n.remove(); });
    $("wa-placeholder").hidden = true;
    document.querySelector(".wa-conv-bar").hidden = box.hidden = $("wa-composer").hidden = false;
    $("wa-conv-name").textContent = chat.lead_name || chat.name || ("+" + chat.phone);
    $("wa-conv-phone").textContent = chat.phone ? "+" + chat.phone : "";
    wa.classList.add("conv-open");
    renderChats();
    markRead(chat);
    fetchPage(null).then(function (page) {
      if (open !== chat) return;
      show(page.messages);
      cursor = page.next;
      older.hidden = !cursor;
      box.scrollTop = box.scrollHeight;
    });
    text.focus();
  }
  $("wa-back").addEventListener("click", function () { wa.classList.remove("conv-open"); open = null; renderChats(); });

  // ---- sending ----------------------------------------------------------------------------
  function afterSend() { return Promise.all([refreshLatest(), loadChats()]).then(function () { box.scrollTop = box.scrollHeight; }); }
  function sendText() {
    const body = text.value;
    if (!open || !body.trim()) return;
    text.value = "";
    api("POST", "/api/chats/" + open.id + "/messages", { text: body })
      .then(afterSend)
      .catch(function (err) { text.value = body; alert("Not sent: " + err.message); });
  }
  $("wa-composer").addEventListener("submit", function (e) { e.preventDefault(); sendText(); });
  text.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); sendText(); }
  });

  // Re-encode as JPEG, lowering quality, then size, until it fits the limit.
  function compress(file) {
    return createImageBitmap(file).then(function (bitmap) {
      let scale = Math.min(1, 1600 / Math.max(bitmap.width, bitmap.height));
      const canvas = document.createElement("canvas");
      function attempt(quality) {
        canvas.width = Math.max(1, Math.round(bitmap.width * scale));
        canvas.height = Math.max(1, Math.round(bitmap.height * scale));
        const ctx = canvas.getContext("2d");
        ctx.fillStyle = "#fff";
        ctx.fillRect(0, 0, canvas.width, canvas.height);
        ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
        return new Promise(function (resolve) { canvas.toBlob(resolve, "image/jpeg", quality); }).then(function (blob) {
          if (blob.size <= MAX_IMAGE_BYTES) return blob;
          if (quality > 0.5) return attempt(quality - 0.1);
          scale *= 0.75;
          return attempt(0.8);
        });
      }
      return attempt(0.85);
    });
  }
  $("wa-file").addEventListener("change", function () {
    const file = this.files[0];
    this.value = "";
    if (!file || !open) return;
    compress(file).then(function (blob) {
      pendingImage = blob;
      $("wa-preview-img").src = URL.createObjectURL(blob);
      $("wa-preview-size").textContent = Math.round(blob.size / 1024) + " KB";
      $("wa-caption").value = text.value;
      $("wa-preview").hidden = false;
      $("wa-caption").focus();
    }).catch(function () { alert("That file could not be read as an image."); });
  });
  function closePreview() { $("wa-preview").hidden = true; pendingImage = null; }
  $("wa-preview-cancel").addEventListener("click", closePreview);
  function sendImage() {
    if (!pendingImage || !open) return;
    const form = new FormData();
    form.append("image", pendingImage, "image.jpg");
    form.append("caption", $("wa-caption").value);
    api("POST", "/api/chats/" + open.id + "/messages", form)
      .then(function () { text.value = ""; closePreview(); return afterSend(); })
      .catch(function (err) { alert("Not sent: " + err.message); });
  }
  $("wa-preview-send").addEventListener("click", sendImage);
  $("wa-caption").addEventListener("keydown", function (e) { if (e.key === "Enter") { e.preventDefault(); sendImage(); } });

  // ---- live -------------------------------------------------------------------------------
  let listTimer = null;
  function reloadChatsSoon() { clearTimeout(listTimer); listTimer = setTimeout(loadChats, 150); }
  function forThisDevice(fn) { return function (d) { if (Number(d.device_id) === deviceId) fn(d); }; }
  live.watch(deviceId);
  live.on("message", forThisDevice(function (d) {
    if (open && Number(d.chat_id) === open.id) {
      refreshLatest();
      if (!d.from_me) api("POST", "/api/chats/" + open.id + "/read").then(reloadChatsSoon).catch(function () {});
    } else {
      reloadChatsSoon();
    }
  }));
  live.on("chat", forThisDevice(function (d) { reloadChatsSoon(); if (open && Number(d.chat_id) === open.id) refreshLatest(); }));
  // Sends, failures and receipts arrive batched per owner: {status, device_ids, ids, ...}. A send
  // (a campaign's, a sequence's) opens or lifts its recipient's chat.
  live.on("message_status", function (d) {
    if ((d.device_ids || []).map(Number).indexOf(deviceId) < 0 && !d.truncated) return;
    refreshLatest();
    if (d.status === "sent") reloadChatsSoon();
  });
  function showStatus(status) {
    const badge = $("wa-device-status");
    badge.textContent = status;
    badge.className = "badge badge-" + status;
  }
  live.on("device_status", forThisDevice(function (d) { statusEvents += 1; showStatus(d.status); }));
  live.refreshOn([], function () { return Promise.all([loadChats(), refreshLatest()]); });   // after a reconnect or resync
  // What changed between this page's render and its socket's first open was sent to nobody.
  let firstOpen = true;
  live.on("live.open", function () { if (firstOpen) { firstOpen = false; loadChats(); } });

  loadChats();
})();
