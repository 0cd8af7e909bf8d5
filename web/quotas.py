"""Per-account quotas (db/functions/quotas.sql): what you may have of each kind and how much you
use, and the administrators' settings (defaults and per-account overrides). Reaching a quota is a
403 with the reason, from whichever call would have gone past it."""
from flask import Blueprint, g, jsonify

from web.auth import admin_required, login_required
from web.db import all_rows, one
from web.schema import INTEGER, NULLABLE_INTEGER, Body, Int, Text, accepts, obj, returns, rows

bp = Blueprint("quotas", __name__)


@bp.route("/api/quotas")
@login_required
@returns(obj(quotas={"type": "object", "additionalProperties": obj(limit=NULLABLE_INTEGER, used=INTEGER),
                     "description": "by kind"}))
def mine():
    """Your quotas: for each kind (devices, leads, campaigns waiting or running, sequences, tokens, media) the limit and how many you have."""
    return jsonify(quotas={r["kind"]: {"limit": r["max_rows"], "used": r["used"]}
                           for r in all_rows("SELECT * FROM account_quotas(%s)", [g.user["id"]])})


@bp.route("/api/admin/quotas")
@admin_required
@returns(obj(quotas=rows("quota_settings")))
def settings():
    """Administrators: the default quotas (user_id null) and every per-account override."""
    return jsonify(quotas=all_rows("SELECT * FROM quota_settings(%s)", [g.user["id"]]))


@bp.route("/api/admin/quotas", methods=["PUT"])
@admin_required
@accepts(Body(kind=Text(required=True, description="devices, leads, campaigns, sequences, tokens or media"),
              max_rows=Int(description="null: back to the default"), user_id=Int(description="null: the default")))
@returns(obj(quotas=rows("quota_settings")))
def set_quota(body):
    """Administrators: sets one quota. Body {kind, max_rows, user_id}: without user_id the default for every account; with it that account's own limit (max_rows null: back to the default)."""
    one("SELECT set_quota(%s, %s, %s, %s)", [g.user["id"], body["user_id"], body["kind"], body["max_rows"]])
    return jsonify(quotas=all_rows("SELECT * FROM quota_settings(%s)", [g.user["id"]]))
