"""A simulated WhatsApp network: the default transport (WA_TRANSPORT=sim) for demo, tests and
benchmarks.

It behaves like the real thing where the sender can tell: devices pair by QR (a simulated phone
"scans" it) or by phone code, connect, disconnect, get logged out or temporarily banned, send with
latency and occasional failures, and report delivered/read receipts and inbound replies. Every
random choice comes from a per-device generator seeded by (seed, device id), so a device's story
repeats under the same seed whatever the thread interleaving.

What the network received is appended, one JSON line per message, to a file of its own under
`store_dir` before `send` returns, so it survives the sender's crash: tests and benchmarks read
it back (`SimNetwork.received`) to count every delivery and prove none was duplicated.
"""
from __future__ import annotations

import heapq
import io
import itertools
import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Optional

from PIL import Image

from common.config import VAR
from sender.transport.base import (Connected, ConnectFailed, DeviceSession, Disconnected, Event,
                                   IncomingMessage, LoggedOut, NotSent, OutgoingMessage, PairCode,
                                   Paired, QRCode, Receipt, SendError, SendResult, StreamReplaced,
                                   TemporaryBan)


PHOTO_REPLY_SHARE = 0.25   # of the simulated replies, the share that are photos


def _photo_preview(colour) -> bytes:
    """A small JPEG like the preview WhatsApp sends along with a photo (a plain colour here)."""
    out = io.BytesIO()
    Image.new("RGB", (96, 72), colour).save(out, "JPEG", quality=60)
    return out.getvalue()


def _env_float(name, default):
    return float(os.environ.get(name, default))


@dataclass
class SimConfig:
    seed: int = 0
    latency_ms: float = 0.0          # mean send latency; each send waits latency * U(0.5, 1.5)
    failure_rate: float = 0.0        # share of sends that fail (transient)
    receipts: bool = True
    delivered_after_s: float = 1.0   # delivered receipt this long after a send (x U(0.5, 1.5))
    read_rate: float = 0.5           # share of delivered messages that are read ...
    read_after_s: float = 5.0        # ... this long after delivery
    reply_rate: float = 0.0          # share of messages the recipient answers
    reply_after_s: float = 10.0
    connect_after_s: float = 0.0     # a stored session connects this long after start
    qr_every_s: float = 20.0         # pairing QR rotation
    qr_codes: int = 6                # codes shown before pairing times out
    store_dir: Path = field(default_factory=lambda: VAR / "simnet")
    # Scripted fault, fired once per store_dir (the process restarted after it behaves):
    # "crash-at-send:N" aborts the process right after the network received its Nth message (as a
    # Go panic would); "hang-connect" leaves every stored-session connect hanging until the
    # watchdog ends the process after hung_after_s (exit 75, as the neonize transport's does).
    fault: str = ""
    hung_after_s: float = 120.0

    @classmethod
    def from_env(cls):
        """WA_SIM_SEED, WA_SIM_LATENCY_MS, WA_SIM_FAILURE_RATE, WA_SIM_RECEIPTS (0/1),
        WA_SIM_REPLY_RATE, WA_SIM_REPLY_AFTER_S, WA_SIM_DIR, WA_SIM_FAULT, WA_SIM_HUNG_AFTER_S."""
        return cls(seed=int(os.environ.get("WA_SIM_SEED", "0")),
                   latency_ms=_env_float("WA_SIM_LATENCY_MS", 0.0),
                   failure_rate=_env_float("WA_SIM_FAILURE_RATE", 0.0),
                   receipts=os.environ.get("WA_SIM_RECEIPTS", "1") not in ("0", "false", "no"),
                   reply_rate=_env_float("WA_SIM_REPLY_RATE", 0.0),
                   reply_after_s=_env_float("WA_SIM_REPLY_AFTER_S", 10.0),
                   store_dir=Path(os.environ.get("WA_SIM_DIR") or VAR / "simnet"),
                   fault=os.environ.get("WA_SIM_FAULT", ""),
                   hung_after_s=_env_float("WA_SIM_HUNG_AFTER_S", 120.0))


class SimNetwork:
    """The network's record of what it received: append-only JSON lines, one file per process
    (so concurrent senders never interleave a line), written with os.write before a send returns."""

    def __init__(self, store_dir: Path):
        self.store_dir = Path(store_dir)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        path = self.store_dir / f"received-{os.getpid()}-{os.urandom(3).hex()}.jsonl"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def record(self, message: OutgoingMessage, wa_message_id: str, at: float):
        line = json.dumps({"message_id": message.message_id, "device_id": message.device_id,
                           "to": message.to_phone, "wa_message_id": wa_message_id, "at": at,
                           "text": message.text, "image_bytes": len(message.image or b"")},
                          separators=(",", ":")) + "\n"
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
    state: str = "stopped"          # stopped, pairing, connected, disconnected, banned
    jid: Optional[str] = None
    phone: Optional[str] = None
    sent: itertools.count = field(default_factory=itertools.count)
    generation: int = 0             # bumps on every start/stop so stale timers do nothing
    connect_started: Optional[float] = None   # monotonic start of a hanging connect (fault)


class SimTransport:
    """The Transport protocol over the simulated network, plus the controls a test needs to
    script every event: scan(), disconnect(), reconnect(), ban(), remote_logout(),
    replace_stream(), reply()."""

    def __init__(self, on_event: Callable[[Event], None], config: Optional[SimConfig] = None):
        self.config = config or SimConfig.from_env()
        self.on_event = on_event
        self.network = SimNetwork(self.config.store_dir)
        self._devices: dict[int, _Device] = {}
        self._lock = threading.Lock()
        self._timers: list = []
        self._timer_seq = itertools.count()
        self._timer_wake = threading.Condition(self._lock)
        self._closed = False
        self._timer_thread = threading.Thread(target=self._run_timers, name="sim-timers", daemon=True)
        self._timer_thread.start()
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
            dev.jid, dev.phone = session.jid, session.phone
            if dev.jid:
                dev.state = "connecting"
                if self._hang:
                    dev.connect_started = time.monotonic()
                else:
                    self._after(self.config.connect_after_s, dev, self._connect)
            else:
                dev.state = "pairing"
                self._after(0, dev, self._show_qr, 0)

    def stop(self, device_id: int) -> None:
        with self._lock:
            dev = self._devices.get(device_id)
            if dev:
                dev.generation += 1
                dev.state = "stopped"

    def pair_phone(self, device_id: int, phone: str) -> str:
        with self._lock:
            dev = self._require(device_id)
            code = "".join(dev.rng.choice("ABCDEFGHJKLMNPQRSTVWXYZ23456789") for _ in range(8))
            dev.phone = phone
        self.on_event(PairCode(device_id, code))
        return code

    def logout(self, device_id: int) -> None:
        self.remote_logout(device_id, "logged out from the dashboard")

    def send(self, message: OutgoingMessage) -> SendResult:
        with self._lock:
            dev = self._devices.get(message.device_id)
            if dev is None or dev.state != "connected":
                raise NotSent(f"device {message.device_id} is not connected")
            rng = dev.rng
            wait = self.config.latency_ms * rng.uniform(0.5, 1.5) / 1000.0
            fails = self.config.failure_rate > 0 and rng.random() < self.config.failure_rate
            n = next(dev.sent)
            delivered_after = self.config.delivered_after_s * rng.uniform(0.5, 1.5)
            read = rng.random() < self.config.read_rate
            replies = self.config.reply_rate > 0 and rng.random() < self.config.reply_rate
        if wait:
            time.sleep(wait)
        if fails:
            raise SendError("simulated network failure")
        wa_id = f"SIM{message.device_id:X}{n:08X}"
        now = time.time()
        self.network.record(message, wa_id, now)
        if self._crash_at is not None and next(self._sends) >= self._crash_at and self._claim_fault("crash-at-send"):
            os.abort()
        if self.config.receipts:
            self._after_send(message, wa_id, delivered_after, read, replies)
        return SendResult(wa_id, datetime.fromtimestamp(now, timezone.utc))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for dev in self._devices.values():
                dev.generation += 1
                dev.state = "stopped"
            self._timer_wake.notify()
        self._timer_thread.join(timeout=2)
        self.network.close()

    # Scripting (tests, demo) -----------------------------------------------------------------
    def scan(self, device_id: int, phone: Optional[str] = None) -> str:
        """The phone scans the QR (or types the code): the device pairs and connects."""
        with self._lock:
            dev = self._require(device_id)
            if dev.state != "pairing":
                raise ValueError(f"device {device_id} is not pairing")
            dev.phone = phone or dev.phone or f"6010{dev.rng.randrange(10**7, 10**8)}"
            dev.jid = f"{dev.phone}.0:{dev.rng.randrange(1, 99)}@s.whatsapp.net"
            dev.generation += 1
            dev.state = "connected"
            jid, phone = dev.jid, dev.phone
        self.on_event(Paired(device_id, jid, phone))
        self.on_event(Connected(device_id))
        return jid

    def disconnect(self, device_id: int, reconnect_after_s: Optional[float] = None):
        """The connection drops; it comes back by itself after reconnect_after_s (if given)."""
        with self._lock:
            dev = self._require(device_id)
            dev.generation += 1
            dev.state = "disconnected"
            if reconnect_after_s is not None:
                self._after(reconnect_after_s, dev, self._connect)
        self.on_event(Disconnected(device_id, "simulated network drop"))

    def reconnect(self, device_id: int):
        with self._lock:
            dev = self._require(device_id)
            dev.generation += 1
            self._after(0, dev, self._connect)

    def ban(self, device_id: int, seconds: float, code: str = "463"):
        """A temporary ban: the device is cut off and reconnects when it expires."""
        with self._lock:
            dev = self._require(device_id)
            dev.generation += 1
            dev.state = "banned"
            self._after(seconds, dev, self._connect)
        until = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        self.on_event(TemporaryBan(device_id, code, until))

    def remote_logout(self, device_id: int, reason: str = "removed from Linked Devices on the phone"):
        with self._lock:
            dev = self._require(device_id)
            dev.generation += 1
            dev.state = "stopped"
            dev.jid = None
        self.on_event(LoggedOut(device_id, reason))

    def replace_stream(self, device_id: int):
        """Another client took this session over."""
        with self._lock:
            dev = self._require(device_id)
            dev.generation += 1
            dev.state = "stopped"
        self.on_event(StreamReplaced(device_id))

    def reply(self, device_id: int, from_phone: str, text: str, thumbnail: Optional[bytes] = None):
        """An inbound message from a contact: text, or a photo (its caption and the JPEG preview
        WhatsApp sends along with an image)."""
        with self._lock:
            dev = self._require(device_id)
            n = next(dev.sent)
        self.on_event(IncomingMessage(
            device_id, wa_message_id=f"SIMIN{device_id:X}{n:08X}", chat_jid=f"{from_phone}@s.whatsapp.net",
            sender_jid=f"{from_phone}@s.whatsapp.net", sender_phone=from_phone, text=text,
            timestamp=datetime.now(timezone.utc), message_type="image" if thumbnail else "text", thumbnail=thumbnail))

    def state(self, device_id: int) -> str:
        with self._lock:
            dev = self._devices.get(device_id)
            return dev.state if dev else "stopped"

    # Internals -------------------------------------------------------------------------------
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
        with self._lock:
            if not dev.jid:
                return
            dev.state = "connected"
        self.on_event(Connected(dev.session.device_id))

    def _show_qr(self, dev: _Device, shown: int):
        device_id = dev.session.device_id
        if shown >= self.config.qr_codes:
            with self._lock:
                dev.state = "stopped"
            self.on_event(ConnectFailed(device_id, "pairing timed out: no QR scanned"))
            return
        with self._lock:
            code = f"2@SIM{device_id}," + "".join(dev.rng.choice("0123456789abcdef") for _ in range(32))
            self._after(self.config.qr_every_s, dev, self._show_qr, shown + 1)
        self.on_event(QRCode(device_id, code))

    def _after_send(self, message, wa_id, delivered_after, read, replies):
        with self._lock:
            dev = self._devices.get(message.device_id)
            if dev is None:
                return
            at = time.monotonic() + delivered_after
            self._schedule(at, dev, self._receipt, wa_id, "delivered")
            if read:
                self._schedule(at + self.config.read_after_s, dev, self._receipt, wa_id, "read")
            if replies:
                self._schedule(at + self.config.reply_after_s, dev, self._reply_to, message)

    def _receipt(self, dev: _Device, wa_id: str, kind: str):
        self.on_event(Receipt(dev.session.device_id, (wa_id,), kind, datetime.now(timezone.utc)))

    def _reply_to(self, dev: _Device, message: OutgoingMessage):
        with self._lock:
            photo = dev.rng.random() < PHOTO_REPLY_SHARE
            text = dev.rng.choice(["Is this the one?", "My receipt", ""] if photo else
                                  ["Ok thanks", "How much?", "Stop", "Interested", "👍"])
            colour = tuple(dev.rng.randrange(40, 220) for _ in range(3))
        self.reply(dev.session.device_id, message.to_phone, text, thumbnail=_photo_preview(colour) if photo else None)

    def _after(self, seconds, dev, fn, *args):
        """Caller holds the lock. Runs fn(dev, *args) later unless the device restarted or stopped."""
        self._schedule(time.monotonic() + seconds, dev, fn, *args, generation=dev.generation)

    def _schedule(self, at, dev, fn, *args, generation=None):
        heapq.heappush(self._timers, (at, next(self._timer_seq), dev, generation, fn, args))
        self._timer_wake.notify()

    def _run_timers(self):
        while True:
            with self._lock:
                while not self._closed and (not self._timers or self._timers[0][0] > time.monotonic()):
                    timeout = self._timers[0][0] - time.monotonic() if self._timers else None
                    self._timer_wake.wait(timeout)
                if self._closed:
                    return
                _, _, dev, generation, fn, args = heapq.heappop(self._timers)
                if generation is not None and generation != dev.generation:
                    continue
            fn(dev, *args)
