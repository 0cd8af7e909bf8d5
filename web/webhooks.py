"""Webhook lead intake: POST /api/webhooks/leads with the owner's webhook secret in the
X-Webhook-Token header (never in the URL, which lands in access logs). Idempotent: the same
(owner, device, phone) merges into one lead. No session and no CSRF token: the secret is the
authentication."""
from flask import Blueprint, abort, jsonify, request

from web.db import one
from web.body import json_or_form
from web.leads import lead_fields

bp = Blueprint("webhooks", __name__)


@bp.route("/api/webhooks/leads", methods=["POST"])
def intake():
    """Lead intake for other systems: authenticated by your webhook secret in the X-Webhook-Token header, idempotent on (device, phone)."""
    secret = request.headers.get("X-Webhook-Token")
    user_id = one("SELECT token_user(%s, 'webhook') AS uid", [secret])["uid"] if secret else None
    if user_id is None:
        abort(401, description="send a live webhook secret in the X-Webhook-Token header (a ?token= in the URL is not accepted)")
    body = json_or_form()
    row = one("SELECT * FROM intake_lead(%s, %s, %s, %s, %s, %s, %s)", [user_id, *lead_fields(body)])
    return jsonify(id=row["lead_id"], created=row["created"]), 201 if row["created"] else 200
