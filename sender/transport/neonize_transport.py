"""Real WhatsApp through neonize 0.5.2 (whatsmeow), WA_TRANSPORT=neonize; the contract is base.py's.

neonize's Go core can abort the whole process (a Go panic cannot be caught), never ends the
connect of an unpaired device, and leaks a database pool on every connect
(shared/notes/neonize.md). This transport is shaped by that:
- Pairing runs in a child process (neonize_pairing.py), killed when the last code expires or the
  pairing is stopped; the child reports the codes and the new jid, and the session is then
  resumed here. Pairings run a few at a time (`max_pairings`), the rest wait their turn.
- Stored sessions run here, one client object per Go registry key, kept for the life of the
  process; neonize's stop-when-collected is detached, so no client writes the registry from
  whichever thread collects it.
- Every call that writes the Go core's registry (the start of a connect, a stop) runs on one
  control thread, one at a time (concurrent writes abort the process); the next begins once the
  previous connect has entered the Go core and then shown a sign of life or settle_s passed, and a
  stop is awaited before the same key starts again.
- A stored jid is checked in whatsmeow_device before resuming (resuming a missing one panics).
- Failed connects follow CONNECT_POLICY; after its last attempt the device is stopped and released.
- Each connect opens a database pool neonize never closes: at most `connection_budget` connects
  per process (its capacity times the policy's attempts, so a full start of every device fits);
  when it is used up, `on_budget_spent` recycles the process (by default: a graceful SIGTERM).
- A connect or a stop that shows no sign of life for hung_after_s makes the watchdog call
  on_hung (by default: exit 75, so the supervisor restarts this shard).
- Only a connected device sends. Disconnected means whatsmeow is reconnecting: sends are NotSent
  until Connected, and a send whatsmeow refuses for want of a connection is NotSent too.
- LoggedOut, StreamReplaced and ClientOutdated stop the device; TemporaryBan stops it and resumes
  it at the expiry; ConnectFailure counts as a failed connect.
Event handlers run on neonize's threads: they map the event, move the run's state and hand on.
"""
from __future__ import annotations

import faulthandler
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import Callable, Optional
from urllib.parse import urlsplit

os.environ.setdefault("NEONIZE_BOT_TAG", "off")   # before neonize is imported, or 1:1 messages carry a bot tag

from neonize.client import NewClient  # noqa: E402
from neonize.events import (ClientOutdatedEv, ConnectedEv, ConnectFailureEv, DisconnectedEv,  # noqa: E402
                            LoggedOutEv, MessageEv, ReceiptEv, StreamReplacedEv, TemporaryBanEv)
from neonize.exc import NeonizeError  # noqa: E402
from neonize.utils.jid import build_jid  # noqa: E402

from common.config import neonize_store_url, require_database_url  # noqa: E402
from common.db import connect  # noqa: E402
from sender.transport import neonize_events as mapping  # noqa: E402
from sender.transport.base import (CONNECT_POLICY, PAIRING_WINDOW, ClientOutdated, Connected,  # noqa: E402
                                   ConnectFailed, ConnectPolicy, DeviceSession, Disconnected, Event,
                                   LoggedOut, NotConnected, NotSent, OutgoingMessage, PairCode, Paired,
                                   PairingExpired, PairingWindow, QRCode, SendError, SendResult,
                                   ReachOutRefused, ReachOutTimelock, StreamReplaced, Undeliverable)
from sender.transport.neonize_pairing import BROWSER_PROPS  # noqa: E402
from sender.transport.neonize_stdio import divert_native_stdout  # noqa: E402
from sender.transport.scheduler import Scheduled, Scheduler  # noqa: E402

log = logging.getLogger(__name__)
# neonize's import set the root logger to INFO and passes its own level to the Go core.
for _name in ("neonize", "whatsmeow", "Whatsmeow"):
    logging.getLogger(_name).setLevel(logging.WARNING)

PAIRING_COMMAND = [sys.executable, "-m", "sender.transport.neonize_pairing"]
# Send errors of the recipient or the content, which will not get better by retrying (by Go's error text):
# the number is not on WhatsApp (whatsmeow looks its @lid up before sending), or the address or media is bad.
_NOT_ON_WHATSAPP = ("not on whatsapp", "no such user", "no lid found")
_BAD_CONTENT = ("invalid jid", "not a valid", "upload", "media")
# whatsmeow's errors for a send that never left: no connection, no session, client already stopped.
_NEVER_LEFT = ("websocket not connected", "the store doesn't contain a device jid", "client is nil")


def neonize_store_address(database_url: str) -> str:
    """The database address for neonize: PostgreSQL URL, TLS disabled for a local server
    (Go's driver otherwise insists on TLS the embedded server does not offer)."""
    if "sslmode=" in database_url:
        return database_url
    host = urlsplit(database_url).hostname or ""
    if host in ("", "localhost", "127.0.0.1", "::1") or host.startswith("/"):
        return database_url + ("&" if "?" in database_url else "?") + "sslmode=disable"
    return database_url


def send_error(text: str) -> SendError:
    """whatsmeow's error text -> the send's outcome."""
    lowered = text.lower()
    if any(marker in lowered for marker in _NEVER_LEFT):
        return NotSent(f"not sent, no connection: {text}")
    if "server returned error 463" in lowered:
        return ReachOutRefused(text)
    if any(p in lowered for p in _NOT_ON_WHATSAPP):
        return Undeliverable(text if "not on whatsapp" in lowered else f"{text} (the number is not on WhatsApp)")
    if any(p in lowered for p in _BAD_CONTENT):
        return Undeliverable(text)
    return SendError(text)


class RunState(Enum):
    WAITING = "waiting"            # to be launched: queued, a retry's back-off, a ban, a pairing slot
    PAIRING = "pairing"            # a pairing child shows codes
    CONNECTING = "connecting"      # connect() runs on the stored session, not connected yet
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # the connection dropped; whatsmeow reconnects by itself
    STOPPED = "stopped"


LIVE = frozenset({RunState.PAIRING, RunState.CONNECTING, RunState.CONNECTED, RunState.RECONNECTING})


class _PairingChild:
    """A neonize_pairing process and the thread that reads what it says."""

    def __init__(self, command: list, on_message, on_exit):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.showed_code = False
        self.replies: queue.Queue = queue.Queue()   # ("code", code) or ("error", text), for pair_phone
        self.last_error: Optional[str] = None
        self._on_message, self._on_exit = on_message, on_exit
        threading.Thread(target=self._read, name=f"pairing-{self.proc.pid}", daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            self._on_message(self, message)
        self.proc.wait()
        self._on_exit(self)

    def ask_code(self, phone: str):
        self.proc.stdin.write(json.dumps({"pair_phone": phone}) + "\n")
        self.proc.stdin.flush()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()


@dataclass
class _Run:
    """One device on this transport: where its connection stands."""
    device_id: int
    session: DeviceSession
    state: RunState = RunState.STOPPED
    generation: int = 0                   # bumps when a session ends: its late callbacks do nothing
    client: Optional[NewClient] = None    # the in-process client of its stored session
    child: Optional[_PairingChild] = None
    failures: int = 0                     # failed connects in a row
    timer: Optional[Scheduled] = None
    quiet_since: Optional[float] = None   # monotonic, while connect() has shown no sign of life


class NeonizeTransport:
    def __init__(self, on_event: Callable[[Event], None], database_url: Optional[str] = None, *,
                 capacity: int, policy: ConnectPolicy = CONNECT_POLICY,
                 pairing: PairingWindow = PAIRING_WINDOW, max_pairings: int = 4, settle_s: float = 15.0,
                 hung_after_s: float = 120.0, on_hung: Optional[Callable[[list], None]] = None,
                 on_budget_spent: Optional[Callable[[], None]] = None,
                 pairing_command: Optional[list] = None, quiet_native_stdout: bool = True):
        if quiet_native_stdout:
            divert_native_stdout()
        self.on_event = on_event
        self.database_url = database_url or require_database_url()
        self.store = neonize_store_address(neonize_store_url(self.database_url))
        self.policy, self.pairing, self.max_pairings = policy, pairing, max_pairings
        self.connection_budget = capacity * policy.attempts
        self.settle_s, self.hung_after_s = settle_s, hung_after_s
        self.on_hung = on_hung or self._exit_for_restart
        self.on_budget_spent = on_budget_spent or (lambda: os.kill(os.getpid(), signal.SIGTERM))
        self.pairing_command = pairing_command or PAIRING_COMMAND
        self.connects_made = 0
        self._recycling = False                            # on_budget_spent was called
        self._clients: dict[bytes, NewClient] = {}      # Go key -> the one object ever made for it
        self._device_of_key: dict[bytes, int] = {}
        self._runs: dict[int, _Run] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)   # a run changed state (logout waits on it)
        self._ops: queue.Queue = queue.Queue()            # the control thread's work, in order
        self._pairings = 0                                 # live pairing children
        self._pairing_turns: list = []                     # (device id, generation) waiting for one
        self._settled: dict[bytes, threading.Event] = {}   # key -> its latest connect got past its registry write
        self._stopping_since: Optional[float] = None       # monotonic, while the control thread awaits a stop
        self._closed = threading.Event()
        self._db = None
        self._timers = Scheduler("neonize-timers")
        self._control = threading.Thread(target=self._control_loop, name="neonize-control", daemon=True)
        self._watchdog = threading.Thread(target=self._watch_loop, name="neonize-watchdog", daemon=True)
        self._control.start()
        self._watchdog.start()

    # Transport protocol ----------------------------------------------------------------------
    def start(self, session: DeviceSession) -> None:
        with self._lock:
            run = self._runs.setdefault(session.device_id, _Run(session.device_id, session))
            run.session, run.failures = session, 0
            self._enter(run, RunState.WAITING)
            self._ops.put(("launch", run.device_id, run.generation))

    def stop(self, device_id: int) -> None:
        with self._lock:
            run = self._runs.get(device_id)
            if run is not None:
                self._enter(run, RunState.STOPPED)

    def pair_phone(self, device_id: int, phone: str) -> str:
        """Pair by code: (re)start pairing, wait for its first QR (WhatsApp is then reachable),
        ask the pairing child for the code and report it."""
        with self._lock:
            run = self._runs.get(device_id)
            if run is None or run.state is not RunState.PAIRING:
                self.start(DeviceSession(device_id, jid=None, phone=phone))
                run = self._runs[device_id]
                self._changed.wait_for(lambda: run.state is not RunState.WAITING, timeout=30.0)
            child = run.child if run.state is RunState.PAIRING else None
            # WhatsApp is reachable once the pairing shows its first code (or it ends without).
            self._changed.wait_for(lambda: child is None or child.showed_code or run.child is not child, 30.0)
        if child is None or not child.showed_code:
            raise NotConnected(f"device {device_id} could not reach WhatsApp to pair by code")
        child.ask_code(phone)
        try:
            kind, text = child.replies.get(timeout=30.0)
        except queue.Empty:
            raise NotConnected("WhatsApp did not answer the request for a pairing code") from None
        if kind == "error":
            raise NotConnected(text)
        self.on_event(PairCode(device_id, text))
        return text

    def logout(self, device_id: int, wait_s: float = 0.0) -> None:
        with self._lock:
            run = self._runs.get(device_id)
            if run is not None:
                self._changed.wait_for(lambda: run.state not in (RunState.RECONNECTING, RunState.CONNECTING,
                                                                 RunState.WAITING), timeout=wait_s)
            if run is None or run.state is not RunState.CONNECTED:
                raise NotConnected(f"device {device_id} is not connected: WhatsApp needs a live connection to log out")
            client = run.client
        try:
            client.logout()   # off the phone's Linked Devices; whatsmeow deletes the session's rows
        except NeonizeError as exc:
            raise NotConnected(f"logout failed: {exc}") from exc
        with self._lock:
            self._enter(run, RunState.STOPPED)
        self.on_event(LoggedOut(device_id, "logged out from the dashboard"))

    def send(self, message: OutgoingMessage) -> SendResult:
        with self._lock:
            run = self._runs.get(message.device_id)
            client = run.client if run is not None and run.state is RunState.CONNECTED else None
        if client is None:
            raise NotSent(f"device {message.device_id} is not connected")
        to = build_jid(message.to_phone)
        try:
            if message.image is not None:
                resp = client.send_image(to, message.image, caption=message.text or None)
            else:
                resp = client.send_message(to, message.text)
        except NeonizeError as exc:
            error = send_error(str(exc) or exc.__class__.__name__)
            # neonize 0.5.2 does not pass whatsmeow's timelock notification on: the 463 is the signal.
            if isinstance(error, ReachOutRefused):
                self.on_event(ReachOutTimelock(message.device_id))
            raise error from exc
        return SendResult(resp.ID, mapping._when(resp.Timestamp) if resp.Timestamp else datetime.now(timezone.utc))

    def close(self) -> None:
        with self._lock:
            for run in self._runs.values():
                self._enter(run, RunState.STOPPED)
        self._ops.put(None)
        self._control.join(timeout=self.settle_s)
        self._closed.set()
        self._timers.close()
        if self._db is not None:
            self._db.close()

    # The one state transition ----------------------------------------------------------------
    def _enter(self, run: _Run, state: RunState):
        """Caller holds the lock. Entering WAITING or STOPPED ends the run's current session: the
        generation bumps (the old session's callbacks, timers and queued launches do nothing), its
        timer is cancelled, and its pairing child or client is stopped."""
        if state in (RunState.WAITING, RunState.STOPPED):
            run.generation += 1
            if run.timer is not None:
                run.timer.cancel()
                run.timer = None
            if run.state in LIVE:
                self._end_session(run)
        run.state = state
        self._changed.notify_all()

    def _end_session(self, run: _Run):
        run.quiet_since = None
        if run.child is not None:
            run.child.kill()
            run.child = None
            self._pairing_ended()
        elif run.client is not None:
            self._ops.put(("stop", run.device_id, run.client))
            run.client = None     # its late events find no run

    def _after(self, run: _Run, delay_s: float, fn):
        """Caller holds the lock: fn(run) after delay_s, unless the run has moved on since."""
        generation = run.generation

        def fire():
            with self._lock:
                if run.generation == generation:
                    fn(run)
        run.timer = self._timers.call_later(delay_s, fire)

    def _relaunch(self, run: _Run):
        self._ops.put(("launch", run.device_id, run.generation))

    def _failed(self, run: _Run, reason: str) -> ConnectFailed:
        """Caller holds the lock: a connect (or pairing) that failed, retried per the policy."""
        run.failures += 1
        delay = self.policy.retry_in(run.failures)
        if delay is None:
            self._enter(run, RunState.STOPPED)
            resume_at = datetime.now(timezone.utc) + timedelta(seconds=self.policy.hold_s)
            return ConnectFailed(run.device_id, f"gave up after {run.failures} attempts: {reason}", resume_at)
        self._enter(run, RunState.WAITING)
        self._after(run, delay, self._relaunch)
        return ConnectFailed(run.device_id, f"{reason} (attempt {run.failures} of {self.policy.attempts}; "
                                            f"retrying in {delay:.0f} s)")

    # The control thread: Go registry writes, one at a time ------------------------------------
    def _control_loop(self):
        while True:
            op = self._ops.get()
            if op is None:
                return
            kind, device_id, arg = op
            if kind == "stop":
                self._stop_now(device_id, arg)
                continue
            with self._lock:
                run = self._runs.get(device_id)
                if run is None or run.generation != arg or run.state is not RunState.WAITING:
                    continue      # stopped or restarted since it was queued
                try:
                    event, launched = self._launch(run)
                except Exception as exc:   # the database is unreachable, say: report, keep the thread alive
                    log.exception("could not start device %s", device_id)
                    event, launched = self._failed(run, f"could not start: {exc.__class__.__name__}: {exc}"), None
            self._emit(event)
            if launched is not None:
                in_core, settled = launched
                # Neonize() writes the registry as it begins: the next write waits until the connect
                # thread is in it (on a busy machine it may start late; a hang is the watchdog's),
                # then for a sign of life from the Go core, even if the device was ended meanwhile.
                in_core.wait(self.hung_after_s)
                settled.wait(self.settle_s)

    def _launch(self, run: _Run):
        """Caller holds the lock. Starts the run's pairing child or its stored session's connect;
        returns (event to report, None or the Events that tell its connect entered the Go core and
        then got past its registry write: an event from the core, or the connect's end)."""
        if not (run.session.jid and self._session_stored(run.session.jid)):
            return self._start_pairing(run)
        if self.connects_made >= self.connection_budget:
            self._enter(run, RunState.STOPPED)
            if not self._recycling:
                self._recycling = True
                self.on_budget_spent()
            return ConnectFailed(run.device_id, f"this sender process made its {self.connection_budget} connects "
                                 "(each leaks a database pool in neonize): it restarts and the device moves on",
                                 datetime.now(timezone.utc)), None
        jid = mapping.jid_from_string(run.session.jid)
        key = jid.User.encode()
        client = self._clients.get(key)
        if client is None:
            client = NewClient(self.store, jid=jid, uuid=key.decode(), props=BROWSER_PROPS)
            # neonize stops a client when it is collected, from whichever thread collects it (or
            # at exit): a registry write beside the control thread's. Stops are ours alone.
            client._stop_finalizer.detach()
            self._register(client)
            self._clients[key] = client
        self._device_of_key[key] = run.device_id
        run.client = client
        self._enter(run, RunState.CONNECTING)
        run.quiet_since = time.monotonic()
        self.connects_made += 1
        in_core, settled = threading.Event(), threading.Event()
        self._settled[key] = settled
        threading.Thread(target=self._connect, args=(run, client, run.generation, in_core, settled),
                         name=f"neonize-{run.device_id}", daemon=True).start()
        return None, (in_core, settled)

    def _stop_now(self, device_id: int, client: NewClient):
        """Stops a client and waits for it: the same key must not start again before (the Go
        side's stop is not serialised with a new start). A stop that hangs is the watchdog's."""
        done = threading.Event()

        def stop():
            try:
                client.stop()
            finally:
                done.set()
        threading.Thread(target=stop, name=f"neonize-stop-{device_id}", daemon=True).start()
        self._stopping_since = time.monotonic()
        done.wait(self.hung_after_s + 1)
        self._stopping_since = None

    def _connect(self, run: _Run, client: NewClient, generation: int, in_core: threading.Event,
                 settled: threading.Event):
        try:
            in_core.set()
            client.connect()          # blocks for the whole session
            error = "connection closed"
        except NeonizeError as exc:
            error = str(exc) or exc.__class__.__name__
        except Exception as exc:      # anything else from the binding: same handling, never a dead thread
            error = f"{exc.__class__.__name__}: {exc}"
        finally:
            settled.set()             # Neonize() returned: its registry writes are over
        with self._lock:
            if run.generation != generation:
                return                # we ended it on purpose
            event = self._failed(run, error)
        self._emit(event)

    def _session_stored(self, jid: str) -> bool:
        if self._db is None or self._db.closed:
            self._db = connect(self.database_url, application_name="wa-neonize")
        return self._db.execute("SELECT whatsmeow_session_exists(%s) AS found", [jid]).fetchone()["found"]

    # Pairing in a child process --------------------------------------------------------------
    def _start_pairing(self, run: _Run):
        if self._pairings >= self.max_pairings:
            self._pairing_turns.append((run.device_id, run.generation))
            return None, None
        self._pairings += 1
        run.session = DeviceSession(run.device_id, jid=None, phone=run.session.phone)
        self._enter(run, RunState.PAIRING)
        generation = run.generation
        run.child = _PairingChild(self.pairing_command + [self.store, f"device-{run.device_id}"],
                                  lambda child, message: self._on_child_message(run, generation, child, message),
                                  lambda child: self._on_child_exit(run, generation, child))
        self._after(run, self.hung_after_s, self._pairing_silent)
        return None, None

    def _pairing_ended(self):
        self._pairings -= 1
        while self._pairing_turns:
            device_id, generation = self._pairing_turns.pop(0)
            run = self._runs.get(device_id)
            if run is not None and run.generation == generation and run.state is RunState.WAITING:
                self._ops.put(("launch", device_id, generation))
                return

    def _on_child_message(self, run: _Run, generation: int, child: _PairingChild, message: dict):
        with self._lock:
            if run.generation != generation:
                return
            if "qr" in message:
                if not child.showed_code:           # the window runs from the first code
                    child.showed_code = True
                    self._changed.notify_all()
                    run.timer.cancel()
                    self._after(run, self.pairing.total_s, self._pairing_expired)
                event = QRCode(run.device_id, message["qr"])
            elif "code" in message:
                child.replies.put(("code", message["code"]))
                return
            elif "error" in message:
                child.last_error = message["error"]
                child.replies.put(("error", message["error"]))
                return
            elif "paired" in message:
                run.session = DeviceSession(run.device_id, jid=message["paired"], phone=message["phone"])
                run.failures = 0
                self._enter(run, RunState.WAITING)    # ends the child; the stored session resumes here
                self._relaunch(run)
                event = Paired(run.device_id, message["paired"], message["phone"])
            else:
                return
        self._emit(event)

    def _on_child_exit(self, run: _Run, generation: int, child: _PairingChild):
        with self._lock:
            if run.generation != generation:
                return              # ended by us (stopped, expired, paired)
            event = self._failed(run, child.last_error or f"pairing process ended ({child.proc.returncode})")
        self._emit(event)

    def _pairing_silent(self, run: _Run):
        """A pairing child that showed no code in hung_after_s (its connect hangs) failed."""
        if run.state is RunState.PAIRING:
            self._emit(self._failed(run, f"no QR code within {self.hung_after_s:.0f} s"))

    def _pairing_expired(self, run: _Run):
        if run.state is RunState.PAIRING:
            self._enter(run, RunState.STOPPED)
            self._emit(PairingExpired(run.device_id))

    # Events of stored sessions (on neonize's threads: map, move the state, hand on) ----------
    def _register(self, client: NewClient):
        handlers = {
            ConnectedEv: self._on_connected, DisconnectedEv: self._on_disconnected,
            LoggedOutEv: lambda run, ev: self._ended(run, mapping.logged_out(run.device_id, ev)),
            StreamReplacedEv: lambda run, ev: self._ended(run, StreamReplaced(run.device_id)),
            ClientOutdatedEv: lambda run, ev: self._ended(run, ClientOutdated(run.device_id)),
            TemporaryBanEv: self._on_temporary_ban, ConnectFailureEv: self._on_connect_failure,
            MessageEv: lambda run, ev: self._emit(mapping.incoming_message(run.device_id, ev)),
            ReceiptEv: lambda run, ev: self._emit(mapping.receipt(run.device_id, ev)),
        }
        for event_class, handler in handlers.items():
            client.event(event_class)(self._dispatching(handler))

    def _dispatching(self, handler):
        def on_event(client, ev):
            settled = self._settled.get(client.uuid)
            if settled is not None:
                settled.set()         # the Go core is past this connect's registry write
            run = self._run_of(client)
            if run is None:
                return
            run.quiet_since = None    # a sign of life for the watchdog
            try:
                handler(run, ev)
            except Exception:         # never let an exception travel back into the Go core
                log.exception("neonize event handler failed for device %s", run.device_id)
        return on_event

    def _run_of(self, client) -> Optional[_Run]:
        with self._lock:
            run = self._runs.get(self._device_of_key.get(client.uuid))
            return run if run is not None and run.client is client and run.state in LIVE else None

    def _on_connected(self, run: _Run, ev):
        with self._lock:
            self._enter(run, RunState.CONNECTED)
            run.failures = 0
        self._emit(Connected(run.device_id))

    def _on_disconnected(self, run: _Run, ev):
        with self._lock:
            was_connected = run.state is RunState.CONNECTED
            self._enter(run, RunState.RECONNECTING)
        if was_connected:
            self._emit(Disconnected(run.device_id, "connection lost; whatsmeow reconnects"))

    def _ended(self, run: _Run, event: Event):
        """Logged out, replaced by another client, or refused as outdated: stop, never retry."""
        with self._lock:
            self._enter(run, RunState.STOPPED)
        self._emit(event)

    def _on_temporary_ban(self, run: _Run, ev):
        ban = mapping.temporary_ban(run.device_id, ev)
        with self._lock:
            self._enter(run, RunState.WAITING)
            run.failures = 0
            self._after(run, max(0.0, (ban.expires_at - datetime.now(timezone.utc)).total_seconds()), self._relaunch)
        self._emit(ban)

    def _on_connect_failure(self, run: _Run, ev):
        with self._lock:
            event = self._failed(run, mapping.connect_failure(run.device_id, ev).error)
        self._emit(event)

    def _emit(self, event: Optional[Event]):
        if event is not None:
            self.on_event(event)

    # Helpers ---------------------------------------------------------------------------------
    def _watch_loop(self):
        while not self._closed.wait(1.0):
            now = time.monotonic()
            with self._lock:
                hung = [r.device_id for r in self._runs.values()
                        if r.quiet_since is not None and now - r.quiet_since > self.hung_after_s]
            if self._stopping_since is not None and now - self._stopping_since > self.hung_after_s:
                hung.append("a client's stop")
            if hung:
                self.on_hung(hung)
                return

    @staticmethod
    def _exit_for_restart(device_ids):
        log.critical("neonize hung for %s: exiting so the supervisor restarts this shard; the threads were:",
                     device_ids)
        faulthandler.dump_traceback(all_threads=True)   # where it hung, for the operator
        logging.shutdown()
        os._exit(75)
