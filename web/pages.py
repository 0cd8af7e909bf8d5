"""Pages shared by every area: the overview, and the template helpers (times in the user's zone)."""
from zoneinfo import ZoneInfo

from flask import Blueprint, g, redirect, render_template, url_for

from common.config import default_timezone
from web.auth import login_required

bp = Blueprint("pages", __name__)


@bp.app_template_filter("localtime")
def localtime(value, fmt="%Y-%m-%d %H:%M"):
    """A timestamptz shown in the signed-in user's zone."""
    if value is None:
        return ""
    tz = ZoneInfo(g.user["timezone"] if getattr(g, "user", None) else default_timezone())
    return value.astimezone(tz).strftime(fmt)


@bp.route("/")
def index():
    return redirect(url_for("pages.dashboard"))


@bp.route("/dashboard")
@login_required
def dashboard():
    return render_template("dashboard.html")
