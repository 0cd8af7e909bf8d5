"""Devices: the /devices page for fleets of thousands (search, status filter, sort and pages served
by SQL; settings, pause and resume for one device or a selection; adding many by a name pattern;
live status, QR and phone-code pairing, simulate scan in demo mode, logout, delete), its JSON API,
and the searches behind the device picker of the campaign and sequence forms. The web never
touches a WhatsApp connection: pairing, logout and reconnect are device_commands rows that the
sender holding the device carries out."""
import io
import math

import segno
from flask import Blueprint, Response, abort, g, jsonify, render_template, request
from psycopg.types.json import Jsonb

from common.config import transport_name
from web.auth import login_required
from web.body import json_body
from web.db import all_rows, one
from web.schema import (BINARY, BOOLEAN, INTEGER, INTEGERS, NULLABLE_TEXT, STRING, Body, Int, IntList, Text, accepts,
                        array, describes, obj, optional_int, returns, row, rows, setting_default, text)

bp = Blueprint("devices", __name__)

COMMANDS = {"pair": "pair", "pair-phone": "pair_phone", "simulate-scan": "simulate_scan",
            "logout": "logout", "reconnect": "reconnect"}
SORTS = {"name": "Name", "phone": "Number", "status": "Status", "last_seen": "Last seen", "created": "Added",
         "health": "Health score"}
STATUSES = ("online", "connecting", "offline", "banned", "logged_out", "paused")
PER_PAGE, MAX_PER_PAGE, PICKER_PAGE = 50, 500, 100


def _filters(args):
    """Search and status filter from a query string; SQL refuses an unknown status (400)."""
    return text(args, "q") or None, text(args, "status") or None


def device_listing(args, fetch):
    """One page of the owner's devices in the devices page's query (q, status, sort, dir, page, per_page):
    fetch(query, status, sort, descending, limit, offset) returns the page's rows, each with the total that
    match; past the end (devices were deleted meanwhile) the last page. Shared with the monitoring page."""
    query, status = _filters(args)
    sort = text(args, "sort") or "name"
    descending = args.get("dir") == "desc"
    per_page = max(1, min(optional_int(args.get("per_page"), "per_page") or PER_PAGE, MAX_PER_PAGE))
    page = max(1, optional_int(args.get("page"), "page") or 1)

    def rows_of(n):
        return fetch(query, status, sort, descending, per_page, (n - 1) * per_page)

    rows = rows_of(page)
    if not rows and page > 1:
        first = one("SELECT total FROM device_search(%s, %s, %s, 'name', false, 1, 0)", [g.user["id"], query, status])
        page = max(1, math.ceil((first["total"] if first else 0) / per_page))
        rows = rows_of(page)
    total = rows[0]["total"] if rows else 0
    return {"devices": rows, "total": total, "page": page, "per_page": per_page,
            "pages": max(1, math.ceil(total / per_page)), "q": query or "", "status": status or "", "sort": sort,
            "dir": "desc" if descending else "asc"}


def _listing(args):
    """The devices page's query and one page of device_page."""
    return device_listing(args, lambda *query: all_rows("SELECT * FROM device_page(%s, %s, %s, %s, %s, %s, %s)",
                                                        [g.user["id"], *query]))


DEVICE = row("_device_health")  # what the device_health view shows


def _device_or_404(device_id):
    row = one("SELECT * FROM device_health WHERE user_id = %s AND device_id = %s", [g.user["id"], device_id])
    if row is None:
        abort(404, description="device not found")
    return row


# A device's pacing; what a request leaves out is the database's default (settings default_<name>).
PACING = Body(**{name: setting_default(name)
                 for name in ("min_delay_seconds", "max_delay_seconds", "hourly_limit", "daily_limit")})
NEW_DEVICE = PACING.extended(device_name=Text(required=True, max_length=100))
NEW_DEVICES = PACING.extended(count=Int(required=True, description="1 to 5000"),
                              name_pattern=Text(default="", description='"Sales {n}"'), first_number=Int(default=1))
# A change: absent or null fields stay as they are; SQL checks names and ranges.
SETTINGS = Body(device_name=Text(max_length=100), **{name: Int() for name in PACING.fields})
SELECTION = Body(device_ids=IntList(required=True))


def _device_ids(body):
    if not isinstance(body.get("device_ids"), list):
        abort(400, description="device_ids must be a list of device ids")
    return SELECTION.parse(body)["device_ids"]


def _settings(body):
    """The settings fields of a body, type-checked by SETTINGS, as sent (SQL refuses unknown names)."""
    SETTINGS.parse(body)
    return Jsonb({k: v for k, v in body.items() if k != "device_ids"})


@bp.route("/devices")
@login_required
def page():
    listing = _listing(request.args)
    template = "devices/_list.html" if request.args.get("fragment") == "list" else "devices/index.html"
    return render_template(template, simulated=transport_name() == "sim", sorts=SORTS, statuses=STATUSES,
                           **listing)


@bp.route("/api/devices")
@login_required
@returns(obj(devices=rows("device_page"), total=INTEGER, page=INTEGER, per_page=INTEGER, pages=INTEGER))
def list_devices():
    """One page of the owner's devices with status, health counts, pause, delays and caps.

    Query: `q` (name or number contains), `status` (online, connecting, offline, banned,
    logged_out, or paused), `sort` (name, phone, status, last_seen, created), `dir` (asc, desc),
    `page` (from 1), `per_page` (at most 500, default 50). The answer has `total`, `page`, `pages`."""
    listing = _listing(request.args)
    return jsonify(devices=listing.pop("devices"),
                   **{k: listing[k] for k in ("total", "page", "per_page", "pages")})


@bp.route("/api/devices/choices")
@login_required
@returns(obj(devices=array(obj(device_id=INTEGER, device_name=STRING, phone=NULLABLE_TEXT, status=STRING, paused=BOOLEAN)),
             total=INTEGER))
def choices():
    """The device picker's list: devices by name matching `q` and `status`, `limit` (at most 500)
    from `offset`, with `total`."""
    query, status = _filters(request.args)
    limit = max(1, min(optional_int(request.args.get("limit"), "limit") or PICKER_PAGE, MAX_PER_PAGE))
    offset = max(0, optional_int(request.args.get("offset"), "offset") or 0)
    rows = all_rows("SELECT device_id, device_name, phone, status, paused, total FROM device_search(%s, %s, %s, 'name',"
                    " false, %s, %s)", [g.user["id"], query, status, limit, offset])
    total = rows[0]["total"] if rows else 0
    return jsonify(devices=[{k: r[k] for k in ("device_id", "device_name", "phone", "status", "paused")} for r in rows],
                   total=total)


@bp.route("/api/devices/ids")
@login_required
@returns(obj(device_ids=INTEGERS, total=INTEGER))
def matching_ids():
    """Every id matching `q` and `status` (the picker's "all online", the page's "select all matching")."""
    query, status = _filters(request.args)
    row = one("SELECT coalesce(array_agg(device_id ORDER BY pos), '{}') AS ids FROM device_search(%s, %s, %s, 'name',"
              " false, NULL, 0)", [g.user["id"], query, status])
    return jsonify(device_ids=row["ids"], total=len(row["ids"]))


@bp.route("/api/devices", methods=["POST"])
@login_required
@accepts(NEW_DEVICE)
@returns(obj(device=DEVICE), status=201, description="Created")
def create(body):
    """Adds a device. JSON: device_name, optional min_delay_seconds, max_delay_seconds, hourly_limit, daily_limit."""
    if not body["device_name"].strip():
        abort(400, description="device_name is required")
    row = one("SELECT create_device(%s, %s, %s, %s, %s, %s) AS id",
              [g.user["id"], body["device_name"], *(body[k] for k in PACING.fields)])
    return jsonify(device=_device_or_404(row["id"])), 201


@bp.route("/api/devices/batch", methods=["POST"])
@login_required
@accepts(NEW_DEVICES)
@returns(obj(device_ids=INTEGERS, count=INTEGER), status=201, description="Created")
def create_many(body):
    """Adds `count` devices (1 to 5000) at once, named by `name_pattern` with "{n}" replaced by
    `first_number` (default 1), `first_number` + 1, ... ("Sales {n}"; without "{n}" the number is
    appended). Optional min_delay_seconds, max_delay_seconds, hourly_limit, daily_limit for all.
    Answers 201 with the new `device_ids`."""
    ids = one("SELECT create_devices(%s, %s, %s, %s, %s, %s, %s, %s) AS ids",
              [g.user["id"], body["count"], body["name_pattern"], body["first_number"],
               *(body[k] for k in PACING.fields)])["ids"]
    return jsonify(device_ids=ids, count=len(ids)), 201


@bp.route("/api/devices/<int:device_id>", methods=["PATCH"])
@login_required
@describes(SETTINGS)
@returns(obj(device=DEVICE))
def update(device_id):
    """Changes one device's settings. JSON: any of device_name, min_delay_seconds,
    max_delay_seconds, hourly_limit, daily_limit (absent or null: unchanged)."""
    _device_or_404(device_id)
    one("SELECT update_devices(%s, %s, %s)", [g.user["id"], [device_id], _settings(json_body())])
    return jsonify(device=_device_or_404(device_id))


@bp.route("/api/devices", methods=["PATCH"])
@login_required
@describes(SETTINGS.extended(device_ids=IntList(required=True)))
@returns(obj(updated=INTEGER))
def update_many():
    """Changes the settings of a selection at once. JSON: device_ids and any of min_delay_seconds,
    max_delay_seconds, hourly_limit, daily_limit. Checked first on every device: all change or none."""
    body = json_body()
    n = one("SELECT update_devices(%s, %s, %s) AS n", [g.user["id"], _device_ids(body), _settings(body)])["n"]
    return jsonify(updated=n)


@bp.route("/api/devices/<any(pause, resume):action>", methods=["POST"])
@login_required
@describes(SELECTION)
@returns(obj(changed=INTEGER))
def pause(action):
    """Pauses or resumes devices. JSON: device_ids. A paused device stays connected and keeps its
    queue; nothing is sent from it until it is resumed. Answers with how many `changed`."""
    n = one("SELECT set_devices_paused(%s, %s, %s) AS n",
            [g.user["id"], _device_ids(json_body()), action == "pause"])["n"]
    return jsonify(changed=n)


@bp.route("/api/devices/<int:device_id>", methods=["DELETE"])
@login_required
@returns(row("device_delete_doc"))
@returns(row("device_delete_doc"), status=202, description="Pending: the sender logs the device out first")
def delete(device_id):
    """Deletes a device. Its leads return to the AI pool, its waiting messages are skipped. An online
    device is logged out by its sender first (answer 202 with pending true); otherwise 200 with
    what happened (leads_to_pool, leads_merged_into_pool, messages_skipped, messages_in_flight)."""
    _device_or_404(device_id)
    result = one("SELECT request_device_delete(%s, %s) AS r", [g.user["id"], device_id])["r"]
    return jsonify(result), 202 if result.get("pending") else 200


PHONE = Body(phone=Text(description="pair-phone: the number to pair, country code first (digits)"))


def device_command(device_id, action):
    """Asks the sender running the device to pair (QR pushed live as device_pairing events),
    pair-phone (JSON: phone; the code is pushed live), simulate-scan (simulated transport only),
    logout or reconnect. Answers 202 with the command id; its outcome arrives as a device_command event."""
    _device_or_404(device_id)
    if action == "simulate-scan" and transport_name() != "sim":
        abort(409, description="simulate scan works only with the simulated transport (WA_TRANSPORT=sim)")
    phone = PHONE.parse(json_body())["phone"] if action == "pair-phone" else None
    row = one("SELECT request_device_command(%s, %s, %s, %s) AS id",
              [g.user["id"], device_id, COMMANDS[action], phone and "".join(ch for ch in phone if ch.isdigit())])
    return jsonify(command_id=row["id"]), 202


def _command_view(action):
    def view(device_id):
        return device_command(device_id, action)
    view.__doc__ = device_command.__doc__
    documented = returns(obj(command_id=INTEGER), status=202, description="Asked")(view)
    return login_required(describes(PHONE)(documented) if action == "pair-phone" else documented)


for _action in COMMANDS:
    bp.add_url_rule(f"/api/devices/<int:device_id>/{_action}", "command_" + _action.replace("-", "_"),
                    _command_view(_action), methods=["POST"])


@bp.route("/api/devices/<int:device_id>/qr.svg", methods=["POST"])
@login_required
@describes(Body(code=Text(required=True, max_length=1024, description="the QR payload of a device_pairing event")))
@returns(BINARY, media="image/svg+xml")
def qr_svg(device_id):
    """Renders a pairing QR payload (JSON: code, as pushed in a device_pairing event) as SVG. POST so
    the short-lived pairing secret never lands in a URL or an access log."""
    _device_or_404(device_id)
    code = json_body().get("code")
    if not isinstance(code, str) or not 0 < len(code) <= 1024:
        abort(400, description="code must be the QR payload string")
    out = io.BytesIO()
    segno.make_qr(code, error="l").save(out, kind="svg", scale=5, border=2)
    return Response(out.getvalue(), mimetype="image/svg+xml")
