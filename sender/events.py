"""Transport events -> SQL: a dispatch table with one small handler per event type.

Transports call `EventSink.put` from their own threads; one thread applies the events in order
on its own connection. Receipts are batched (one record_receipt_batch call per kind).

A receipt can overtake its message's completion: WhatsApp's delivery receipt comes within ~100 ms,
sometimes before the send's acknowledgement reaches us, and the completion is written in a batch a
moment later. Recorded then, it would miss the message and wait as an early receipt, to be applied
by the completion — unless it commits while that completion runs, after the completion looked for
early receipts: then neither sees the other (migration 2120, the early-receipts job). So a receipt
waits here until every message its device had claimed when it arrived has its result written
(DeviceRegistry.written_through); the database's early receipts are left to ids this process did
not send (typed on the phone, sent before a restart).
To handle another event type, add a function decorated with `@handles(EventType)` here; it gets
(conn, event). `listeners` are called after the SQL, for the worker's own reactions (stop a
logged-out device, release its lease).
"""
import logging
import queue
import threading
from collections import defaultdict
from dataclasses import dataclass

import psycopg

from sender.reconnecting import reconnecting
from sender.transport.base import (ClientOutdated, Connected, ConnectFailed, Disconnected, IncomingMessage,
                                   LoggedOut, PairCode, Paired, PairingExpired, QRCode, ReachOutTimelock, Receipt,
                                   StreamReplaced, TemporaryBan)

log = logging.getLogger("sender.events")

HANDLERS = {}


def handles(*event_types):
    def register(fn):
        for t in event_types:
            HANDLERS[t] = fn
        return fn
    return register


def _status(conn, device_id, status, reason=None, banned_until=None):
    conn.execute("SELECT set_device_status(%s, %s, %s, %s)", [device_id, status, reason, banned_until])


@handles(Connected)
def on_connected(conn, ev):
    _status(conn, ev.device_id, "online")


@handles(Disconnected)
def on_disconnected(conn, ev):
    _status(conn, ev.device_id, "offline", ev.reason or "disconnected")


@handles(ConnectFailed)
def on_connect_failed(conn, ev):
    if ev.resume_at is None:
        _status(conn, ev.device_id, "offline", ev.error)
    else:   # the transport gave up: its sender releases it, nobody retries before resume_at
        conn.execute("SELECT hold_device(%s, %s, %s)", [ev.device_id, ev.error, ev.resume_at])


@handles(PairingExpired)
def on_pairing_expired(conn, ev):
    _status(conn, ev.device_id, "logged_out", "pairing expired: no code was scanned in time; press Pair for a new one")


@handles(ClientOutdated)
def on_client_outdated(conn, ev):
    _status(conn, ev.device_id, "offline", "WhatsApp no longer accepts this client version (error 405): "
                                           "update neonize and restart the senders")


@handles(LoggedOut)
def on_logged_out(conn, ev):
    _status(conn, ev.device_id, "logged_out", ev.reason or "logged out")


@handles(StreamReplaced)
def on_stream_replaced(conn, ev):
    _status(conn, ev.device_id, "offline", "stream replaced: another client runs this session")


@handles(TemporaryBan)
def on_temporary_ban(conn, ev):
    _status(conn, ev.device_id, "banned", f"temporary ban (code {ev.code})", ev.expires_at)


@handles(ReachOutTimelock)
def on_reach_out_timelock(conn, ev):
    """The queue holds the device's cold contacts until the lock ends (claim_messages)."""
    conn.execute("SELECT device_timelocked(%s, %s)", [ev.device_id, ev.ends_at])


@handles(Paired)
def on_paired(conn, ev):
    conn.execute("SELECT device_paired(%s, %s, %s)", [ev.device_id, ev.jid, ev.phone])


@handles(QRCode)
def on_qr(conn, ev):
    conn.execute("SELECT publish_pairing_code(%s, 'qr', %s)", [ev.device_id, ev.code])


@handles(PairCode)
def on_pair_code(conn, ev):
    conn.execute("SELECT publish_pairing_code(%s, 'code', %s)", [ev.device_id, ev.code])


@handles(IncomingMessage)
def on_incoming_message(conn, ev):
    """Into the device's chat (once per message id); replies and opt-outs (db/functions/chats.sql)."""
    conn.execute("SELECT record_inbound_message(%s, %s, %s, %s, %s, %s, %s, %s, %s, p_thumbnail => %s)",
                 [ev.device_id, ev.wa_message_id, ev.chat_jid, ev.sender_jid, ev.sender_phone, ev.text,
                  ev.timestamp, ev.from_me, ev.message_type, ev.thumbnail])


def record_receipts(conn, receipts):
    """Receipts of many devices, one call per kind (record_receipt_batch): a call per device and kind
    cost ~0.7 ms, and a burst's receipts trailed its sends by seconds."""
    by_kind = defaultdict(lambda: ([], [], []))
    for r in receipts:
        devices, ids, ats = by_kind[r.kind]
        for wa_id in r.wa_message_ids:
            devices.append(r.device_id)
            ids.append(wa_id)
            ats.append(r.timestamp)
    for kind, (devices, ids, ats) in sorted(by_kind.items()):
        conn.execute("SELECT record_receipt_batch(%s, %s, %s, %s)", [devices, ids, ats, kind])


@dataclass(frozen=True)
class ArrivedReceipt:
    """A receipt and what its sender had claimed when it arrived (DeviceRegistry.claim_mark)."""
    receipt: Receipt
    claim_mark: int


class EventSink:
    def __init__(self, url, listeners=(), claims=None):
        """claims: the sender's DeviceRegistry, whose written results receipts wait for (none: they
        are recorded as they come)."""
        self.url = url
        self.listeners = list(listeners)
        self.claims = claims
        self._queue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = None
        self._pending = None       # the batch being applied (kept when the database goes away)
        self._waiting = []         # ArrivedReceipts whose completions are not written yet

    def put(self, event):
        if isinstance(event, Receipt) and self.claims is not None:
            event = ArrivedReceipt(event, self.claims.claim_mark())
        self._queue.put(event)

    def receipts_waiting(self) -> int:
        """Receipts held until their messages' completions are written."""
        return len(self._waiting)

    def start(self):
        self._thread = threading.Thread(target=self._run, name="event-sink", daemon=True)
        self._thread.start()

    def stop(self, timeout=5.0):
        """Applies what is queued, then ends."""
        self._stop.set()
        self._queue.put(None)
        if self._thread:
            self._thread.join(timeout)

    def _take_batch(self, timeout):
        first = self._queue.get(timeout=timeout)
        batch = [first]
        while len(batch) < 5000:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return [e for e in batch if e is not None]

    def _run(self):
        reconnecting(self.url, "wa-sender-events", self._apply_queued, self._stop)

    def _apply_queued(self, conn):
        """Applies batches until stopped and drained. A batch whose database went away stays
        pending and is applied first on the next connection (a lost Connected would leave a
        working device offline)."""
        while True:
            if self._pending is None:
                try:   # while receipts wait, they are looked at again every few milliseconds
                    batch = self._take_batch(0.01 if self._waiting else 0.5)
                except queue.Empty:
                    batch = []
                if not batch and not self._waiting:
                    if self._stop.is_set() and self._queue.empty():
                        return
                    continue
                self._pending = batch
            self.apply(conn, self._pending)
            self._pending = None

    def _written(self, arrived):
        """Once stopping, the dispatcher has written what it could: nothing more to wait for."""
        return self._stop.is_set() or self.claims.written_through(arrived.receipt.device_id, arrived.claim_mark)

    def apply(self, conn, batch):
        receipts, waiting = [e for e in batch if isinstance(e, Receipt)], []
        for a in self._waiting + [e for e in batch if isinstance(e, ArrivedReceipt)]:
            if self._written(a):
                receipts.append(a.receipt)
            else:
                waiting.append(a)
        if receipts:
            record_receipts(conn, receipts)
        self._waiting = waiting
        for event in batch:
            if isinstance(event, (Receipt, ArrivedReceipt)):
                continue
            handler = HANDLERS.get(type(event))
            try:
                if handler:
                    handler(conn, event)
                for listener in self.listeners:
                    listener(event)
            except psycopg.OperationalError:
                raise
            except Exception:
                log.exception("event %r could not be applied", event)
