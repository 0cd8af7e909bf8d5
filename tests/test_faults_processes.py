"""Fault tests with real sender processes: kill -9 of a sender mid-sends, a transport that crashes
its process (the pool restarts it), a transport whose connect hangs (the watchdog ends the process,
the pool restarts it). After each, the promise holds (tests/test_faults_support.assert_accounted)."""
import signal
import time

import pytest

from tests.test_faults_support import assert_accounted
from tests.test_sender_support import c, store  # noqa: F401 (fixtures)
from tests.test_sender_support import (add_devices, new_owner, queue, received, spawn_worker, statuses,
                                       stop_process, wait_until)

PACED = dict(min_delay=1, max_delay=1)   # one row per device per claim and second, as real pacing gives


@pytest.fixture
def processes():
    started = []
    yield started
    for p in started:
        stop_process(p)


def recover_dead_claims(c, ids):
    """What the every-minute recover_stuck job does to a dead sender's claims, without the 5 minutes."""
    wait_until(lambda: c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE id = ANY(%s) AND status = 'queued'"
                                 " AND claimed_at > now() - interval '1 second'", [ids]).fetchone()["n"] == 0,
               what="no fresh claims")
    return c.execute("SELECT recover_stuck('1 second') AS n").fetchone()["n"]


def test_kill_9_of_a_sender_mid_sends(c, committed_db_url, store, processes):
    uid = new_owner(c)
    devices = add_devices(c, uid, 40, **PACED)
    ids = queue(c, uid, devices, 6)
    victim = spawn_worker(committed_db_url, store, WA_SIM_LATENCY_MS=30)
    processes.append(victim)
    wait_until(lambda: len(received(store)) >= 60, timeout=60, what="the victim sending")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    at_kill = len(received(store))
    assert statuses(c, ids).get("pending", 0) > 0, "killed too late: nothing left to take over"
    processes.append(spawn_worker(committed_db_url, store, WA_SIM_LATENCY_MS=5))
    wait_until(lambda: "pending" not in statuses(c, ids), timeout=60, what="the survivor taking over")
    stuck = recover_dead_claims(c, ids)
    counts = assert_accounted(c, ids, store)
    assert counts["sent"] > at_kill and counts["sent"] + counts["failed"] == len(ids)
    assert counts["failed"] == stuck <= 40          # at most one in-flight row per device was lost


def test_what_a_dead_sender_never_began_goes_back_to_the_queue(c, committed_db_url, store, processes):
    """kill -9 of a sender whose claims wait for its one send thread (slow sends): once it is silent
    past its lease, only the messages it may have begun (two rounds of its threads, and a result not
    yet written) stay for the stuck timeout; the rest go back and the survivor sends them, none twice."""
    uid = new_owner(c)
    devices = add_devices(c, uid, 20, **PACED)
    ids = queue(c, uid, devices, 2)
    victim = spawn_worker(committed_db_url, store, send_threads=1, WA_SIM_LATENCY_MS=500)
    processes.append(victim)
    wait_until(lambda: statuses(c, ids).get("queued", 0) >= 10, timeout=60, what="claims waiting for the thread")
    assert c.execute("SELECT begun_claimed_at FROM senders WHERE pid = %s", [victim.pid]).fetchone()["begun_claimed_at"]
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    (dead,) = [r["id"] for r in c.execute("SELECT id FROM senders WHERE pid = %s", [victim.pid])]
    claimed = c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE claimed_by = %s AND status = 'queued'",
                        [dead]).fetchone()["n"]

    def given_up():
        c.execute("SELECT give_up_silent_senders()")
        return c.execute("SELECT given_up_at FROM senders WHERE id = %s", [dead]).fetchone()["given_up_at"]
    wait_until(given_up, timeout=30, what="the dead sender given up once its lease lapsed")
    begun = [r["id"] for r in c.execute("SELECT id FROM broadcast_messages WHERE claimed_by = %s AND status = 'queued'",
                                        [dead])]
    # one thread: the row it was sending, the one next in line, and at most one sent whose result it
    # had not written yet
    assert claimed >= 10 and len(begun) <= 3

    processes.append(spawn_worker(committed_db_url, store, WA_SIM_LATENCY_MS=5))
    wait_until(lambda: "pending" not in statuses(c, ids), timeout=60, what="the survivor sending what went back")
    stuck = recover_dead_claims(c, ids)
    counts = assert_accounted(c, ids, store)
    assert stuck == len(begun) and counts == {"sent": len(ids) - len(begun), "failed": len(begun)}


def test_transport_crash_is_restarted_by_the_pool(c, committed_db_url, store, processes):
    uid = new_owner(c)
    devices = add_devices(c, uid, 30, **PACED)
    ids = queue(c, uid, devices, 6)
    pool = spawn_worker(committed_db_url, store, module="sender", processes=1,
                        WA_SIM_LATENCY_MS=20, WA_SIM_FAULT="crash-at-send:60")
    processes.append(pool)
    wait_until(lambda: (store / "fault-crash-at-send.fired").exists(), timeout=60, what="the crash")
    wait_until(lambda: "pending" not in statuses(c, ids), timeout=60, what="the restarted worker sending")
    assert pool.poll() is None, "the pool died with its worker"
    claimers = c.execute("SELECT count(DISTINCT claimed_by) AS n FROM broadcast_messages WHERE id = ANY(%s)",
                         [ids]).fetchone()["n"]
    assert claimers == 2                              # the crashed worker, then its replacement
    recover_dead_claims(c, ids)
    counts = assert_accounted(c, ids, store)
    assert counts["sent"] >= len(ids) - 30 and counts["sent"] + counts["failed"] == len(ids)


def test_hung_connect_is_ended_by_the_watchdog_and_restarted(c, committed_db_url, store, processes):
    uid = new_owner(c)
    devices = add_devices(c, uid, 10)
    ids = queue(c, uid, devices, 10)
    started = time.monotonic()
    processes.append(spawn_worker(committed_db_url, store, module="sender", processes=1,
                                  WA_SIM_FAULT="hang-connect", WA_SIM_HUNG_AFTER_S=1))
    wait_until(lambda: (store / "fault-hang-connect.fired").exists(), timeout=30, what="the hang")
    wait_until(lambda: statuses(c, ids) == {"sent": len(ids)}, timeout=60, what="sent after the restart")
    assert time.monotonic() - started > 1.0           # nothing went out while the connects hung
    assert c.execute("SELECT count(*) AS n FROM senders").fetchone()["n"] == 2   # the hung one never retired
    assert_accounted(c, ids, store)
