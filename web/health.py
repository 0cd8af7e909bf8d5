"""GET /healthz: database reachable and senders' heartbeats. No authentication, no user data."""
import logging

from flask import Blueprint, jsonify

from web.db import one

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.route("/healthz")
def healthz():
    try:
        row = one("SELECT * FROM system_health()")
    except Exception:  # any failure to reach or query the database is "unhealthy"
        # Not the driver's text: it names hosts, ports and users to whoever asks.
        log.exception("health check: the database cannot be queried")
        return jsonify(status="error", database=False, error="database unavailable"), 503
    return jsonify(status="ok", database=True, senders_alive=row["senders_alive"],
                   senders_stale=row["senders_stale"], last_heartbeat_at=row["last_heartbeat_at"])
