"""The neonize transport for real, offline (no network here): sessions stored in the test database,
connect failures become clean offline reports, attempts are capped, the connection budget holds,
a stored jid without a session is never resumed (that would abort the process), the watchdog fires
on a hung connect, and lifecycle events (stream replaced, ban, logout) drive the device."""
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import psycopg
import pytest

from common.db import database_name
from sender.transport import neonize_transport as nt
from sender.transport.base import ConnectFailed, DeviceSession, LoggedOut, StreamReplaced, TemporaryBan
from tests.factories import make_device, make_user


class Recorder:
    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, pred, timeout=60.0):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (found := [e for e in self.events if pred(e)]):
                left = deadline - time.monotonic()
                assert left > 0, f"no matching event in {timeout} s; got {self.events}"
                self.cond.wait(left)
            return found


def db_connections(url):
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                         [database_name(url)]).fetchone()[0]


@pytest.fixture
def transport_factory(committed_db_url):
    made = []

    def make(**kw):
        rec = Recorder()
        kw.setdefault("backoff_s", 0.05)
        kw.setdefault("settle_s", 1.0)
        t = nt.NeonizeTransport(rec, committed_db_url, quiet_native_stdout=False, **kw)
        made.append(t)
        return t, rec

    yield make
    for t in made:
        t.close()


def test_store_address_disables_tls_only_for_a_local_server():
    assert nt.neonize_store_address("postgresql://u:p@127.0.0.1:5432/wa") == "postgresql://u:p@127.0.0.1:5432/wa?sslmode=disable"
    assert nt.neonize_store_address("postgres://u@localhost/wa?application_name=x").endswith("&sslmode=disable")
    assert nt.neonize_store_address("postgres://u@db.example.com/wa") == "postgres://u@db.example.com/wa"
    assert nt.neonize_store_address("postgres://u@127.0.0.1/wa?sslmode=require").endswith("sslmode=require")


def test_offline_connect_creates_the_session_tables_and_ends_offline_with_the_error(transport_factory, committed_db_url):
    t, rec = transport_factory(max_attempts=2)
    started = time.monotonic()
    t.start(DeviceSession(101))
    final = rec.wait_for(lambda e: isinstance(e, ConnectFailed) and "gave up" in e.error)[0]
    assert time.monotonic() - started < 5
    assert final.device_id == 101 and "gave up after 2 attempts" in final.error
    assert "dial" in final.error or "no such host" in final.error   # Go's own text reaches the device
    first = [e for e in rec.events if isinstance(e, ConnectFailed)][0]
    assert "attempt 1 of 2" in first.error
    assert t.connects_made == 2
    with psycopg.connect(committed_db_url) as c:
        tables = {r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE 'whatsmeow%%'")}
    assert {"whatsmeow_device", "whatsmeow_lid_map", "whatsmeow_sessions"} <= tables and len(tables) >= 15
    # Each connect leaked its pool (a known neonize fault); nothing beyond the attempts made.
    assert db_connections(committed_db_url) <= t.connects_made + 1


def test_connection_budget_caps_connects_per_process(transport_factory, committed_db_url):
    before = db_connections(committed_db_url)
    t, rec = transport_factory(max_attempts=1, connection_budget=2)
    for dev in (201, 202, 203):
        t.start(DeviceSession(dev))
    failed = rec.wait_for(lambda e: isinstance(e, ConnectFailed) and e.device_id == 203)
    assert "connection budget exhausted" in failed[0].error
    assert t.connects_made == 2
    assert db_connections(committed_db_url) - before <= 2 + 1     # two leaked pools and our own check


def test_a_stored_jid_without_a_session_pairs_anew_instead_of_aborting(transport_factory, committed_db_url):
    """Resuming a jid missing from whatsmeow_device panics in Go (exit 134); the transport checks first."""
    t, rec = transport_factory(max_attempts=1)
    t.start(DeviceSession(301, jid="60123456789:7@s.whatsapp.net", phone="60123456789"))
    rec.wait_for(lambda e: isinstance(e, ConnectFailed) and e.device_id == 301)
    assert t._runs[301].client.uuid == b"device-301"      # a fresh pairing client, not a resume
    with psycopg.connect(committed_db_url) as c:
        assert not c.execute("SELECT whatsmeow_session_exists('60123456789:7@s.whatsapp.net')").fetchone()[0]


def store_fake_session(url, jid):
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


def test_stored_session_is_resumed_with_its_jid(transport_factory, committed_db_url):
    t, rec = transport_factory(max_attempts=1)
    t.start(DeviceSession(401))                        # creates the whatsmeow tables
    rec.wait_for(lambda e: isinstance(e, ConnectFailed) and e.device_id == 401)
    jid = "60199990001:3@s.whatsapp.net"
    store_fake_session(committed_db_url, jid)
    t.start(DeviceSession(402, jid=jid))
    failed = rec.wait_for(lambda e: isinstance(e, ConnectFailed) and e.device_id == 402)[0]
    assert "dial" in failed.error or "no such host" in failed.error
    assert t._runs[402].client.uuid == b"60199990001"  # resumed by its jid (registry key: the number)


def test_one_client_object_per_device_across_restarts(transport_factory):
    t, rec = transport_factory(max_attempts=1)
    t.start(DeviceSession(501))
    rec.wait_for(lambda e: isinstance(e, ConnectFailed) and e.device_id == 501)
    first = t._runs[501].client
    t.start(DeviceSession(501))
    rec.wait_for(lambda e: isinstance(e, ConnectFailed) and e.device_id == 501 and e is not rec.events[0])
    assert t._runs[501].client is first and len(t._clients) == 1


def test_send_on_a_device_that_is_not_connected_is_a_send_error(transport_factory):
    from sender.transport.base import OutgoingMessage, SendError
    t, _ = transport_factory()
    with pytest.raises(SendError, match="not connected"):
        t.send(OutgoingMessage(1, 999, "60123456789", "hi"))


def test_pair_by_phone_without_network_fails_cleanly(transport_factory):
    t, _ = transport_factory(max_attempts=1)
    with pytest.raises(RuntimeError, match="could not reach WhatsApp"):
        t.pair_phone(601, "60123456789")


def test_watchdog_reports_a_hung_connect(transport_factory):
    hung = []
    t, _ = transport_factory(hung_after_s=0.2, on_hung=hung.append)
    run = nt._Run(701, DeviceSession(701))
    run.connect_started = time.monotonic()          # connect() started and never showed a sign of life
    t._runs[701] = run
    deadline = time.monotonic() + 60
    while not hung and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hung == [[701]]


class FakeClient:
    """Stands in for a connected neonize client in the lifecycle tests (no network here)."""

    def __init__(self, uuid):
        self.uuid = uuid
        self.stopped = threading.Event()

    def stop(self):
        self.stopped.set()


def connected_run(t, device_id):
    client = FakeClient(f"k{device_id}".encode())
    run = nt._Run(device_id, DeviceSession(device_id, jid=f"6011{device_id}:1@s.whatsapp.net"), client=client,
                  state="connected")
    t._runs[device_id] = run
    t._device_of_key[client.uuid] = device_id
    return run, client


def test_stream_replaced_stops_the_device_and_never_retries(transport_factory):
    from neonize.events import StreamReplacedEv
    t, rec = transport_factory()
    run, client = connected_run(t, 801)
    t._dispatching(t._on_stream_replaced)(client, StreamReplacedEv())
    assert rec.events == [StreamReplaced(801)]
    assert client.stopped.wait(2) and run.state == "stopped" and run.timer is None


def test_temporary_ban_reports_expiry_stops_and_restarts_after_it(transport_factory):
    from neonize.events import TemporaryBanEv
    t, rec = transport_factory(max_attempts=1)
    run, client = connected_run(t, 802)
    t._dispatching(t._on_temporary_ban)(client, TemporaryBanEv(Code=TemporaryBanEv.SEND_TO_TOO_MANY_PEOPLE, Expire=1))
    ban = rec.events[0]
    assert isinstance(ban, TemporaryBan) and ban.code == "SEND_TO_TOO_MANY_PEOPLE"
    assert 0 < (ban.expires_at - datetime.now(timezone.utc)).total_seconds() <= 1
    assert client.stopped.wait(2)
    # At expiry the device is started again (here: a real connect that fails offline).
    rec.wait_for(lambda e: isinstance(e, ConnectFailed) and e.device_id == 802, timeout=30)


def test_logged_out_event_stops_the_device(transport_factory):
    from neonize.events import LoggedOutEv
    t, rec = transport_factory()
    run, client = connected_run(t, 803)
    reason = LoggedOutEv.DESCRIPTOR.fields_by_name["Reason"].enum_type.values_by_name["LOGGED_OUT"].number
    t._dispatching(t._on_logged_out)(client, LoggedOutEv(OnConnect=False, Reason=reason))
    assert rec.events == [LoggedOut(803, "LOGGED_OUT (while connected)")]
    assert client.stopped.wait(2) and run.state == "stopped"


def test_logout_needs_a_live_connection(transport_factory):
    t, _ = transport_factory()
    with pytest.raises(RuntimeError, match="not connected"):
        t.logout(804)


def test_go_stdout_goes_to_the_sink_and_python_output_stays(tmp_path):
    sink = tmp_path / "go.out"
    code = ("import os, sys; from sender.transport.neonize_stdio import divert_native_stdout;"
            f"divert_native_stdout({str(sink)!r}); os.write(1, b'go noise\\n'); print('python line')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout == "python line\n"
    assert sink.read_text() == "go noise\n"


def test_the_transport_reports_into_the_device_row(committed_db_url, transport_factory):
    """End to end with the sender's event sink: the offline failure lands on the device row."""
    from psycopg.rows import dict_row

    from sender.events import EventSink
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        dev = make_device(c, make_user(c), status="connecting")
    sink = EventSink(committed_db_url)
    sink.start()
    try:
        t, rec = transport_factory(max_attempts=1)
        t.on_event = sink.put
        t.start(DeviceSession(dev))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with psycopg.connect(committed_db_url) as c:
                status, reason = c.execute("SELECT status, status_reason FROM user_devices WHERE id = %s",
                                           [dev]).fetchone()
            if status == "offline":
                break
            time.sleep(0.1)
    finally:
        sink.stop()
    assert status == "offline" and "gave up after 1 attempts" in reason and "dial" in reason
