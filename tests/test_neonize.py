"""The neonize transport on neonize's real Go core, offline (no network here): sessions stored in the
test database, failed connects retried and then given up with Go's own error, the connection
budget, a stored jid without its session paired anew (in the real pairing child) instead of
resumed (that would abort the process), the watchdog, the send outcomes of whatsmeow's errors and
the Go core's stdout kept out of ours. Lifecycle scenarios are in test_transport_contract.py."""
import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from common.db import database_name
from sender.transport import neonize_transport as nt
from sender.transport.base import (ConnectFailed, ConnectPolicy, DeviceSession, NotConnected, NotSent, ReachOutRefused,
                                   Undeliverable)
from tests.fake_whatsmeow import create_whatsmeow_tables, store_session

FAST = ConnectPolicy(attempts=2, backoff_s=0.05, backoff_max_s=0.1, hold_s=60)


class Recorder:
    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def __call__(self, event):
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, pred, timeout=60.0):
        with self.cond:
            assert self.cond.wait_for(lambda: [e for e in self.events if pred(e)], timeout), \
                f"no matching event in {timeout} s; got {self.events}"
            return [e for e in self.events if pred(e)]


def db_connections(url):
    with psycopg.connect(url, autocommit=True) as c:
        return c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                         [database_name(url)]).fetchone()[0]


@pytest.fixture(scope="module")
def url(module_db_url):
    create_whatsmeow_tables(module_db_url)
    return module_db_url


@pytest.fixture
def transport_factory(url):
    made = []

    def make(**kw):
        rec = Recorder()
        kw.setdefault("capacity", 10)
        kw.setdefault("policy", FAST)
        kw.setdefault("settle_s", 1.0)
        t = nt.NeonizeTransport(rec, url, quiet_native_stdout=False, **kw)
        made.append(t)
        return t, rec

    yield make
    for t in made:
        t.close()


def gave_up(device_id):
    return lambda e: isinstance(e, ConnectFailed) and e.device_id == device_id and e.resume_at is not None


def test_store_address_disables_tls_only_for_a_local_server():
    assert nt.neonize_store_address("postgresql://u:p@127.0.0.1:5432/wa") == "postgresql://u:p@127.0.0.1:5432/wa?sslmode=disable"
    assert nt.neonize_store_address("postgres://u@localhost/wa?application_name=x").endswith("&sslmode=disable")
    assert nt.neonize_store_address("postgres://u@db.example.com/wa") == "postgres://u@db.example.com/wa"
    assert nt.neonize_store_address("postgres://u@127.0.0.1/wa?sslmode=require").endswith("sslmode=require")


def test_whatsmeow_errors_map_to_the_send_outcomes():
    assert isinstance(nt.send_error("websocket not connected"), NotSent)
    assert isinstance(nt.send_error("client is nil"), NotSent)
    timelock = nt.send_error("server returned error 463")
    assert type(timelock) is ReachOutRefused and "reach-out timelock (error 463)" in str(timelock)
    assert not isinstance(timelock, NotSent)             # refused by WhatsApp: failed, never retried
    gone = nt.send_error("no LID found for 60123@s.whatsapp.net from server")
    assert isinstance(gone, Undeliverable) and str(gone) == (
        "undeliverable: no LID found for 60123@s.whatsapp.net from server (the number is not on WhatsApp)")
    assert isinstance(nt.send_error("failed to upload media: 413"), Undeliverable)
    assert not isinstance(nt.send_error("info query timed out"), Undeliverable)


def test_offline_resume_is_retried_then_given_up_with_gos_error(transport_factory, url):
    jid = "60199990001:3@s.whatsapp.net"
    store_session(url, jid)
    t, rec = transport_factory()
    started = time.monotonic()
    t.start(DeviceSession(401, jid=jid))
    final = rec.wait_for(gave_up(401))[0]
    assert time.monotonic() - started < 60
    assert "gave up after 2 attempts" in final.error and ("dial" in final.error or "no such host" in final.error)
    assert "attempt 1 of 2" in [e for e in rec.events if isinstance(e, ConnectFailed)][0].error
    assert t.connects_made == 2 and t._clients.keys() == {b"60199990001"}   # one client object, reused
    # Each connect leaked its pool (a known neonize fault): nothing beyond the attempts made.
    assert db_connections(url) <= t.connects_made + 2


def test_session_stores_share_a_few_backends_through_pgbouncer(transport_factory, url):
    """Each connect opens a pool neonize never closes; through the embedded cluster's PgBouncer
    (transaction pooling, binary_parameters for lib/pq) 20 clients' pools cost a few backends."""
    jids = [f"6019999200{n:02d}:1@s.whatsapp.net" for n in range(20)]
    for jid in jids:
        store_session(url, jid)
    before = db_connections(url)
    t, rec = transport_factory(capacity=20, policy=ConnectPolicy(attempts=1, hold_s=60))
    assert "binary_parameters=yes" in t.store and "pgbouncer" in t.store
    for n, jid in enumerate(jids):
        t.start(DeviceSession(900 + n, jid=jid))
    for n in range(20):
        rec.wait_for(gave_up(900 + n))
    assert t.connects_made == 20 and db_connections(url) - before <= 5


def test_the_connection_budget_recycles_the_process(transport_factory, url):
    for n in (1, 2, 3):
        store_session(url, f"6019999100{n}:1@s.whatsapp.net")
    spent = []
    t, rec = transport_factory(capacity=2, policy=ConnectPolicy(attempts=1, hold_s=60),
                               on_budget_spent=lambda: spent.append(1))
    for n in (1, 2, 3):
        t.start(DeviceSession(500 + n, jid=f"6019999100{n}:1@s.whatsapp.net"))
    over = rec.wait_for(lambda e: isinstance(e, ConnectFailed) and e.device_id == 503)[0]
    assert "made its 2 connects" in over.error and over.resume_at is not None
    assert t.connects_made == 2 and spent == [1]


def test_a_stored_jid_without_its_session_pairs_anew_in_the_pairing_child(transport_factory):
    """Resuming a jid missing from whatsmeow_device panics in Go (exit 134); the transport checks
    first and pairs in its child process, which fails here at the dial like any connect."""
    t, rec = transport_factory(policy=ConnectPolicy(attempts=1, hold_s=60))
    t.start(DeviceSession(301, jid="60123456789:7@s.whatsapp.net", phone="60123456789"))
    failed = rec.wait_for(gave_up(301))[0]
    assert "dial" in failed.error or "no such host" in failed.error
    assert t._clients == {} and t.connects_made == 0          # nothing resumed in this process
    with pytest.raises(NotConnected, match="could not reach WhatsApp"):
        t.pair_phone(302, "60123456789")


def test_the_watchdog_reports_a_hung_connect(transport_factory):
    hung = []
    t, _ = transport_factory(hung_after_s=0.2, on_hung=hung.append)
    with t._lock:
        run = t._runs[701] = nt._Run(701, DeviceSession(701))
        run.quiet_since = time.monotonic()          # connect() started and never showed a sign of life
    deadline = time.monotonic() + 60
    while not hung and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hung == [[701]]


def test_go_stdout_goes_to_the_sink_and_python_output_stays(tmp_path):
    sink = tmp_path / "go.out"
    code = ("import os, sys; from sender.transport.neonize_stdio import divert_native_stdout;"
            f"divert_native_stdout({str(sink)!r}); os.write(1, b'go noise\\n'); print('python line')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.stdout == "python line\n"
    assert sink.read_text() == "go noise\n"
