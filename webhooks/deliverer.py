"""The webhook deliverer: claims each endpoint's oldest due outbox row (claim_webhook_deliveries),
POSTs it signed (common/webhooks.py) through the guarded fetcher, and records the answer
(finish_webhook_delivery decides delivered / retry later / dead). Order, leases and back-off are
SQL's; this loop only moves bytes. Any number of deliverers may run against one database.

Killed mid-send, a deliverer loses nothing: the row stays pending and its endpoint's lease runs
out, so another attempt sends it again (at least once; the event id lets receivers deduplicate).

    python -m webhooks
"""
import json
import logging
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, fields

from common import fetch
from common.config import env, log_level, require_database_url
from common.webhooks import headers
from sender.reconnecting import reconnecting

log = logging.getLogger("webhooks")

# Which addresses endpoints may reach: the public internet only. Only a test's own launcher
# (tests/webhook_deliverer_loopback.py) replaces it; no setting can.
ADDRESS_POLICY = fetch.is_public_address
CHANNEL = "wa_webhooks"


@dataclass
class WebhookSettings:
    timeout_seconds: float = 10.0          # WEBHOOK_TIMEOUT_SECONDS: one attempt, connect to answer
    lease_seconds: float = 60.0            # WEBHOOK_LEASE_SECONDS: an endpoint's hold per attempt (> timeout)
    backoff_seconds: float = 10.0          # WEBHOOK_BACKOFF_SECONDS: first retry delay, doubled each time
    retry_window_seconds: float = 86400.0  # WEBHOOK_RETRY_WINDOW_SECONDS: then dead-lettered
    batch: int = 32                        # WEBHOOK_BATCH: endpoints served per claim
    threads: int = 8                       # WEBHOOK_THREADS: concurrent POSTs
    poll_seconds: float = 1.0              # WEBHOOK_POLL_SECONDS: longest sleep without a NOTIFY (retries)

    def __post_init__(self):
        if self.lease_seconds <= self.timeout_seconds:
            raise ValueError("WEBHOOK_LEASE_SECONDS must be longer than WEBHOOK_TIMEOUT_SECONDS")

    @classmethod
    def from_env(cls):
        values = {f.name: env(f"WEBHOOK_{f.name.upper()}") for f in fields(cls)}
        return cls(**{name: type(getattr(cls, name))(raw) for name, raw in values.items() if raw is not None})


def body_of(row):
    return json.dumps(row["payload"], separators=(",", ":"), ensure_ascii=False).encode()


def attempt(row, settings):
    """(HTTP status or None, error or None) for one POST of a claimed row."""
    body = body_of(row)
    try:
        status = fetch.post(row["url"], body,
                            headers(row["secret"], row["event_id"], row["event_type"], body, row["attempts"] + 1),
                            seconds=settings.timeout_seconds, allowed=ADDRESS_POLICY)
    except fetch.FetchError as exc:
        return None, str(exc)
    return status, None if 200 <= status < 300 else f"HTTP {status}"


class Deliverer:
    def __init__(self, url, settings):
        self.url, self.settings = url, settings
        self.stopping = threading.Event()

    def stop(self):
        self.stopping.set()

    def run(self):
        with ThreadPoolExecutor(self.settings.threads, thread_name_prefix="webhook") as pool:
            reconnecting(self.url, "wa-webhooks", lambda conn: self._loop(conn, pool), self.stopping)

    def _loop(self, conn, pool):
        s = self.settings
        conn.execute(f"LISTEN {CHANNEL}")
        while not self.stopping.is_set():
            rows = conn.execute("SELECT * FROM claim_webhook_deliveries(%s, %s)", [s.batch, s.lease_seconds]).fetchall()
            futures = {pool.submit(attempt, row, s): row for row in rows}
            for done in as_completed(futures):   # each endpoint is released as soon as its answer is in
                row, (status, error) = futures[done], done.result()
                outcome = conn.execute("SELECT finish_webhook_delivery(%s, %s, %s, %s, %s) AS status",
                                       [row["delivery_id"], status, error, s.backoff_seconds,
                                        s.retry_window_seconds]).fetchone()["status"]
                log.info("event %s (%s) to endpoint %s: %s -> %s", row["event_id"], row["event_type"],
                         row["endpoint_id"], status or error, outcome)
            if not rows:
                for _ in conn.notifies(timeout=s.poll_seconds, stop_after=1):
                    pass


def main():
    logging.basicConfig(level=log_level(),
                        format=f"%(asctime)s webhooks[{os.getpid()}] %(levelname)s %(message)s")
    deliverer = Deliverer(require_database_url(), WebhookSettings.from_env())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: deliverer.stop())
    deliverer.run()
