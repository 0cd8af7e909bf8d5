"""A simulated WhatsApp network: the default transport (WA_TRANSPORT=sim) for demo, tests and
benchmarks. It keeps the transport contract of base.py, and it is at least as harsh as WhatsApp
where the sender can tell (shared/notes/whatsapp-realities.md):

- QR codes rotate on WhatsApp's schedule (60 s, then 20 s each, 6 codes) and then expire;
- a connected device's connection drops now and then and comes back by itself a few seconds
  later; sends during a drop are not sent;
- a burst to contacts the device never talked with earns a reach-out timelock: sends to new
  contacts fail with error 463 for a day, warm contacts still get theirs;
- sustained overload (too many sends in a few minutes) earns a temporary ban;
- contacts the device never talked with report some of its messages as spam, and a few reports
  within a day earn a temporary ban ("too many people blocked you");
- an outage makes connects fail (the transport retries, then gives up and releases the device);
- some numbers are not on WhatsApp: sends to them fail as undeliverable, as whatsmeow's do;
- a failed send (WA_SIM_FAILURE_RATE) may have reached the recipient: its answer was lost;
- receipts come as WhatsApp's do: some within 100 ms of the send, some even before the send's
  acknowledgement (ahead of its completion), some never, and a second delivery receipt from
  a recipient's linked device; a read receipt may come without its delivery receipt;
- contacts write from their @lid identity (WhatsApp's hidden-number id) more and more: some with
  their number alongside, a few without it (no lead to match the reply to).

Those rules are on by default (WA_SIM_RULES=off turns them off, for benchmarks of the queue
alone); every duration of them is multiplied by WA_SIM_TIME_SCALE, so tests and the soak run
WhatsApp's day in seconds. Devices also pair by phone code, get logged out, replaced or told the
client is outdated, send with latency and occasional failures, and report receipts and replies.
Every random choice comes from a per-device generator seeded by (seed, device id), so a device's
story repeats under the same seed whatever the thread interleaving.

What the network received is appended, one JSON line per message, to a file of its own under
`store_dir` before `send` returns, so it survives the sender's crash: tests and benchmarks read
it back (`SimNetwork.received`) to count every delivery and prove none was duplicated.
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Optional

from PIL import Image

from common.config import VAR, env, env_flag
from sender.transport.base import (CONNECT_POLICY, PAIRING_WINDOW, ClientOutdated, Connected, ConnectFailed,
                                   ConnectPolicy, DeviceSession, Disconnected, Event, IncomingMessage, LoggedOut,
                                   NotConnected, NotSent, OutgoingMessage, PairCode, Paired, PairingExpired,
                                   PairingWindow, QRCode, ReachOutRefused, ReachOutTimelock, Receipt, SendError,
                                   SendResult, StreamReplaced, TemporaryBan, Undeliverable)
from sender.transport.scheduler import Scheduler



PHOTO_REPLY_SHARE = 0.25   # of the simulated replies, the share that are photos
# In every message id this process makes: WhatsApp's ids are unique, and a device's counter starts
# again in each process that runs it (a lease moved, a restart), with the same seeded story.
_PROCESS = os.urandom(3).hex().upper()


def lid_of(phone: str) -> str:
    """A contact's @lid user: a stable 15-digit number unrelated to its phone number, as WhatsApp's."""
    return str(10**14 + int.from_bytes(hashlib.sha256(phone.encode()).digest()[:8], "big") % (9 * 10**14))


def _photo_preview(colour) -> bytes:
    """A small JPEG like the preview WhatsApp sends along with a photo (a plain colour here)."""
    out = io.BytesIO()
    Image.new("RGB", (96, 72), colour).save(out, "JPEG", quality=60)
    return out.getvalue()


def _env_float(name, default):
    return float(env(name, default))


@dataclass
class SimConfig:
    seed: int = 0
    latency_ms: float = 0.0          # mean send latency; each send waits latency * U(0.5, 1.5)
    failure_rate: float = 0.0        # share of sends that fail (transient): half before the message leaves,
                                     # half after the recipient got it, the answer lost (a timeout)
    receipts: bool = True
    delivered_after_s: float = 1.0   # delivered receipt this long after a send (x U(0.5, 1.5)), unless:
    fast_receipt_share: float = 0.3  # within 100 ms (a recipient online), or
    receipt_before_ack_share: float = 0.1   # before the send returns (of all sends)
    receipt_loss: float = 0.02       # share of receipts that never come (each delivered and read)
    linked_device_share: float = 0.2   # recipients with a second device: a second delivered receipt
    read_rate: float = 0.5           # share of delivered messages that are read ...
    read_after_s: float = 5.0        # ... this long after delivery
    reply_rate: float = 0.0          # share of messages the recipient answers
    reply_after_s: float = 10.0
    lid_share: float = 0.3           # share of contacts writing from their @lid identity, the number alongside ...
    hidden_share: float = 0.03       # ... or without it (a property of the contact: identity_of)
    connect_after_s: float = 0.0     # a stored session connects this long after start
    qr_after_s: float = 0.0          # a new pairing's first QR shows this long after start (WhatsApp: after its handshake)
    store_dir: Path = field(default_factory=lambda: VAR / "simnet")
    # WhatsApp's rules (rules=False turns them off); every duration below times time_scale.
    rules: bool = True
    time_scale: float = 1.0
    pairing: PairingWindow = PAIRING_WINDOW
    policy: ConnectPolicy = CONNECT_POLICY   # retries of connects that fail (an outage)
    drop_every_s: float = 1800.0     # mean time between drops of a connected device
    drop_for_s: tuple = (2.0, 20.0)  # how long a drop lasts
    cold_limit: int = 30             # messages to new contacts within cold_window_s ...
    cold_window_s: float = 3600.0
    timelock_s: float = 86400.0      # ... before a reach-out timelock this long
    burst_limit: int = 120           # sends within burst_window_s ...
    burst_window_s: float = 600.0
    ban_s: float = 3600.0            # ... before a temporary ban this long
    report_rate: float = 0.02        # a message to a contact the device never talked with reported as spam
    reports_to_ban: int = 5          # reports within report_window_s ...
    report_window_s: float = 86400.0
    report_ban_s: float = 86400.0    # ... before a temporary ban this long (BLOCKED_BY_USERS)
    unregistered_share: float = 0.05   # numbers not on WhatsApp (a property of the number: on_whatsapp)
    new_number_s: float = 86400.0    # a number that joined WhatsApp this recently (SimNetwork.joined) ...
    new_number_cold_limit: int = 20  # ... and messages more new contacts than this ...
    new_number_ban_s: float = 86400.0   # ... is banned this long
    # Scripted fault, fired once per store_dir (the process restarted after it behaves):
    # "crash-at-send:N" aborts the process right after the network received its Nth message (as a
    # Go panic would); "hang-connect" leaves every stored-session connect hanging until the
    # watchdog ends the process after hung_after_s (exit 75, as the neonize transport's does).
    fault: str = ""
    hung_after_s: float = 120.0

    @classmethod
    def from_env(cls):
        """WA_SIM_SEED, WA_SIM_LATENCY_MS, WA_SIM_FAILURE_RATE, WA_SIM_RECEIPTS (0/1),
        WA_SIM_REPLY_RATE, WA_SIM_REPLY_AFTER_S, WA_SIM_DIR, WA_SIM_RULES (on/off), WA_SIM_TIME_SCALE,
        WA_SIM_REPORT_RATE, WA_SIM_FAULT, WA_SIM_HUNG_AFTER_S."""
        return cls(seed=int(env("WA_SIM_SEED", "0")),
                   latency_ms=_env_float("WA_SIM_LATENCY_MS", 0.0),
                   failure_rate=_env_float("WA_SIM_FAILURE_RATE", 0.0),
                   receipts=env_flag("WA_SIM_RECEIPTS", True),
                   reply_rate=_env_float("WA_SIM_REPLY_RATE", 0.0),
                   reply_after_s=_env_float("WA_SIM_REPLY_AFTER_S", 10.0),
                   store_dir=Path(env("WA_SIM_DIR") or VAR / "simnet"),
                   rules=env_flag("WA_SIM_RULES", True),
                   time_scale=_env_float("WA_SIM_TIME_SCALE", 1.0),
                   report_rate=_env_float("WA_SIM_REPORT_RATE", SimConfig.report_rate),
                   fault=env("WA_SIM_FAULT", ""),
                   hung_after_s=_env_float("WA_SIM_HUNG_AFTER_S", 120.0))


def on_whatsapp(phone: str, seed: int = 0, unregistered_share: float = SimConfig.unregistered_share) -> bool:
    """Whether the simulated network (of this seed) has the number on WhatsApp, unless told otherwise
    (SimTransport.not_on_whatsapp, a reply from it)."""
    return random.Random(f"{seed}:registered:{phone}").random() >= unregistered_share


class SimNetwork:
    """The network's record of what it received: append-only JSON lines, one file per process
    (so concurrent senders never interleave a line), written with os.write before a send returns."""

    def __init__(self, store_dir: Path):
        self.store_dir = Path(store_dir)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        path = self.store_dir / f"received-{os.getpid()}-{os.urandom(3).hex()}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._joined = self._read_joined(self.store_dir)

    @staticmethod
    def join(store_dir, phones, at: Optional[float] = None):
        """These numbers joined WhatsApp at `at` (epoch seconds; now by default): new numbers, which
        WhatsApp watches closely in their first day. A network in another process learns it when it
        opens (the soak registers its numbers before it starts the senders)."""
        at = time.time() if at is None else at
        Path(store_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(store_dir) / "joined.jsonl", "a", encoding="utf-8") as f:
            f.writelines(json.dumps({"phone": p, "at": at}) + "\n" for p in phones)

    def joined(self, phone: Optional[str]) -> Optional[float]:
        """When the number joined WhatsApp (epoch seconds), or None: long before anything here."""
        return self._joined.get(phone)

    def note_joined(self, phone: str, at: float):
        self.join(self.store_dir, [phone], at)
        self._joined[phone] = at

    # What WhatsApp keeps about a number, whichever process runs it (SimTransport._remember): a
    # snapshot of its state, and a log of what happened since (one line a send, appended before the
    # send returns, as the record is), so a process that dies loses none of it.
    def remember(self, number: str, state: dict):
        """A snapshot of the number's state, covering its log so far."""
        folder = self._numbers()
        log = folder / f"{number}.log"
        state = dict(state, log_bytes=log.stat().st_size if log.exists() else 0)
        tmp = folder / f".{number}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, folder / f"{number}.json")

    def note(self, number: str, entry: dict):
        """One more thing that happened to the number (SimTransport._note)."""
        fd = os.open(self._numbers() / f"{number}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, (json.dumps(entry) + "\n").encode())
        finally:
            os.close(fd)

    def recall(self, number: str) -> tuple[Optional[dict], list[dict]]:
        """The number's last snapshot (or None) and what its log holds since."""
        folder = self.store_dir / "numbers"
        try:
            state = json.loads((folder / f"{number}.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            state = None
        try:
            with open(folder / f"{number}.log", "rb") as f:
                f.seek(state["log_bytes"] if state else 0)
                notes = [json.loads(line) for line in f if line.endswith(b"\n")]
        except FileNotFoundError:
            notes = []
        return state, notes

    def _numbers(self) -> Path:
        folder = self.store_dir / "numbers"
        folder.mkdir(exist_ok=True)
        return folder

    @staticmethod
    def _read_joined(store_dir) -> dict:
        path = Path(store_dir) / "joined.jsonl"
        if not path.exists():
            return {}
        with open(path, encoding="utf-8") as f:
            return {r["phone"]: r["at"] for r in map(json.loads, f)}

    def record(self, message: OutgoingMessage, wa_message_id: str, at: float):
        # The line json.dumps of the dict would write, built around its strings: the network's own
        # bookkeeping runs in the sender's process, and the dict's encoding took 11 us a message.
        dumps = json.dumps
        line = (f'{{"message_id":{message.message_id:d},"device_id":{message.device_id:d},'
                f'"to":{dumps(message.to_phone)},"wa_message_id":{dumps(wa_message_id)},"at":{at!r},'
                f'"text":{dumps(message.text)},"image_bytes":{len(message.image or b""):d}}}\n')
        os.write(self._fd, line.encode())

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def received(store_dir) -> list[dict]:
        """Every message the network received, from every process that ever wrote to store_dir."""
        out = []
        for path in sorted(Path(store_dir).glob("received-*.jsonl")):
            with open(path, encoding="utf-8") as f:
                out.extend(json.loads(line) for line in f if line.endswith("\n"))
        return out


@dataclass
class _Device:
    session: DeviceSession
    rng: random.Random
    # stopped, pairing, connecting, connected, dropped (reconnecting by itself), banned
    state: str = "stopped"
    jid: Optional[str] = None
    phone: Optional[str] = None
    sent: itertools.count = field(default_factory=itertools.count)
    generation: int = 0             # bumps on every start/stop so stale timers do nothing
    connect_started: Optional[float] = None   # monotonic start of a hanging connect (fault)
    failures: int = 0               # failed connects in a row (an outage)
    connects: int = 0               # connects that reached the network
    contacts: set = field(default_factory=set)       # warm: written to, or heard from
    cold_sends: deque = field(default_factory=deque)  # monotonic times of sends to new contacts
    sends: deque = field(default_factory=deque)       # monotonic times of recent sends
    reports: deque = field(default_factory=deque)     # monotonic times of spam reports against it
    new_contacts: int = 0           # new contacts messaged while the number is new (SimConfig.new_number_s)
    timelocked_until: float = 0.0
    banned_until: float = 0.0
    ban_code: str = ""
    removed: set = field(default_factory=set)         # its sessions removed on the phone: they cannot connect
    away: bool = True               # let go by this process (or never run here): the network knows it better

    @property
    def number(self) -> Optional[str]:
        """What the network knows it by (a test's session may have a jid only)."""
        return self.phone or self.jid
    code_shown: bool = False        # a QR or pairing code of this pairing is on screen (a phone can scan it)


class SimTransport:
    """The Transport protocol over the simulated network, plus the controls a test needs to
    script every event: scan() (of a code on screen: showing_code()), disconnect(), reconnect(),
    outage(), ban(), remote_logout(), replace_stream(), client_outdated(), reply(), not_on_whatsapp(),
    receipts_overtake_acks(), is_linked()."""

    def __init__(self, on_event: Callable[[Event], None], config: Optional[SimConfig] = None):
        self.config = config or SimConfig.from_env()
        self.on_event = on_event
        self.network = SimNetwork(self.config.store_dir)
        self._pairing = self.config.pairing.scaled(self.config.time_scale)
        self._policy = self.config.policy.scaled(self.config.time_scale)
        self._devices: dict[int, _Device] = {}
        self._linked: set[str] = set()          # sessions the phones list under Linked Devices
        self._down: set[int] = set()             # devices in an outage: no connection possible
        self._registered_as: dict[str, bool] = {}   # on WhatsApp or not, as told: not_on_whatsapp(), reply()
        self._lock = threading.Lock()
        self._timers = Scheduler("sim-timers")
        self._closed = False
        self._sends = itertools.count(1)
        kind, _, arg = self.config.fault.partition(":")
        self._crash_at = int(arg) if kind == "crash-at-send" else None
        self._hang = kind == "hang-connect" and self._claim_fault(kind)
        if self._hang:
            threading.Thread(target=self._watch_hung_connects, name="sim-watchdog", daemon=True).start()

    # Transport protocol ----------------------------------------------------------------------
    def start(self, session: DeviceSession) -> None:
        with self._lock:
            dev = self._devices.get(session.device_id)
            if dev is None:
                dev = _Device(session, random.Random(f"{self.config.seed}:{session.device_id}"))
                self._devices[session.device_id] = dev
            dev.session = session
            dev.generation += 1
            dev.failures = 0
            dev.jid, dev.phone = session.jid, session.phone
            if dev.away:
                self._recall(dev)
                dev.away = False
            if dev.jid:
                dev.state = "connecting"
                if self._hang:
                    dev.connect_started = time.monotonic()
                else:
                    self._after(self.config.connect_after_s, dev, self._connect)
            else:
                dev.state = "pairing"
                dev.code_shown = False
                self._after(self.config.qr_after_s, dev, self._show_qr, 0)

    def stop(self, device_id: int) -> None:
        with self._lock:
            dev = self._devices.get(device_id)
            if dev:
                self._let_go(dev)

    def pair_phone(self, device_id: int, phone: str) -> str:
        if self.state(device_id) != "pairing":
            self.start(DeviceSession(device_id, phone=phone))
        with self._lock:
            dev = self._require(device_id)
            if device_id in self._down:
                raise NotConnected(f"device {device_id} could not reach WhatsApp to pair by code")
            code = "".join(dev.rng.choice("ABCDEFGHJKLMNPQRSTVWXYZ23456789") for _ in range(8))
            dev.phone = phone
            dev.code_shown = True
        self.on_event(PairCode(device_id, code))
        return code

    def logout(self, device_id: int, wait_s: float = 0.0) -> None:
        deadline = time.monotonic() + wait_s
        while self.state(device_id) in ("dropped", "connecting") and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.state(device_id) != "connected":
            raise NotConnected(f"device {device_id} is not connected: WhatsApp needs a live connection to log out")
        self.remote_logout(device_id, "logged out from the dashboard")

    def send(self, message: OutgoingMessage) -> SendResult:
        with self._lock:
            dev = self._devices.get(message.device_id)
            if dev is None or dev.state != "connected":
                raise NotSent(f"device {message.device_id} is not connected")
            if self.config.rules and not self._registered(message.to_phone):
                # whatsmeow looks the number's @lid up before it sends (shared/notes/neonize.md)
                raise Undeliverable(f"no LID found for {message.to_phone}@s.whatsapp.net from server "
                                    "(the number is not on WhatsApp)")
            refused = self.config.rules and self._refuses_reach_out(dev, message.to_phone)
            if not refused:
                rng = dev.rng
                wait = self.config.latency_ms * rng.uniform(0.5, 1.5) / 1000.0
                fails = self.config.failure_rate > 0 and rng.random() < self.config.failure_rate
                answer_lost = fails and rng.random() < 0.5
                n = next(dev.sent)
                receipts = self._receipt_plan(rng) if self.config.receipts else None
                replies = self.config.reply_rate > 0 and rng.random() < self.config.reply_rate
                cold = self.config.rules and message.to_phone not in dev.contacts
                reported = cold and rng.random() < self.config.report_rate
        if refused:
            # As through neonize: the 463 alone; WhatsApp's notification with the lock's end is not passed on.
            self.on_event(ReachOutTimelock(message.device_id))
            raise ReachOutRefused("server returned error 463")
        if wait:
            time.sleep(wait)
        if fails and not answer_lost:
            raise SendError("simulated network failure")
        wa_id = f"SIM{_PROCESS}{message.device_id:X}{n:08X}"
        now = time.time()
        self.network.record(message, wa_id, now)
        if self._crash_at is not None and next(self._sends) >= self._crash_at and self._claim_fault("crash-at-send"):
            os.abort()
        with self._lock:
            dev.contacts.add(message.to_phone)
            # a ban for too many sends in a few minutes, for a new number reaching out too fast, or
            # for a day's spam reports
            overloaded = self.config.rules and self._one_too_many(dev, dev.sends, self.config.burst_window_s,
                                                                  self.config.burst_limit + 1)
            too_new = cold and not overloaded and self._too_new_to_reach_out(dev, now)
            counts_report = reported and not (overloaded or too_new)
            blocked = counts_report and self._one_too_many(dev, dev.reports, self.config.report_window_s,
                                                           self.config.reports_to_ban)
            if self.config.rules:   # the note is built only for the rules that read it
                self._note(dev, {"t": now, "to": message.to_phone, "cold": cold, "report": counts_report,
                                 "new_contacts": dev.new_contacts})
        if overloaded:
            self.ban(message.device_id, self._scaled(self.config.ban_s), "SEND_TO_TOO_MANY_PEOPLE")
        elif too_new:
            self.ban(message.device_id, self._scaled(self.config.new_number_ban_s), "SEND_TO_TOO_MANY_PEOPLE")
        elif blocked:
            self.ban(message.device_id, self._scaled(self.config.report_ban_s), "BLOCKED_BY_USERS")
        if self.config.receipts:
            self._after_send(message, wa_id, receipts, replies)
        if answer_lost:   # the recipient has it (and its receipts come), the sender never hears
            raise SendError("info query timed out: the message may have been delivered")
        return SendResult(wa_id, datetime.fromtimestamp(now, timezone.utc))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for dev in self._devices.values():
                self._let_go(dev)
        self._timers.close()
        self.network.close()

    # Scripting (tests, demo) -----------------------------------------------------------------
    def scan(self, device_id: int, phone: Optional[str] = None) -> str:
        """The phone scans the QR (or types the code): the device pairs and connects. As with
        WhatsApp, only a code on screen can be scanned: none before the first is shown."""
        with self._lock:
            dev = self._require(device_id)
            if dev.state != "pairing":
                raise ValueError(f"device {device_id} is not pairing")
            if not dev.code_shown:
                raise ValueError(f"device {device_id} shows no QR or pairing code yet: nothing to scan")
            dev.phone = phone or dev.phone or f"6010{dev.rng.randrange(10**7, 10**8)}"
            dev.jid = f"{dev.phone}.0:{dev.rng.randrange(1, 99)}@s.whatsapp.net"
            dev.generation += 1
            dev.state = "connected"
            self._recall(dev)
            self._linked.add(dev.jid)
            dev.removed.discard(dev.jid)
            self._schedule_drop(dev)
            jid, phone = dev.jid, dev.phone
        self.on_event(Paired(device_id, jid, phone))
        self.on_event(Connected(device_id))
        return jid

    def showing_code(self, device_id: int) -> bool:
        """Whether a QR or pairing code is on screen: what a phone could scan now."""
        with self._lock:
            dev = self._devices.get(device_id)
            return dev is not None and dev.state == "pairing" and dev.code_shown

    def disconnect(self, device_id: int, reconnect_after_s: Optional[float] = None):
        """The connection drops; it comes back by itself after reconnect_after_s (if given)."""
        with self._lock:
            dev = self._require(device_id)
            dev.generation += 1
            dev.state = "dropped"
            if reconnect_after_s is not None:
                self._after(reconnect_after_s, dev, self._connect)
        self.on_event(Disconnected(device_id, "simulated network drop"))

    def reconnect(self, device_id: int):
        with self._lock:
            dev = self._require(device_id)
            dev.generation += 1
            dev.state = "connecting"
            self._after(0, dev, self._connect)

    def outage(self, device_id: int, down: bool = True):
        """No connection for this device while down: a connected one drops, connects fail (the
        transport retries, then gives up); when it ends a dropped connection comes back."""
        with self._lock:
            (self._down.add if down else self._down.discard)(device_id)
            dev = self._devices.get(device_id)
            was = dev.state if dev else "stopped"
            if down and was == "connected":
                dev.generation += 1
                dev.state = "dropped"
            elif not down and was == "dropped":
                self._after(0, dev, self._connect)
        if down and was == "connected":
            self.on_event(Disconnected(device_id, "simulated outage"))

    def receipts_overtake_acks(self):
        """From now on every send's delivery receipt comes, and before the send returns (as
        WhatsApp's can: the recipient's phone answers while the acknowledgement is on its way)."""
        self.config = replace(self.config, receipt_before_ack_share=1.0, receipt_loss=0.0)

    def timelock(self, device_id: int):
        """A reach-out timelock now, as a burst to new contacts would earn."""
        with self._lock:
            dev = self._require(device_id)
            dev.timelocked_until = time.monotonic() + self._scaled(self.config.timelock_s)
            self._remember(dev)

    def ban(self, device_id: int, seconds: float, code: str = "SEND_TO_TOO_MANY_PEOPLE"):
        """A temporary ban: the device is cut off and reconnects when it expires."""
        with self._lock:
            dev = self._require(device_id)
            dev.banned_until, dev.ban_code = time.monotonic() + seconds, code
            self._remember(dev)
            event = self._banned(dev)
        self.on_event(event)

    def remote_logout(self, device_id: int, reason: str = "removed from Linked Devices on the phone"):
        with self._lock:
            dev = self._require(device_id)
            dev.generation += 1
            dev.state = "stopped"
            if dev.jid:
                self._linked.discard(dev.jid)
                dev.removed.add(dev.jid)
            dev.jid = None
            self._remember(dev)
        self.on_event(LoggedOut(device_id, reason))

    def replace_stream(self, device_id: int):
        """Another client took this session over."""
        self._cut_off(device_id, StreamReplaced(device_id))

    def client_outdated(self, device_id: int):
        """WhatsApp refuses this client version (405)."""
        self._cut_off(device_id, ClientOutdated(device_id))

    def reply(self, device_id: int, from_phone: str, text: str, thumbnail: Optional[bytes] = None,
              identity: str = "phone"):
        """An inbound message from a contact (who is warm from then on): text, or a photo (its
        caption and the JPEG preview WhatsApp sends along with an image). identity: from its phone
        number's JID, or from its @lid identity with the number alongside ("lid") or without ("hidden")."""
        with self._lock:
            dev = self._require(device_id)
            n = next(dev.sent)
            dev.contacts.add(from_phone)
            self._note(dev, {"t": time.time(), "from": from_phone})
            self._registered_as[from_phone] = True   # whoever writes is on WhatsApp
        jid = f"{from_phone}@s.whatsapp.net" if identity == "phone" else f"{lid_of(from_phone)}@lid"
        self.on_event(IncomingMessage(
            device_id, wa_message_id=f"SIMIN{_PROCESS}{device_id:X}{n:08X}", chat_jid=jid, sender_jid=jid,
            sender_phone=None if identity == "hidden" else from_phone, text=text,
            timestamp=datetime.now(timezone.utc), message_type="image" if thumbnail else "text", thumbnail=thumbnail))

    def joined_whatsapp(self, phone: str, at: Optional[float] = None):
        """The number joined WhatsApp at `at` (epoch seconds, now by default): a new number, in its
        first day (new_number_s) banned once it messages more than new_number_cold_limit new contacts."""
        with self._lock:
            self.network.note_joined(phone, time.time() if at is None else at)

    def not_on_whatsapp(self, phone: str):
        """The number is not (or no longer) on WhatsApp: sends to it fail as undeliverable."""
        with self._lock:
            self._registered_as[phone] = False

    def on_whatsapp(self, phone: str) -> bool:
        """Whether the number has WhatsApp: most do; the same answer for a number under the same seed."""
        with self._lock:
            return self._registered(phone)

    def identity_of(self, phone: str) -> str:
        """How this contact writes: "phone", "lid" (its number alongside) or "hidden" (no number);
        the same for a number under the same seed."""
        draw = random.Random(f"{self.config.seed}:{phone}").random()
        return ("hidden" if draw < self.config.hidden_share else
                "lid" if draw < self.config.hidden_share + self.config.lid_share else "phone")

    def state(self, device_id: int) -> str:
        with self._lock:
            dev = self._devices.get(device_id)
            return dev.state if dev else "stopped"

    def connects(self, device_id: int) -> int:
        """How many connects of this device reached the network."""
        with self._lock:
            dev = self._devices.get(device_id)
            return dev.connects if dev else 0

    def is_linked(self, jid: str) -> bool:
        """Whether the phone still lists this session under Linked Devices."""
        with self._lock:
            return jid in self._linked

    # Internals -------------------------------------------------------------------------------
    def _registered(self, phone: str) -> bool:
        """Caller holds the lock."""
        known = self._registered_as.get(phone)
        return on_whatsapp(phone, self.config.seed, self.config.unregistered_share) if known is None else known

    def _scaled(self, seconds: float) -> float:
        return seconds * self.config.time_scale

    def _refuses_reach_out(self, dev: _Device, to_phone: str) -> bool:
        """Caller holds the lock. A burst to new contacts earns a timelock for new contacts."""
        if to_phone in dev.contacts:
            return False
        now = time.monotonic()
        if dev.timelocked_until > now:
            return True
        # the send one past the limit meets the lock; the burst after the lock counts anew
        if self._one_too_many(dev, dev.cold_sends, self.config.cold_window_s, self.config.cold_limit + 1):
            dev.timelocked_until = now + self._scaled(self.config.timelock_s)
            self._remember(dev)
            return True
        return False

    def _too_new_to_reach_out(self, dev: _Device, now: float) -> bool:
        """Caller holds the lock; a message to a new contact went out. A number in its first day on
        WhatsApp that messages more than new_number_cold_limit new contacts is banned (whatsapp-realities:
        new numbers banned before 20 messages)."""
        joined = self.network.joined(dev.phone)
        if joined is None or now - joined >= self._scaled(self.config.new_number_s):
            return False
        dev.new_contacts += 1
        return dev.new_contacts > self.config.new_number_cold_limit

    def _one_too_many(self, dev: _Device, times: deque, window_s: float, limit: int) -> bool:
        """Caller holds the lock. Counts one more event now in `times` over the trailing window
        (scaled); True when they reach `limit` while connected, and they count anew (the timelock or
        ban this earns answers them)."""
        now = time.monotonic()
        times.append(now)
        while times and times[0] < now - self._scaled(window_s):
            times.popleft()
        if len(times) >= limit and dev.state == "connected":
            times.clear()
            return True
        return False

    def _cut_off(self, device_id: int, event: Event):
        with self._lock:
            dev = self._require(device_id)
            dev.generation += 1
            dev.state = "stopped"
        self.on_event(event)

    def _claim_fault(self, kind) -> bool:
        """True for the one process that gets to fire this fault in this store_dir."""
        try:
            os.close(os.open(self.config.store_dir / f"fault-{kind}.fired", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False

    def _watch_hung_connects(self):
        while not self._closed:
            time.sleep(0.1)
            now = time.monotonic()
            with self._lock:
                hung = [d for d in self._devices.values() if d.state == "connecting" and d.connect_started
                        and now - d.connect_started > self.config.hung_after_s]
            if hung:
                os._exit(75)

    def _require(self, device_id) -> _Device:
        dev = self._devices.get(device_id)
        if dev is None:
            raise LookupError(f"device {device_id} was never started on this transport")
        return dev

    def _connect(self, dev: _Device):
        device_id = dev.session.device_id
        with self._lock:
            if not dev.jid:
                return
            if device_id in self._down:
                if dev.state == "dropped":
                    return                      # reconnects silently once the outage ends
                event = self._connect_failed(dev, "failed to dial whatsapp web websocket (simulated outage)")
            elif dev.jid in dev.removed:        # removed on the phone while this session was away
                dev.generation += 1
                dev.state, dev.jid = "stopped", None
                event = LoggedOut(device_id, "removed from Linked Devices on the phone (on connect)")
            elif dev.banned_until > time.monotonic():   # banned while another process ran it
                event = self._banned(dev)
            else:
                dev.state, dev.failures = "connected", 0
                dev.connects += 1
                self._linked.add(dev.jid)       # a session that connects is listed on its phone
                self._schedule_drop(dev)
                event = Connected(device_id)
        self.on_event(event)

    def _banned(self, dev: _Device) -> TemporaryBan:
        """Caller holds the lock: the device is cut off until its ban ends, then reconnects."""
        left = dev.banned_until - time.monotonic()
        dev.generation += 1
        dev.state = "banned"
        self._after(left, dev, self._connect)
        return TemporaryBan(dev.session.device_id, dev.ban_code, datetime.now(timezone.utc) + timedelta(seconds=left))

    # WhatsApp keeps what it knows of a number on its servers; here in the network's store, so a
    # device whose lease moves to another sender process, or whose process dies, meets the same bans,
    # timelocks, counts and contacts: a snapshot when a rule fires or a session is removed and when a
    # process lets the device go, a note of each send and each contact who wrote in between. Times go
    # out as wall clock.
    def _note(self, dev: _Device, entry: dict):
        """Caller holds the lock. Only WhatsApp's rules read any of it."""
        if self.config.rules and dev.number:
            self.network.note(dev.number, entry)

    def _remember(self, dev: _Device):
        """Caller holds the lock."""
        if dev.number:
            shift = time.time() - time.monotonic()
            self.network.remember(dev.number, {
                "banned_until": dev.banned_until + shift, "ban_code": dev.ban_code,
                "timelocked_until": dev.timelocked_until + shift,
                "cold_sends": [t + shift for t in dev.cold_sends], "sends": [t + shift for t in dev.sends],
                "reports": [t + shift for t in dev.reports], "new_contacts": dev.new_contacts,
                "contacts": sorted(dev.contacts), "removed": sorted(dev.removed)})

    def _let_go(self, dev: _Device):
        """Caller holds the lock: the device stops here, and the network keeps what it knows of its
        number (not again for a device let go before: another process may run it now)."""
        dev.generation += 1
        if not dev.away:
            dev.state, dev.away = "stopped", True
            self._remember(dev)

    def _recall(self, dev: _Device):
        """Caller holds the lock."""
        if not dev.number:
            return
        known, notes = self.network.recall(dev.number)
        shift = time.monotonic() - time.time()
        if known:
            dev.banned_until, dev.ban_code = known["banned_until"] + shift, known["ban_code"]
            dev.timelocked_until = known["timelocked_until"] + shift
            dev.cold_sends = deque(t + shift for t in known["cold_sends"])
            dev.sends = deque(t + shift for t in known["sends"])
            dev.reports = deque(t + shift for t in known["reports"])
            dev.new_contacts, dev.contacts, dev.removed = known["new_contacts"], set(known["contacts"]), set(known["removed"])
        for n in notes:   # what happened after the snapshot, as send() and reply() counted it
            if "from" in n:
                dev.contacts.add(n["from"])
                continue
            t = n["t"] + shift
            dev.contacts.add(n["to"])
            dev.sends.append(t)
            if n["cold"]:
                dev.cold_sends.append(t)
            if n["report"]:
                dev.reports.append(t)
            dev.new_contacts = n["new_contacts"]

    def _connect_failed(self, dev: _Device, reason: str) -> ConnectFailed:
        """Caller holds the lock: retried on the contract's policy, then given up."""
        dev.failures += 1
        delay = self._policy.retry_in(dev.failures)
        if delay is None:
            dev.generation += 1
            dev.state = "stopped"
            resume_at = datetime.now(timezone.utc) + timedelta(seconds=self._policy.hold_s)
            return ConnectFailed(dev.session.device_id, f"gave up after {dev.failures} attempts: {reason}", resume_at)
        self._after(delay, dev, self._connect)
        return ConnectFailed(dev.session.device_id, f"{reason} (attempt {dev.failures} of "
                                                    f"{self.config.policy.attempts}; retrying)")

    def _schedule_drop(self, dev: _Device):
        """Caller holds the lock: the connection will drop after a random while, then return."""
        if self.config.rules and self.config.drop_every_s > 0:
            self._after(dev.rng.expovariate(1 / self._scaled(self.config.drop_every_s)), dev, self._drop)

    def _drop(self, dev: _Device):
        with self._lock:
            if dev.state != "connected":
                return
            dev.state = "dropped"
            self._after(self._scaled(dev.rng.uniform(*self.config.drop_for_s)), dev, self._connect)
        self.on_event(Disconnected(dev.session.device_id, "connection lost; reconnecting"))

    def _show_qr(self, dev: _Device, shown: int):
        device_id = dev.session.device_id
        pairing = self._pairing
        with self._lock:
            if shown >= pairing.codes:
                dev.generation += 1
                dev.state = "stopped"
                event = PairingExpired(device_id)
            else:
                code = f"2@SIM{device_id}," + "".join(dev.rng.choice("0123456789abcdef") for _ in range(32))
                self._after(pairing.shown_for(shown), dev, self._show_qr, shown + 1)
                dev.code_shown = True
                event = QRCode(device_id, code)
        self.on_event(event)

    def _receipt_plan(self, rng: random.Random) -> tuple:
        """When the message reaches the recipient (seconds after the send; 0: before the send
        returns), and (seconds after the send, kind) of each receipt that will come of it."""
        c = self.config
        draw = rng.random()
        if draw < c.receipt_before_ack_share:
            delivered = 0.0
        elif draw < c.receipt_before_ack_share + c.fast_receipt_share:
            delivered = rng.uniform(0.001, 0.1)
        else:
            delivered = c.delivered_after_s * rng.uniform(0.5, 1.5)
        plan = [(delivered, "delivered")]
        if rng.random() < c.linked_device_share:
            plan.append((delivered + rng.uniform(0.05, 2.0), "delivered"))
        if rng.random() < c.read_rate:
            plan.append((delivered + c.read_after_s, "read"))
        return delivered, [r for r in plan if rng.random() >= c.receipt_loss]

    def _after_send(self, message, wa_id, receipts, replies):
        with self._lock:
            dev = self._devices.get(message.device_id)
        if dev is None:
            return
        delivered, receipts = receipts
        for after, kind in receipts:
            if after == 0.0:
                self._receipt(dev, wa_id, kind)
            else:
                self._timers.call_later(after, self._receipt, dev, wa_id, kind)
        if replies:   # lost receipt or not, the recipient has the message
            self._timers.call_later(delivered + self.config.reply_after_s, self._reply_to, dev, message)

    def _receipt(self, dev: _Device, wa_id: str, kind: str):
        self.on_event(Receipt(dev.session.device_id, (wa_id,), kind, datetime.now(timezone.utc)))

    def _reply_to(self, dev: _Device, message: OutgoingMessage):
        with self._lock:
            photo = dev.rng.random() < PHOTO_REPLY_SHARE
            text = dev.rng.choice(["Is this the one?", "My receipt", ""] if photo else
                                  ["Ok thanks", "How much?", "Stop", "Interested", "👍"])
            colour = tuple(dev.rng.randrange(40, 220) for _ in range(3))
        self.reply(dev.session.device_id, message.to_phone, text, thumbnail=_photo_preview(colour) if photo else None,
                   identity=self.identity_of(message.to_phone))

    def _after(self, seconds, dev, fn, *args):
        """Caller holds the lock. Runs fn(dev, *args) later unless the device restarted or stopped."""
        generation = dev.generation

        def fire():
            with self._lock:
                if self._closed or generation != dev.generation:
                    return
            fn(dev, *args)
        self._timers.call_later(seconds, fire)
