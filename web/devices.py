"""Devices: the /devices page (live status, QR and phone-code pairing, simulate scan in demo mode,
logout, delete) and its JSON API. The web never touches a WhatsApp connection: pairing, logout
and reconnect are device_commands rows that the sender holding the device carries out."""
import io

import segno
from flask import Blueprint, Response, abort, g, jsonify, render_template, request

from common.config import transport_name
from web.auth import login_required
from web.db import all_rows, one

bp = Blueprint("devices", __name__)

COMMANDS = {"pair": "pair", "pair-phone": "pair_phone", "simulate-scan": "simulate_scan",
            "logout": "logout", "reconnect": "reconnect"}
HEALTH_COLUMNS = ("device_id, device_name, phone, jid, status, status_reason, status_changed_at, banned_until, "
                  "last_seen, running, silent, disconnects_24h, reconnects_24h, bans_total, send_failures_24h, "
                  "open_command, created_at")


def _devices(device_id=None):
    sql = f"SELECT {HEALTH_COLUMNS} FROM device_health WHERE user_id = %s"
    params = [g.user["id"]]
    if device_id is not None:
        sql += " AND device_id = %s"
        params.append(device_id)
    return all_rows(sql + " ORDER BY device_id", params)


def _device_or_404(device_id):
    rows = _devices(device_id)
    if not rows:
        abort(404, description="device not found")
    return rows[0]


def _json(row):
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}


def _body():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, description="send a JSON object")
    return data


@bp.route("/devices")
@login_required
def page():
    return render_template("devices/index.html", devices=_devices(), simulated=transport_name() == "sim")


@bp.route("/api/devices")
@login_required
def list_devices():
    """The owner's devices with status, last seen and health counts (view device_health)."""
    return jsonify(devices=[_json(r) for r in _devices()])


@bp.route("/api/devices", methods=["POST"])
@login_required
def create():
    """Adds a device. JSON: device_name, optional min_delay_seconds, max_delay_seconds, hourly_limit, daily_limit."""
    data = _body()
    name = data.get("device_name")
    if not isinstance(name, str) or not name.strip():
        abort(400, description="device_name is required")
    try:
        pacing = [int(data.get(k, d)) for k, d in (("min_delay_seconds", 30), ("max_delay_seconds", 60),
                                                   ("hourly_limit", 80), ("daily_limit", 800))]
    except (TypeError, ValueError):
        abort(400, description="delays and limits must be whole numbers")
    row = one("SELECT create_device(%s, %s, %s, %s, %s, %s) AS id", [g.user["id"], name, *pacing])
    return jsonify(device=_json(_device_or_404(row["id"]))), 201


@bp.route("/api/devices/<int:device_id>", methods=["PATCH"])
@login_required
def rename(device_id):
    """Renames a device. JSON: device_name."""
    _device_or_404(device_id)
    name = _body().get("device_name")
    if not isinstance(name, str):
        abort(400, description="device_name is required")
    one("SELECT rename_device(%s, %s, %s)", [g.user["id"], device_id, name])
    return jsonify(device=_json(_device_or_404(device_id)))


@bp.route("/api/devices/<int:device_id>", methods=["DELETE"])
@login_required
def delete(device_id):
    """Deletes a device. Its leads return to the AI pool, its waiting messages are skipped. An online
    device is logged out by its sender first (answer 202 with pending true); otherwise 200 with
    what happened (leads_to_pool, leads_merged_into_pool, messages_skipped, messages_in_flight)."""
    _device_or_404(device_id)
    result = one("SELECT request_device_delete(%s, %s) AS r", [g.user["id"], device_id])["r"]
    return jsonify(result), 202 if result.get("pending") else 200


def device_command(device_id, action):
    """Asks the sender running the device to pair (QR pushed live as device_pairing events),
    pair-phone (JSON: phone; the code is pushed live), simulate-scan (simulated transport only),
    logout or reconnect. Answers 202 with the command id; its outcome arrives as a device_command event."""
    _device_or_404(device_id)
    if action == "simulate-scan" and transport_name() != "sim":
        abort(409, description="simulate scan works only with the simulated transport (WA_TRANSPORT=sim)")
    phone = _body().get("phone") if action == "pair-phone" else None
    if phone is not None and not isinstance(phone, str):
        abort(400, description="phone must be a string of digits")
    row = one("SELECT request_device_command(%s, %s, %s, %s) AS id",
              [g.user["id"], device_id, COMMANDS[action], phone and "".join(ch for ch in phone if ch.isdigit())])
    return jsonify(command_id=row["id"]), 202


def _command_view(action):
    def view(device_id):
        return device_command(device_id, action)
    view.__doc__ = device_command.__doc__
    return login_required(view)


for _action in COMMANDS:
    bp.add_url_rule(f"/api/devices/<int:device_id>/{_action}", "command_" + _action.replace("-", "_"),
                    _command_view(_action), methods=["POST"])


@bp.route("/api/devices/<int:device_id>/qr.svg", methods=["POST"])
@login_required
def qr_svg(device_id):
    """Renders a pairing QR payload (JSON: code, as pushed in a device_pairing event) as SVG. POST so
    the short-lived pairing secret never lands in a URL or an access log."""
    _device_or_404(device_id)
    code = _body().get("code")
    if not isinstance(code, str) or not 0 < len(code) <= 1024:
        abort(400, description="code must be the QR payload string")
    out = io.BytesIO()
    segno.make_qr(code, error="l").save(out, kind="svg", scale=5, border=2)
    return Response(out.getvalue(), mimetype="image/svg+xml")
