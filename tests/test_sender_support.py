"""Helpers for the sender tests (no tests here): a clean committed database, devices and messages,
workers in-process (threads) or as real processes, and waiting for a condition. The fixtures `c`
(a clean committed connection) and `store` (the simulated network's folder) are imported by the
test modules that use them."""
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from psycopg.rows import dict_row

from common.config import ROOT
from sender.settings import SenderSettings
from sender.transport.sim import SimConfig, SimNetwork, SimTransport, on_whatsapp
from sender.worker import Worker
from tests.factories import make_user

FAST = dict(heartbeat_seconds=0.2, lease_seconds=2.0, poll_seconds=0.2)


@pytest.fixture
def c(committed_db_url):
    with conn(committed_db_url) as c:
        reset(c)
        yield c


@pytest.fixture
def store(tmp_path):
    return tmp_path / "simnet"


def conn(url):
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def reset(c):
    """Each test starts from no users, devices, senders or leases (the module's DB is shared)."""
    c.execute("DELETE FROM users")
    c.execute("DELETE FROM senders")


def add_devices(c, uid, n, jid=True, min_delay=0, max_delay=0, hourly_limit=100000, daily_limit=100000):
    rows = c.execute("""
        INSERT INTO user_devices (user_id, device_name, phone, jid, status, min_delay_seconds, max_delay_seconds,
                                  hourly_limit, daily_limit)
        SELECT %s, 'sim ' || g, '6019' || lpad((%s * 10000 + g)::text, 8, '0'),
               CASE WHEN %s THEN 'sim-' || gen_random_uuid() END, 'offline', %s, %s, %s, %s
          FROM generate_series(1, %s) g RETURNING id""",
                     [uid, uid % 1000, jid, min_delay, max_delay, hourly_limit, daily_limit, n]).fetchall()
    return [r["id"] for r in rows]


def reachable_number(n):
    """A distinct number per n that the simulated network (seed 0) has on WhatsApp: these tests are
    about the queue, not about numbers without WhatsApp (test_transport_contract.py has those)."""
    return next(p for p in (f"60{prefix}{n:08d}" for prefix in range(12, 100)) if on_whatsapp(p))


def queue(c, uid, device_ids, each, content="hello {name}"):
    """each messages per device, in round-robin order, to numbers on WhatsApp."""
    rows = [(d, g) for g in range(1, each + 1) for d in device_ids]
    return [r["id"] for r in c.execute("""
        INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, recipient_name, content)
        SELECT %s, r.d, r.phone, 'Lead ' || r.g, render_message(%s, 'Lead ' || r.g, NULL)
          FROM unnest(%s::bigint[], %s::int[], %s::text[]) WITH ORDINALITY AS r(d, g, phone, k)
         ORDER BY r.k RETURNING id""",
        [uid, content, [d for d, _ in rows], [g for _, g in rows],
         [reachable_number(d * 1000 + g) for d, g in rows]]).fetchall()]


def new_owner(c, **kw):
    return make_user(c, **kw)


def wait_until(fn, timeout=60.0, step=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def statuses(c, ids=None):
    rows = c.execute("""SELECT status, count(*) AS n FROM broadcast_messages
                         WHERE %s::bigint[] IS NULL OR id = ANY(%s) GROUP BY 1""", [ids, ids]).fetchall()
    return {r["status"]: r["n"] for r in rows}


def received(store_dir):
    return SimNetwork.received(store_dir)


def assert_no_duplicates(store_dir):
    got = [r["message_id"] for r in received(store_dir)]
    assert len(got) == len(set(got)), "the simulated network received a message twice"
    return set(got)


@contextlib.contextmanager
def running_worker(url, store_dir=None, sim=None, transport_factory=None, **settings):
    """A Worker in a thread, stopped (drained) on exit: on transport_factory's transport, or by
    default on a SimTransport writing to store_dir.

    The default serves tests of the queue's mechanics with bursts to new contacts at zero delay,
    which WhatsApp's rules would answer with timelocks and bans after a few dozen sends: there the
    simulator's rules are off (sim=dict(rules=True) turns them on). Those rules are proven in
    test_sender_sim.py, the transport contract suite and the soak, where they are on."""
    cfg = SimConfig(store_dir=store_dir, **{"rules": False, **(sim or {})})
    worker = Worker(url, SenderSettings(**{**FAST, **settings}),
                    transport_factory=transport_factory or (lambda on_event: SimTransport(on_event, cfg)))
    thread = threading.Thread(target=worker.run, name="test-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop"


def stop_process(proc, timeout=30):
    """SIGTERM, and kill after `timeout` seconds: a test never leaves a process behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spawn_worker(url, store_dir, module="sender.worker", **env):
    """A real sender process (`python -m sender.worker`, or the pool with module='sender')."""
    full_env = dict(os.environ, DATABASE_URL=url, WA_TRANSPORT="sim", WA_SIM_DIR=str(store_dir),
                    PYTHONPATH=str(ROOT), LOG_LEVEL="WARNING",
                    **{"SENDER_" + k.upper(): str(v) for k, v in {**FAST, **env}.items() if not k.startswith("WA_")},
                    **{k: str(v) for k, v in env.items() if k.startswith("WA_")})
    return subprocess.Popen([sys.executable, "-m", module], env=full_env, cwd=ROOT)
