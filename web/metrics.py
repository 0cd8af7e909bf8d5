"""GET /metrics: the whole system in the Prometheus text format, read from the metrics_* views
(db/views/70_metrics.sql) on every scrape. Protected by METRICS_TOKEN (Authorization: Bearer);
without it set, /metrics is off. No user data: counts, ages and sender ids only."""
import hmac

from flask import Blueprint, Response, abort, request
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from common.config import metrics_token
from web.db import all_rows, one

bp = Blueprint("metrics", __name__)


def _families():
    messages = GaugeMetricFamily("wa_messages", "Messages by status: pending and queued now; sent and failed ever.",
                                 labels=["status"])
    for r in all_rows("SELECT status, messages FROM metrics_messages"):
        messages.add_metric([r["status"]], r["messages"])
    queue = one("SELECT due_now, scheduled_later, oldest_due_age_seconds FROM metrics_queue")
    depth = GaugeMetricFamily("wa_queue_depth", "Pending messages, due now or scheduled later (held excluded).",
                              labels=["when"])
    depth.add_metric(["due_now"], queue["due_now"])
    depth.add_metric(["scheduled_later"], queue["scheduled_later"])
    devices = GaugeMetricFamily("wa_devices", "Devices by status.", labels=["status"])
    for r in all_rows("SELECT status, devices FROM metrics_devices"):
        devices.add_metric([r["status"]], r["devices"])
    heartbeat = GaugeMetricFamily("wa_sender_heartbeat_age_seconds", "Seconds since each sender's heartbeat.",
                                  labels=["sender"])
    alive = GaugeMetricFamily("wa_sender_alive", "1 while a sender's heartbeat is fresh and it is not stopping.",
                              labels=["sender"])
    leased = GaugeMetricFamily("wa_sender_devices_leased", "Devices each sender leases.", labels=["sender"])
    claims = CounterMetricFamily("wa_sender_claims", "Claim batches each sender made.", labels=["sender"])
    claim_rows = CounterMetricFamily("wa_sender_claim_rows", "Messages each sender's claims returned.", labels=["sender"])
    claim_seconds = CounterMetricFamily("wa_sender_claim_seconds", "Seconds each sender spent claiming "
                                        "(divide by wa_sender_claims_total for the batch latency).", labels=["sender"])
    for r in all_rows("SELECT * FROM metrics_senders ORDER BY sender_id"):
        label = [r["sender_id"]]
        heartbeat.add_metric(label, r["heartbeat_age_seconds"])
        alive.add_metric(label, int(r["alive"]))
        leased.add_metric(label, r["devices_leased"])
        claims.add_metric(label, r["claims"])
        claim_rows.add_metric(label, r["claim_rows"])
        claim_seconds.add_metric(label, r["claim_seconds"])
    hooks = one("SELECT pending, dead, oldest_pending_age_seconds FROM metrics_webhooks")
    backlog = GaugeMetricFamily("wa_webhook_deliveries", "Webhook deliveries waiting (pending) and dead-lettered.",
                                labels=["status"])
    backlog.add_metric(["pending"], hooks["pending"])
    backlog.add_metric(["dead"], hooks["dead"])
    return [messages, depth,
            GaugeMetricFamily("wa_queue_oldest_due_age_seconds", "How long the oldest due message has waited.",
                              value=queue["oldest_due_age_seconds"]),
            devices, heartbeat, alive, leased, claims, claim_rows, claim_seconds, backlog,
            GaugeMetricFamily("wa_webhook_oldest_pending_age_seconds", "Age of the oldest waiting webhook delivery.",
                              value=hooks["oldest_pending_age_seconds"])]


class _Scrape:
    """One scrape's figures, as a prometheus_client collector."""

    def collect(self):
        return _families()


@bp.route("/metrics")
def metrics():
    token = metrics_token()
    if token is None:
        abort(404, description="metrics are off: set METRICS_TOKEN")
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        abort(401, description="send Authorization: Bearer <METRICS_TOKEN>")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Scrape())
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
