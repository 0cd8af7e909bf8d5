"""PostgreSQL crashes and comes back in the middle of dispatch, on a private cluster (never the
shared one): the sender pool, the clock and the web app reconnect by themselves, nothing is sent
twice, every message ends sent or failed with a reason, and wake-ups (LISTEN), transport events
and web requests work again without any process being restarted."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from common.config import ROOT
from common.db import with_database
from scripts import apply
from tests.test_faults_support import PrivateCluster, assert_accounted
from tests.test_sender_support import add_devices, conn, new_owner, queue, received, spawn_worker, statuses, wait_until
from tests.webutil import signed_in_user

DOWN_SECONDS = 3


@pytest.fixture(scope="module")
def url():
    cluster = PrivateCluster()
    try:
        with conn(cluster.url) as c:
            c.execute("CREATE DATABASE wa_faults")
        db_url = with_database(cluster.url, "wa_faults")
        assert apply.apply(db_url) == "clock"          # no pg_cron in this database: the clock runs the jobs
        yield cluster, db_url
    finally:
        cluster.remove()


def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def test_database_restart_mid_dispatch(url, tmp_path):
    cluster, db_url = url
    store = tmp_path / "simnet"
    from web import create_app
    app = create_app(db_url, testing=True)
    client = app.test_client()
    signed_in_user(client, db_url)
    clock_log = open(tmp_path / "clock.log", "w")
    clock = subprocess.Popen([sys.executable, "-m", "scripts.clock"], cwd=ROOT, stderr=clock_log,
                             env=dict(os.environ, DATABASE_URL=db_url))
    # A long poll: after the restart only a re-established LISTEN can wake an idle sender quickly.
    pool = spawn_worker(db_url, store, module="sender", processes=2, poll_seconds=30, WA_SIM_LATENCY_MS=10)
    try:
        with conn(db_url) as c:
            uid = new_owner(c)
            devices = add_devices(c, uid, 30, min_delay=1, max_delay=1)
            wait_until(lambda: c.execute("SELECT count(*) AS n FROM user_devices WHERE status = 'online'")
                       .fetchone()["n"] == 30, timeout=60, what="devices online")
            ids = queue(c, uid, devices, 8)
            wait_until(lambda: statuses(c, ids).get("sent", 0) >= 60, timeout=60, what="dispatch under way")
            senders = {r["id"] for r in c.execute("SELECT id FROM senders")}
        assert len(senders) == 2

        cluster.crash()
        crashed_at = time.time()
        # While it is down a request waits for the pool, then says 503 (or 200 once it is back); never 500.
        during = []
        probe = threading.Thread(target=lambda: during.extend(
            client.get(p).status_code for p in ("/healthz", "/api/sequences/summary")))
        probe.start()
        time.sleep(DOWN_SECONDS)
        cluster.start()
        probe.join(60)
        assert during and set(during) <= {200, 503}, during

        # The web app's first requests after the restart succeed (no stale pooled connection).
        for path in ("/healthz", "/api/sequences/summary", "/api/sequences/summary", "/dashboard"):
            assert client.get(path).status_code == 200, path
        with conn(db_url) as c:
            wait_until(lambda: "pending" not in statuses(c, ids), timeout=90, what="dispatch resumed")
            # The same sender processes heartbeat again (reconnected, not replaced).
            wait_until(lambda: {r["id"] for r in c.execute(
                "SELECT id FROM senders WHERE heartbeat_at > to_timestamp(%s)", [crashed_at + DOWN_SECONDS])} == senders,
                timeout=60, what="the same senders heartbeating")
            # Idle senders are woken by NOTIFY again: far sooner than their 30 s poll.
            time.sleep(1.5)
            more = queue(c, uid, devices[:1], 1)
            wait_until(lambda: statuses(c, more) == {"sent": 1}, timeout=20, what="a NOTIFY wake-up, not the 30 s poll")
            # Transport events reach the database again (delivered receipts of messages sent after it;
            # of any of them: a receipt may never come).
            wait_until(lambda: c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE id = ANY(%s) "
                                         "AND delivered_at > to_timestamp(%s)", [ids + more, crashed_at + DOWN_SECONDS])
                       .fetchone()["n"], timeout=30, what="a receipt applied")
            # The clock is connected again.
            wait_until(lambda: c.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name "
                                         "LIKE 'wa-clock%%'").fetchone()["n"] > 0, timeout=90, what="the clock back (its back-off reaches 30 s)")
            assert clock.poll() is None and pool.poll() is None
    finally:
        stop(pool)
        stop(clock)
        clock_log.close()
        app.extensions["db_pool"].close()
    with conn(db_url) as c:
        c.execute("SELECT recover_stuck('1 second')")   # the lost in-flight claims, without waiting 5 minutes
        counts = assert_accounted(c, ids + more, store)
    assert counts["sent"] + counts["failed"] == len(ids) + 1
    assert counts["failed"] <= 30                       # at most the claims in flight at the crash
    assert len(received(store)) >= counts["sent"]
