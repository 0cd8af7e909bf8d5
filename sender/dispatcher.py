"""The dispatch loop: claim -> send -> complete, fail or release.

It claims within the in-flight cap for the devices this sender leases, hands each device's rows
to the send pool (one device's rows in order: a phone sends one message at a time), and writes
the results back in batches. It hands the pool at most two rounds of its threads at a time, each
after marking in the database how far it may have begun (the claim itself, or sender_may_begin):
if this process dies, what it claimed and never began goes back to the queue rather than being
failed as stuck. It sleeps on a wake-up event (NOTIFY, results, or the earliest next allowed send,
polling at least every poll_seconds).

Transport outcomes (sender/transport/base.py) map to the queue: a SendResult completes the row,
NotSent releases it back to the queue (it never left), SendError fails it with its reason
(Undeliverable ones, a number not on WhatsApp or a missing image, without counting against the device).
"""
import logging
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import psycopg

from common.db import array_literal
from sender.media import MediaError, prepare_image
from sender.transport.base import NotSent, OutgoingMessage, SendError, Undeliverable

log = logging.getLogger("sender.dispatcher")

# Rows claimed this long before the stuck timeout are failed rather than sent: recover_stuck may
# already have failed them, and a send after that would make the record lie.
STUCK_MARGIN = timedelta(seconds=30)


class Dispatcher:
    def __init__(self, sender_id, settings, transport, registry, stopping: threading.Event):
        self.sender_id, self.settings, self.transport, self.registry = sender_id, settings, transport, registry
        self.stopping = stopping
        self.wake = threading.Event()         # work may be available
        self.pool = ThreadPoolExecutor(settings.send_threads, thread_name_prefix="send")
        self.stuck_after = timedelta(seconds=settings.stuck_seconds) - STUCK_MARGIN
        self.stop_requested_at = None
        self._results = deque()               # (message id, device id, outcome, wa id or error)
        self._in_flight = 0                   # claimed, result not yet written (this thread only)
        self._waiting = deque()               # claimed, not yet begun: ((claimed_at, device id), rows)
        self._begun = 0                       # device groups handed to the send pool, not yet done
        self._begun_lock = threading.Lock()
        self._given_up = False                # the database gave this sender up: it begins nothing more
        self._stopping_marked = False
        self._claims = {"claims": 0, "rows": 0, "seconds": 0.0}   # running totals, for GET /metrics
        self._claims_reported_at = 0.0

    def drain_overdue(self):
        overdue = (self.stop_requested_at is not None
                   and time.monotonic() - self.stop_requested_at > self.settings.drain_seconds)
        if overdue:
            log.error("in-flight sends did not finish within %ss; stopping anyway (stuck recovery fails them)",
                      self.settings.drain_seconds)
        return overdue

    def run(self, conn):
        """Until stopped and drained; raises OperationalError when the database goes away (the
        caller reconnects and runs it again: unwritten results are kept)."""
        s = self.settings
        while True:
            self.wake.clear()
            self._write_results(conn)
            self._begin_waiting(conn)
            if self.stopping.is_set():
                if self._in_flight == 0 or self.drain_overdue():
                    self._release_waiting(conn)
                    return
                if not self._stopping_marked:
                    conn.execute("SELECT sender_stopping(%s)", [self.sender_id])
                    self._stopping_marked = True
                self.wake.wait(0.05)
                continue
            room = s.in_flight - self._in_flight
            want = min(room, s.claim_batch)
            # Claim when a real batch fits (or nothing is in flight): many tiny claims cost more.
            if (want > 0 and (self._in_flight == 0 or want >= s.claim_batch // 4) and self.registry.any_running()
                    and not self._given_up):
                started = time.monotonic()
                begin = 0 if self._waiting else max(0, self._room())   # in claim order: none ahead of waiting ones
                try:
                    rows = conn.execute("SELECT * FROM claim_messages(%s, %s, %s, %s)",
                                        [self.sender_id, want, s.per_device, begin]).fetchall()
                except psycopg.errors.ObjectNotInPrerequisiteState:
                    self._drop_waiting()
                    continue
                self._count_claim(conn, len(rows), time.monotonic() - started)
                if rows:
                    self._hold(rows)
                    self._begin(min(begin, len(self._waiting)))   # marked by the claim itself
                    self._begin_waiting(conn)
                if len(rows) == want:
                    continue
                timeout = self._idle_timeout(conn) if not rows and self._in_flight == 0 else s.poll_seconds
            else:
                timeout = s.poll_seconds
            self.wake.wait(timeout)

    def _count_claim(self, conn, rows, seconds):
        """Adds one claim to the totals; writes them at most once per heartbeat interval."""
        c = self._claims
        c["claims"], c["rows"], c["seconds"] = c["claims"] + 1, c["rows"] + rows, c["seconds"] + seconds
        if time.monotonic() - self._claims_reported_at >= self.settings.heartbeat_seconds:
            conn.execute("SELECT record_claim_stats(%s, %s, %s, %s)",
                         [self.sender_id, c["claims"], c["rows"], c["seconds"]])
            self._claims_reported_at = time.monotonic()

    def close(self):
        self.pool.shutdown(wait=True)

    def _idle_timeout(self, conn):
        """Sleep until the earliest next allowed send, at most poll_seconds."""
        nxt = conn.execute("SELECT next_dispatch_at(%s) AS at", [self.sender_id]).fetchone()["at"]
        if nxt is None:
            return self.settings.poll_seconds
        wait = (nxt - datetime.now(timezone.utc)).total_seconds()
        # Due already but nothing claimable: caps or a lock hold it; look again at the poll.
        return self.settings.poll_seconds if wait <= 0 else min(wait + 0.001, self.settings.poll_seconds)

    def _hold(self, rows):
        """A claim's rows, one group per device in device order, to begin in turn (_begin_waiting)."""
        by_device = defaultdict(list)
        for row in rows:
            by_device[row["device_id"]].append(row)
        self._in_flight += len(rows)
        for device_id in sorted(by_device):
            device_rows = by_device[device_id]
            self.registry.claimed(device_id, [row["id"] for row in device_rows])
            self._waiting.append(((device_rows[0]["claimed_at"], device_id), device_rows))

    def _begin_waiting(self, conn):
        """Hands waiting groups to the send pool, at most two rounds of its threads ahead, once the
        database knows this sender may have begun them (sender_may_begin)."""
        room = self._room()
        if room <= 0 or not self._waiting:
            return
        (claimed_at, device_id), _ = self._waiting[min(room, len(self._waiting)) - 1]
        may = conn.execute("SELECT sender_may_begin(%s, %s, %s) AS ok",
                           [self.sender_id, claimed_at, device_id]).fetchone()["ok"]
        if not may:
            self._drop_waiting()
            return
        self._begin(min(room, len(self._waiting)))

    def _room(self):
        """Device groups the send pool may take now: two rounds of its threads, less those it has."""
        with self._begun_lock:
            return 2 * self.settings.send_threads - self._begun

    def _begin(self, n):
        """Hands the first n waiting groups, marked as begun, to the send pool."""
        with self._begun_lock:
            self._begun += n
        for _ in range(n):
            _, device_rows = self._waiting.popleft()
            self.pool.submit(self._send_device_rows, device_rows)

    def _release_waiting(self, conn):
        """Stopping before the send threads took everything: what they never began goes back now."""
        ids = [row["id"] for _, rows in self._waiting for row in rows]
        if ids:
            conn.execute("SELECT release_messages(%s, %s::bigint[], %s)",
                         [self.sender_id, array_literal(ids), timedelta(0)])
            self._forget_waiting()

    def _drop_waiting(self):
        """Given up (silent past its lease): the queue took back everything not begun; forget it."""
        log.error("sender %s was given up (silent past its lease): the %s claimed messages it had not begun went "
                  "back to the queue", self.sender_id, sum(len(rows) for _, rows in self._waiting))
        self._given_up = True
        self._forget_waiting()

    def _forget_waiting(self):
        for _, rows in self._waiting:
            self._in_flight -= len(rows)
            for row in rows:
                self.registry.settled(row["device_id"], row["id"])
        self._waiting.clear()

    def _send_device_rows(self, rows):
        """One device's rows, in order (a phone sends one message at a time)."""
        try:
            self._send_rows(rows)
        finally:
            with self._begun_lock:
                self._begun -= 1
            self.wake.set()

    def _send_rows(self, rows):
        for row in rows:
            try:
                result = ("sent", self._send_one(row))
            except NotSent as exc:
                result = ("not_sent", str(exc))
            except SendError as exc:
                result = ("failed", str(exc))
            except Exception as exc:  # noqa: BLE001 - a transport bug fails the message, not the worker
                log.exception("send of message %s crashed", row["id"])
                result = ("failed", f"send crashed: {exc!r}"[:500])
            self._results.append((row["id"], row["device_id"]) + result)
            self.wake.set()

    def _send_one(self, row):
        if datetime.now(timezone.utc) - row["claimed_at"] > self.stuck_after:
            raise SendError("not sent: claimed too long ago (stuck timeout), it may already be failed")
        try:
            image = prepare_image(row["media_url"]) if row["message_type"] == "image" else None
        except MediaError as exc:   # the campaign's image, not the device: says nothing about its health
            raise Undeliverable(str(exc)) from exc
        result = self.transport.send(OutgoingMessage(row["id"], row["device_id"], row["recipient_phone"],
                                                     row["content"], image))
        return result.wa_message_id

    def _write_results(self, conn):
        results = []
        while self._results:
            results.append(self._results.popleft())
        if not results:
            return
        by_outcome = defaultdict(list)
        for message_id, _, outcome, detail in results:
            by_outcome[outcome].append((message_id, detail))
        try:
            if by_outcome["sent"]:
                ids, wa_ids = zip(*by_outcome["sent"])
                conn.execute("SELECT complete_messages(%s, %s::bigint[], %s::text[])",
                             [self.sender_id, array_literal(ids), array_literal(wa_ids)])
            if by_outcome["failed"]:
                ids, errors = zip(*by_outcome["failed"])
                conn.execute("SELECT fail_messages(%s, %s::bigint[], %s::text[])",
                             [self.sender_id, array_literal(ids), array_literal(errors)])
            if by_outcome["not_sent"]:
                ids, _ = zip(*by_outcome["not_sent"])
                conn.execute("SELECT release_messages(%s, %s::bigint[], %s)",
                             [self.sender_id, array_literal(ids),
                              timedelta(seconds=self.settings.not_sent_hold_seconds)])
        except psycopg.OperationalError:
            self._results.extendleft(reversed(results))  # guarded writes: retrying is safe
            raise
        self._in_flight -= len(results)
        for message_id, device_id, _, _ in results:
            self.registry.settled(device_id, message_id)
