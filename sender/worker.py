"""One sender worker process: leases devices, runs them on a transport, and moves their messages
through the queue: claim -> send -> complete/fail.

Threads:
- dispatch (the caller of run()): claims within the in-flight cap, hands each device's rows to the
  send pool, writes results back in batches; sleeps on a wake-up event (NOTIFY, results, or the
  earliest next allowed send, polling at least every poll_seconds).
- listener: LISTEN wa_dispatch (new work) and wa_devices (devices to lease), sets the wake-ups.
- leases: heartbeat, shed excess, take free/expired leases, start/stop devices on the transport.
- events: transport events -> SQL (sender/events.py).
- send pool: transport.send, one device's rows in order per task.

    python -m sender.worker        (normally started by `python -m sender`, the pool)
"""
import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import psycopg

from common.config import require_database_url
from common.db import connect
from sender.device_commands import DeviceCommands
from sender.events import EventSink
from sender.media import MediaError, prepare_image, use_database
from sender.settings import SenderSettings
from sender.transport import make_transport
from sender.transport.base import DeviceSession, LoggedOut, NotSent, OutgoingMessage, SendError, StreamReplaced

log = logging.getLogger("sender.worker")

DISPATCH_CHANNEL = "wa_dispatch"
DEVICES_CHANNEL = "wa_devices"
# Rows claimed this long before the stuck timeout are failed rather than sent: recover_stuck may
# already have failed them, and a send after that would make the record lie.
STUCK_MARGIN = timedelta(seconds=30)


class Worker:
    def __init__(self, url=None, settings=None, transport_factory=make_transport, sender_id=None):
        self.url = url or require_database_url()
        use_database(self.url)   # the stored images messages send
        self.settings = settings or SenderSettings.from_env()
        self.sender_id = sender_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.events = EventSink(self.url, listeners=[self._on_event])
        self.transport = transport_factory(self.events.put)
        self.commands = DeviceCommands(self.url, self.sender_id, self.transport, stop_device=self._stop_device,
                                       start_device=lambda d, jid, phone: self._start_device(
                                           {"device_id": d, "jid": jid, "phone": phone}),
                                       poll_seconds=min(self.settings.poll_seconds, 1.0))
        self.pool = ThreadPoolExecutor(self.settings.send_threads, thread_name_prefix="send")
        self._wake = threading.Event()        # dispatch loop: work may be available
        self._lease_wake = threading.Event()  # lease loop: devices may be available
        self._stopping = threading.Event()
        self._results = deque()               # (message id, device id, outcome, wa id or error)
        self._in_flight = 0                   # claimed, result not yet written (dispatch thread only)
        self._in_flight_by_device = defaultdict(int)
        self._running = set()                 # devices started on the transport
        self._parked = set()                  # leased but not to be run (stream replaced)
        self._to_release = set()              # devices the lease loop must stop and release
        self._devices_lock = threading.Lock()
        self._threads = []
        self._stop_requested_at = None
        self.parent_pid = None                # set when run by the pool: exit if the pool is gone
        self.stuck_after = timedelta(seconds=self.settings.stuck_seconds) - STUCK_MARGIN

    # Lifecycle -------------------------------------------------------------------------------
    def stop(self):
        """Begin a graceful stop: no new claims, in-flight sends finish, leases are released."""
        self._stop_requested_at = self._stop_requested_at or time.monotonic()
        self._stopping.set()
        self._wake.set()
        self._lease_wake.set()

    def run(self):
        conn = connect(self.url, application_name="wa-sender")
        conn.execute("SELECT register_sender(%s, %s, %s, %s)",
                     [self.sender_id, socket.gethostname(), os.getpid(), self.settings.capacity])
        log.info("sender %s started", self.sender_id)
        self.events.start()
        self.commands.start()
        for target in (self._listen_loop, self._lease_loop):
            t = threading.Thread(target=target, name=target.__name__.strip("_"), daemon=True)
            t.start()
            self._threads.append(t)
        try:
            self._dispatch_loop(conn)
        finally:
            self._shutdown(conn)

    def _shutdown(self, conn):
        self.commands.stop()
        for t in self._threads:
            t.join(timeout=5)
        with self._devices_lock:
            running = list(self._running)
            self._running.clear()
        for device_id in running:
            self.transport.stop(device_id)
        released = self._retry(conn, lambda c: c.execute("SELECT retire_sender(%s) AS n",
                                                         [self.sender_id]).fetchone()["n"])
        self.pool.shutdown(wait=True)
        self.transport.close()
        self.events.stop()
        conn.close()
        log.info("sender %s stopped; released %s leases", self.sender_id, released)

    def _retry(self, conn, fn, attempts=5):
        for attempt in range(attempts):
            try:
                return fn(conn)
            except psycopg.OperationalError as exc:
                log.warning("database unavailable (%s)", str(exc).splitlines()[0] if str(exc) else exc)
                time.sleep(min(2 ** attempt, 10))
                try:
                    conn = connect(self.url, application_name="wa-sender")
                except Exception:  # noqa: BLE001 - keep retrying until attempts run out
                    continue
        return None

    # Dispatch --------------------------------------------------------------------------------
    def _dispatch_loop(self, conn):
        s = self.settings
        stopping_marked = False
        while True:
            self._wake.clear()
            try:
                self._write_results(conn)
                if self._stopping.is_set():
                    if self._in_flight == 0 or self._drain_overdue():
                        return
                    if not stopping_marked:
                        conn.execute("SELECT sender_stopping(%s)", [self.sender_id])
                        stopping_marked = True
                    self._wake.wait(0.05)
                    continue
                room = s.in_flight - self._in_flight
                want = min(room, s.claim_batch)
                # Claim when a real batch fits (or nothing is in flight): many tiny claims cost more.
                if want > 0 and (self._in_flight == 0 or want >= s.claim_batch // 4) and self._running:
                    rows = conn.execute("SELECT * FROM claim_messages(%s, %s, %s)",
                                        [self.sender_id, want, s.per_device]).fetchall()
                    if rows:
                        self._send(rows)
                    if len(rows) == want:
                        continue
                    timeout = self._idle_timeout(conn) if not rows and self._in_flight == 0 else s.poll_seconds
                else:
                    timeout = s.poll_seconds
            except psycopg.OperationalError as exc:
                log.warning("database unavailable (%s); reconnecting", str(exc).splitlines()[0] if str(exc) else exc)
                if self._stopping.is_set() and self._drain_overdue():
                    return
                time.sleep(1)
                try:
                    conn = connect(self.url, application_name="wa-sender")
                except Exception:  # noqa: BLE001 - the next round retries
                    pass
                continue
            self._wake.wait(timeout)

    def _drain_overdue(self):
        overdue = time.monotonic() - self._stop_requested_at > self.settings.drain_seconds
        if overdue:
            log.error("in-flight sends did not finish within %ss; stopping anyway (stuck recovery fails them)",
                      self.settings.drain_seconds)
        return overdue

    def _idle_timeout(self, conn):
        """Sleep until the earliest next allowed send, at most poll_seconds."""
        nxt = conn.execute("SELECT next_dispatch_at(%s) AS at", [self.sender_id]).fetchone()["at"]
        if nxt is None:
            return self.settings.poll_seconds
        wait = (nxt - datetime.now(timezone.utc)).total_seconds()
        # Due already but nothing claimable: caps or a lock hold it; look again at the poll.
        return self.settings.poll_seconds if wait <= 0 else min(wait + 0.001, self.settings.poll_seconds)

    def _send(self, rows):
        by_device = defaultdict(list)
        for row in rows:
            by_device[row["device_id"]].append(row)
        self._in_flight += len(rows)
        for device_id, device_rows in by_device.items():
            self._in_flight_by_device[device_id] += len(device_rows)
            self.pool.submit(self._send_device_rows, device_rows)

    def _send_device_rows(self, rows):
        """One device's rows, in order (a phone sends one message at a time)."""
        for row in rows:
            try:
                result = ("sent", self._send_one(row))
            except NotSent as exc:
                result = ("not_sent", str(exc))
            except (SendError, MediaError) as exc:
                result = ("failed", str(exc))
            except Exception as exc:  # noqa: BLE001 - a transport bug fails the message, not the worker
                log.exception("send of message %s crashed", row["id"])
                result = ("failed", f"send crashed: {exc!r}"[:500])
            self._results.append((row["id"], row["device_id"]) + result)
            self._wake.set()

    def _send_one(self, row):
        if datetime.now(timezone.utc) - row["claimed_at"] > self.stuck_after:
            raise SendError("not sent: claimed too long ago (stuck timeout), it may already be failed")
        image = prepare_image(row["media_url"]) if row["message_type"] == "image" else None
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
                conn.execute("SELECT complete_messages(%s, %s, %s)", [self.sender_id, list(ids), list(wa_ids)])
            if by_outcome["failed"]:
                ids, errors = zip(*by_outcome["failed"])
                conn.execute("SELECT fail_messages(%s, %s, %s)", [self.sender_id, list(ids), list(errors)])
            if by_outcome["not_sent"]:
                ids, _ = zip(*by_outcome["not_sent"])
                conn.execute("SELECT release_messages(%s, %s)", [self.sender_id, list(ids)])
        except psycopg.OperationalError:
            self._results.extendleft(reversed(results))  # guarded writes: retrying is safe
            raise
        self._in_flight -= len(results)
        for _, device_id, _, _ in results:
            self._in_flight_by_device[device_id] -= 1
            if self._in_flight_by_device[device_id] <= 0:
                del self._in_flight_by_device[device_id]

    # Leases ----------------------------------------------------------------------------------
    def _lease_loop(self):
        conn = None
        while not self._stopping.is_set():
            if self.parent_pid and os.getppid() != self.parent_pid:
                log.error("the sender pool (pid %s) is gone; stopping", self.parent_pid)
                self.stop()
                break
            try:
                conn = conn or connect(self.url, application_name="wa-sender-leases")
                self._lease_round(conn)
            except psycopg.OperationalError as exc:
                log.warning("lease round failed (%s)", str(exc).splitlines()[0] if str(exc) else exc)
                conn = None
            except Exception:  # noqa: BLE001 - keep heartbeating whatever one round did
                log.exception("lease round failed")
            self._lease_wake.wait(self.settings.heartbeat_seconds)
            self._lease_wake.clear()
        if conn:
            conn.close()

    def _lease_round(self, conn):
        s = self.settings
        ttl = timedelta(seconds=s.lease_seconds)
        try:
            held = conn.execute("SELECT * FROM sender_heartbeat(%s, %s, %s)",
                                [self.sender_id, s.capacity, ttl]).fetchall()
        except psycopg.errors.InvalidParameterValue:
            # Our senders row is gone (removed by hand, say) while we still run: register again.
            log.warning("sender %s was not registered; registering again", self.sender_id)
            conn.execute("SELECT register_sender(%s, %s, %s, %s)",
                         [self.sender_id, socket.gethostname(), os.getpid(), s.capacity])
            return
        held_ids = {r["device_id"] for r in held}
        with self._devices_lock:
            lost = self._running - held_ids
            release = set(self._to_release)
            self._to_release.clear()
        shed = {r["device_id"] for r in held if r["shed"] and not self._in_flight_by_device.get(r["device_id"])}
        for device_id in lost | release | shed:
            self._stop_device(device_id)
        if release | shed:
            conn.execute("SELECT release_leases(%s, %s)", [self.sender_id, list(release | shed)])
        for r in held:
            if r["device_id"] not in release | shed:
                self._start_device(r)
        for r in conn.execute("SELECT * FROM acquire_leases(%s, %s, %s)", [self.sender_id, s.capacity, ttl]):
            self._start_device(r)

    def _start_device(self, row):
        device_id = row["device_id"]
        with self._devices_lock:
            if device_id in self._running or device_id in self._parked:
                return
            self._running.add(device_id)
        self.transport.start(DeviceSession(device_id, jid=row["jid"], phone=row["phone"]))
        self._wake.set()

    def _stop_device(self, device_id):
        with self._devices_lock:
            was_running = device_id in self._running
            self._running.discard(device_id)
            self._parked.discard(device_id)
        if was_running:
            self.transport.stop(device_id)

    def _on_event(self, event):
        """After the event's SQL: a logged-out device is released; a replaced stream is parked
        (kept leased so no other sender fights for the session, but not run)."""
        if isinstance(event, LoggedOut):
            with self._devices_lock:
                self._to_release.add(event.device_id)
            self._lease_wake.set()
        elif isinstance(event, StreamReplaced):
            with self._devices_lock:
                self._running.discard(event.device_id)
                self._parked.add(event.device_id)

    # Wake-ups --------------------------------------------------------------------------------
    def _listen_loop(self):
        while not self._stopping.is_set():
            try:
                with connect(self.url, application_name="wa-sender-listen") as conn:
                    conn.execute(f"LISTEN {DISPATCH_CHANNEL}")
                    conn.execute(f"LISTEN {DEVICES_CHANNEL}")
                    self._wake.set()  # anything that arrived while not listening
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=0.5):
                            (self._wake if note.channel == DISPATCH_CHANNEL else self._lease_wake).set()
            except psycopg.OperationalError as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", str(exc).splitlines()[0] if str(exc) else exc)
                self._stopping.wait(1.0)


def main():
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format=f"%(asctime)s sender[{os.getpid()}] %(levelname)s %(message)s")
    worker = Worker()
    if os.environ.get("SENDER_SLOT") is not None:   # started by the pool
        worker.parent_pid = os.getppid()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    worker.run()


if __name__ == "__main__":
    main()
