"""GET /healthz: database reachable and senders' heartbeats. No authentication, no user data."""
from flask import Blueprint, jsonify

from web.db import one

bp = Blueprint("health", __name__)


@bp.route("/healthz")
def healthz():
    try:
        row = one("SELECT * FROM system_health()")
    except Exception as exc:  # any failure to reach or query the database is "unhealthy"
        return jsonify(status="error", database=False, error=str(exc).splitlines()[0]), 503
    return jsonify(status="ok", database=True, senders_alive=row["senders_alive"],
                   senders_stale=row["senders_stale"], last_heartbeat_at=row["last_heartbeat_at"])
