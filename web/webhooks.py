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
from web.body import json_or_form
from web.db import all_rows, one
from web.leads import LEAD, lead_fields
from web.schema import BOOLEAN, INTEGER, Body, Bool, Text, TextList, accepts, describes, obj, optional_int, returns, row, rows

bp = Blueprint("webhooks", __name__)


@bp.route("/api/webhooks/leads", methods=["POST"])
@describes(LEAD)
@describes(LEAD, media="application/x-www-form-urlencoded")
@returns(obj(id=INTEGER, created=BOOLEAN), description="Merged into an existing lead")
@returns(obj(id=INTEGER, created=BOOLEAN), status=201, description="Created")
def intake():
    """Lead intake for other systems: authenticated by your webhook secret in the X-Webhook-Token header, idempotent on (device, phone)."""
    secret = request.headers.get("X-Webhook-Token")
    user_id = one("SELECT token_user(%s, 'webhook') AS uid", [secret])["uid"] if secret else None
    if user_id is None:
        abort(401, description="send a live webhook secret in the X-Webhook-Token header (a ?token= in the URL is not accepted)")
    body = json_or_form()
    row = one("SELECT * FROM intake_lead(%s, %s, %s, %s, %s, %s, %s)", [user_id, *lead_fields(body)])
    return jsonify(id=row["lead_id"], created=row["created"]), 201 if row["created"] else 200


# Outbound webhooks: the owner's endpoints, their deliveries, test events and redelivery ---------
# Which addresses endpoint URLs may reach when saved: the public internet only (tests add their
# loopback server); the deliverer checks again at every delivery.
ADDRESS_POLICY = guarded.is_public_address


_EVENTS = "event types: message.received, message.status, lead.replied, lead.opted_out, device.status, " \
          "campaign.finished, sequence.completed"
NEW_ENDPOINT = Body(url=Text(required=True, max_length=2048, fmt="uri", description="http(s), public address"),
                    events=TextList(required=True, description=_EVENTS), description=Text(max_length=200))
ENDPOINT_CHANGE = Body(url=Text(max_length=2048, fmt="uri"), events=TextList(description=_EVENTS),
                       description=Text(max_length=200), enabled=Bool())


def _public(url):
    """The URL when it reaches public addresses only (None stays None: unchanged)."""
    if url is not None:
        try:
            check_endpoint_url(url, ADDRESS_POLICY)
        except guarded.FetchError as exc:
            abort(400, description=str(exc))
    return url


def _of_owner(function, row_id, missing):
    """Calls an owner-scoped function that answers whether the row was the owner's; 404 when not."""
    if not one(f"SELECT {function}(%s, %s) AS ok", [g.user["id"], row_id])["ok"]:
        abort(404, description=missing)


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
@returns(obj(endpoints=rows("webhook_endpoint_list"), event_types={"type": "array", "items": {"type": "string"}}))
def endpoints():
    """Your outbound webhook endpoints: URL, signing secret, subscribed events, enabled, and deliveries by status."""
    return jsonify(endpoints=_endpoints(), event_types=one("SELECT webhook_event_types() AS t")["t"])


@bp.route("/api/webhook-endpoints", methods=["POST"])
@login_required
@accepts(NEW_ENDPOINT)
@returns(obj(endpoint=row("webhook_endpoint_list")), status=201, description="Created")
def create_endpoint(body):
    """Adds an endpoint. Body {url, events: [...], description}: the URL must reach a public address. Returns it with its new signing secret."""
    new_id = one("SELECT create_webhook_endpoint(%s, %s, %s, %s, %s) AS id",
                 [g.user["id"], _public(body["url"]), "whsec_" + secrets.token_hex(24), body["events"],
                  body["description"] or ""])["id"]
    return jsonify(endpoint=next(e for e in _endpoints() if e["id"] == new_id)), 201


@bp.route("/api/webhook-endpoints/<int:endpoint_id>", methods=["PATCH"])
@login_required
@accepts(ENDPOINT_CHANGE)
@returns(obj(endpoint=row("webhook_endpoint_list")))
def update_endpoint(endpoint_id, body):
    """Changes an endpoint: any of {url, events, description, enabled}."""
    if not one("SELECT update_webhook_endpoint(%s, %s, %s, %s, %s, %s) AS ok",
               [g.user["id"], endpoint_id, _public(body["url"]), body["events"], body["description"],
                body["enabled"]])["ok"]:
        abort(404, description="no such endpoint")
    return jsonify(endpoint=next(e for e in _endpoints() if e["id"] == endpoint_id))


@bp.route("/api/webhook-endpoints/<int:endpoint_id>", methods=["DELETE"])
@login_required
@returns(obj(deleted=BOOLEAN))
def delete_endpoint(endpoint_id):
    """Deletes an endpoint and its undelivered events."""
    _of_owner("delete_webhook_endpoint", endpoint_id, "no such endpoint")
    return jsonify(deleted=True)


@bp.route("/api/webhook-endpoints/<int:endpoint_id>/test", methods=["POST"])
@login_required
@returns(obj(queued=BOOLEAN), status=202, description="Queued")
def test_endpoint(endpoint_id):
    """Queues a webhook.test event to the endpoint (whatever its filter); its delivery shows in the deliveries."""
    _of_owner("send_test_webhook", endpoint_id, "no such endpoint")
    return jsonify(queued=True), 202


@bp.route("/api/webhook-deliveries")
@login_required
@returns(obj(deliveries=rows("webhook_delivery_list")))
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
@returns(obj(queued=BOOLEAN), status=202, description="Queued")
def redeliver(delivery_id):
    """Puts a dead-lettered delivery back in the outbox with a fresh retry window."""
    _of_owner("redeliver_webhook", delivery_id, "no such dead-lettered delivery")
    return jsonify(queued=True), 202
