"""Webhooks. In: lead intake, POST /api/webhooks/leads with the owner's webhook secret in the
X-Webhook-Token header (never in the URL, which lands in access logs). Idempotent: the same
(owner, device, phone) merges into one lead. No session and no CSRF token: the secret is the
authentication. Out: the owner's endpoints for outbound events (the outbox and its deliverer are
db/functions/webhooks.sql and webhooks/), their deliveries, test events and redelivery."""
import secrets

from flask import Blueprint, abort, g, jsonify, render_template, request

from common import fetch as guarded
from common.webhooks import check_endpoint_url
from web.auth import login_required
from web.db import all_rows, one
from web.leads import json_body, lead_fields, optional_int, text

bp = Blueprint("webhooks", __name__)


@bp.route("/api/webhooks/leads", methods=["POST"])
def intake():
    """Lead intake for other systems: authenticated by your webhook secret in the X-Webhook-Token header, idempotent on (device, phone)."""
    secret = request.headers.get("X-Webhook-Token")
    user_id = one("SELECT token_user(%s, 'webhook') AS uid", [secret])["uid"] if secret else None
    if user_id is None:
        abort(401, description="send a live webhook secret in the X-Webhook-Token header (a ?token= in the URL is not accepted)")
    body = json_body() if request.is_json else request.form
    row = one("SELECT * FROM intake_lead(%s, %s, %s, %s, %s, %s, %s)", [user_id, *lead_fields(body)])
    return jsonify(id=row["lead_id"], created=row["created"]), 201 if row["created"] else 200


# Outbound webhooks: the owner's endpoints, their deliveries, test events and redelivery ---------
# Which addresses endpoint URLs may reach when saved: the public internet only (tests add their
# loopback server); the deliverer checks again at every delivery.
ADDRESS_POLICY = guarded.is_public_address


def _endpoint_url(body, required):
    url = text(body, "url", None)
    if url is None and not required:
        return None
    try:
        check_endpoint_url(url, ADDRESS_POLICY)
    except guarded.FetchError as exc:
        abort(400, description=str(exc))
    return url


def _events(body, required):
    events = body.get("events")
    if events is None and not required:
        return None
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        abort(400, description="events must be a list of event names")
    return events


def _endpoints():
    return all_rows("SELECT * FROM webhook_endpoint_list(%s)", [g.user["id"]])


@bp.route("/webhooks")
@login_required
def page():
    return render_template("webhooks.html", endpoints=_endpoints(),
                           event_types=one("SELECT webhook_event_types() AS t")["t"],
                           deliveries=all_rows("SELECT * FROM webhook_delivery_list(%s, NULL, NULL, 50)", [g.user["id"]]))


@bp.route("/api/webhook-endpoints")
@login_required
def endpoints():
    """Your outbound webhook endpoints: URL, signing secret, subscribed events, enabled, and deliveries by status."""
    return jsonify(endpoints=_endpoints(), event_types=one("SELECT webhook_event_types() AS t")["t"])


@bp.route("/api/webhook-endpoints", methods=["POST"])
@login_required
def create_endpoint():
    """Adds an endpoint. Body {url, events: [...], description}: the URL must reach a public address. Returns it with its new signing secret."""
    body = json_body()
    url, events = _endpoint_url(body, True), _events(body, True)
    new_id = one("SELECT create_webhook_endpoint(%s, %s, %s, %s, %s) AS id",
                 [g.user["id"], url, "whsec_" + secrets.token_hex(24), events, text(body, "description") or ""])["id"]
    return jsonify(endpoint=next(e for e in _endpoints() if e["id"] == new_id)), 201


@bp.route("/api/webhook-endpoints/<int:endpoint_id>", methods=["PATCH"])
@login_required
def update_endpoint(endpoint_id):
    """Changes an endpoint: any of {url, events, description, enabled}."""
    body = json_body()
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        abort(400, description="enabled must be true or false")
    if not one("SELECT update_webhook_endpoint(%s, %s, %s, %s, %s, %s) AS ok",
               [g.user["id"], endpoint_id, _endpoint_url(body, False), _events(body, False),
                text(body, "description", None), enabled])["ok"]:
        abort(404, description="no such endpoint")
    return jsonify(endpoint=next(e for e in _endpoints() if e["id"] == endpoint_id))


@bp.route("/api/webhook-endpoints/<int:endpoint_id>", methods=["DELETE"])
@login_required
def delete_endpoint(endpoint_id):
    """Deletes an endpoint and its undelivered events."""
    if not one("SELECT delete_webhook_endpoint(%s, %s) AS ok", [g.user["id"], endpoint_id])["ok"]:
        abort(404, description="no such endpoint")
    return jsonify(deleted=True)


@bp.route("/api/webhook-endpoints/<int:endpoint_id>/test", methods=["POST"])
@login_required
def test_endpoint(endpoint_id):
    """Queues a webhook.test event to the endpoint (whatever its filter); its delivery shows in the deliveries."""
    if not one("SELECT send_test_webhook(%s, %s) AS ok", [g.user["id"], endpoint_id])["ok"]:
        abort(404, description="no such endpoint")
    return jsonify(queued=True), 202


@bp.route("/api/webhook-deliveries")
@login_required
def deliveries():
    """Your most recent webhook deliveries, newest first, with attempts and the last HTTP status; ?endpoint_id=, ?status=pending|delivered|dead (dead: the dead-letter list), ?limit= (at most 500)."""
    status = request.args.get("status") or None
    if status not in (None, "pending", "delivered", "dead"):
        abort(400, description="status must be pending, delivered or dead")
    return jsonify(deliveries=all_rows(
        "SELECT * FROM webhook_delivery_list(%s, %s, %s, %s)",
        [g.user["id"], optional_int(request.args.get("endpoint_id"), "endpoint_id"), status,
         optional_int(request.args.get("limit"), "limit")]))


@bp.route("/api/webhook-deliveries/<int:delivery_id>/redeliver", methods=["POST"])
@login_required
def redeliver(delivery_id):
    """Puts a dead-lettered delivery back in the outbox with a fresh retry window."""
    if not one("SELECT redeliver_webhook(%s, %s) AS ok", [g.user["id"], delivery_id])["ok"]:
        abort(404, description="no such dead-lettered delivery")
    return jsonify(queued=True), 202
