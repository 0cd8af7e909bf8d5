"""Leads: the page, the JSON API (create, edit, delete, search), CSV import (streamed into the
database, validated in SQL) and export. Every call passes g.user["id"], so another owner's lead is
simply not found (404)."""
import shutil
import tempfile

from flask import Blueprint, Response, abort, current_app, g, jsonify, render_template, request

from web import lead_import
from web.auth import login_required
from web.body import json_body
from web.db import all_rows, conn, one
from web.schema import NULLABLE_INTEGER, Body, Int, Text, Upload, accepts, describes, obj, optional_int, returns, row, rows, text

bp = Blueprint("leads", __name__)

FILTERS = ("device_id", "niche", "target_status", "trigger")
PAGE = 50


def lead_filters(args):
    return {"device_id": optional_int(args.get("device_id"), "device_id"),
            "niche": text(args, "niche"), "target_status": text(args, "target_status") or "all",
            "trigger": text(args, "trigger")}


def search_leads(args):
    f = lead_filters(args)
    limit = max(1, min(optional_int(args.get("limit"), "limit") or PAGE, 500))
    rows = all_rows("SELECT * FROM find_leads(%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [g.user["id"], f["device_id"], f["niche"], f["target_status"], f["trigger"],
                     text(args, "q"), args.get("pool") in ("1", "true"),
                     optional_int(args.get("before"), "before"), limit + 1])
    return rows[:limit], (rows[limit - 1]["id"] if len(rows) > limit else None)


# A lead's fields, in the order create_lead / update_lead / intake_lead take them.
LEAD = Body(device_id=Int(description="one of your devices; none: the shared pool"),
            name=Text(default=""), phone=Text(default="", description="digits, country code first"),
            niche=Text(default=""), target_status=Text(default="", description="prospect or customer"),
            trigger=Text(description="comma-separated triggers"))


def lead_fields(body):
    return list(LEAD.parse(body).values())


def get_lead_or_404(lead_id):
    lead = one("SELECT * FROM get_lead(%s, %s)", [g.user["id"], lead_id])
    if lead is None:
        abort(404, description="no such lead")
    return lead


def my_devices():
    """Every device of the owner by name (for the single-device selects)."""
    return all_rows("SELECT device_id AS id, device_name, status FROM device_search(%s, NULL, NULL, 'name', false,"
                    " NULL, 0)", [g.user["id"]])


# Pages ---------------------------------------------------------------------------------------

@bp.route("/leads")
@login_required
def page():
    leads, next_before = search_leads(request.args)
    imports = all_rows("SELECT * FROM lead_import_status(%s, NULL)", [g.user["id"]])
    # Only the filters go back into links: url_for reads _scheme, _external, ... as its own options.
    args = {k: v for k, v in request.args.items() if k in (*FILTERS, "q", "pool")}
    return render_template("leads/index.html", leads=leads, next_before=next_before, devices=my_devices(),
                           imports=imports, args=args)


# JSON API ------------------------------------------------------------------------------------

@bp.route("/api/leads")
@login_required
@returns(obj(leads=rows("find_leads"), next_before=NULLABLE_INTEGER))
def api_list():
    """Lists your leads, newest first: filters device_id, niche, target_status, trigger (whole tokens), q (name or phone); page with before=<id>."""
    leads, next_before = search_leads(request.args)
    return jsonify(leads=leads, next_before=next_before)


@bp.route("/api/leads", methods=["POST"])
@login_required
@accepts(LEAD)
@returns(row("get_lead"), status=201, description="Created")
def api_create(body):
    """Creates a lead (phone normalised, country code first); the same (device, phone) merges into the existing lead."""
    lead_id = one("SELECT create_lead(%s, %s, %s, %s, %s, %s, %s) AS id", [g.user["id"], *body.values()])["id"]
    return jsonify(get_lead_or_404(lead_id)), 201


@bp.route("/api/leads/<int:lead_id>")
@login_required
@returns(row("get_lead"))
def api_get(lead_id):
    """One of your leads."""
    return jsonify(get_lead_or_404(lead_id))


@bp.route("/api/leads/<int:lead_id>", methods=["PUT"])
@login_required
@describes(LEAD)
@returns(row("get_lead"))
def api_update(lead_id):
    """Edits a lead: name, phone, niche, target_status, trigger, device_id."""
    get_lead_or_404(lead_id)  # another owner's id: 404 before any validation message
    done = one("SELECT update_lead(%s, %s, %s, %s, %s, %s, %s, %s) AS id",
               [g.user["id"], lead_id, *lead_fields(json_body())])["id"]
    if done is None:
        abort(404, description="no such lead")
    return jsonify(get_lead_or_404(lead_id))


@bp.route("/api/leads/<int:lead_id>", methods=["DELETE"])
@login_required
@returns(None, status=204, description="Deleted")
def api_delete(lead_id):
    """Deletes a lead."""
    if not one("SELECT delete_lead(%s, %s) AS ok", [g.user["id"], lead_id])["ok"]:
        abort(404, description="no such lead")
    return "", 204


# CSV import and export --------------------------------------------------------------------------

def upload_stream():
    """The CSV bytes, all received before any database connection is taken (a body trickling in
    must not hold pooled connections): a multipart `file` (spooled by the form parser) or the raw
    request body, spooled here (memory up to 1 MB, then a temporary file)."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            abort(400, description="send the CSV as the multipart field 'file'")
        return (upload.filename or "").replace("\x00", ""), upload.stream, None
    body = tempfile.SpooledTemporaryFile(max_size=1 << 20)
    shutil.copyfileobj(request.stream, body, 1 << 16)
    size = body.tell()
    body.seek(0)
    return text(request.args, "filename"), body, size


@bp.route("/api/leads/import", methods=["POST"])
@login_required
@describes(Body(file=Upload(required=True, description="the CSV (or send it as the raw body)"),
                device_id=Int(description="the device its leads belong to")), media="multipart/form-data")
@returns(row("lead_import_status"), status=202, description="Uploaded, being checked")
def api_import():
    """Uploads a CSV of leads (multipart field `file`, or the raw body): streamed into the database and checked in the background; poll or watch `lead_import` events."""
    device_id = optional_int(request.values.get("device_id"), "device_id")
    filename, stream, size = upload_stream()
    import_id = one("SELECT start_lead_import(%s, %s, %s, %s) AS id",
                    [g.user["id"], device_id, filename, size])["id"]
    pool = current_app.extensions["db_pool"]
    try:
        with pool.connection() as copy_conn, pool.connection() as progress_conn:
            lead_import.stage(copy_conn, progress_conn, import_id, stream)
    except Exception as exc:
        one("SELECT fail_lead_import(%s, %s)", [import_id, f"upload failed: {exc}"])
        raise
    lead_import.validate_in_background(pool, import_id)
    return jsonify(import_status(import_id)), 202


def import_status(import_id):
    row = one("SELECT * FROM lead_import_status(%s, %s)", [g.user["id"], import_id])
    if row is None:
        abort(404, description="no such import")
    return row


@bp.route("/api/leads/imports")
@login_required
@returns(obj(imports=rows("lead_import_status")))
def api_imports():
    """Your CSV imports with their progress and counts."""
    return jsonify(imports=all_rows("SELECT * FROM lead_import_status(%s, NULL)", [g.user["id"]]))


@bp.route("/api/leads/imports/<int:import_id>")
@login_required
@returns(row("lead_import_status"))
def api_import_status(import_id):
    """One import: status, rows read, landed, merged and bad."""
    return jsonify(import_status(import_id))


def csv_download(filename, query, params):
    """`COPY (query) TO STDOUT` as a CSV attachment. The rows are copied into a temporary file
    first, so the pooled connection is back as soon as the database is done, not when a slow
    client has read the last byte; then the file is streamed."""
    out = tempfile.SpooledTemporaryFile(max_size=8 << 20)
    with conn() as c, c.cursor().copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)", params) as copy:
        for chunk in copy:
            out.write(chunk)
    out.seek(0)
    response = Response(iter(lambda: out.read(1 << 16), b""), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    response.call_on_close(out.close)
    return response


@bp.route("/leads/imports/<int:import_id>/report.csv")
@login_required
def import_report(import_id):
    import_status(import_id)
    return csv_download(f"import-{import_id}-errors.csv",
                        "SELECT line_no, reason, content FROM lead_import_report(%s, %s)",
                        [g.user["id"], import_id])


@bp.route("/leads/export.csv")
@login_required
def export():
    f = lead_filters(request.args)
    return csv_download("leads.csv",
                        "SELECT * FROM export_leads(%s, %s, %s, %s, %s)",
                        [g.user["id"], f["device_id"], f["niche"], f["target_status"], f["trigger"]])
