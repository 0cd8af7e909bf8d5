"""One transport contract (sender/transport/base.py), two transports: every scenario runs against
the simulated network and against the neonize transport driven through neonize's own client
objects and event dispatcher with real protobuf events (tests/fake_whatsmeow.py stands in for the
Go core at the network boundary), each inside a real sender worker on the test database.

WhatsApp's durations are scaled (TIME) so the suite stays fast; what is compared is what an
operator sees: device rows, leases, the queue, the phone's Linked Devices and what the network got.
"""
import contextlib
import gc
import json
import sys
import threading
import time

import neonize.client
import psycopg
import pytest
from psycopg.rows import dict_row

from sender.transport.base import CONNECT_POLICY, PAIRING_WINDOW
from sender.transport.neonize_transport import NeonizeTransport
from sender.transport.sim import SimConfig, SimNetwork, SimTransport, lid_of
from tests.factories import make_user
from tests.test_sender_support import running_worker
from tests.fake_whatsmeow import FakeWhatsApp, create_whatsmeow_tables, session_stored

TIME = 0.05                                  # WhatsApp's 60 s first code -> 3 s here
# With the sender tests' fast heartbeat, lease and poll.
SETTINGS = dict(logout_wait_seconds=1.5, not_sent_hold_seconds=0.5)


def wait_until(fn, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


class SimSide:
    """The simulated network: its controls are the SimTransport's own (side.net)."""

    def __init__(self, tmp_path, url):
        self.store, self.url, self.time_scale = tmp_path / "simnet", url, TIME
        self.net = None

    def use_time_scale(self, factor):
        self.time_scale = factor

    def transport(self, on_event):
        self.net = SimTransport(on_event, SimConfig(store_dir=self.store, latency_ms=20, time_scale=self.time_scale,
                                                    delivered_after_s=0.05))
        return self.net

    def new_process(self):
        pass

    def stored_device(self, c, uid, phone):
        return _device(c, uid, phone, f"{phone}.0:1@s.whatsapp.net")

    def showing_code(self, dev):
        return self.net is not None and self.net.showing_code(dev)

    def pairing_running(self, dev):
        return self.net is not None and self.net.state(dev) == "pairing"

    def received_texts(self):
        return [r["text"] for r in SimNetwork.received(self.store)]

    def fatal(self):
        return []

    def close(self):
        pass


class NeonizeSide:
    """neonize's real client objects on a fake Go core (one per process) and a fake WhatsApp (side.net,
    whose controls are named and called as the simulated transport's)."""

    def __init__(self, tmp_path, url, monkeypatch):
        self.url, self.monkeypatch = url, monkeypatch
        self.net = FakeWhatsApp(url, str(tmp_path / "wa.sock"), PAIRING_WINDOW)
        self.use_time_scale(TIME)
        self.new_process()

    def use_time_scale(self, factor):
        self.pairing = self.net.pairing = PAIRING_WINDOW.scaled(factor)
        self.policy = CONNECT_POLICY.scaled(factor)

    def new_process(self):
        self.core = self.net.core()
        self.monkeypatch.setattr(neonize.client, "gocode", self.core)

    def transport(self, on_event):
        return NeonizeTransport(on_event, self.url, capacity=20, policy=self.policy, pairing=self.pairing,
                                settle_s=2.0, hung_after_s=30.0, on_hung=self.net.fatal.append,
                                on_budget_spent=lambda: self.net.fatal.append("budget spent"),
                                pairing_command=[sys.executable, "-m", "tests.fake_whatsmeow_child", self.net.address],
                                quiet_native_stdout=False)

    def stored_device(self, c, uid, phone):
        dev = _device(c, uid, phone, f"{phone}:1@s.whatsapp.net")
        self.net.stored(dev, f"{phone}:1@s.whatsapp.net")
        return dev

    def showing_code(self, dev):
        return self.net.showing_code(dev)

    def pairing_running(self, dev):
        return self.net.pairing_running(dev)

    def received_texts(self):
        return self.net.received_texts()

    def fatal(self):
        return self.net.fatal

    def close(self):
        self.net.close()


def _device(c, uid, phone, jid):
    dev = c.execute("SELECT create_device(%s, %s, 0, 0, 10000, 100000) AS id", [uid, f"phone {phone}"]).fetchone()["id"]
    c.execute("SELECT device_paired(%s, %s, %s)", [dev, jid, phone])
    # A stored session: the number paired long ago, past its warm-up (tests/test_deliverability.py).
    c.execute("UPDATE user_devices SET warmup_started_at = NULL WHERE id = %s", [dev])
    return dev


@pytest.fixture(scope="module")
def session_tables(module_db_url):
    create_whatsmeow_tables(module_db_url)


@pytest.fixture(params=["sim", "neonize"])
def side(request, tmp_path, committed_db_url, session_tables, monkeypatch):
    made = (SimSide(tmp_path, committed_db_url) if request.param == "sim"
            else NeonizeSide(tmp_path, committed_db_url, monkeypatch))
    yield made
    made.close()
    assert made.fatal() == [], "the Go core would have aborted the process"


@pytest.fixture
def c(committed_db_url, session_tables):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("DELETE FROM users")
        conn.execute("DELETE FROM senders")
        conn.execute("DELETE FROM whatsmeow_device")
        yield conn


def worker(side, url, **settings):
    """A sender worker in a thread on this side's transport."""
    return running_worker(url, transport_factory=side.transport, **{**SETTINGS, **settings})


@contextlib.contextmanager
def online_device(side, c, url, phone, **settings):
    """A device with a stored session, online on a running worker: yields (owner, device, jid)."""
    uid = make_user(c)
    dev = side.stored_device(c, uid, phone)
    with worker(side, url, **settings):
        wait_until(status_is(c, dev, "online"), what="online")
        yield uid, dev, device(c, dev)["jid"]


def device(c, dev):
    return c.execute("SELECT * FROM user_devices WHERE id = %s", [dev]).fetchone()


def status_is(c, dev, status):
    return lambda: (row := device(c, dev)) is not None and row["status"] == status and row


def running(c, dev):
    return c.execute("SELECT _device_is_running(%s) AS r", [dev]).fetchone()["r"]


def command(c, uid, dev, cmd, phone=None, timeout=60.0):
    """Asks for a command the way the dashboard does and waits for the sender's outcome."""
    cid = c.execute("SELECT request_device_command(%s, %s, %s, %s) AS id", [uid, dev, cmd, phone]).fetchone()["id"]
    return wait_until(lambda: c.execute("SELECT * FROM device_commands WHERE id = %s AND status IN ('done', 'failed')",
                                        [cid]).fetchone(), timeout, f"the {cmd} command")


def queue(c, uid, dev, texts, to=None):
    """Messages queued by the one writer of new messages, as the chat view queues them (a row
    inserted by hand would bypass what it tells the claims: a timelocked device passed by)."""
    return [c.execute("SELECT send_chat_message(%s, %s, %s, %s) AS id",
                      [uid, dev, to or f"6013{i:08d}", text]).fetchone()["id"] for i, text in enumerate(texts)]


def statuses(c, ids):
    return {r["status"]: r["n"] for r in c.execute(
        "SELECT status, count(*) AS n FROM broadcast_messages WHERE id = ANY(%s) GROUP BY 1", [ids])}


def pairing_events(listener, device_id, kind):
    return [e for note in listener.notifies(timeout=0.05, stop_after=500)
            if (e := json.loads(note.payload))["type"] == "device_pairing"
            and e["data"]["device_id"] == device_id and e["data"]["kind"] == kind]


# Pairing -------------------------------------------------------------------------------------
def test_pair_by_qr_then_a_ban_resumes_the_new_session(side, c, committed_db_url):
    uid = make_user(c)
    dev = c.execute("SELECT create_device(%s, 'new phone', 0, 0) AS id", [uid]).fetchone()["id"]
    with worker(side, committed_db_url):
        wait_until(lambda: side.showing_code(dev), what="a QR code")
        jid = side.net.scan(dev, "60123400001")
        row = wait_until(status_is(c, dev, "online"), what="online after the scan")
        assert (row["jid"], row["phone"]) == (jid, "60123400001")
        side.net.ban(dev, 1)
        wait_until(status_is(c, dev, "banned"), what="banned")
        wait_until(status_is(c, dev, "online"), what="online again after the ban")
        assert device(c, dev)["jid"] == jid and not side.pairing_running(dev)   # resumed, not paired anew
        ids = queue(c, uid, dev, ["after the ban"])
        wait_until(lambda: statuses(c, ids) == {"sent": 1}, what="a send on the resumed session")


def test_an_unscanned_pairing_expires_and_ends(side, c, committed_db_url):
    side.use_time_scale(0.02)                           # the whole window: 3.2 s
    uid = make_user(c)
    listener = psycopg.connect(committed_db_url, autocommit=True)
    listener.execute("LISTEN wa_events")
    dev = c.execute("SELECT create_device(%s, 'never scanned', 0, 0) AS id", [uid]).fetchone()["id"]
    with worker(side, committed_db_url):
        wait_until(lambda: side.showing_code(dev), what="a QR code")
        row = wait_until(status_is(c, dev, "logged_out"), what="the pairing to expire")
        assert "pairing expired" in row["status_reason"]
        wait_until(lambda: not running(c, dev) and not side.pairing_running(dev), what="the pairing to end")
    codes = [e["data"]["code"] for e in pairing_events(listener, dev, "qr")]
    listener.close()
    # Rotating codes, then the end (their exact schedule: test_sender_sim; here the neonize side's
    # own timer and the network's run apart by a scheduling lag, which may cut the last code short).
    assert 2 <= len(codes) <= PAIRING_WINDOW.codes and len(set(codes)) == len(codes)


def test_pair_by_code_with_a_common_browser_name(side, c, committed_db_url):
    uid = make_user(c)
    listener = psycopg.connect(committed_db_url, autocommit=True)
    listener.execute("LISTEN wa_events")
    dev = c.execute("SELECT create_device(%s, 'by code', 0, 0) AS id", [uid]).fetchone()["id"]
    with worker(side, committed_db_url):
        done = command(c, uid, dev, "pair_phone", "60123400002")
        assert done["status"] == "done", done["error"]
        assert pairing_events(listener, dev, "code")
        side.net.scan(dev, "60123400002")                    # the code typed on the phone
        assert wait_until(status_is(c, dev, "online"))["phone"] == "60123400002"
    listener.close()


# Connections ---------------------------------------------------------------------------------
def test_a_drop_during_sends_delays_them_and_the_connection_returns_by_itself(side, c, committed_db_url):
    with online_device(side, c, committed_db_url, "60123400003") as (uid, dev, jid):
        texts = [f"drop test {i}" for i in range(30)]
        ids = queue(c, uid, dev, texts)
        wait_until(lambda: len(side.received_texts()) >= 3, what="the first sends")
        side.net.outage(dev)
        wait_until(status_is(c, dev, "offline"), what="offline during the drop")
        time.sleep(0.3)                                 # sends keep being tried meanwhile
        assert statuses(c, ids).get("failed", 0) == 0
        side.net.outage(dev, False)
        wait_until(lambda: statuses(c, ids) == {"sent": 30}, what="every message sent after the drop")
        assert sorted(side.received_texts()) == sorted(texts)   # each once
        assert device(c, dev)["status"] == "online" and device(c, dev)["jid"] == jid


def test_a_device_that_cannot_connect_is_released_after_its_attempts(side, c, committed_db_url):
    side.use_time_scale(0.01)                           # its back-off: 0.05 s doubling
    uid = make_user(c)
    dev = side.stored_device(c, uid, "60123400004")
    healthy = side.stored_device(c, uid, "60123400012")   # its lease must not be the one given up
    jid = device(c, dev)["jid"]
    with worker(side, committed_db_url) as w:
        for d in (dev, healthy):
            wait_until(status_is(c, d, "online"), what="online")
        w.leases.stop_device(dev)                      # as after a restart: a fresh connect
        side.net.outage(dev)
        w.leases.start_device(dev, jid, None)
        row = wait_until(lambda: "gave up" in (device(c, dev)["status_reason"] or "") and device(c, dev),
                         what="the transport to give up")
        assert row["status"] == "offline" and row["resume_after"] is not None
        wait_until(lambda: not running(c, dev), what="the lease to be released")
        time.sleep(0.6)                                # lease rounds: held, so nobody takes it again
        assert not running(c, dev) and running(c, healthy) and device(c, healthy)["status"] == "online"
        side.net.outage(dev, False)
        assert command(c, uid, dev, "reconnect")["status"] == "done"   # Reconnect ends the hold
        wait_until(status_is(c, dev, "online"), what="online after Reconnect")


def test_neonize_clients_write_the_go_registry_only_from_the_transports_threads(tmp_path, c, committed_db_url,
                                                                               session_tables, monkeypatch):
    """neonize stops a client object when it is collected, from whichever thread collects it (or at
    exit): a registry write beside the control thread's, which aborts the Go core. The transport
    stops its clients itself, so a dropped transport's clients write nothing."""
    side = NeonizeSide(tmp_path, committed_db_url, monkeypatch)
    try:
        uid = make_user(c)
        dev = side.stored_device(c, uid, "60123400031")
        with worker(side, committed_db_url):
            wait_until(status_is(c, dev, "online"), what="online")
        wait_until(lambda: not [t for t in threading.enumerate() if t.name == "neonize-control"],
                   what="the transport's control thread to end")
        gc.collect()                                  # the transport and its clients are garbage now
        # neonize's connect runs Neonize() on a thread named by the key; our stops run on the control
        # thread's helper, awaited one at a time: each connect stopped once, by us.
        writes = side.core.writers
        assert set(writes) == {("Neonize", "60123400031"), ("Stop", f"neonize-stop-{dev}")}, writes
        assert [call for call, _ in writes].count("Stop") == [call for call, _ in writes].count("Neonize")
    finally:
        side.close()
    assert side.fatal() == []


def test_neonize_stops_a_connect_only_after_it_opened_its_session_store(tmp_path, c, committed_db_url,
                                                                        session_tables, monkeypatch):
    """A device stopped (or restarted) while its connect is still opening the session store, as on
    a busy machine or a slow database: Stop must wait for that connect's registry write, whatever
    ended the device meanwhile, or the two writes abort the Go core."""
    side = NeonizeSide(tmp_path, committed_db_url, monkeypatch)
    side.net.store_open_s = 0.5
    try:
        uid = make_user(c)
        dev = side.stored_device(c, uid, "60123400032")
        with worker(side, committed_db_url) as w:
            wait_until(lambda: side.core.writers, what="the connect to enter the Go core")
            w.leases.stop_device(dev)                 # ended while Neonize() opens its store
            wait_until(lambda: ("Stop", f"neonize-stop-{dev}") in side.core.writers, what="the stop")
            assert side.core.writers[:2] == [("Neonize", "60123400032"), ("Stop", f"neonize-stop-{dev}")]
    finally:
        side.close()
    assert side.fatal() == []


def test_restart_resumes_stored_sessions_without_pairing(side, c, committed_db_url):
    uid = make_user(c)
    devs = [side.stored_device(c, uid, f"6012340002{i}") for i in range(2)]
    with worker(side, committed_db_url):
        for dev in devs:
            wait_until(status_is(c, dev, "online"), what="online")
    side.new_process()
    with worker(side, committed_db_url):
        for dev in devs:
            wait_until(status_is(c, dev, "online"), what="online after the restart")
        ids = queue(c, uid, devs[0], ["after restart"])
        wait_until(lambda: statuses(c, ids) == {"sent": 1}, what="the send")
        assert not any(side.pairing_running(dev) for dev in devs)
    assert side.received_texts().count("after restart") == 1


def test_a_ban_outlasts_a_restart_and_counts_once(side, c, committed_db_url):
    """WhatsApp keeps a number's temporary ban whichever process connects it: the next sender
    process meets it again on connect, and the device stays banned until it ends -- one ban, logged
    again as still_banned -- then connects and sends."""
    uid = make_user(c)
    dev = side.stored_device(c, uid, "60123400031")
    with worker(side, committed_db_url):
        wait_until(status_is(c, dev, "online"), what="online")
        side.net.ban(dev, 10)
        wait_until(status_is(c, dev, "banned"), what="banned")
    side.new_process()
    with worker(side, committed_db_url):
        wait_until(lambda: c.execute("""SELECT event FROM device_events WHERE device_id = %s
                                         ORDER BY id DESC LIMIT 1""", [dev]).fetchone()["event"] == "still_banned",
                   what="the ban met again on connect")
        assert device(c, dev)["status"] == "banned"
        wait_until(status_is(c, dev, "online"), what="online once the ban ended")
        ids = queue(c, uid, dev, ["after the ban"])
        wait_until(lambda: statuses(c, ids) == {"sent": 1}, what="a send after the ban")
    assert c.execute("SELECT bans_total FROM device_health WHERE device_id = %s", [dev]).fetchone()["bans_total"] == 1


# Sessions ended elsewhere --------------------------------------------------------------------
def test_logout_from_the_phone(side, c, committed_db_url):
    with online_device(side, c, committed_db_url, "60123400005") as (uid, dev, jid):
        side.net.remote_logout(dev)
        row = wait_until(status_is(c, dev, "logged_out"), what="logged out")
        assert row["jid"] is None and row["phone"] == "60123400005"
        wait_until(lambda: not running(c, dev), what="the lease to be released")
        assert not session_stored(committed_db_url, jid)


def test_logout_from_the_dashboard(side, c, committed_db_url):
    with online_device(side, c, committed_db_url, "60123400006") as (uid, dev, jid):
        assert command(c, uid, dev, "logout")["status"] == "done"
        wait_until(status_is(c, dev, "logged_out"), what="logged out")
        assert not side.net.is_linked(jid) and not session_stored(committed_db_url, jid)


@pytest.mark.parametrize("cut_off, phone, reason", [("replace_stream", "60123400007", "stream replaced"),
                                                     ("client_outdated", "60123400008", "client version")])
def test_a_session_cut_off_for_good_is_parked_not_retried(side, c, committed_db_url, cut_off, phone, reason):
    """Another client took the session, or WhatsApp refuses this client version: retrying would
    fight the other client or fail the same way, so the device stays leased here and idle."""
    with online_device(side, c, committed_db_url, phone) as (uid, dev, jid):
        connects = side.net.connects(dev)
        getattr(side.net, cut_off)(dev)
        row = wait_until(status_is(c, dev, "offline"), what="offline")
        assert reason in row["status_reason"]
        time.sleep(0.6)                                 # three lease rounds: nobody reconnects it
        assert side.net.connects(dev) == connects and running(c, dev) and device(c, dev)["status"] == "offline"


def test_delete_while_offline_removes_the_session_and_logs_out_when_it_can(side, c, committed_db_url):
    uid = make_user(c)
    back, gone = side.stored_device(c, uid, "60123400009"), side.stored_device(c, uid, "60123400010")
    jids = {dev: device(c, dev)["jid"] for dev in (back, gone)}
    with worker(side, committed_db_url):
        for dev in (back, gone):
            wait_until(status_is(c, dev, "online"), what="online")
            side.net.outage(dev)
            wait_until(status_is(c, dev, "offline"), what="offline")
            assert c.execute("SELECT request_device_delete(%s, %s) AS r", [uid, dev]).fetchone()["r"]["pending"]
        side.net.outage(back, False)                 # its connection returns while the sender waits
        for dev in (back, gone):
            wait_until(lambda: device(c, dev) is None, what="the device to be deleted")
            assert not session_stored(committed_db_url, jids[dev])
    assert not side.net.is_linked(jids[back])                  # logged out: off the phone's Linked Devices
    assert side.net.is_linked(jids[gone])                      # never came back: the phone still lists it


# Messages ------------------------------------------------------------------------------------
def test_a_receipt_ahead_of_its_completion_waits_for_it_in_the_sender(side, c, committed_db_url):
    """WhatsApp's delivery receipt can come before the send's completion is written (within
    ~100 ms, sometimes before the send returns). Recorded at once it would miss its message and wait
    in early_receipts for the completion to apply it, which fails when it commits while that
    completion runs (neither sees the other). The sender records it once the completion has
    committed: the database never keeps one of its own sends' receipts as early."""
    uid = make_user(c)
    dev = side.stored_device(c, uid, "60123400021")
    to = "60199900021"
    with worker(side, committed_db_url) as w, psycopg.connect(committed_db_url) as blocker:
        wait_until(status_is(c, dev, "online"), what="online")
        side.net.receipts_overtake_acks()
        # Holds the completion after it settled the row, before it commits: its outcome counts wait
        # (message_outcome_totals, a row per connection shard).
        c.execute("INSERT INTO message_outcome_totals (shard, sent, failed) "
                  "SELECT g, 0, 0 FROM generate_series(0, 15) g ON CONFLICT DO NOTHING")
        blocker.execute("UPDATE message_outcome_totals SET sent = sent")
        sent = queue(c, uid, dev, ["ahead of its completion"], to=to)
        # (a second one may follow: the recipient's linked device, or the read receipt)
        wait_until(lambda: w.events.receipts_waiting() >= 1, what="the receipt waiting for its completion")
        assert c.execute("SELECT count(*) AS n FROM early_receipts").fetchone()["n"] == 0
        assert c.execute("SELECT status FROM broadcast_messages WHERE id = %s", sent).fetchone()["status"] == "queued"
        blocker.rollback()
        wait_until(lambda: c.execute("SELECT delivered_at FROM broadcast_messages WHERE id = %s",
                                     sent).fetchone()["delivered_at"], what="the receipt applied")
        wait_until(lambda: w.events.receipts_waiting() == 0, what="no receipt waiting")
        assert c.execute("SELECT count(*) AS n FROM early_receipts").fetchone()["n"] == 0


def test_a_number_not_on_whatsapp_fails_and_says_nothing_about_the_device(side, c, committed_db_url):
    """A lead list holds numbers without WhatsApp: their messages fail as undeliverable, with
    whatsmeow's reason, and do not count toward the device's self-pause (its outcomes record none)."""
    with online_device(side, c, committed_db_url, "60123400041") as (uid, dev, jid):
        side.net.not_on_whatsapp("60199900041")
        gone = queue(c, uid, dev, ["to nobody"], to="60199900041")
        sent = queue(c, uid, dev, ["to somebody"], to="60199900042")
        wait_until(lambda: statuses(c, gone + sent) == {"failed": 1, "sent": 1}, what="both outcomes")
        error = c.execute("SELECT error_message FROM broadcast_messages WHERE id = %s",
                          gone).fetchone()["error_message"]
        assert error.startswith("undeliverable: no LID found for 60199900041@s.whatsapp.net")
        assert error.endswith("(the number is not on WhatsApp)")
        outcomes = c.execute("SELECT recent_outcomes::text AS bits FROM device_pacing WHERE device_id = %s",
                             [dev]).fetchone()["bits"]
        assert outcomes == "0"                                   # the one send, no failure
        assert "to nobody" not in side.received_texts()


def test_contacts_writing_from_their_lid_identity(side, c, committed_db_url):
    """Contacts write more and more from their @lid identity. With the number alongside, the reply
    is filed in the number's chat and marks the number's lead replied; without it, it gets a chat
    of its own and marks no lead (there is none to tell)."""
    with online_device(side, c, committed_db_url, "60123400031") as (uid, dev, jid):
        phones = {"phone": "60199900031", "lid": "60199900032", "hidden": "60199900033"}
        for identity, phone in phones.items():
            c.execute("INSERT INTO leads (user_id, device_id, phone) VALUES (%s, %s, %s)", [uid, dev, phone])
            side.net.reply(dev, phone, f"written by {identity}", identity=identity)
        wait_until(lambda: c.execute("SELECT count(*) AS n FROM chat_inbound WHERE device_id = %s",
                                     [dev]).fetchone()["n"] == 3, what="the three messages in")
        chats = {r["chat_jid"]: (r["phone"], r["last_message_preview"]) for r in c.execute(
            "SELECT chat_jid, phone, last_message_preview FROM chats WHERE device_id = %s", [dev])}
        assert chats == {"60199900031@s.whatsapp.net": ("60199900031", "written by phone"),
                         "60199900032@s.whatsapp.net": ("60199900032", "written by lid"),
                         f"{lid_of('60199900033')}@lid": (None, "written by hidden")}
        replied = {r["phone"] for r in c.execute(
            "SELECT phone FROM leads WHERE user_id = %s AND replied_at IS NOT NULL", [uid])}
        assert replied == {"60199900031", "60199900032"}


def test_receipts_and_a_reach_out_timelock(side, c, committed_db_url):
    with online_device(side, c, committed_db_url, "60123400011") as (uid, dev, jid):
        # three sends: a receipt may never come (one in fifty on the simulated network, as on WhatsApp)
        first = queue(c, uid, dev, ["to a new contact", "again", "and again"], to="60199900001")
        wait_until(lambda: c.execute("SELECT count(delivered_at) AS n FROM broadcast_messages WHERE id = ANY(%s)",
                                     [first]).fetchone()["n"], what="a delivery receipt")
        side.net.timelock(dev)
        side.net.reply(dev, "60199900002", "hello")
        warm = queue(c, uid, dev, ["to a warm contact"], to="60199900002")
        cold = queue(c, uid, dev, ["to another new contact"], to="60199900003")
        wait_until(lambda: statuses(c, warm + cold) == {"sent": 1, "failed": 1}, what="both outcomes")
        error = c.execute("SELECT status, error_message FROM broadcast_messages WHERE id = %s", cold).fetchone()
        assert error["status"] == "failed" and "reach-out timelock (error 463)" in error["error_message"]
        # The 463 timelocked the device: its cold contacts wait in the queue, warm ones still go.
        wait_until(lambda: device(c, dev)["timelocked_until"], what="the device timelocked")
        held = queue(c, uid, dev, ["to a third new contact"], to="60199900004")
        warm_again = queue(c, uid, dev, ["to the warm contact again"], to="60199900002")
        wait_until(lambda: statuses(c, warm_again) == {"sent": 1}, what="the warm message sent")
        time.sleep(1.0)   # several claim rounds: the cold one stays
        assert statuses(c, held) == {"pending": 1}
        assert "to a third new contact" not in side.received_texts()
