"""The worker in-process against the real database and the simulated network: sends, pacing,
caps, the truth of device_load_balance, NOTIFY wake-ups and transport events."""
import threading
import time
from collections import defaultdict
from datetime import datetime, timezone

import pytest

from sender.device_registry import DeviceRegistry
from sender.lease_keeper import LeaseKeeper
from sender.transport.base import DeviceSession
from tests.test_sender_support import c, store  # noqa: F401 (fixtures)
from tests.test_sender_support import (add_devices, assert_no_duplicates, new_owner, queue, received,
                                       running_worker, statuses, wait_until)


def device_status(c, device_id):
    return c.execute("SELECT status, status_reason, banned_until, jid FROM user_devices WHERE id = %s",
                     [device_id]).fetchone()


def test_sends_every_message_once_with_rendered_content(c, committed_db_url, store):
    uid = new_owner(c)
    devices = add_devices(c, uid, 10)
    with running_worker(committed_db_url, store):
        ids = queue(c, uid, devices, 30, content="{Hi|Hello} {name}")
        wait_until(lambda: statuses(c, ids) == {"sent": 300}, what="all sent")
        # Its claims are on record for GET /metrics: batches, rows and time spent claiming, written at
        # most once per heartbeat (the sends may all end before a claim with rows is written).
        stats = wait_until(lambda: (r := c.execute("SELECT claims, claim_rows, claim_seconds FROM metrics_senders")
                                    .fetchone())["claim_rows"] > 0 and r, what="the claims on record")
        assert stats["claims"] >= 1 and stats["claim_rows"] <= 300 and stats["claim_seconds"] > 0
    got = {r["message_id"]: r for r in received(store)}
    assert set(got) == set(ids) and len(received(store)) == 300
    assert {r["text"].split(" ", 1)[0] for r in got.values()} == {"Hi", "Hello"}
    assert all(r["text"].split(" ", 1)[1].startswith("Lead ") for r in got.values())
    rows = c.execute("SELECT id, wa_message_id FROM broadcast_messages WHERE id = ANY(%s)", [ids]).fetchall()
    assert all(r["wa_message_id"] == got[r["id"]]["wa_message_id"] for r in rows)


def test_a_drain_that_runs_out_of_time_gives_back_what_it_never_began(c, committed_db_url, store):
    """Stopped with claims still waiting for its send threads (one thread, slow sends, a short drain):
    the sender puts what it never began back in the queue rather than leaving it to fail as stuck."""
    uid = new_owner(c)
    devices = add_devices(c, uid, 6)
    with running_worker(committed_db_url, store, sim=dict(latency_ms=2000), send_threads=1, drain_seconds=0.3):
        ids = queue(c, uid, devices, 1)
        wait_until(lambda: "pending" not in statuses(c, ids), what="all claimed, two begun")
    after = statuses(c, ids)
    # the two it began (a send takes 1-3 s) stay for the stuck timeout, or were sent in the drain
    assert after.get("pending", 0) >= 3 and after.get("queued", 0) + after.get("sent", 0) == 6 - after["pending"]


def test_pacing_delays_stay_inside_min_max(c, committed_db_url, store):
    uid = new_owner(c)
    devices = add_devices(c, uid, 3, min_delay=1, max_delay=2)
    with running_worker(committed_db_url, store):
        ids = queue(c, uid, devices, 3)
        wait_until(lambda: statuses(c, ids) == {"sent": 9}, timeout=60, what="paced sends")
    claims = defaultdict(list)
    for r in c.execute("SELECT device_id, claimed_at FROM broadcast_messages WHERE id = ANY(%s) ORDER BY claimed_at",
                       [ids]):
        claims[r["device_id"]].append(r["claimed_at"])
    gaps = [(b - a).total_seconds() for times in claims.values() for a, b in zip(times, times[1:])]
    assert len(gaps) == 6
    assert all(1.0 <= g for g in gaps), gaps                 # never sooner than min
    assert all(g <= 2.0 + 0.4 for g in gaps), gaps           # woken at the next allowed time, not late


def test_hourly_cap_holds_and_load_balance_is_true(c, committed_db_url, store):
    uid = new_owner(c)
    capped = add_devices(c, uid, 2, hourly_limit=5)
    free = add_devices(c, uid, 2)
    with running_worker(committed_db_url, store):
        ids = queue(c, uid, capped + free, 12)
        wait_until(lambda: statuses(c, ids) == {"sent": 10 + 24, "pending": 14}, what="capped devices stop at 5")
        time.sleep(0.5)   # several more claim rounds: still capped
        assert statuses(c, ids) == {"sent": 34, "pending": 14}
        available = {r["device_id"]: r["is_available"] for r in c.execute(
            "SELECT device_id, is_available FROM device_load_balance WHERE device_id = ANY(%s)", [capped + free])}
    assert available == {d: d in free for d in capped + free}
    sent_by_device = defaultdict(int)
    for r in received(store):
        sent_by_device[r["device_id"]] += 1
    truth = {r["device_id"]: r for r in c.execute("""
        SELECT device_id, count(*) FILTER (WHERE status = 'sent') AS sent,
               count(*) FILTER (WHERE claimed_at > now() - interval '1 hour') AS claimed_hour
          FROM broadcast_messages WHERE id = ANY(%s) GROUP BY 1""", [ids])}
    view = {r["device_id"]: r for r in c.execute(
        "SELECT * FROM device_load_balance WHERE device_id = ANY(%s)", [capped + free])}
    for d in capped + free:
        expected = 5 if d in capped else 12
        assert truth[d]["sent"] == truth[d]["claimed_hour"] == sent_by_device[d] == expected
        assert view[d]["messages_hour"] == view[d]["messages_today"] == expected


def test_notify_wakes_an_idle_worker(c, committed_db_url, store):
    uid = new_owner(c)
    devices = add_devices(c, uid, 1)
    with running_worker(committed_db_url, store, poll_seconds=30):
        wait_until(lambda: device_status(c, devices[0])["status"] == "online", what="device online")
        time.sleep(0.3)   # idle, sleeping on LISTEN
        latencies = []
        for i in range(5):
            t0 = time.time()
            ids = queue(c, uid, devices, 1)
            wait_until(lambda: any(r["message_id"] == ids[0] for r in received(store)), timeout=20, step=0.002,
                       what="the send (woken by NOTIFY: the poll is 30 s)")
            at = next(r["at"] for r in received(store) if r["message_id"] == ids[0])
            latencies.append(at - t0)
        assert max(latencies) < 5, latencies   # far below the 30 s poll: woken by NOTIFY


def test_temporary_ban_delays_then_resumes(c, committed_db_url, store):
    uid = new_owner(c)
    (dev,) = add_devices(c, uid, 1)
    with running_worker(committed_db_url, store) as w:
        wait_until(lambda: device_status(c, dev)["status"] == "online", what="online")
        w.transport.ban(dev, seconds=4)
        wait_until(lambda: device_status(c, dev)["status"] == "banned", what="banned")
        s = device_status(c, dev)
        assert s["banned_until"] > datetime.now(timezone.utc) and "SEND_TO_TOO_MANY_PEOPLE" in s["status_reason"]
        ids = queue(c, uid, [dev], 3)
        time.sleep(0.5)
        assert statuses(c, ids) == {"pending": 3}
        assert c.execute("SELECT skip_undeliverable() AS n").fetchone()["n"] == 0   # a ban only delays
        wait_until(lambda: statuses(c, ids) == {"sent": 3}, timeout=30, what="sent after the ban")
        assert device_status(c, dev)["banned_until"] is None


def test_logout_releases_the_device_and_its_messages_are_skipped(c, committed_db_url, store):
    uid = new_owner(c)
    (dev,) = add_devices(c, uid, 1)
    with running_worker(committed_db_url, store) as w:
        wait_until(lambda: device_status(c, dev)["status"] == "online", what="online")
        w.transport.remote_logout(dev)
        wait_until(lambda: device_status(c, dev)["status"] == "logged_out", what="logged out")
        wait_until(lambda: c.execute("SELECT count(*) AS n FROM device_leases WHERE device_id = %s",
                                     [dev]).fetchone()["n"] == 0, what="lease released")
        assert device_status(c, dev)["jid"] is None
        ids = queue(c, uid, [dev], 2)
        assert c.execute("SELECT skip_undeliverable() AS n").fetchone()["n"] == 2
    assert statuses(c, ids) == {"skipped": 2}


def test_send_failures_fail_the_message_once(c, committed_db_url, store):
    uid = new_owner(c)
    devices = add_devices(c, uid, 4)
    with running_worker(committed_db_url, store, sim=dict(failure_rate=0.3, seed=7)):
        ids = queue(c, uid, devices, 25)
        wait_until(lambda: set(statuses(c, ids)) <= {"sent", "failed"}, what="all done")
    s = statuses(c, ids)
    assert s["sent"] + s["failed"] == 100 and 10 <= s["failed"] <= 50
    failed = {r["id"]: r["error_message"] for r in c.execute(
        "SELECT id, error_message FROM broadcast_messages WHERE id = ANY(%s) AND status = 'failed'", [ids])}
    assert set(failed.values()) == {"simulated network failure",
                                    "info query timed out: the message may have been delivered"}
    # Received once each: the sent ones, and the failed ones whose answer was lost (never sent again).
    answer_lost = {i for i, error in failed.items() if error.startswith("info query timed out")}
    assert assert_no_duplicates(store) == answer_lost | set(r["id"] for r in c.execute(
        "SELECT id FROM broadcast_messages WHERE id = ANY(%s) AND status = 'sent'", [ids]))


def test_stored_images_are_sent_and_urls_are_never_fetched(c, committed_db_url, store):
    import socket

    from common.images import normalise_jpeg
    from tests.test_media import png
    uid = new_owner(c)
    (dev,) = add_devices(c, uid, 1)
    image = c.execute("SELECT store_media(%s, %s, '') AS id", [uid, normalise_jpeg(png())]).fetchone()["id"]
    listener = socket.socket()                     # a URL on this machine: a sender must never ask it
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0)
    unstored = f"http://127.0.0.1:{listener.getsockname()[1]}/secret.png"
    try:
        with running_worker(committed_db_url, store):
            ids = [r["id"] for r in c.execute("""
                INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, message_type, content, media_url)
                VALUES (%s, %s, '60123000001', 'image', 'caption', %s), (%s, %s, '60123000002', 'image', 'caption', %s),
                       (%s, %s, '60123000003', 'image', 'caption', '/media/999999')
                RETURNING id""", [uid, dev, f"/media/{image}", uid, dev, unstored, uid, dev])]
            wait_until(lambda: sum(statuses(c, ids).values()) == 3 and set(statuses(c, ids)) == {"sent", "failed"},
                       what="all done")
        with pytest.raises(BlockingIOError):
            listener.accept()                      # nobody connected
    finally:
        listener.close()
    rows = {r["id"]: r for r in c.execute("SELECT id, status, error_message FROM broadcast_messages WHERE id = ANY(%s)",
                                          [ids])}
    assert [rows[i]["status"] for i in ids] == ["sent", "failed", "failed"]
    assert rows[ids[1]]["error_message"].startswith("undeliverable: image was not stored")
    assert rows[ids[2]]["error_message"] == "undeliverable: stored image 999999 no longer exists"
    # The campaign's image, not the device: its outcomes record the one send, no failure (self-pause).
    assert c.execute("SELECT recent_outcomes::text AS bits FROM device_pacing WHERE device_id = %s",
                     [dev]).fetchone()["bits"] == "0"
    (sent,) = received(store)
    assert sent["message_id"] == ids[0] and 0 < sent["image_bytes"] <= 350 * 1024


def test_a_send_that_never_left_goes_back_to_the_queue(c, committed_db_url, store):
    uid = new_owner(c)
    (dev,) = add_devices(c, uid, 1, jid=False)   # pairing on the transport ...
    with running_worker(committed_db_url, store, not_sent_hold_seconds=1.0) as w:
        wait_until(lambda: w.transport.state(dev) == "pairing", what="pairing")
        c.execute("UPDATE user_devices SET status = 'online' WHERE id = %s", [dev])   # ... yet online in the DB
        ids = queue(c, uid, [dev], 2)
        wait_until(lambda: c.execute("SELECT next_send_at > now() AS later FROM device_pacing WHERE device_id = %s",
                                     [dev]).fetchone()["later"], what="a release that holds the device")
        assert statuses(c, ids) == {"pending": 2}        # not failed: it never left
        assert c.execute("SELECT claimed_at FROM broadcast_messages WHERE id = %s", ids[:1]).fetchone()["claimed_at"] is None
        wait_until(lambda: w.transport.showing_code(dev), what="the QR code on screen")
        w.transport.scan(dev)
        wait_until(lambda: statuses(c, ids) == {"sent": 2}, timeout=60, what="sent once connected")
    assert assert_no_duplicates(store) == set(ids)


def test_a_deleted_device_is_never_started_again_by_a_stale_lease_round():
    """The lease round reads its devices, the delete command then stops one and removes its session
    rows; the round's start of that device (from its earlier read) must not happen: resuming a client
    without its session panics whatsmeow (the neonize contract test saw it under load)."""
    class Recorder:
        def __init__(self):
            self.calls = []

        def start(self, session: DeviceSession):
            self.calls.append(("start", session.device_id))

        def stop(self, device_id):
            self.calls.append(("stop", device_id))

    transport = Recorder()
    keeper = LeaseKeeper("postgresql://unused", "s1", None, transport, DeviceRegistry(), threading.Event(),
                         threading.Event(), on_orphaned=lambda: None)
    keeper.start_device(7, "607@s.whatsapp.net", "607")
    keeper.stop_device(7, deleted=True)              # the delete command
    keeper.start_device(7, "607@s.whatsapp.net", "607")   # the round's stale read
    keeper.stop_device(8)                             # an ordinary stop forgets nothing for good
    keeper.start_device(8, None, None)
    assert transport.calls == [("start", 7), ("stop", 7), ("start", 8)]
