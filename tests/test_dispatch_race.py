"""Concurrency: claims racing for the same rows never hand a row out twice, and two workers sharing
the devices deliver every message exactly once (counted by the simulated network)."""
import threading

import pytest

from tests.test_sender_support import (add_devices, assert_no_duplicates, conn, new_owner, queue, reset,
                                       running_worker, statuses, wait_until)


@pytest.fixture
def c(committed_db_url):
    with conn(committed_db_url) as c:
        reset(c)
        yield c


def test_concurrent_claims_never_return_a_row_twice(c, committed_db_url):
    uid = new_owner(c)
    devices = add_devices(c, uid, 20)
    c.execute("UPDATE user_devices SET status = 'online' WHERE id = ANY(%s)", [devices])
    c.execute("SELECT register_sender('racer', 'host', 1, 1000)")
    c.execute("SELECT count(*) FROM acquire_leases('racer', 1000, '1 minute')")
    ids = queue(c, uid, devices, 200)
    claimed, errors = [], []

    def claimer():
        try:
            with conn(committed_db_url) as mine:
                idle = 0
                while idle < 20:
                    rows = mine.execute("SELECT id FROM claim_messages('racer', 37, 7)").fetchall()
                    claimed.extend(r["id"] for r in rows)
                    idle = 0 if rows else idle + 1
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=claimer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(claimed) == len(set(claimed)) == len(ids)
    assert statuses(c, ids) == {"queued": len(ids)}
    # Every claim was counted once on its device's pacing row (the rings' running total).
    assert c.execute("SELECT sum(sends_total) AS n FROM device_pacing WHERE device_id = ANY(%s)",
                     [devices]).fetchone()["n"] == len(ids)


def test_two_workers_deliver_each_message_exactly_once(c, committed_db_url, tmp_path):
    uid = new_owner(c)
    devices = add_devices(c, uid, 40)
    store = tmp_path / "simnet"
    with running_worker(committed_db_url, store) as a, running_worker(committed_db_url, store) as b:
        wait_until(lambda: c.execute("SELECT count(DISTINCT sender_id) AS n FROM device_leases").fetchone()["n"] == 2,
                   what="both workers hold devices (fair share)")
        ids = queue(c, uid, devices, 100)
        wait_until(lambda: statuses(c, ids) == {"sent": 4000}, timeout=30, what="all sent")
        senders = {r["claimed_by"] for r in c.execute(
            "SELECT DISTINCT claimed_by FROM broadcast_messages WHERE id = ANY(%s)", [ids])}
        assert senders == {a.sender_id, b.sender_id}
        leases = c.execute("SELECT sender_id, count(*) AS n FROM device_leases GROUP BY 1").fetchall()
        assert sorted(r["n"] for r in leases) == [20, 20]
    assert assert_no_duplicates(store) == set(ids)
