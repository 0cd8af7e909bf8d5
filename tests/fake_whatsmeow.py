"""A fake WhatsApp behind neonize's real Python client: the network boundary of the contract suite.

neonize's NewClient reaches the network only through its Go core (`neonize.client.gocode`).
FakeCore stands in for that core and nothing else: neonize's own Python code builds and parses
the protobufs, and events reach the transport through neonize's own dispatcher (Event.execute,
called through the ctypes callbacks neonize hands to Neonize()), serialised as the Go core
serialises them and only when subscribed, as the Go core delivers them. FakeWhatsApp is the other
side: phones, linked sessions (stored as rows of the real whatsmeow_device table), connections
that drop and return, bans, outdated clients, a reach-out timelock and the log of what it received.

What it copies from goneonize/main.go and whatsmeow (shared/notes/neonize.md):
- Neonize() registers the key, connects and then blocks, delivering events, until Stop(key);
  a stored jid without its whatsmeow_device row is a Go panic (recorded as fatal here).
- Unpaired: codes on WhatsApp's schedule; when they run out the call never returns (FetchMe).
- A dropped connection reports Disconnected and reconnects by itself when the network is back.
- Starts and stops that write the registry at the same moment are fatal ("concurrent map writes").
- SendMessage on a stopped key answers "client is nil"; unconnected, "websocket not connected".
- Pair-by-code with a display name that is not a common "Browser (OS)" pair answers 400.
Pairing children (the transport's neonize_pairing processes) get a ChildCore that talks to the
FakeWhatsApp over a unix socket (tests/fake_whatsmeow_child.py).
"""
from __future__ import annotations

import ctypes
import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Client, Listener

import psycopg
from neonize.proto.Neonize_pb2 import (ClientOutdated, ConnectFailureReason, Connected, Device, Disconnected, JID, LoggedOut,
                                       Message as MessageEv, MessageDebugTimings, MessageInfo, MessageSource,
                                       PairPhoneParams,
                                       PairPhoneReturnFunction, PairStatus, Receipt, SendMessageReturnFunction,
                                       SendResponse, StreamReplaced, TemporaryBan)
from neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 import DeviceProps
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

from sender.transport.base import PairingWindow
from sender.transport.neonize_events import jid_from_string, jid_to_string
from sender.transport.sim import lid_of

# goneonize's event codes (neonize.events.EVENT_TO_INT)
DEVICE, PAIR_STATUS, CONNECTED, LOGGED_OUT, STREAM_REPLACED, TEMPORARY_BAN = 0, 2, 3, 6, 7, 8
CLIENT_OUTDATED, DISCONNECTED, MESSAGE, RECEIPT = 10, 12, 17, 18
DIAL_FAILED = "failed to dial whatsapp web websocket: dial tcp: lookup web.whatsapp.com: no such host"
# WhatsApp's rule for a pair-by-code link (whatsmeow issues 449/450): its name a common "Browser (OS)"
# pair that agrees with the device properties the connection announced.
COMMON_NAME = re.compile(r"^(Chrome|Firefox|Edge|Safari|Opera) \((Linux|Windows|Mac OS|Ubuntu)\)$")
PLATFORMS = {"Chrome": DeviceProps.CHROME, "Firefox": DeviceProps.FIREFOX, "Edge": DeviceProps.EDGE,
             "Safari": DeviceProps.SAFARI, "Opera": DeviceProps.OPERA}


def jid_proto(user: str, device: int = 0) -> JID:
    return JID(User=user, RawAgent=0, Device=device, Integrator=0, Server="s.whatsapp.net", IsEmpty=False)


def store_session(url: str, jid: str):
    """A whatsmeow_device row shaped like a real one (keys of the lengths its CHECKs demand)."""
    sig64 = {"signed_pre_key_sig", "adv_account_sig", "adv_device_sig"}
    with psycopg.connect(url, autocommit=True) as c:
        cols = c.execute("""SELECT column_name, data_type FROM information_schema.columns
                             WHERE table_name = 'whatsmeow_device' AND is_nullable = 'NO'""").fetchall()
        values = {n: (b"\x01" * (64 if n in sig64 else 32) if t == "bytea" else ("1" if t == "text" else 1))
                  for n, t in cols}
        values["jid"] = jid
        c.execute(f"INSERT INTO whatsmeow_device ({', '.join(values)}) VALUES ({', '.join(['%s'] * len(values))})",
                  list(values.values()))


def create_whatsmeow_tables(url: str):
    """neonize creates its 17 tables on the first connect, which fails here (no network) after that."""
    from neonize.client import NewClient
    from neonize.exc import NeonizeError

    from sender.transport.neonize_transport import neonize_store_address
    client = NewClient(neonize_store_address(url), uuid="create-tables")
    try:
        client.connect()
    except NeonizeError:
        pass
    with psycopg.connect(url) as c:
        assert c.execute("SELECT to_regclass('whatsmeow_device') IS NOT NULL").fetchone()[0]


def session_stored(url: str, jid: str) -> bool:
    with psycopg.connect(url) as c:
        return c.execute("SELECT EXISTS (SELECT 1 FROM whatsmeow_device WHERE jid = %s)", [jid]).fetchone()[0]


def _deliver(event_cb, key: bytes, code: int, message):
    data = message.SerializeToString()
    buf = ctypes.create_string_buffer(data, max(1, len(data)))
    event_cb(key, ctypes.addressof(buf), len(data), code)


@dataclass
class _Session:
    """One Neonize() call of a FakeCore: a stored session's connection."""
    key: bytes
    jid: str
    subscribed: set
    events: list = field(default_factory=list)       # (code, message) to deliver on the Neonize thread
    wake: threading.Condition = field(default_factory=threading.Condition)
    connected: bool = False
    ended: bool = False

    def push(self, code: int, message):
        with self.wake:
            if code == DEVICE or code in self.subscribed:   # the Go core sends only what is subscribed
                self.events.append((code, message))
            self.wake.notify_all()


class FakeWhatsApp:
    def __init__(self, db_url: str, socket_path: str, pairing: PairingWindow, latency_s: float = 0.02):
        self.db_url, self.pairing, self.latency_s = db_url, pairing, latency_s
        self.fatal: list[str] = []            # what would have aborted the process
        self.receipt_after_s = 0.2            # a send's delivery receipt this long after it
        self.unregistered: set[str] = set()   # numbers not on WhatsApp
        self.received: list[dict] = []
        self.linked: set[str] = set()         # sessions the phones list under Linked Devices
        self.down: set[str] = set()           # jids with no network (dropped, an outage)
        self.banned: dict[str, tuple[int, float]] = {}   # jid -> (code, until monotonic)
        self.outdated: set[str] = set()
        self.timelocked: set[str] = set()
        self.warm: dict[str, set] = {}        # jid -> contacts it talked with
        self.connect_count: dict[str, int] = {}   # jid -> Neonize() calls
        self.store_open_s = 0.003             # Neonize() opening the session store (a slow database: longer)
        self.jid_of: dict[int, str] = {}           # device id -> its session
        self.sessions: dict[str, _Session] = {}
        self.pairings: dict[str, "_Pairing"] = {}        # registry key -> a child's pairing
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self.address = socket_path
        self._listener = Listener(socket_path, family="AF_UNIX")
        threading.Thread(target=self._accept, name="fake-whatsapp", daemon=True).start()

    def close(self):
        self._listener.close()
        with self._lock:
            sessions = list(self.sessions.values())
        for session in sessions:      # neonize's connect threads are not daemons: let them end
            with session.wake:
                session.ended = True
                session.wake.notify_all()

    def core(self) -> "FakeCore":
        """A new process's Go core (the registry is per process)."""
        return FakeCore(self)

    # Phones and the network: the contract suite's controls, named and called as the simulated
    # transport's (by device id) --------------------------------------------------------------
    def stored(self, device_id: int, jid: str):
        """A session paired earlier: its row in whatsmeow_device, listed on its phone."""
        store_session(self.db_url, jid)
        with self._lock:
            self.linked.add(jid)
            self.jid_of[device_id] = jid

    def scan(self, device_id: int, phone: str) -> str:
        """The phone scans the device's code (or types its pairing code): linked."""
        pairing = self.pairings.get(f"device-{device_id}")
        assert pairing is not None and not pairing.over, f"device {device_id} is not showing a code"
        jid = f"{phone}:{next(self._ids)}@s.whatsapp.net"
        store_session(self.db_url, jid)           # whatsmeow saves the session on PairSuccess
        with self._lock:
            self.linked.add(jid)
            self.jid_of[device_id] = jid
        pairing.over = True
        pairing.send({"paired": jid})
        return jid

    def outage(self, device_id: int, down: bool = True):
        """No network for the device while down: a connected session drops (whatsmeow keeps
        reconnecting and is back when it ends), a new connect fails at the dial."""
        jid = self.jid_of[device_id]
        with self._lock:
            (self.down.add if down else self.down.discard)(jid)
            session = self.sessions.get(jid)
        if session is None or session.ended:
            return
        if down and session.connected:
            session.connected = False
            session.push(DISCONNECTED, Disconnected(status=True))
        elif not down and not session.connected:
            self._admit(session)

    def remote_logout(self, device_id: int):
        """Removed under Linked Devices on the phone: whatsmeow deletes the session's rows."""
        jid = self.jid_of[device_id]
        with self._lock:
            self.linked.discard(jid)
        self._forget_session(jid)
        self._cut(jid, LOGGED_OUT, LoggedOut(OnConnect=False, Reason=ConnectFailureReason.Value("LOGGED_OUT")))

    def replace_stream(self, device_id: int):
        self._cut(self.jid_of[device_id], STREAM_REPLACED, StreamReplaced())

    def ban(self, device_id: int, seconds: int):
        jid = self.jid_of[device_id]
        with self._lock:
            self.banned[jid] = (TemporaryBan.SEND_TO_TOO_MANY_PEOPLE, time.monotonic() + seconds)
        self._cut(jid, TEMPORARY_BAN, TemporaryBan(Code=TemporaryBan.SEND_TO_TOO_MANY_PEOPLE, Expire=seconds))

    def client_outdated(self, device_id: int):
        jid = self.jid_of[device_id]
        with self._lock:
            self.outdated.add(jid)
        self._cut(jid, CLIENT_OUTDATED, ClientOutdated())

    def not_on_whatsapp(self, phone: str):
        """Sends to this number fail as whatsmeow's do for a number without WhatsApp."""
        with self._lock:
            self.unregistered.add(phone)

    def receipts_overtake_acks(self):
        """From now on each delivery receipt is pushed before its send returns."""
        self.receipt_after_s = 0.0

    def timelock(self, device_id: int):
        with self._lock:
            self.timelocked.add(self.jid_of[device_id])

    def reply(self, device_id: int, from_phone: str, text: str, identity: str = "phone"):
        """The contact wrote to this number: warm from now on, and its message reaches the client;
        identity as SimTransport.reply's (from the @lid identity: its number in SenderAlt, or none)."""
        jid = self.jid_of[device_id]
        with self._lock:
            self.warm.setdefault(jid, set()).add(from_phone)
            session = self.sessions.get(jid)
            wa_id = f"FAKEIN{next(self._ids):08X}"
        if session is not None and session.connected:
            number = jid_proto(from_phone)
            sender = number if identity == "phone" else JID(User=lid_of(from_phone), RawAgent=0, Device=0,
                                                                Integrator=0, Server="lid", IsEmpty=False)
            # Every field the Go core's proto2 message requires, as whatsmeow fills them.
            source = MessageSource(Chat=sender, Sender=sender, IsFromMe=False, IsGroup=False,
                                   SenderAlt=jid_proto("") if identity == "hidden" else number,
                                   RecipientAlt=jid_proto(""), BroadcastListOwner=jid_proto(""))
            info = MessageInfo(MessageSource=source, ID=wa_id, ServerID=0, Type="text", Pushname="", Timestamp=int(time.time()),
                               Category="", Multicast=False, MediaType="", Edit="")
            session.push(MESSAGE, MessageEv(Info=info, Message=Message(conversation=text), IsEphemeral=False,
                                            IsViewOnce=False, IsViewOnceV2=False, IsViewOnceV2Extension=False,
                                            IsDocumentWithCaption=False, IsLottieSticker=False, IsEdit=False,
                                            UnavailableRequestID="", RetryCount=0))

    def is_linked(self, jid: str) -> bool:
        with self._lock:
            return jid in self.linked

    def connects(self, device_id: int) -> int:
        with self._lock:
            return self.connect_count.get(self.jid_of[device_id], 0)

    def received_texts(self) -> list[str]:
        with self._lock:
            return [r["text"] for r in self.received]

    def showing_code(self, device_id: int) -> bool:
        pairing = self.pairings.get(f"device-{device_id}")
        return pairing is not None and not pairing.over

    def pairing_running(self, device_id: int) -> bool:
        pairing = self.pairings.get(f"device-{device_id}")
        return pairing is not None and not pairing.closed

    # The Go core's side ------------------------------------------------------------------------
    def _cut(self, jid: str, code: int, message):
        with self._lock:
            session = self.sessions.get(jid)
        if session is not None and session.connected:
            session.connected = False
            session.push(code, message)

    def _forget_session(self, jid: str):
        with psycopg.connect(self.db_url, autocommit=True) as c:
            c.execute("DELETE FROM whatsmeow_device WHERE jid = %s", [jid])

    def _admit(self, session: _Session):
        """A connect reaching WhatsApp: what the server answers for this session now."""
        jid = session.jid
        with self._lock:
            ban = self.banned.get(jid)
            if ban and ban[1] <= time.monotonic():
                del self.banned[jid]
                ban = None
            outdated, linked = jid in self.outdated, jid in self.linked
        if not linked:
            self._forget_session(jid)
            session.push(LOGGED_OUT, LoggedOut(OnConnect=True, Reason=ConnectFailureReason.Value("LOGGED_OUT")))
        elif ban:
            session.push(TEMPORARY_BAN, TemporaryBan(Code=ban[0], Expire=max(1, round(ban[1] - time.monotonic()))))
        elif outdated:
            session.push(CLIENT_OUTDATED, ClientOutdated())
        else:
            session.connected = True
            session.push(CONNECTED, Connected(status=True))

    def _send(self, session: _Session, to: JID, message: Message) -> SendMessageReturnFunction:
        time.sleep(self.latency_s)
        if not session.connected or session.ended:
            return SendMessageReturnFunction(Error="websocket not connected")
        text = message.conversation or message.extendedTextMessage.text
        with self._lock:
            if to.User in self.unregistered:   # whatsmeow looks the number's @lid up first
                return SendMessageReturnFunction(Error=f"no LID found for {to.User}@s.whatsapp.net from server")
            if session.jid in self.timelocked and to.User not in self.warm.get(session.jid, set()):
                return SendMessageReturnFunction(Error="server returned error 463")
            wa_id = f"FAKE{next(self._ids):08X}"
            self.received.append({"from": session.jid, "to": to.User, "text": text, "wa_message_id": wa_id})
            self.warm.setdefault(session.jid, set()).add(to.User)
        timings = MessageDebugTimings(**{f: 0 for f in MessageDebugTimings.DESCRIPTOR.fields_by_name})
        source = MessageSource(Chat=to, Sender=to, IsFromMe=True, IsGroup=False, SenderAlt=to, RecipientAlt=to,
                               BroadcastListOwner=to)
        receipt = Receipt(MessageSource=source, MessageIDs=[wa_id], Timestamp=int(time.time()), Type=Receipt.DELIVERED)
        if self.receipt_after_s:   # the phone answers a little later
            threading.Timer(self.receipt_after_s, session.push, args=(RECEIPT, receipt)).start()
        else:
            session.push(RECEIPT, receipt)
        return SendMessageReturnFunction(SendResponse=SendResponse(Timestamp=int(time.time()), ID=wa_id,
                                                                   ServerID=0, DebugTimings=timings))

    def _logout(self, session: _Session) -> str:
        if not session.connected:
            return "error sending logout request: websocket not connected"
        session.connected = False
        with self._lock:
            self.linked.discard(session.jid)
        self._forget_session(session.jid)
        return ""

    # Pairing children ------------------------------------------------------------------------
    def _accept(self):
        while True:
            try:
                conn = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve_child, args=(conn,), name="fake-pairing", daemon=True).start()

    def _serve_child(self, conn):
        hello = conn.recv()
        pairing = _Pairing(self, conn, hello["key"], DeviceProps.FromString(hello["props"]))
        self.pairings[hello["key"]] = pairing
        threading.Thread(target=pairing.show_codes, name="fake-qr", daemon=True).start()
        try:
            while True:
                request = conn.recv()
                pairing.send(self._pair_phone(pairing, request))
        except (EOFError, OSError):
            pairing.closed = True       # the child is gone (killed, or done)

    def _pair_phone(self, pairing: "_Pairing", request: dict) -> dict:
        if pairing.over:
            return {"pair_error": "websocket not connected"}
        name = COMMON_NAME.match(request["name"])
        if not name or (PLATFORMS[name[1]], name[2]) != (pairing.props.platformType, pairing.props.os):
            return {"pair_error": "info query returned status 400: bad-request"}
        return {"pair_code": "FAKE-CODE"}


class _Pairing:
    """A pairing child's session with the server: codes on WhatsApp's schedule, then silence."""

    def __init__(self, net: FakeWhatsApp, conn, key: str, props: DeviceProps):
        self.net, self.conn, self.key, self.props = net, conn, key, props
        self.over = False      # paired, or its codes ran out
        self.closed = False    # the child's end is gone
        self._send_lock = threading.Lock()

    def send(self, message: dict):
        with self._send_lock:
            try:
                self.conn.send(message)
            except OSError:
                self.closed = True

    def show_codes(self):
        for index in range(self.net.pairing.codes):
            if self.over or self.closed:
                return
            self.send({"qr": f"2@FAKE{self.key},{index}"})
            time.sleep(self.net.pairing.shown_for(index))
        self.over = True         # the login socket closes; the child's connect never returns


class FakeCore:
    """Stands in for neonize's Go core in one process: its registry of keys and their sessions."""

    def __init__(self, net: FakeWhatsApp):
        self.net = net
        self.clients: dict[bytes, _Session] = {}
        self._writing = 0           # registry writes in progress (a start's first moments, a stop)
        self.writers: list[tuple[str, str]] = []   # (call, thread name) of every registry write

    def _write_registry(self, what: str, hold_s: float = 0.003):
        self.writers.append((what, threading.current_thread().name))
        if self._writing:
            self.net.fatal.append(f"concurrent map writes ({what} while another start or stop)")
        self._writing += 1
        time.sleep(hold_s)
        self._writing -= 1

    def Neonize(self, db, key, jidbuf, jidsize, new_device, log_level, qr_cb, login_cb, event_cb, log_cb,
                subscribers, n_subscribers, props, n_props, pairphone, n_pairphone, proxy):
        self._write_registry("Neonize", self.net.store_open_s)   # sqlstore.New and the device lookup
        if not jidsize:
            self.net.fatal.append("an unpaired connect in the sender process: it would never end")
            return b"not in this process"
        jid = jid_to_string(JID.FromString(bytes(jidbuf[:jidsize])))
        if not session_stored(self.net.db_url, jid):
            self.net.fatal.append(f"Go panic: resumed {jid} without a stored session (nil device)")
            return b"panic"
        session = _Session(key, jid, set(bytes(subscribers[:n_subscribers])))
        self.clients[key] = session
        with self.net._lock:
            self.net.sessions[jid] = session
            self.net.connect_count[jid] = self.net.connect_count.get(jid, 0) + 1
            down = jid in self.net.down
        if down:
            session.ended = True
            return DIAL_FAILED.encode()
        number, _, device = jid.partition("@")[0].partition(":")
        session.push(DEVICE, Device(JID=jid_proto(number, int(device or 0)), Platform="", BussinessName="",
                                    PushName="", Initialized=True))
        self.net._admit(session)
        while True:                 # CallbackFunction: deliver events until Stop
            with session.wake:
                session.wake.wait_for(lambda: session.events or session.ended)
                if session.ended:
                    return b""
                code, message = session.events.pop(0)
            _deliver(event_cb, key, code, message)

    def Stop(self, key):
        self._write_registry("Stop")
        session = self.clients.pop(key, None)
        if session is not None:
            session.connected = False
            with session.wake:
                session.ended = True
                session.wake.notify_all()

    def SendMessage(self, key, to, n_to, message, n_message):
        session = self.clients.get(key)
        if session is None:
            return SendMessageReturnFunction(Error="client is nil").SerializeToString()
        reply = self.net._send(session, JID.FromString(bytes(to[:n_to])), Message.FromString(bytes(message[:n_message])))
        return reply.SerializeToString()

    def Logout(self, key):
        session = self.clients.get(key)
        return b"client is nil" if session is None else self.net._logout(session).encode()


class ChildCore:
    """The Go core of a pairing child: its one pairing, served by the FakeWhatsApp over a socket."""

    def __init__(self, address: str):
        self.conn = Client(address, family="AF_UNIX")
        self.codes: list = []
        self.answer = threading.Condition()
        self._send_lock = threading.Lock()

    def _send(self, message: dict):
        with self._send_lock:
            self.conn.send(message)

    def Neonize(self, db, key, jidbuf, jidsize, new_device, log_level, qr_cb, login_cb, event_cb, log_cb,
                subscribers, n_subscribers, props, n_props, pairphone, n_pairphone, proxy):
        self._send({"key": key.decode(), "props": bytes(props[:n_props])})
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                return b""
            if "qr" in message:
                qr_cb(ctypes.c_char_p(key), ctypes.c_char_p(message["qr"].encode()))
            elif "paired" in message:
                jid = jid_from_string(message["paired"])
                _deliver(event_cb, key, DEVICE, Device(JID=jid, Platform="", BussinessName="", PushName="",
                                                       Initialized=True))
                _deliver(event_cb, key, PAIR_STATUS, PairStatus(ID=jid, BusinessName="", Platform="",
                                                                Status=PairStatus.SUCCESS))
                _deliver(event_cb, key, CONNECTED, Connected(status=True))
            else:
                with self.answer:
                    self.codes.append(message)
                    self.answer.notify_all()

    def PairPhone(self, key, payload, size):
        params = PairPhoneParams.FromString(bytes(payload[:size]))
        self._send({"name": params.clientDisplayName, "type": params.clientType, "phone": params.phone})
        with self.answer:
            self.answer.wait_for(lambda: self.codes, timeout=30)
            reply = self.codes.pop(0) if self.codes else {"pair_error": "no answer"}
        return PairPhoneReturnFunction(Code=reply.get("pair_code", ""), Error=reply.get("pair_error", "")).SerializeToString()

    def Stop(self, key):
        self.conn.close()

