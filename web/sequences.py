"""Drip sequences: the summary page and GET /api/sequences/summary (CONTRACT.md), the per-flow
detail page with the contacts behind each figure, the builder, and the sequence CRUD API.
Every figure comes from SQL functions scoped to the signed-in owner (db/functions/sequence_*.sql)."""
from flask import Blueprint, abort, g, jsonify, render_template, request
from psycopg.types.json import Jsonb

from web.auth import login_required
from web.body import json_body
from web.db import all_rows, one
from web.media import fetch_deadline, media_id_for, source_url
from web.schema import (BOOLEAN, INTEGER, Body, Bool, Int, IntList, Number, Objects, Text, accepts, describes, obj,
                        returns, row, rows)

bp = Blueprint("sequences", __name__)

CONTACTS_PAGE = 100
KINDS = ("done", "failed", "remaining")


DEFINITION = row("sequence_definition_doc")


def _definition_or_404(sequence_id):
    row = one("SELECT sequence_definition(%s, %s) AS d", [g.user["id"], sequence_id])
    if row["d"] is None:
        abort(404, description="sequence not found")
    return row["d"]


STEP = Body(day_number=Int(required=True, description="1 to 31"), content=Text(required=True),
            trigger_delay_hours=Number(description="hours to wait after this step before the next (default 24, last 0)"),
            is_entry_point=Bool(), trigger=Text(), next_trigger=Text(), chain_sequence_id=Int(),
            media_url=Text(fmt="uri", description="public http(s) image fetched when saved, or a data: URL (base64)"),
            media_id=Int(description="an image from POST /api/media"))
SEQUENCE = Body(name=Text(required=True), trigger=Text(required=True, description="one word"),
                niche=Text(description="leads of that niche only; empty: any"), schedule_time=Text(fmt="time"),
                schedule_tolerance_minutes=Int(description="default: the setting default_window_tolerance_minutes"), stop_on_reply=Bool(),
                allow_reentry=Bool(description="a lead may start the sequence again after finishing it"),
                failover=Bool(description="when a step's device is banned, logged out or offline too long, send "
                                          "it from another of your devices with room (default false)"),
                min_delay_seconds=Int(description="default: the setting default_min_delay_seconds"),
                max_delay_seconds=Int(description="default: the setting default_max_delay_seconds"),
                device_ids=IntList(description="empty: every device"), steps=Objects(STEP))


def _json_body():
    """The sequence as sent (types checked by SEQUENCE, the rest by save_sequence), each step's
    image stored: its media_url fetched now (once: a URL saved before reuses its copy) or decoded
    (a data URL), or its uploaded media_id."""
    body = json_body("the sequence as a JSON object", required=True)
    steps = SEQUENCE.parse(body)["steps"] or []
    deadline = fetch_deadline()
    for n, (sent, step) in enumerate(zip(body.get("steps") or [], steps), 1):
        url = (step["media_url"] or "").strip()
        if url:
            sent["media_id"] = media_id_for(url, deadline, f"step {n} media_url")
            sent["media_url"] = source_url(url)
    return Jsonb(body)


def _date_range():
    """The completed_at filter (?from=YYYY-MM-DD&to=YYYY-MM-DD, owner's zone); SQL rejects bad dates."""
    return request.args.get("from") or None, request.args.get("to") or None


def _flows(sequence_id, day_from, day_to):
    return all_rows("SELECT * FROM sequence_flows(%s, %s, %s::date, %s::date)",
                    [g.user["id"], sequence_id, day_from, day_to])


def _flow_contacts(step_id, kind, day_from, day_to, offset=0):
    if kind not in KINDS:
        abort(400, description=f"kind must be one of {', '.join(KINDS)}")
    return all_rows("SELECT * FROM sequence_flow_contacts(%s, %s, %s, %s::date, %s::date, %s, %s)",
                    [g.user["id"], step_id, kind, day_from, day_to, CONTACTS_PAGE, offset])


# Pages ---------------------------------------------------------------------------------------

@bp.route("/sequences")
@login_required
def index():
    summary = one("SELECT sequence_summary(%s) AS s", [g.user["id"]])["s"]
    sequences = all_rows("SELECT * FROM sequence_overview(%s)", [g.user["id"]])
    return render_template("sequences/index.html", summary=summary, sequences=sequences)


@bp.route("/sequences/<int:sequence_id>")
@login_required
def detail(sequence_id):
    sequence = _definition_or_404(sequence_id)
    day_from, day_to = _date_range()
    step_id = request.args.get("step", type=int)
    kind = request.args.get("kind", "done")
    contacts = _flow_contacts(step_id, kind, day_from, day_to) if step_id else None
    progress = one("SELECT contacts FROM sequence_progress_monitor WHERE sequence_id = %s AND user_id = %s",
                   [sequence_id, g.user["id"]])
    waits = {s["id"]: s["trigger_delay_hours"] for s in sequence["steps"]}
    return render_template("sequences/detail.html", sequence=sequence, flows=_flows(sequence_id, day_from, day_to),
                           progress=progress, waits=waits,
                           day_from=day_from or "", day_to=day_to or "", step_id=step_id, kind=kind,
                           contacts=contacts)


@bp.route("/sequences/new")
@login_required
def new():
    return render_template("sequences/builder.html", sequence=None, others=_others(None))


@bp.route("/sequences/<int:sequence_id>/edit")
@login_required
def edit(sequence_id):
    return render_template("sequences/builder.html", sequence=_definition_or_404(sequence_id),
                           others=_others(sequence_id))


def _others(sequence_id):
    """Sequences a last step may chain to."""
    return [s for s in all_rows("SELECT * FROM sequence_overview(%s)", [g.user["id"]]) if s["id"] != sequence_id]


# JSON API ------------------------------------------------------------------------------------

@bp.route("/api/sequences/summary")
@login_required
@returns(row("sequence_summary_doc"))
def api_summary():
    """Sequence counts, flow and send totals, and the newest sequences (shape fixed by CONTRACT.md)."""
    return jsonify(one("SELECT sequence_summary(%s) AS s", [g.user["id"]])["s"])


@bp.route("/api/sequences")
@login_required
@returns(obj(sequences=rows("sequence_overview")))
def api_list():
    """The owner's sequences with their flows and should/done/failed/remaining sends."""
    return jsonify(sequences=all_rows("SELECT * FROM sequence_overview(%s)", [g.user["id"]]))


@bp.route("/api/sequences", methods=["POST"])
@login_required
@describes(SEQUENCE)
@returns(DEFINITION, status=201, description="Created")
def api_create():
    """Creates a sequence (inactive) with its steps.

    Body: {name, niche, trigger, schedule_time "HH:MM" or null, schedule_tolerance_minutes,
    min_delay_seconds, max_delay_seconds, stop_on_reply, device_ids (the devices that may send;
    empty: every device), steps: [{day_number, content, media_url or media_id, trigger,
    next_trigger, trigger_delay_hours, is_entry_point, chain_sequence_id}]}. A step's image is
    media_url, a public http(s) URL fetched once, now, or a media_id from POST /api/media."""
    sid = one("SELECT save_sequence(%s, NULL, %s) AS id", [g.user["id"], _json_body()])["id"]
    return jsonify(_definition_or_404(sid)), 201


@bp.route("/api/sequences/<int:sequence_id>")
@login_required
@returns(DEFINITION)
def api_get(sequence_id):
    """One sequence with its steps."""
    return jsonify(_definition_or_404(sequence_id))


@bp.route("/api/sequences/<int:sequence_id>", methods=["PUT"])
@login_required
@describes(SEQUENCE)
@returns(DEFINITION)
def api_update(sequence_id):
    """Replaces a sequence's settings and steps (steps matched by day_number keep their history)."""
    _definition_or_404(sequence_id)  # another owner's id is "not found", whatever the body says
    sid = one("SELECT save_sequence(%s, %s, %s) AS id", [g.user["id"], sequence_id, _json_body()])["id"]
    if sid is None:
        abort(404, description="sequence not found")
    return jsonify(_definition_or_404(sid))


@bp.route("/api/sequences/<int:sequence_id>/<any(activate, deactivate):action>", methods=["POST"])
@login_required
@returns(DEFINITION)
def api_status(sequence_id, action):
    """Activates (resumes held steps, enrolls leads with the trigger) or deactivates (holds pending steps)."""
    status = "active" if action == "activate" else "inactive"
    if not one("SELECT set_sequence_status(%s, %s, %s) AS ok", [g.user["id"], sequence_id, status])["ok"]:
        abort(404, description="sequence not found")
    return jsonify(_definition_or_404(sequence_id))


@bp.route("/api/sequences/<int:sequence_id>", methods=["DELETE"])
@login_required
@returns(obj(ok=BOOLEAN))
def api_delete(sequence_id):
    """Deletes a sequence with its steps, enrollments and step messages."""
    if not one("SELECT delete_sequence(%s, %s) AS ok", [g.user["id"], sequence_id])["ok"]:
        abort(404, description="sequence not found")
    return jsonify(ok=True)


@bp.route("/api/sequences/<int:sequence_id>/flows")
@login_required
@returns(obj(flows=rows("sequence_flows")))
def api_flows(sequence_id):
    """Per flow (step): should/done/failed/remaining; ?from=&to= (YYYY-MM-DD) limit done and failed
    to completions on those days in the owner's zone."""
    _definition_or_404(sequence_id)
    return jsonify(flows=_flows(sequence_id, *_date_range()))


@bp.route("/api/sequences/<int:sequence_id>/flows/<int:step_id>/contacts")
@login_required
@returns(obj(contacts=rows("sequence_flow_contacts")))
def api_flow_contacts(sequence_id, step_id):
    """The contacts behind one figure: ?kind=done|failed|remaining, ?from=&to=, ?offset= (100 a page)."""
    if not any(s["id"] == step_id for s in _definition_or_404(sequence_id)["steps"]):
        abort(404, description="step not found")
    rows = _flow_contacts(step_id, request.args.get("kind", "done"), *_date_range(),
                          offset=request.args.get("offset", 0, type=int))
    return jsonify(contacts=rows)


@bp.route("/api/sequences/<int:sequence_id>/contacts")
@login_required
@returns(row("sequence_contacts_page_doc"))
def api_contacts(sequence_id):
    """Every contact of a sequence (one entry per pass) with its per-step state, ?offset= (100 a page)."""
    page = one("SELECT sequence_contacts_page(%s, %s, %s, %s) AS p",
               [g.user["id"], sequence_id, CONTACTS_PAGE, max(request.args.get("offset", 0, type=int), 0)])["p"]
    if page is None:
        abort(404, description="sequence not found")
    return jsonify(page)


@bp.route("/api/sequences/<int:sequence_id>/retry", methods=["POST"])
@login_required
@accepts(Body(step_id=Int(description="only this step's failures; none: every step's")))
@returns(obj(queued=INTEGER))
def api_retry(sequence_id, body):
    """Queues failed steps again as new messages linked by retry_of; body {"step_id": N} limits it to one step."""
    queued = one("SELECT retry_failed_steps(%s, %s, %s) AS n", [g.user["id"], sequence_id, body["step_id"]])["n"]
    if queued is None:
        abort(404, description="sequence not found")
    return jsonify(queued=queued)
