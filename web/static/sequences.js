// Sequences: the builder (a 31-day calendar, JSON to /api/sequences) and the activate/deactivate/
// retry/delete buttons.
(function () {
  "use strict";
  const send = window.api;

  document.querySelectorAll("[data-sequence-action]").forEach((btn) => {
    btn.addEventListener("click", async () => {
      const id = btn.dataset.sequenceId, action = btn.dataset.sequenceAction;
      if (action === "delete" && !confirm("Delete this sequence, its contacts and its step history?")) return;
      try {
        if (action === "delete") { await send("DELETE", `/api/sequences/${id}`); location.href = "/sequences"; }
        else if (action === "retry") {
          const step = btn.dataset.stepId ? { step_id: +btn.dataset.stepId } : {};
          const { queued } = await send("POST", `/api/sequences/${id}/retry`, step);
          alert(`${queued} failed step${queued === 1 ? "" : "s"} queued again.`); location.reload();
        }
        else { await send("POST", `/api/sequences/${id}/${action}`); location.reload(); }
      } catch (e) { alert(e.message); }
    });
  });

  const form = document.getElementById("sequence-builder");
  if (!form) return;
  // The builder is a month: one cell per day; a day with a message is a step. The steps live in
  // `days` (day number -> step) and the editor under the grid edits the selected day.
  // Steps have trigger inputs too, so form.elements.trigger is a list: name the entry trigger by id.
  const entryTrigger = document.getElementById("sequence-trigger");
  const existing = JSON.parse(document.getElementById("sequence-data").textContent || "null");
  const calendar = document.getElementById("calendar");
  const editor = document.getElementById("step-editor");
  const field = (name) => editor.querySelector(`[name="${name}"]`);
  const TEXT_FIELDS = ["content", "trigger_delay_hours", "trigger", "next_trigger", "media_url", "chain_sequence_id"];
  const days = new Map();
  let selected = null;

  function drawCalendar() {
    calendar.replaceChildren();
    for (let d = 1; d <= 31; d++) {
      const step = days.get(d) && days.get(d).content.trim() ? days.get(d) : null;
      const cell = document.createElement("button");
      cell.type = "button";
      cell.dataset.day = d;
      cell.className = [step && "has-step", step && step.is_entry_point && "entry", d === selected && "selected"]
        .filter(Boolean).join(" ");
      cell.setAttribute("aria-label", step ? `Day ${d}: ${step.content}` : `Day ${d}: no message`);
      const num = document.createElement("span"); num.className = "day"; num.textContent = d;
      const snippet = document.createElement("span"); snippet.className = "snippet";
      snippet.textContent = step ? ((step.media_id || step.media_url || step.file ? "🖼 " : "") + step.content) : "";
      cell.append(num, snippet);
      cell.addEventListener("click", () => select(d));
      calendar.appendChild(cell);
    }
  }

  const preview = document.getElementById("step-preview");
  const refreshPreview = window.messagePreview.bind(preview, {
    textField: field("content"), urlField: field("media_url"), fileField: field("image_file"),
    storedUrl: () => { const s = days.get(selected); return s && s.media_id ? `/media/${s.media_id}` : null; },
  });

  function select(d) {
    selected = d;
    if (!days.has(d)) days.set(d, { day_number: d, content: "", is_entry_point: days.size === 0 });
    const step = days.get(d);
    document.getElementById("editor-day").textContent = d;
    for (const name of TEXT_FIELDS) field(name).value = step[name] ?? "";
    field("is_entry_point").checked = !!step.is_entry_point;
    field("image_file").value = "";
    editor.hidden = false;
    drawCalendar();
    refreshPreview();
    field("content").focus();
  }

  // Every edit goes straight into the selected day's step, so the grid and preview follow it.
  for (const name of TEXT_FIELDS) {
    field(name).addEventListener("input", () => {
      const step = days.get(selected);
      step[name] = field(name).value;
      if (name === "media_url") delete step.media_id;   // a new URL replaces the stored image
      drawCalendar();
    });
  }
  field("is_entry_point").addEventListener("change", () => {
    for (const step of days.values()) step.is_entry_point = false;
    days.get(selected).is_entry_point = field("is_entry_point").checked;
    drawCalendar();
  });
  field("image_file").addEventListener("change", () => {
    days.get(selected).file = field("image_file").files[0] || null;
    drawCalendar();
  });
  document.getElementById("remove-step").addEventListener("click", () => {
    days.delete(selected);
    selected = null;
    editor.hidden = true;
    drawCalendar();
  });

  if (existing) {
    for (const key of ["name", "niche", "schedule_time", "schedule_tolerance_minutes",
                       "min_delay_seconds", "max_delay_seconds"]) {
      if (existing[key] !== null) form.elements[key].value = existing[key];
    }
    entryTrigger.value = existing.trigger;
    form.elements.stop_on_reply.checked = existing.stop_on_reply;
    form.elements.allow_reentry.checked = existing.allow_reentry;
    form.elements.failover.checked = existing.failover;
    // A stored image is kept by its id: its source URL is shown only when it was typed as a URL.
    existing.steps.forEach((s) => days.set(s.day_number, { ...s, media_url: s.media_url || "" }));
  }
  drawCalendar();
  if (!existing) select(1);

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const error = document.getElementById("builder-error");
    try {
      const steps = [];
      for (const step of [...days.values()].filter((s) => s.content.trim()).sort((a, b) => a.day_number - b.day_number)) {
        const out = { day_number: step.day_number, is_entry_point: !!step.is_entry_point, media_id: step.media_id ?? "" };
        for (const name of TEXT_FIELDS) out[name] = step[name] ?? "";
        // A chosen file is stored first and replaces the step's image.
        if (step.file) Object.assign(out, { media_id: (await send.upload(step.file)).id, media_url: "" });
        steps.push(out);
      }
      const body = {
        name: f.name.value, niche: f.niche.value, trigger: entryTrigger.value,
        schedule_time: f.schedule_time.value || null,
        schedule_tolerance_minutes: f.schedule_tolerance_minutes.value,
        min_delay_seconds: f.min_delay_seconds.value, max_delay_seconds: f.max_delay_seconds.value,
        stop_on_reply: f.stop_on_reply.checked, allow_reentry: f.allow_reentry.checked, failover: f.failover.checked,
        device_ids: f.device_ids.value.split(",").filter(Boolean).map(Number),   // the device picker's choice
        steps,
      };
      const id = form.dataset.sequenceId;
      const saved = await send(id ? "PUT" : "POST", id ? `/api/sequences/${id}` : "/api/sequences", body);
      location.href = `/sequences/${saved.id}`;
    } catch (e) { error.textContent = e.message; error.hidden = false; }
  });
})();
