"""Pages shared by every area: the overview, monitoring, the template helpers (times in the
user's zone) and the browser libraries installed by npm."""
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, g, jsonify, redirect, render_template, send_file, url_for

from common.config import ROOT, default_timezone
from web.auth import login_required
from web.db import all_rows, one
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


def monitoring_data():
    uid = g.user["id"]
    return {
        "queue": all_rows("SELECT * FROM monitor_queue_depth(%s)", [uid]),
        "senders": all_rows("SELECT * FROM monitor_senders(%s)", [uid]),
        "devices": all_rows("SELECT * FROM monitor_device_load(%s)", [uid]),
    }


@bp.route("/monitoring")
@login_required
def monitoring():
    return render_template("monitoring.html", data=monitoring_data())


@bp.route("/api/monitoring")
@login_required
@returns(obj(queue=rows("monitor_queue_depth"), senders=rows("monitor_senders"), devices=rows("monitor_device_load")))
def api_monitoring():
    """Queue depth per device, the senders running the owner's devices with their heartbeats,
    and each device's load against its hourly and daily caps."""
    return jsonify(monitoring_data())
