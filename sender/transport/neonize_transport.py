"""Real WhatsApp through neonize 0.5.2 (whatsmeow), WA_TRANSPORT=neonize.

neonize can abort the whole process (a Go panic cannot be caught) and leaks a database pool on
every connect (shared/notes/neonize.md). This transport is shaped by that:
- sessions live in the application's own PostgreSQL (neonize's `name` is the database address);
- clients are started one at a time by a single starter thread;
- a stored jid is checked in whatsmeow_device before resuming (resuming a missing one panics);
  without a stored session the device pairs anew (QR, or a phone code on the first QR);
- exactly one client object per Go registry key, kept referenced for the life of the process
  (a second object with the same key, once garbage-collected, stops the live one);
- failed connects are retried with exponential back-off, at most `max_attempts` in a row;
- every connect() opens a pool that is never closed: `connection_budget` caps connects per
  process; past it the device is reported failed and the shard should be restarted;
- a connect that shows no sign of life for `hung_after_s` makes the watchdog call `on_hung`
  (by default: exit, so the supervisor restarts this shard; stop() would hang with it);
- StreamReplaced stops the device (another client owns the session: never fight it);
- TemporaryBan reports the ban and its expiry, stops the device and restarts it at expiry;
- NEONIZE_BOT_TAG=off before import; the Go core's stdout goes to a sink (neonize_stdio).
Event handlers run on neonize's threads and only map the event and hand it to `on_event`.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional
from urllib.parse import urlsplit

os.environ.setdefault("NEONIZE_BOT_TAG", "off")   # before neonize is imported, or 1:1 messages carry a bot tag

from neonize.client import NewClient  # noqa: E402
from neonize.events import (ConnectedEv, ConnectFailureEv, DisconnectedEv, LoggedOutEv,  # noqa: E402
                            MessageEv, PairStatusEv, ReceiptEv, StreamReplacedEv, TemporaryBanEv)
from neonize.exc import NeonizeError  # noqa: E402
from neonize.utils.jid import build_jid  # noqa: E402

from common.config import require_database_url  # noqa: E402
from common.db import connect  # noqa: E402
from sender.transport import neonize_events as mapping  # noqa: E402
from sender.transport.base import (Connected, ConnectFailed, DeviceSession, Disconnected, Event,  # noqa: E402
                                   LoggedOut, OutgoingMessage, PairCode, QRCode, SendError,
                                   SendResult, StreamReplaced)
from sender.transport.neonize_stdio import divert_native_stdout  # noqa: E402

log = logging.getLogger(__name__)
# neonize's import set the root logger to INFO and passes its own level to the Go core.
for _name in ("neonize", "whatsmeow", "Whatsmeow"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# Send errors that will not get better by retrying (classified by Go's error text).
_PERMANENT = ("not on whatsapp", "invalid jid", "no such user", "not a valid", "upload", "media")


def neonize_store_address(database_url: str) -> str:
    """The database address for neonize: PostgreSQL URL, TLS disabled for a local server
    (Go's driver otherwise insists on TLS the embedded server does not offer)."""
    if "sslmode=" in database_url:
        return database_url
    host = urlsplit(database_url).hostname or ""
    if host in ("", "localhost", "127.0.0.1", "::1") or host.startswith("/"):
        return database_url + ("&" if "?" in database_url else "?") + "sslmode=disable"
    return database_url


@dataclass
class _Run:
    """One device on this transport: its client and where its connection stands."""
    device_id: int
    session: DeviceSession
    client: Optional[NewClient] = None
    generation: int = 0
    state: str = "queued"                # queued, connecting, pairing, connected, stopped, banned
    connect_started: Optional[float] = None   # monotonic, while connect() has shown no sign of life
    failures: int = 0                    # failed connects in a row
    pair_phone: Optional[str] = None
    qr_seen: threading.Event = field(default_factory=threading.Event)
    settled: threading.Event = field(default_factory=threading.Event)
    pair_code: Optional[str] = None
    timer: Optional[threading.Timer] = None


class NeonizeTransport:
    def __init__(self, on_event: Callable[[Event], None], database_url: Optional[str] = None, *,
                 connection_budget: Optional[int] = None, max_attempts: int = 5,
                 backoff_s: float = 5.0, backoff_max_s: float = 300.0, settle_s: float = 15.0,
                 hung_after_s: float = 120.0, on_hung: Optional[Callable[[list], None]] = None,
                 quiet_native_stdout: bool = True):
        if quiet_native_stdout:
            divert_native_stdout()
        self.on_event = on_event
        self.database_url = database_url or require_database_url()
        self.store = neonize_store_address(self.database_url)
        self.connection_budget = connection_budget or int(os.environ.get("NEONIZE_CONNECTION_BUDGET", "200"))
        self.max_attempts = max_attempts
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.settle_s, self.hung_after_s = settle_s, hung_after_s
        self.on_hung = on_hung or self._exit_for_restart
        self.connects_made = 0
        self._clients: dict[bytes, NewClient] = {}      # Go key -> the one object ever made for it
        self._device_of_key: dict[bytes, int] = {}
        self._runs: dict[int, _Run] = {}
        self._lock = threading.RLock()
        self._starts: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._db = None
        self._starter = threading.Thread(target=self._start_loop, name="neonize-starter", daemon=True)
        self._watchdog = threading.Thread(target=self._watch_loop, name="neonize-watchdog", daemon=True)
        self._starter.start()
        self._watchdog.start()

    # Transport protocol ----------------------------------------------------------------------
    def start(self, session: DeviceSession) -> None:
        with self._lock:
            run = self._runs.get(session.device_id)
            if run is None:
                run = self._runs[session.device_id] = _Run(session.device_id, session)
            elif run.state in ("connecting", "pairing", "connected"):
                self._stop_client(run)
            run.session, run.failures, run.state = session, 0, "queued"
            run.generation += 1
            self._cancel_timer(run)
            self._starts.put((run.device_id, run.generation))

    def stop(self, device_id: int) -> None:
        with self._lock:
            run = self._runs.get(device_id)
            if run is None:
                return
            run.generation += 1
            run.state = "stopped"
            self._cancel_timer(run)
            self._stop_client(run)

    def pair_phone(self, device_id: int, phone: str) -> str:
        """Pair by code: (re)start pairing, wait for the first QR (the connection is then up),
        ask WhatsApp for the code and report it."""
        with self._lock:
            run = self._runs.get(device_id)
            pairing = run is not None and run.state == "pairing" and run.qr_seen.is_set()
        failures_before = run.failures if pairing else 0
        if not pairing:
            self.start(DeviceSession(device_id, jid=None, phone=phone))   # resets failures to 0
            run = self._runs[device_id]
        run.pair_phone = phone
        if not self._wait_for_qr(run, failures_before):
            raise RuntimeError(f"device {device_id} could not reach WhatsApp to pair by code")
        try:
            code = run.client.PairPhone(phone, True)
        except NeonizeError as exc:
            raise RuntimeError(f"pairing by code failed: {exc}") from exc
        self.on_event(PairCode(device_id, code))
        return code

    def logout(self, device_id: int) -> None:
        with self._lock:
            run = self._runs.get(device_id)
            if run is None or run.state != "connected":
                raise RuntimeError(f"device {device_id} is not connected: WhatsApp needs a live connection to log out")
            client = run.client
            run.generation += 1
            run.state = "stopped"
        try:
            client.logout()   # removes it from the phone's Linked Devices and deletes its session rows
        except NeonizeError as exc:
            raise RuntimeError(f"logout failed: {exc}") from exc
        self.on_event(LoggedOut(device_id, "logged out from the dashboard"))

    def send(self, message: OutgoingMessage) -> SendResult:
        with self._lock:
            run = self._runs.get(message.device_id)
            client = run.client if run is not None and run.state == "connected" else None
        if client is None:
            raise SendError(f"device {message.device_id} is not connected")
        to = build_jid(message.to_phone)
        try:
            if message.image is not None:
                resp = client.send_image(to, message.image, caption=message.text or None)
            else:
                resp = client.send_message(to, message.text)
        except NeonizeError as exc:
            text = str(exc) or exc.__class__.__name__
            raise SendError(text, permanent=any(p in text.lower() for p in _PERMANENT)) from exc
        return SendResult(resp.ID, mapping._when(resp.Timestamp) if resp.Timestamp else datetime.now(timezone.utc))

    def close(self) -> None:
        self._closed.set()
        self._starts.put(None)
        with self._lock:
            for run in self._runs.values():
                run.generation += 1
                run.state = "stopped"
                self._cancel_timer(run)
                self._stop_client(run)
        if self._db is not None:
            self._db.close()

    # Starting, one client at a time ----------------------------------------------------------
    def _start_loop(self):
        while not self._closed.is_set():
            item = self._starts.get()
            if item is None:
                return
            device_id, generation = item
            with self._lock:
                run = self._runs.get(device_id)
                if run is None or run.generation != generation or run.state != "queued":
                    continue      # stopped or restarted since it was queued
                try:
                    started = self._launch(run)
                except Exception as exc:   # e.g. the database is unreachable: report, keep the starter alive
                    log.exception("could not start device %s", device_id)
                    run.state, started = "stopped", False
                    self._emit(ConnectFailed(device_id, f"could not start: {exc.__class__.__name__}: {exc}"))
            if started:
                # The next client starts once this one shows a sign of life (or settle_s passed).
                run.settled.wait(self.settle_s)

    def _launch(self, run: _Run) -> bool:
        """Caller holds the lock. Creates or reuses the device's client and starts connect()."""
        if self.connects_made >= self.connection_budget:
            run.state = "stopped"
            self._emit(ConnectFailed(run.device_id, f"connection budget exhausted ({self.connection_budget} "
                                     "connects in this sender process): restart the shard"))
            return False
        resume = bool(run.session.jid) and self._session_stored(run.session.jid)
        if resume:
            jid = mapping.jid_from_string(run.session.jid)
            key = jid.User.encode()
        else:
            jid, key = None, f"device-{run.device_id}".encode()
        client = self._clients.get(key)
        if client is None:
            client = NewClient(self.store, jid=jid, uuid=key.decode(), new_device=not resume)
            self._register(client)
            self._clients[key] = client
        self._device_of_key[key] = run.device_id
        run.client = client
        run.state = "connecting" if resume else "pairing"
        run.qr_seen.clear()
        run.settled.clear()
        run.connect_started = time.monotonic()
        self.connects_made += 1
        threading.Thread(target=self._connect, args=(run, client, run.generation),
                         name=f"neonize-{run.device_id}", daemon=True).start()
        return True

    def _connect(self, run: _Run, client: NewClient, generation: int):
        error = None
        try:
            client.connect()          # blocks for the whole session
        except NeonizeError as exc:
            error = str(exc) or exc.__class__.__name__
        except Exception as exc:      # anything else from the binding: same handling, never a dead thread
            error = f"{exc.__class__.__name__}: {exc}"
        self._connect_ended(run, generation, error)

    def _connect_ended(self, run: _Run, generation: int, error: Optional[str]):
        with self._lock:
            run.settled.set()
            run.connect_started = None
            if run.generation != generation or run.state in ("stopped", "banned"):
                return                # we stopped it on purpose
            run.failures += 1
            reason = error or "connection closed"
            if run.failures >= self.max_attempts:
                run.state = "stopped"
                event = ConnectFailed(run.device_id, f"gave up after {run.failures} attempts: {reason}")
            else:
                delay = min(self.backoff_max_s, self.backoff_s * 2 ** (run.failures - 1))
                run.state = "queued"
                self._schedule(run, delay, self._requeue)
                event = ConnectFailed(run.device_id, f"{reason} (attempt {run.failures} of {self.max_attempts}; "
                                                     f"retrying in {delay:.0f} s)")
        self._emit(event)

    def _requeue(self, run: _Run, generation: int):
        with self._lock:
            if run.generation == generation and run.state == "queued":
                self._starts.put((run.device_id, generation))

    def _session_stored(self, jid: str) -> bool:
        if self._db is None or self._db.closed:
            self._db = connect(self.database_url, application_name="wa-neonize")
        return self._db.execute("SELECT whatsmeow_session_exists(%s) AS found", [jid]).fetchone()["found"]

    # Events (on neonize's threads: map, hand off, return) ------------------------------------
    def _register(self, client: NewClient):
        client.event.qr(self._on_qr)
        handlers = {
            ConnectedEv: self._on_connected, DisconnectedEv: self._on_disconnected,
            PairStatusEv: lambda run, ev: self._emit(mapping.paired(run.device_id, ev)),
            LoggedOutEv: self._on_logged_out, StreamReplacedEv: self._on_stream_replaced,
            TemporaryBanEv: self._on_temporary_ban,
            ConnectFailureEv: lambda run, ev: self._emit(mapping.connect_failure(run.device_id, ev)),
            MessageEv: lambda run, ev: self._emit(mapping.incoming_message(run.device_id, ev)),
            ReceiptEv: lambda run, ev: self._emit(mapping.receipt(run.device_id, ev)),
        }
        for event_class, handler in handlers.items():
            client.event(event_class)(self._dispatching(handler))

    def _dispatching(self, handler):
        def on_event(client, ev):
            run = self._run_of(client)
            if run is None:
                return
            run.connect_started = None    # a sign of life for the watchdog
            run.settled.set()
            try:
                handler(run, ev)
            except Exception:             # never let an exception travel back into the Go core
                log.exception("neonize event handler failed for device %s", run.device_id)
        return on_event

    def _run_of(self, client) -> Optional[_Run]:
        device_id = self._device_of_key.get(client.uuid)
        return self._runs.get(device_id) if device_id is not None else None

    def _on_qr(self, client, data: bytes):
        run = self._run_of(client)
        if run is None:
            return
        run.connect_started = None
        run.settled.set()
        run.qr_seen.set()
        self._emit(QRCode(run.device_id, data.decode("utf-8", "replace")))

    def _on_connected(self, run: _Run, ev):
        with self._lock:
            run.state, run.failures = "connected", 0
        self._emit(Connected(run.device_id))

    def _on_disconnected(self, run: _Run, ev):
        self._emit(Disconnected(run.device_id, "connection lost; whatsmeow reconnects"))

    def _on_logged_out(self, run: _Run, ev):
        with self._lock:
            run.generation += 1
            run.state = "stopped"
            self._stop_client(run)
        self._emit(mapping.logged_out(run.device_id, ev))

    def _on_stream_replaced(self, run: _Run, ev):
        with self._lock:          # another client runs this number now: step aside, do not retry
            run.generation += 1
            run.state = "stopped"
            self._stop_client(run)
        self._emit(StreamReplaced(run.device_id))

    def _on_temporary_ban(self, run: _Run, ev):
        ban = mapping.temporary_ban(run.device_id, ev)
        with self._lock:
            run.generation += 1
            run.state = "banned"
            self._stop_client(run)
            run.state, run.failures = "queued", 0
            self._schedule(run, max(0.0, (ban.expires_at - datetime.now(timezone.utc)).total_seconds()),
                           self._requeue)
        self._emit(ban)

    def _emit(self, event: Optional[Event]):
        if event is not None:
            self.on_event(event)

    # Helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _wait_for_qr(run: _Run, failures_before: int, timeout: float = 30.0) -> bool:
        """True once pairing shows a QR; False when the connect failed or stopped first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if run.qr_seen.wait(0.1):
                return True
            if run.failures > failures_before or run.state not in ("queued", "pairing"):
                return False
        return False

    def _schedule(self, run: _Run, delay: float, fn):
        """Caller holds the lock. fn(run, generation) after delay, unless the device changed since."""
        self._cancel_timer(run)
        run.timer = threading.Timer(delay, fn, args=(run, run.generation))
        run.timer.daemon = True
        run.timer.start()

    @staticmethod
    def _cancel_timer(run: _Run):
        if run.timer is not None:
            run.timer.cancel()
            run.timer = None

    @staticmethod
    def _stop_client(run: _Run):
        """Cancel the Go context without waiting: Stop() can block behind a hung connect."""
        client = run.client
        if client is not None:
            threading.Thread(target=client.stop, name=f"neonize-stop-{run.device_id}", daemon=True).start()

    def _watch_loop(self):
        while not self._closed.wait(1.0):
            now = time.monotonic()
            with self._lock:
                hung = [r.device_id for r in self._runs.values()
                        if r.connect_started is not None and now - r.connect_started > self.hung_after_s]
            if hung:
                self.on_hung(hung)
                return

    @staticmethod
    def _exit_for_restart(device_ids):
        log.critical("neonize connect hung for devices %s: exiting so the supervisor restarts this shard", device_ids)
        logging.shutdown()
        os._exit(75)
