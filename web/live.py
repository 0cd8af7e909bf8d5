"""Live events: the /ws websocket, fed by one LISTEN thread per process on channel wa_events.

SQL sends events with notify_user(user_id, type, data); each payload names its owner, and the hub
hands it only to that user's browsers. Per browser: a bounded queue (past QUEUE_LIMIT the oldest
events go and the browser is told to resync), bursts leave in one frame after DEBOUNCE_SECONDS,
and an idle socket gets a ping every PING_SECONDS.

Frames to the browser: {"events": [{"type": ..., "data": {...}}, ...]}.
Frames from the browser: {"type": "watch", "device_id": N} (only that device's chat events from
now on; another user's device is refused) and {"type": "ping"}.
"""
import collections
import json
import logging
import threading
import time
from urllib.parse import urlsplit

import psycopg
from flask import Blueprint, abort, current_app, g, request, session
from flask_sock import Sock
from simple_websocket import ConnectionClosed

from web.db import one

bp = Blueprint("live", __name__)
sock = Sock()
log = logging.getLogger(__name__)

CHANNEL = "wa_events"
# A socket holds a server thread for its life: an account gets a few (tabs), not the whole pool.
SOCKETS_PER_USER = 5
MAX_MESSAGE_BYTES = 16 * 1024   # browsers send tiny JSON; a bigger frame closes the socket (1009)
QUEUE_LIMIT = 500
DEBOUNCE_SECONDS = 0.05
PING_SECONDS = 25
SESSION_CHECK_SECONDS = 30   # how soon an open socket notices that its session was ended
POLL_SECONDS = 0.25  # how often a socket's thread looks for messages from its browser


# The live-event vocabulary, listed once. SQL sends these with notify_user(user_id, type, data);
# tests/test_live_vocabulary.py checks every notify_user call in db/ and every type the pages'
# scripts listen to against this list. STATE: only the latest per entity matters within a burst.
# WATCHED: a device's chat event, sent only to sockets watching that device (when they watch any).
STATE, WATCHED = "state", "watched"
EVENTS = {
    "campaign": (),                    # a campaign was created, paused/resumed or changed status
    "campaign_progress": (STATE,),     # a campaign's messages were queued or settled
    "chat": (WATCHED,),                # a chat of a device opened or changed (name, read mark)
    "device_command": (),              # a device command finished (done or failed)
    "device_deleted": (),
    "device_paired": (),               # a device was linked to a phone number
    "device_pairing": (),              # a QR code or pairing code to show
    "device_status": (STATE,),         # online, offline, connecting, logged_out, banned
    "device_timelock": (STATE,),       # a reach-out timelock started, moved or ended (until)
    "devices_added": (),
    "devices_paused": (),              # paused or resumed by the owner, or self-paused (reason)
    "devices_updated": (),             # delays, caps or a name changed
    "lead_import": (),                 # a CSV import moved on (progress, done, failed)
    "message": (),                     # a chat message was received or sent from the phone
    "message_status": (STATE,),        # queue messages were sent, failed, delivered or read
    "opt_out": (),                     # a number opted out; its waiting messages were skipped
    "webhook_delivery": (STATE,),      # an outbound webhook delivery was tried: delivered, retrying or dead
}
# What this module sends on its own, and what live.js raises in the browser.
CHANNEL_EVENTS = ("live.hello", "live.resync", "live.watching", "live.error", "ping", "pong")
CLIENT_EVENTS = ("live.open", "live.closed", "live.reconnected")


def _is_state(event_type):
    return STATE in EVENTS.get(event_type, ())


def coalesce(events):
    """Within one burst keep every event, except that a state event replaces an earlier one for
    the same entity (same type and same *_id / id fields; events naming no entity are kept)."""
    latest = {}
    for index, event in enumerate(events):
        data = event.get("data") or {}
        entity = tuple(sorted((k, str(v)) for k, v in data.items() if k == "id" or k.endswith("_id")))
        # A batch event (message_status with ids[], say) names no single entity: every one is kept.
        if _is_state(event["type"]) and entity:
            key = (event["type"],) + entity
        else:
            key = index
        latest.pop(key, None)  # re-inserting keeps the order of the latest occurrence
        latest[key] = event
    return list(latest.values())


class Subscriber:
    """One browser: its user, the devices whose chat events it watches, its bounded queue."""

    def __init__(self, user_id):
        self.user_id = user_id
        self.watched = set()
        self._events = collections.deque()
        self._overflowed = False
        self._cond = threading.Condition()

    def wants(self, event):
        if not self.watched or WATCHED not in EVENTS.get(event["type"], ()):
            return True
        return (event.get("data") or {}).get("device_id") in self.watched

    def put(self, *events):
        """Queues events at once: the events of one commit (one burst) leave in one frame."""
        with self._cond:
            for event in events:
                if len(self._events) >= QUEUE_LIMIT:
                    self._events.popleft()
                    self._overflowed = True
                self._events.append(event)
            self._cond.notify()

    def take(self, timeout):
        """Waits up to `timeout` for an event, lets the burst gather, returns it coalesced."""
        with self._cond:
            if not self._events:
                self._cond.wait(timeout)
            if not self._events and not self._overflowed:
                return []
        time.sleep(DEBOUNCE_SECONDS)
        with self._cond:
            batch = coalesce(list(self._events))
            self._events.clear()
            if self._overflowed:
                batch.insert(0, {"type": "live.resync", "data": {"reason": "queue full"}})
                self._overflowed = False
        return batch


class Hub:
    """One per process: a LISTEN connection routing each payload to its owner's subscribers."""

    def __init__(self, pool):
        self.pool = pool  # the app's pool: its conninfo to LISTEN with; once closed, the listener ends
        self.listening = threading.Event()
        self.closing = threading.Event()  # set by close(): every socket of this hub ends
        self._subscribers = collections.defaultdict(set)
        self._sockets = collections.Counter()   # open /ws requests per user (admitted, not yet ended)
        self._lock = threading.Lock()
        self._thread = None

    def admit(self, user_id):
        """Counts a new socket of the user in; False when they already have SOCKETS_PER_USER."""
        with self._lock:
            if self._sockets[user_id] >= SOCKETS_PER_USER:
                return False
            self._sockets[user_id] += 1
            return True

    def leave(self, user_id):
        with self._lock:
            self._sockets[user_id] -= 1
            if self._sockets[user_id] <= 0:
                del self._sockets[user_id]

    def subscribe(self, sub):
        with self._lock:
            self._subscribers[sub.user_id].add(sub)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._listen, name="wa-live-listen", daemon=True)
                self._thread.start()

    def unsubscribe(self, sub):
        with self._lock:
            subs = self._subscribers.get(sub.user_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[sub.user_id]

    def close(self):
        """Ends every websocket of this hub within POLL_SECONDS (an app being torn down)."""
        self.closing.set()

    def dispatch(self, *payloads):
        """Routes payloads (one burst: what arrived together) to their owners' subscribers."""
        by_user = collections.defaultdict(list)
        for payload in payloads:
            try:
                message = json.loads(payload)
                user_id = int(message["user_id"])
                by_user[user_id].append({"type": str(message["type"]), "data": message.get("data") or {}})
            except (ValueError, KeyError, TypeError):
                log.warning("ignoring malformed %s payload: %.200s", CHANNEL, payload)
        for user_id, events in by_user.items():
            with self._lock:
                subs = list(self._subscribers.get(user_id, ()))
            for sub in subs:
                wanted = [e for e in events if sub.wants(e)]
                if wanted:
                    sub.put(*wanted)

    def _broadcast_resync(self, reason):
        with self._lock:
            subs = [s for group in self._subscribers.values() for s in group]
        for sub in subs:
            sub.put({"type": "live.resync", "data": {"reason": reason}})

    def _listen(self):
        backoff, connected_before = 0.5, False
        while not (self.pool.closed or self.closing.is_set()):
            try:
                with psycopg.connect(self.pool.conninfo, autocommit=True, application_name="wa-web-live") as c:
                    c.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    if connected_before:  # events committed while we were away are lost: say so
                        self._broadcast_resync("listener reconnected")
                    connected_before, backoff = True, 0.5
                    while not (self.pool.closed or self.closing.is_set()):
                        # One packet's notifications (a commit's), then whatever else is already here.
                        burst = list(c.notifies(timeout=1.0, stop_after=1))
                        if burst:
                            burst += c.notifies(timeout=0)
                            self.dispatch(*(note.payload for note in burst))
            except psycopg.Error as exc:
                self.listening.clear()
                if self.pool.closed:
                    break
                log.warning("live listener lost the database (%s); retrying in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 30)


_hub_lock = threading.Lock()
# Set when the server process is shutting down: sockets never end by themselves, and a worker
# waits for its open requests, so each socket closes itself (1001 "going away"; browsers reconnect).
_stopping = threading.Event()


def stop_all():
    """Ends every websocket of this process within POLL_SECONDS (gunicorn.conf.py calls it on SIGTERM)."""
    _stopping.set()


def hub():
    """The process's hub, created on first use."""
    with _hub_lock:
        h = current_app.extensions.get("live_hub")
        if h is None:
            h = current_app.extensions["live_hub"] = Hub(current_app.extensions["db_pool"])
        return h


@bp.record_once
def _frame_limit(state):
    state.app.config.setdefault("SOCK_SERVER_OPTIONS", {})["max_message_size"] = MAX_MESSAGE_BYTES


@bp.before_request
def authenticate_socket():
    # Checked before the websocket handshake, so a refused browser gets a plain HTTP status.
    if g.user is None:
        abort(401, description="sign in first")
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        abort(403, description="cross-site websocket refused")
    if not hub().admit(g.user["id"]):
        abort(429, description=f"at most {SOCKETS_PER_USER} live connections per account; close another tab")
    g.live_admitted = g.user["id"]


@bp.teardown_request
def release_socket(exc=None):
    if g.get("live_admitted") is not None:
        hub().leave(g.live_admitted)


def _handle_browser_message(ws, sub, raw):
    try:
        message = json.loads(raw)
        kind = message.get("type")
    except (ValueError, AttributeError):
        kind = None
    if kind == "ping":
        reply = {"type": "pong", "data": {}}
    elif kind == "watch":
        device_id = message.get("device_id")
        # type() is: True is an int to isinstance; past bigint SQL would fail, not answer.
        allowed = type(device_id) is int and 0 < device_id < 2 ** 63 and one(
            "SELECT live_device_allowed(%s, %s) AS ok", [sub.user_id, device_id])["ok"]
        if allowed:
            sub.watched.add(device_id)
            reply = {"type": "live.watching", "data": {"device_id": device_id}}
        else:
            reply = {"type": "live.error", "data": {"error": "device not found", "device_id": device_id}}
    else:
        reply = {"type": "live.error", "data": {"error": "unknown message"}}
    ws.send(json.dumps({"events": [reply]}))


@sock.route("/ws", bp=bp)
def websocket(ws):
    """Live events for the signed-in user's own devices, campaigns and chats."""
    sub = Subscriber(g.user["id"])
    h = hub()
    h.subscribe(sub)
    sid = session.get("sid")
    try:
        ws.send(json.dumps({"events": [{"type": "live.hello", "data": {"user_id": sub.user_id}}]}))
        last_sent = next_check = time.monotonic()
        while ws.connected and not (_stopping.is_set() or h.closing.is_set()):
            if sid is not None and time.monotonic() >= next_check:
                # A socket outlives its page: once the session ends (logout, password change) it ends too.
                if one("SELECT id FROM session_account(%s)", [sid]) is None:
                    ws.close(reason=1008, message="signed out")
                    break
                next_check = time.monotonic() + SESSION_CHECK_SECONDS
            raw = ws.receive(timeout=0)
            while raw is not None:
                _handle_browser_message(ws, sub, raw)
                raw = ws.receive(timeout=0)
            batch = sub.take(POLL_SECONDS)
            if not batch and time.monotonic() - last_sent >= PING_SECONDS:
                batch = [{"type": "ping", "data": {}}]
            if batch:
                ws.send(json.dumps({"events": batch}, default=str))
                last_sent = time.monotonic()
        if _stopping.is_set() or h.closing.is_set():
            ws.close(reason=1001, message="server restarting")
    except ConnectionClosed:
        pass
    finally:
        h.unsubscribe(sub)
