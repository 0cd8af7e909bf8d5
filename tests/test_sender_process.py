"""Real sender processes: kill -9 mid-batch (stuck rows fail, devices are taken over, nothing is
sent twice), SIGTERM drains the pool, and the pool restarts a worker that dies."""
import os
import signal
import time

import pytest

from tests.test_sender_support import c  # noqa: F401 (fixtures)
from tests.test_sender_support import (add_devices, assert_no_duplicates, new_owner, queue, received,
                                       spawn_worker, statuses, wait_until)

SLOW_SIM = dict(WA_SIM_LATENCY_MS=150, send_threads=4, in_flight=40, claim_batch=40)


@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def lease_holders(c):
    return {r["sender_id"] for r in c.execute("SELECT DISTINCT sender_id FROM device_leases")}


def test_kill_9_mid_batch(c, committed_db_url, tmp_path, procs):
    uid = new_owner(c)
    devices = add_devices(c, uid, 10)
    store = tmp_path / "simnet"
    first = spawn_worker(committed_db_url, store, **SLOW_SIM)
    procs.append(first)
    ids = queue(c, uid, devices, 20)
    wait_until(lambda: statuses(c, ids).get("sent", 0) >= 10 and statuses(c, ids).get("queued", 0) > 0,
               timeout=20, what="a batch in flight")
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(0.5)   # a statement the dead process had already sent still finishes in its backend
    (dead_sender,) = lease_holders(c)
    stuck = [r["id"] for r in c.execute("SELECT id FROM broadcast_messages WHERE id = ANY(%s) AND status = 'queued'",
                                        [ids])]
    assert stuck

    second = spawn_worker(committed_db_url, store, **SLOW_SIM)
    procs.append(second)
    wait_until(lambda: lease_holders(c) and dead_sender not in lease_holders(c), timeout=60,
               what="devices taken over after the lease expired")
    wait_until(lambda: statuses(c, ids) == {"sent": len(ids) - len(stuck), "queued": len(stuck)}, timeout=30,
               what="the rest sent by the new sender")
    # The dead sender's claims stay queued (never re-sent) until the stuck timeout fails them.
    assert statuses(c, stuck) == {"queued": len(stuck)}
    assert c.execute("SELECT recover_stuck('1 second') AS n").fetchone()["n"] == len(stuck)
    rows = c.execute("SELECT status, error_message FROM broadcast_messages WHERE id = ANY(%s)", [stuck]).fetchall()
    assert {(r["status"], r["error_message"]) for r in rows} == {("failed", "stuck: sender vanished")}

    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0
    delivered = assert_no_duplicates(store)
    sent = {r["id"] for r in c.execute("SELECT id FROM broadcast_messages WHERE id = ANY(%s) AND status = 'sent'", [ids])}
    assert sent <= delivered and delivered - sent <= set(stuck)   # a stuck row may have reached WhatsApp once
    assert len(sent) + len(stuck) == len(ids)


def test_sigterm_drains_the_pool(c, committed_db_url, tmp_path, procs):
    uid = new_owner(c)
    devices = add_devices(c, uid, 8)
    store = tmp_path / "simnet"
    pool = spawn_worker(committed_db_url, store, module="sender", processes=2, **SLOW_SIM)
    procs.append(pool)
    wait_until(lambda: c.execute("SELECT count(*) AS n FROM senders").fetchone()["n"] == 2, timeout=60,
               what="two workers")
    wait_until(lambda: len(lease_holders(c)) == 2, timeout=60, what="devices shared by both workers")
    ids = queue(c, uid, devices, 30)
    wait_until(lambda: statuses(c, ids).get("queued", 0) > 0 and statuses(c, ids).get("sent", 0) > 0,
               timeout=20, what="sends in flight")
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(30) == 0
    after = statuses(c, ids)
    assert "queued" not in after and after.get("pending", 0) > 0, after   # in flight finished, no new claims
    assert c.execute("SELECT count(*) AS n FROM device_leases").fetchone()["n"] == 0
    assert c.execute("SELECT count(*) AS n FROM senders").fetchone()["n"] == 0
    sent = {r["id"] for r in c.execute("SELECT id FROM broadcast_messages WHERE id = ANY(%s) AND status = 'sent'", [ids])}
    assert assert_no_duplicates(store) == sent
    assert {r["status"] for r in c.execute("SELECT status FROM user_devices WHERE id = ANY(%s)", [devices])} == {"offline"}


def test_pool_restarts_a_dead_worker(c, committed_db_url, tmp_path, procs):
    uid = new_owner(c)
    devices = add_devices(c, uid, 3)
    store = tmp_path / "simnet"
    pool = spawn_worker(committed_db_url, store, module="sender", processes=1)
    procs.append(pool)
    pid = wait_until(lambda: c.execute("SELECT pid FROM senders").fetchone(), timeout=60, what="a worker")["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: c.execute("SELECT pid FROM senders WHERE pid <> %s", [pid]).fetchone(), timeout=60,
               what="a restarted worker")
    ids = queue(c, uid, devices, 5)
    wait_until(lambda: statuses(c, ids) == {"sent": 15}, timeout=20, what="sent by the restarted worker")
    pool.send_signal(signal.SIGTERM)
    assert pool.wait(30) == 0
    assert len(received(store)) == 15


def test_workers_exit_when_the_pool_is_killed(c, committed_db_url, tmp_path, procs):
    pool = spawn_worker(committed_db_url, tmp_path / "simnet", module="sender", processes=2)
    procs.append(pool)
    wait_until(lambda: c.execute("SELECT count(*) AS n FROM senders").fetchone()["n"] == 2, timeout=60, what="workers")
    pids = [r["pid"] for r in c.execute("SELECT pid FROM senders")]
    pool.send_signal(signal.SIGKILL)
    pool.wait()

    def gone(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] == "Z"   # exited, waiting to be reaped

    wait_until(lambda: all(gone(p) for p in pids), timeout=60, what="orphaned workers to stop")
    assert c.execute("SELECT count(*) AS n FROM senders").fetchone()["n"] == 0   # they retired cleanly


def test_the_pool_sizes_itself_from_the_devices_to_run(c, committed_db_url):
    """Workers = runnable devices / devices per process, rounded up: logged-out and held devices
    do not count, and a fleet that grows gets more workers at the next look."""
    from sender.pool import processes_needed
    uid = new_owner(c)
    devices = add_devices(c, uid, 7)
    c.execute("UPDATE user_devices SET status = 'logged_out' WHERE id = %s", devices[:1])
    c.execute("SELECT hold_device(%s, 'gave up', now() + interval '10 minutes')", devices[1:2])
    assert processes_needed(committed_db_url, capacity=2) == 3      # 5 runnable
    add_devices(c, uid, 2)
    assert processes_needed(committed_db_url, capacity=2) == 4
