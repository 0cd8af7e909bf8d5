"""Outbound webhooks' shared rules: how a delivery is signed (and verified, by receivers and
tests) and which endpoint URLs are acceptable — the guarded fetcher's: public addresses only.

Each POST carries the event's JSON and
    X-Webhook-Id: <event id>         the same on every retry: receivers deduplicate by it
    X-Webhook-Event: <type>
    X-Webhook-Timestamp: <unix seconds>
    X-Webhook-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
"""
import hashlib
import hmac
import time

from common import fetch


def signature(secret, timestamp, body):
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def headers(secret, event_id, event_type, body, attempt, now=None):
    timestamp = int(now if now is not None else time.time())
    return {"Content-Type": "application/json", "User-Agent": "wa-broadcast-webhooks/1",
            "X-Webhook-Id": str(event_id), "X-Webhook-Event": event_type,
            "X-Webhook-Attempt": str(attempt), "X-Webhook-Timestamp": str(timestamp),
            "X-Webhook-Signature": signature(secret, timestamp, body)}


def verify(secret, header_map, body, tolerance_seconds=300, now=None):
    """True when the signature matches and the timestamp is recent (what a receiver checks)."""
    try:
        timestamp = int(header_map["X-Webhook-Timestamp"])
    except (KeyError, TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_seconds:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), header_map.get("X-Webhook-Signature", ""))


def check_endpoint_url(url, allowed=fetch.is_public_address):
    """FetchError unless the URL is an http(s) URL whose host resolves to allowed addresses only."""
    parts, port = fetch.check_url(url, "endpoint URL")
    fetch.resolve(parts.hostname, port, allowed)
