"""Pages shared by every area: the overview, monitoring, the template helpers (times in the
user's zone) and the browser libraries installed by npm."""
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, g, jsonify, redirect, render_template, request, send_file, url_for

from common.config import ROOT, default_timezone
from web.auth import login_required
from web.db import all_rows, one
from web.devices import SORTS, STATUSES, device_listing
from web.schema import DATE_TIME, INTEGER, STRING, array, obj, returns, rows

bp = Blueprint("pages", __name__)

# Files served from node_modules (installed by scripts/bootstrap.sh with `npm ci`), by public name.
VENDOR_FILES = {"chart.js": ROOT / "node_modules/chart.js/dist/chart.umd.min.js"}


@bp.app_template_filter("localtime")
def localtime(value, fmt="%Y-%m-%d %H:%M"):
    """A timestamptz shown in the signed-in user's zone."""
    if value is None:
        return ""
    tz = ZoneInfo(g.user["timezone"] if getattr(g, "user", None) else default_timezone())
    return value.astimezone(tz).strftime(fmt)


@bp.route("/vendor/<name>")
def vendor(name):
    path = VENDOR_FILES.get(name)
    if path is None or not path.exists():
        abort(404, description=f"{name} is not installed (run scripts/bootstrap.sh)")
    return send_file(path, mimetype="text/javascript", max_age=86400)


@bp.route("/")
def index():
    return redirect(url_for("pages.dashboard"))


def overview_figures(uid):
    """What every message moves: today's counts and the last 24 hours."""
    today = one("SELECT * FROM dashboard_today(%s)", [uid])
    hourly = all_rows("SELECT * FROM dashboard_hourly(%s, 24)", [uid])
    return {
        "today": {k: today[k] for k in ("sent", "failed", "pending", "in_flight")},
        "day_start": today["day_start"].isoformat(),
        "hourly": [{"hour": localtime(h["hour_start"], "%H:00"), "hour_start": h["hour_start"].isoformat(),
                    "sent": h["sent"], "failed": h["failed"]} for h in hourly],
    }


def overview_data():
    uid = g.user["id"]
    return {
        **overview_figures(uid),
        "devices_by_status": {r["status"]: r["devices"] for r in all_rows(
            "SELECT * FROM dashboard_devices_by_health(%s)", [uid])},
        "devices_by_score": {r["band"]: r["devices"] for r in all_rows(
            "SELECT * FROM device_health_distribution(%s)", [uid])},
    }


@bp.route("/dashboard")
@login_required
def dashboard():
    return render_template("dashboard.html", data=overview_data())


FIGURES = dict(today=obj(sent=INTEGER, failed=INTEGER, pending=INTEGER, in_flight=INTEGER), day_start=DATE_TIME,
               hourly=array(obj(hour=STRING, hour_start=DATE_TIME, sent=INTEGER, failed=INTEGER)))


@bp.route("/api/overview")
@login_required
@returns(obj(**FIGURES, devices_by_status={"type": "object", "additionalProperties": INTEGER},
             devices_by_score={"type": "object", "additionalProperties": INTEGER}))
def api_overview():
    """Today's sent, failed and pending messages (owner's day), messages per hour over the last
    24 hours, and the owner's devices counted by status and by health score band (0-24 ... 75-100)."""
    return jsonify(overview_data())


@bp.route("/api/overview/figures")
@login_required
@returns(obj(**FIGURES))
def api_overview_figures():
    """The overview's message figures alone (today's and per hour, as in /api/overview), which every
    message moves: the page refetches these on message events, and the devices by status and health
    band (a health score reads each device's last two days: 250 ms for 3,000 busy devices) on device
    events and every minute."""
    return jsonify(overview_figures(g.user["id"]))


def monitoring_data(args):
    """A page of the owner's devices (the devices page's query: a fleet is thousands of devices, and the
    page refetches itself every 2 s while a campaign sends) with each one's queue and load, the owner's
    whole queue (the overview's figures) and the senders running the owner's devices."""
    uid = g.user["id"]
    listing = device_listing(args, lambda *query: all_rows(
        "SELECT device_id, total FROM device_search(%s, %s, %s, %s, %s, %s, %s)", [uid, *query]))
    ids = [d["device_id"] for d in listing.pop("devices")]
    position = {device_id: i for i, device_id in enumerate(ids)}

    def in_page_order(sql):
        # Planned for the page's devices each time: a plan kept for the statement would compare every
        # device of the owner with the page's list (3,000 devices: queue figures 9-16 ms p50, not 4-6).
        return sorted(all_rows(sql, [uid, ids], prepare=False), key=lambda r: position[r["device_id"]])

    today = one("SELECT pending, in_flight FROM dashboard_today(%s)", [uid])
    return {
        "queue": in_page_order("SELECT * FROM monitor_queue_depth(%s, %s::bigint[])"),
        "senders": all_rows("SELECT * FROM monitor_senders(%s)", [uid]),
        "devices": in_page_order("SELECT * FROM monitor_device_load(%s, %s::bigint[])"),
        "waiting": today["pending"], "in_flight": today["in_flight"],
        **listing,
    }


@bp.route("/monitoring")
@login_required
def monitoring():
    data = monitoring_data(request.args)
    return render_template("monitoring.html", data=data, sorts=SORTS, statuses=STATUSES,
                           **{k: data[k] for k in ("total", "page", "per_page", "pages", "q", "status", "sort", "dir")})


@bp.route("/api/monitoring")
@login_required
@returns(obj(queue=rows("monitor_queue_depth"), senders=rows("monitor_senders"), devices=rows("monitor_device_load"),
             waiting=INTEGER, in_flight=INTEGER, total=INTEGER, page=INTEGER, per_page=INTEGER, pages=INTEGER,
             q=STRING, status=STRING, sort=STRING, dir=STRING))
def api_monitoring():
    """One page of the owner's devices with each one's queue depth and load against its hourly and daily
    caps, the owner's whole queue (`waiting`, `in_flight`: every device), and the senders running the
    owner's devices with their heartbeats.

    Query as `GET /api/devices`: `q`, `status`, `sort`, `dir`, `page` (from 1), `per_page` (at most 500,
    default 50). The answer has `total` (devices that match), `page`, `pages`."""
    return jsonify(monitoring_data(request.args))
