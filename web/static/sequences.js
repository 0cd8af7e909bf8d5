// Sequences: the builder (JSON to /api/sequences) and the activate/deactivate/delete buttons.
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
  const steps = document.getElementById("steps");
  // Steps have trigger inputs too, so form.elements.trigger is a list: name the entry trigger by id.
  const entryTrigger = document.getElementById("sequence-trigger");
  const template = document.getElementById("step-template");
  const existing = JSON.parse(document.getElementById("sequence-data").textContent || "null");

  function addStep(step) {
    const node = template.content.firstElementChild.cloneNode(true);
    const used = [...steps.querySelectorAll('[name="day_number"]')].map((i) => +i.value);
    // A new step's wait is left to the server's default (24 hours after it; none after the last).
    step = step || { day_number: used.length ? Math.max(...used) + 1 : 1 };
    for (const [key, value] of Object.entries(step)) {
      const input = node.querySelector(`[name="${key}"]`);
      if (!input || value === null) continue;
      if (input.type === "radio") input.checked = !!value; else input.value = value;
    }
    node.querySelector(".remove-step").addEventListener("click", () => node.remove());
    steps.appendChild(node);
  }

  if (existing) {
    for (const key of ["name", "niche", "schedule_time", "schedule_tolerance_minutes",
                       "min_delay_seconds", "max_delay_seconds"]) {
      if (existing[key] !== null) form.elements[key].value = existing[key];
    }
    entryTrigger.value = existing.trigger;
    form.elements.stop_on_reply.checked = existing.stop_on_reply;
    form.elements.allow_reentry.checked = existing.allow_reentry;
    existing.steps.forEach(addStep);
  } else {
    addStep();
  }
  document.getElementById("add-step").addEventListener("click", () => addStep());

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = form.elements;
    const body = {
      name: f.name.value, niche: f.niche.value, trigger: entryTrigger.value,
      schedule_time: f.schedule_time.value || null,
      schedule_tolerance_minutes: f.schedule_tolerance_minutes.value,
      min_delay_seconds: f.min_delay_seconds.value, max_delay_seconds: f.max_delay_seconds.value,
      stop_on_reply: f.stop_on_reply.checked, allow_reentry: f.allow_reentry.checked,
      device_ids: f.device_ids.value.split(",").filter(Boolean).map(Number),   // the device picker's choice
      steps: [...steps.querySelectorAll("fieldset.step")].map((node) => {
        const v = (n) => node.querySelector(`[name="${n}"]`).value;
        return { day_number: v("day_number"), trigger_delay_hours: v("trigger_delay_hours"), trigger: v("trigger"),
                 next_trigger: v("next_trigger"), content: v("content"), media_url: v("media_url"),
                 media_id: v("media_id"), chain_sequence_id: v("chain_sequence_id"),
                 is_entry_point: node.querySelector('[name="is_entry_point"]').checked };
      }),
    };
    const error = document.getElementById("builder-error");
    try {
      // A chosen file is stored first and replaces the step's image.
      const nodes = [...steps.querySelectorAll("fieldset.step")];
      for (const [i, node] of nodes.entries()) {
        const file = node.querySelector('[name="image_file"]').files[0];
        if (file) Object.assign(body.steps[i], { media_id: (await send.upload(file)).id, media_url: "" });
      }
      const id = form.dataset.sequenceId;
      const saved = await send(id ? "PUT" : "POST", id ? `/api/sequences/${id}` : "/api/sequences", body);
      location.href = `/sequences/${saved.id}`;
    } catch (e) { error.textContent = e.message; error.hidden = false; }
  });
})();
