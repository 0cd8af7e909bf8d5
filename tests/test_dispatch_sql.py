"""The queue in SQL: claim (leases, pacing, caps), complete/fail guards, stuck recovery, skip rules,
the wake-up NOTIFY and the load monitors. Each test runs in one rolled-back transaction, so now()
is one instant throughout: a device paced by a delay cannot send twice within a test."""
import threading
import time
from datetime import timedelta

import psycopg
import pytest

from common.db import array_literal
from tests.factories import drain_notifies, make_device, make_user, record_sends


def lease(db, device_ids, sender="s1", ttl="30 seconds"):
    db.execute("SELECT register_sender(%s, 'host', 1, 1000)", [sender])
    for d in device_ids:
        db.execute("""INSERT INTO device_leases (device_id, sender_id, acquired_at, expires_at)
                      VALUES (%s, %s, now() - interval '1 hour', now() + %s::interval)""", [d, sender, ttl])


def queue(db, user_id, device_id, n, scheduled="0 seconds", min_delay=None, max_delay=None, held=False):
    return [r["id"] for r in db.execute(
        """INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, scheduled_at,
                                           min_delay_seconds, max_delay_seconds, held)
           SELECT %s, %s, '6012' || lpad(g::text, 7, '0'), 'msg ' || g, now() + %s::interval, %s, %s, %s
             FROM generate_series(1, %s) g RETURNING id""",
        [user_id, device_id, scheduled, min_delay, max_delay, held, n])]


def claim(db, sender="s1", limit=1000, per_device=100):
    return db.execute("SELECT * FROM claim_messages(%s, %s, %s)", [sender, limit, per_device]).fetchall()


def pacing(db, device_id):
    return db.execute("""SELECT next_send_at - now() AS wait, day_count, last_sent_at,
                                CASE WHEN isfinite(day_start) THEN day_start END AS day_start
                           FROM device_pacing WHERE device_id = %s""",
                      [device_id]).fetchone()


def send_history(db, device_id, minutes_ago, sends):
    record_sends(db, device_id, sends, minutes_ago)


def wait_until_blocked(watcher, holder, thread, who, result):
    """Until a session waits for a lock `holder` holds: `thread`'s statement, still running (else it
    did not wait, and `result` says what it returned)."""
    holder_pid = holder.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    deadline = time.monotonic() + 30
    while not watcher.execute("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE %s = ANY (pg_blocking_pids(pid))) AS w",
                              [holder_pid]).fetchone()["w"]:
        assert thread.is_alive() and time.monotonic() < deadline, f"{who} did not wait: {result}"
        time.sleep(0.05)


@pytest.fixture
def uid(db):
    return make_user(db)


def test_claims_only_leased_online_devices_due_rows(db, uid):
    mine, offline, unleased, expired = (make_device(db, uid) for _ in range(4))
    db.execute("UPDATE user_devices SET status = 'offline' WHERE id = %s", [offline])
    lease(db, [mine, offline])
    lease(db, [expired], ttl="-1 second")
    for d in (mine, offline, unleased, expired):
        queue(db, uid, d, 3)
    queue(db, uid, mine, 2, scheduled="1 hour")      # not due yet
    queue(db, uid, mine, 2, held=True)               # paused campaign
    rows = claim(db)
    assert {r["device_id"] for r in rows} == {mine}
    assert len(rows) == 3
    states = db.execute("""SELECT status, claimed_by, count(*) FROM broadcast_messages WHERE device_id = %s
                           GROUP BY 1, 2 ORDER BY 1""", [mine]).fetchall()
    assert [(s["status"], s["claimed_by"], s["count"]) for s in states] == [("pending", None, 4), ("queued", "s1", 3)]


def test_a_claim_taken_again_after_a_serialization_failure_returns_each_row_once(db, uid):
    """A pending row settled by another session while a claim locks its rows makes the claim's
    statement fail (serialization_failure) and run again. The rows its failed attempt had already
    produced stayed in the function's result, so the sender got them twice and sent them twice (a
    full soak: 15 duplicates). The failure is raised here by a trigger at the claim's second row."""
    dev = make_device(db, uid, hourly_limit=1000)
    lease(db, [dev])
    ids = queue(db, uid, dev, 5)
    db.execute("CREATE TEMP SEQUENCE claimed_rows")
    db.execute("""CREATE FUNCTION fail_the_second_claimed_row() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN
                    IF NEW.status = 'queued' AND nextval('claimed_rows') = 2 THEN
                      RAISE EXCEPTION 'as a row settled meanwhile by another session' USING ERRCODE = '40001';
                    END IF;
                    RETURN NEW;
                  END $$""")
    db.execute("""CREATE TRIGGER fail_the_second_claimed_row BEFORE UPDATE ON message_queue
                  FOR EACH ROW EXECUTE FUNCTION fail_the_second_claimed_row()""")
    got = [r["id"] for r in claim(db)]
    assert sorted(got) == sorted(ids)                   # each once: taken again, all five
    assert db.execute("SELECT nextval('claimed_rows') AS n").fetchone()["n"] > 6   # it did fail once


def test_claim_respects_limit_and_per_device(db, uid):
    devices = [make_device(db, uid) for _ in range(3)]
    lease(db, devices)
    for d in devices:
        queue(db, uid, d, 10)
    assert len(claim(db, limit=1000, per_device=4)) == 12
    assert len(claim(db, limit=5, per_device=100)) == 5


def test_zero_delay_device_sends_many_paced_device_one_per_claim(db, uid):
    fast = make_device(db, uid, min_delay=0, max_delay=0)
    slow = make_device(db, uid, min_delay=30, max_delay=60)
    lease(db, [fast, slow])
    queue(db, uid, fast, 5)
    queue(db, uid, slow, 5)
    rows = claim(db)
    assert sum(r["device_id"] == fast for r in rows) == 5
    assert sum(r["device_id"] == slow for r in rows) == 1
    assert claim(db) == []  # slow waits for its delay, fast has nothing left
    wait = pacing(db, slow)["wait"]
    assert timedelta(seconds=30) <= wait <= timedelta(seconds=60)
    assert pacing(db, fast)["wait"] == timedelta(0)


def test_message_delays_override_the_device_and_stay_inside_min_max(db, uid):
    devices = [make_device(db, uid, min_delay=0, max_delay=0) for _ in range(40)]
    lease(db, devices)
    for d in devices:
        queue(db, uid, d, 3, min_delay=10, max_delay=20)   # a campaign's own delays
    rows = claim(db)
    assert len(rows) == 40   # one each: a non-zero delay follows the first
    waits = [pacing(db, d)["wait"].total_seconds() for d in devices]
    assert all(10 <= w <= 20 for w in waits)
    assert max(waits) - min(waits) > 2   # random, not a constant


def test_zero_delay_rows_behind_a_delayed_row_wait(db, uid):
    dev = make_device(db, uid, min_delay=0, max_delay=0)
    lease(db, [dev])
    queue(db, uid, dev, 1, min_delay=5, max_delay=5)
    queue(db, uid, dev, 3)
    assert len(claim(db)) == 1
    assert pacing(db, dev)["wait"] == timedelta(seconds=5)


def test_hourly_cap_counts_any_rolling_hour(db, uid):
    dev = make_device(db, uid, hourly_limit=10)
    lease(db, [dev])
    send_history(db, dev, 59, 7)      # inside the trailing hour
    send_history(db, dev, 75, 50)     # outside it
    queue(db, uid, dev, 20)
    rows = claim(db)
    assert len(rows) == 3             # 7 in the hour, room for 3
    assert db.execute("SELECT messages_hour FROM device_load_balance WHERE device_id = %s",
                      [dev]).fetchone()["messages_hour"] == 10
    assert claim(db) == []


def test_hourly_cap_full_claims_nothing_until_the_limit_is_raised(db, uid):
    """A raised limit lets a full device send at once (the claim compares its trailing hour with the
    limit of now)."""
    dev = make_device(db, uid, hourly_limit=5)
    lease(db, [dev])
    send_history(db, dev, 30, 5)
    queue(db, uid, dev, 3)
    assert claim(db) == []
    assert not db.execute("SELECT is_available FROM device_load_balance WHERE device_id = %s",
                          [dev]).fetchone()["is_available"]
    db.execute("""SELECT update_devices(%s, %s, '{"hourly_limit": 7}')""", [uid, [dev]])
    assert len(claim(db)) == 2


def test_a_full_hour_frees_up_the_minute_its_oldest_send_leaves_it(db, uid):
    """The claim reads each device's trailing hour off its minute ring (no read of a send record):
    a device at its cap is passed by, and takes the room its oldest sends leave when they leave."""
    dev = make_device(db, uid, hourly_limit=5)
    lease(db, [dev])
    send_history(db, dev, 60, 2)      # the minute an hour ago: still in the hour
    send_history(db, dev, 20, 3)
    queue(db, uid, dev, 3)
    assert claim(db) == []
    # A minute later (the ring moved back a minute here, as the clock would move on) those 2 are out.
    db.execute("""UPDATE device_pacing SET sends_minute = sends_minute - interval '1 minute',
                                           next_send_at = '-infinity' WHERE device_id = %s""", [dev])
    assert len(claim(db)) == 2


def new_york_device(db, daily_limit, sent_today):
    """A leased device of an owner in New York that sent `sent_today` since the owner's midnight:
    (owner, device, that midnight)."""
    uid = make_user(db, timezone="America/New_York")
    dev = make_device(db, uid, daily_limit=daily_limit, hourly_limit=1000)
    lease(db, [dev])
    midnight = db.execute("SELECT date_trunc('day', now() AT TIME ZONE 'America/New_York') "
                          "AT TIME ZONE 'America/New_York' AS m").fetchone()["m"]
    db.execute("UPDATE device_pacing SET day_start = %s, day_count = %s WHERE device_id = %s",
               [midnight, sent_today, dev])
    return uid, dev, midnight


def test_daily_cap_in_the_owners_calendar_day(db):
    uid, dev, midnight = new_york_device(db, daily_limit=8, sent_today=6)
    queue(db, uid, dev, 10)
    assert len(claim(db)) == 2
    assert pacing(db, dev)["day_count"] == 8
    # Yesterday's count does not hold today back.
    db.execute("UPDATE device_pacing SET day_start = %s, day_count = 8, next_send_at = '-infinity' WHERE device_id = %s",
               [midnight - timedelta(days=1), dev])
    assert len(claim(db)) == 8
    assert pacing(db, dev)["day_start"] == midnight and pacing(db, dev)["day_count"] == 8


def day_full(db, device_id):
    return tuple(db.execute("SELECT day_full_until, day_full_limit FROM device_pacing WHERE device_id = %s",
                            [device_id]).fetchone().values())


def test_a_full_day_is_passed_by_until_the_owners_next_day_or_a_raised_limit(db):
    """Every claim of a sender walks its leased devices; one at its daily cap with work due was read
    again by each until midnight (1,500 such devices: 24 ms a claim). The claim that finds the day
    full says until when; claims pass the device by until then, or until its limit is raised."""
    uid, dev, midnight = new_york_device(db, daily_limit=5, sent_today=5)
    queue(db, uid, dev, 3)
    assert claim(db) == []
    assert day_full(db, dev) == (midnight + timedelta(days=1), 5)
    # Not read again meanwhile: with the day's count gone (a read would find room), still nothing.
    db.execute("UPDATE device_pacing SET day_count = 3 WHERE device_id = %s", [dev])
    assert claim(db) == []
    # A lower limit is still reached; a raised one frees the device at once.
    db.execute("""SELECT update_devices(%s, %s, '{"daily_limit": 4}')""", [uid, [dev]])
    assert claim(db) == []
    db.execute("""SELECT update_devices(%s, %s, '{"daily_limit": 7}')""", [uid, [dev]])
    assert len(claim(db)) == 3
    # The owner's next day frees it too (moved back here, as the clock would).
    queue(db, uid, dev, 2)
    db.execute("UPDATE device_pacing SET day_count = 7, next_send_at = '-infinity' WHERE device_id = %s", [dev])
    assert claim(db) == []
    assert day_full(db, dev)[1] == 7
    db.execute("UPDATE device_pacing SET day_full_until = now() - interval '1 second' WHERE device_id = %s", [dev])
    assert len(claim(db)) == 0    # the same day still: read again, still full
    db.execute("UPDATE device_pacing SET day_start = %s, day_full_until = now() - interval '1 second' "
               "WHERE device_id = %s", [midnight - timedelta(days=1), dev])
    assert len(claim(db)) == 2


def test_a_claim_changes_nothing_the_rollups_count(db, uid):
    """The claim updates the queue partition itself, so the statement triggers on broadcast_messages
    (the rollups) neither run for it nor copy its rows into transition tables: that holds because
    pending and queued count alike in every rollup, which this guards."""
    same = db.execute("""
        SELECT _sequence_count_class('pending') = _sequence_count_class('queued')
               AND (SELECT bool_and(p = q) FROM (VALUES (false, false), (true, false), (true, true)) v(d, r),
                            LATERAL (SELECT _campaign_count_row('pending', v.d, v.r, 1) AS p,
                                            _campaign_count_row('queued', v.d, v.r, 1) AS q) k) AS same""")
    assert same.fetchone()["same"]
    db.execute("""CREATE TABLE claim_statements (op text);
                  CREATE FUNCTION note_statement() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN INSERT INTO claim_statements VALUES (TG_OP); RETURN NULL; END $$;
                  CREATE TRIGGER note_update AFTER UPDATE ON broadcast_messages
                    FOR EACH STATEMENT EXECUTE FUNCTION note_statement()""")
    dev = make_device(db, uid)
    lease(db, [dev])
    ids = queue(db, uid, dev, 3)
    assert len(claim(db)) == 3
    assert db.execute("SELECT count(*) AS n FROM claim_statements").fetchone()["n"] == 0
    db.execute("SELECT complete_messages('s1', %s, %s)", [ids, ["a", "b", "c"]])
    assert db.execute("SELECT count(*) AS n FROM claim_statements").fetchone()["n"] == 1   # the move into the history


def test_claim_records_its_sends_on_the_pacing_row(db, uid):
    devices = [make_device(db, uid) for _ in range(2)]
    lease(db, devices)
    queue(db, uid, devices[0], 4)
    queue(db, uid, devices[1], 2)
    claim(db)
    rows = db.execute("SELECT device_id, sends_total, day_count FROM device_pacing WHERE device_id = ANY (%s) ORDER BY 1",
                      [devices]).fetchall()
    assert [tuple(r.values()) for r in rows] == [(devices[0], 4, 4), (devices[1], 2, 2)]


def test_complete_and_fail_are_guarded(db, uid):
    dev = make_device(db, uid)
    lease(db, [dev])
    ids = queue(db, uid, dev, 4)
    claim(db)
    done = db.execute("SELECT complete_messages('s1', %s, %s) AS n", [ids[:2], ["wa1", "wa2"]]).fetchone()["n"]
    assert done == 2
    # Another sender cannot complete what it did not claim; a second completion changes nothing.
    assert db.execute("SELECT complete_messages('s2', %s, %s) AS n", [ids[2:3], ["x"]]).fetchone()["n"] == 0
    assert db.execute("SELECT fail_messages('s1', %s, %s) AS n", [ids[:3], ["e1", "e2", "boom"]]).fetchone()["n"] == 1
    rows = {r["id"]: r for r in db.execute("SELECT * FROM broadcast_messages WHERE id = ANY(%s)", [ids])}
    assert [rows[i]["status"] for i in ids] == ["sent", "sent", "failed", "queued"]
    assert rows[ids[0]]["wa_message_id"] == "wa1" and rows[ids[2]]["error_message"] == "boom"
    assert pacing(db, dev)["last_sent_at"] is not None
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT complete_messages('s1', %s, %s)", [ids[3:], []])


def test_the_senders_arrays_arrive_as_they_were_sent(db):
    """The sender writes its results' arrays as one literal each (common.db.array_literal): every
    value arrives as it was, whatever it holds."""
    texts = ['say "hi"', "back\\slash \\\"", "a, b", "{braces}", " padded ", "", "NULL", "ü 漢 😀", None]
    numbers = [1, -2, 9_007_199_254_740_993, None]
    row = db.execute("SELECT %s::text[] AS texts, %s::bigint[] AS numbers",
                     [array_literal(texts), array_literal(numbers)]).fetchone()
    assert row == {"texts": texts, "numbers": numbers}
    assert db.execute("SELECT %s::bigint[] AS a", [array_literal([])]).fetchone()["a"] == []
    with pytest.raises(TypeError):
        array_literal([1.5])


def test_receipts_that_overtake_the_completion_are_applied_by_it(db, uid):
    """WhatsApp can report a message delivered and read before its sender's completion commits."""
    dev = make_device(db, uid)
    lease(db, [dev])
    ids = queue(db, uid, dev, 2)
    claim(db)
    at = db.execute("SELECT now() - interval '1 second' AS t").fetchone()["t"]
    for kind in ("delivered", "read"):
        assert db.execute("SELECT record_receipts(%s, %s, %s, %s) AS n",
                          [dev, ["wa-early", "wa-phone"], kind, at]).fetchone()["n"] == 0
    assert db.execute("SELECT complete_messages('s1', %s, %s) AS n", [ids, ["wa-early", "wa-late"]]).fetchone()["n"] == 2
    rows = {r["wa_message_id"]: r for r in db.execute(
        "SELECT wa_message_id, delivered_at, read_at FROM broadcast_messages WHERE id = ANY(%s)", [ids])}
    assert rows["wa-early"]["delivered_at"] == at and rows["wa-early"]["read_at"] == at
    assert rows["wa-late"]["delivered_at"] is None
    # Applied once; the receipt of a message typed on the phone waits for the purge.
    assert [r["wa_message_id"] for r in db.execute("SELECT DISTINCT wa_message_id FROM early_receipts")] == ["wa-phone"]
    db.execute("UPDATE early_receipts SET received_at = now() - interval '2 days'")
    db.execute("SELECT purge_history()")
    assert db.execute("SELECT count(*) AS n FROM early_receipts").fetchone()["n"] == 0


def test_a_receipt_recorded_while_its_completion_commits_is_applied_by_the_job(connect_committed):
    """The senders record receipts on a connection of their own. One recorded while its message's
    completion was committing saw no settled message and was kept, after the completion had applied
    what it could see: nothing applied it, and the message stayed undelivered in every report."""
    setup, completion = connect_committed(), connect_committed()
    uid = make_user(setup)
    dev = make_device(setup, uid)
    try:
        lease(setup, [dev], sender="race-sender")
        ids = queue(setup, uid, dev, 1)
        claim(setup, sender="race-sender")
        completion.execute("BEGIN")
        completion.execute("SELECT complete_messages('race-sender', %s, %s)", [ids, ["wa-race"]])   # applied none
        assert setup.execute("SELECT record_receipts(%s, %s, 'delivered', now()) AS n",
                             [dev, ["wa-race", "wa-typed-on-the-phone"]]).fetchone()["n"] == 0
        completion.execute("COMMIT")
        assert setup.execute("SELECT delivered_at FROM broadcast_messages WHERE id = %s", ids).fetchone()["delivered_at"] is None
        assert setup.execute("SELECT apply_stranded_receipts() AS n").fetchone()["n"] == 1
        assert setup.execute("SELECT delivered_at FROM broadcast_messages WHERE id = %s", ids).fetchone()["delivered_at"]
        assert [r["wa_message_id"] for r in setup.execute("SELECT wa_message_id FROM early_receipts WHERE device_id = %s",
                                                          [dev])] == ["wa-typed-on-the-phone"]   # waits for the purge
        assert setup.execute("SELECT apply_stranded_receipts() AS n").fetchone()["n"] == 0
        assert "SELECT apply_stranded_receipts()" in {r["command"] for r in setup.execute("SELECT command FROM app_jobs()")}
    finally:   # committed: out of the way of the module's other tests
        completion.close()   # rolls back what a failed assertion left open
        setup.execute("DELETE FROM early_receipts WHERE device_id = %s", [dev])
        setup.execute("DELETE FROM device_leases WHERE sender_id = 'race-sender'")
        setup.execute("DELETE FROM senders WHERE id = 'race-sender'")
        setup.execute("DELETE FROM users WHERE id = %s", [uid])


def test_the_minute_jobs_never_wait_on_rows_a_sender_is_changing(connect_committed):
    """Two deadlocks the soak met: giving up a dead sender released its claims and held their devices'
    pacing rows while the sender that took the devices over was completing sends on them; the health
    tick refreshed every online device while a sender was releasing some. Neither job waits now."""
    setup, busy = connect_committed(), connect_committed()
    uid = make_user(setup)
    dead, taken = make_device(setup, uid), make_device(setup, uid)
    try:
        lease(setup, [dead], sender="dead-sender")
        ids = queue(setup, uid, dead, 1)
        claim(setup, sender="dead-sender")
        setup.execute("UPDATE senders SET heartbeat_at = now() - interval '1 minute' WHERE id = 'dead-sender'")
        setup.execute("UPDATE user_devices SET status = 'online' WHERE id = ANY(%s)", [[dead, taken]])
        lease(setup, [taken], sender="live-sender")
        setup.execute("SET lock_timeout = '3s'")
        busy.execute("BEGIN")
        busy.execute("UPDATE device_pacing SET last_sent_at = now() WHERE device_id = %s", [dead])   # a completion
        busy.execute("UPDATE user_devices SET status_reason = 'releasing' WHERE id = %s", [taken])  # a release
        setup.execute("SELECT recover_stuck()")          # gives the dead sender up: its claim back, no wait
        assert statuses(setup, ids) == {"pending": 1}
        setup.execute("SELECT device_health_tick()")     # every other running device refreshed, no wait
        busy.execute("ROLLBACK")
    finally:
        busy.close()
        setup.execute("DELETE FROM device_leases WHERE sender_id IN ('dead-sender', 'live-sender')")
        setup.execute("DELETE FROM senders WHERE id IN ('dead-sender', 'live-sender')")
        setup.execute("DELETE FROM users WHERE id = %s", [uid])


def test_a_claim_never_waits_for_its_senders_heartbeat(connect_committed):
    """The heartbeat renews every lease of its sender (1,550 at full scale: 12-24 ms), and every claim
    updates the sender's row (its mark, sender_may_begin). Taking that row first, the heartbeat held
    each claim of its sender for as long as the renewal lasted: the idle wake-up's worst sends came
    every 5 s. A renewal still under way (a lease row it waits for) must leave the claim free."""
    c, heart, holder, watcher = connect_committed(), connect_committed(), connect_committed(), connect_committed()
    uid = make_user(c)
    dev = make_device(c, uid)
    try:
        lease(c, [dev], sender="beating")
        ids = queue(c, uid, dev, 1)
        holder.execute("BEGIN")
        holder.execute("SELECT 1 FROM device_leases WHERE device_id = %s FOR UPDATE", [dev])
        beat = []
        renewal = threading.Thread(target=lambda: beat.extend(heart.execute(
            "SELECT * FROM sender_heartbeat('beating', 10)").fetchall()))
        renewal.start()
        wait_until_blocked(watcher, holder, renewal, "the heartbeat", beat)
        c.execute("SET lock_timeout = '3s'")   # waiting fails the test rather than hang it
        assert [r["id"] for r in c.execute("SELECT * FROM claim_messages('beating', 10, 10, 1)")] == ids
        holder.execute("ROLLBACK")
        renewal.join(30)
        assert [r["device_id"] for r in beat] == [dev]
    finally:
        holder.execute("ROLLBACK")
        c.execute("RESET lock_timeout")
        c.execute("DELETE FROM device_leases WHERE sender_id = 'beating'")
        c.execute("DELETE FROM senders WHERE id = 'beating'")
        c.execute("DELETE FROM users WHERE id = %s", [uid])


def test_a_sender_silent_for_a_day_leaves_the_health_figures_and_registers_again_if_it_wakes(db):
    """A killed sender never retires itself: its row stayed, and /healthz counted it stale for good."""
    for sender, silent in (("s-killed", "25 hours"), ("s-lately", "2 hours")):
        db.execute("SELECT register_sender(%s, 'host', 1, 10)", [sender])
        db.execute("UPDATE senders SET heartbeat_at = now() - %s::interval WHERE id = %s", [silent, sender])
    db.execute("SELECT purge_history()")
    assert [r["id"] for r in db.execute("SELECT id FROM senders WHERE id LIKE 's-%' ORDER BY id")] == ["s-lately"]
    assert db.execute("SELECT senders_stale FROM system_health()").fetchone()["senders_stale"] == 1
    with pytest.raises(psycopg.errors.InvalidParameterValue):   # the lease keeper registers again on this
        db.execute("SELECT * FROM sender_heartbeat('s-killed', 10)")


def test_recover_stuck_fails_never_requeues(db, uid):
    dev = make_device(db, uid)
    lease(db, [dev])
    ids = queue(db, uid, dev, 2)
    claim(db)
    db.execute("UPDATE broadcast_messages SET claimed_at = now() - interval '6 minutes' WHERE id = %s", [ids[0]])
    assert db.execute("SELECT recover_stuck() AS n").fetchone()["n"] == 1
    assert db.execute("SELECT recover_stuck('0 seconds') AS n").fetchone()["n"] == 0  # same instant
    db.execute("UPDATE broadcast_messages SET claimed_at = now() - interval '2 seconds' WHERE id = %s", [ids[1]])
    assert db.execute("SELECT recover_stuck('1 second') AS n").fetchone()["n"] == 1
    rows = db.execute("SELECT status, error_message FROM broadcast_messages WHERE id = ANY(%s)", [ids]).fetchall()
    assert {(r["status"], r["error_message"]) for r in rows} == {("failed", "stuck: sender vanished")}
    assert db.execute("SELECT complete_messages('s1', %s, %s) AS n", [ids, ["a", "b"]]).fetchone()["n"] == 0


def test_a_sender_silent_past_its_lease_gives_back_what_it_never_began(db, uid):
    """A sender that dies leaves its claims: those it may have begun sending (up to its mark, set by the
    claim or by sender_may_begin) are failed as stuck after the timeout, never re-sent; those it never
    began go back to the queue at once. Once given up it can neither claim, begin a send nor register
    again (a process still running learns it at its next claim, mark or heartbeat)."""
    devices = sorted(make_device(db, uid) for _ in range(3))
    lease(db, devices)
    ids = {d: queue(db, uid, d, 2, min_delay=0, max_delay=0) for d in devices}
    claimed = db.execute("SELECT * FROM claim_messages('s1', 1000, 100, 1)").fetchall()   # begins its first device
    assert len(claimed) == 6
    mark = db.execute("SELECT begun_claimed_at, begun_device_id FROM senders WHERE id = 's1'").fetchone()
    assert mark["begun_device_id"] == devices[0]
    extra = queue(db, uid, devices[0], 1, min_delay=0, max_delay=0)
    assert [r["id"] for r in db.execute("SELECT * FROM claim_messages('s1', 1000, 100, 0)")] == extra   # begins none
    assert db.execute("SELECT begun_claimed_at, begun_device_id FROM senders WHERE id = 's1'").fetchone() == mark
    assert db.execute("SELECT recover_stuck() AS n").fetchone()["n"] == 0      # its heartbeat is fresh: nothing moves
    assert set(statuses(db, sum(ids.values(), []))) == {"queued"}

    db.execute("UPDATE senders SET heartbeat_at = now() - interval '31 seconds' WHERE id = 's1'")   # its lease lapsed
    assert db.execute("SELECT recover_stuck() AS n").fetchone()["n"] == 0      # none stuck yet: 5 minutes
    assert statuses(db, ids[devices[0]]) == {"queued": 2}                     # begun: unknown, kept for recover_stuck
    assert statuses(db, ids[devices[1]] + ids[devices[2]]) == {"pending": 4}  # never begun: back in the queue
    assert not db.execute("SELECT sender_may_begin('s1', %s, %s) AS ok", [claimed[0]["claimed_at"], devices[2]]).fetchone()["ok"]
    with pytest.raises(psycopg.errors.InvalidParameterValue), db.transaction():
        db.execute("SELECT * FROM sender_heartbeat('s1', 10)")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="given up"), db.transaction():
        db.execute("SELECT register_sender('s1', 'host', 1, 10)")
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="given up"), db.transaction():
        claim(db)                                                             # its leases still say now: undone
    assert statuses(db, ids[devices[1]] + ids[devices[2]]) == {"pending": 4}

    db.execute("UPDATE broadcast_messages SET claimed_at = now() - interval '6 minutes' WHERE id = ANY(%s)", [ids[devices[0]]])
    assert db.execute("SELECT recover_stuck() AS n").fetchone()["n"] == 2
    assert statuses(db, ids[devices[0]]) == {"failed": 2}

    # A sender whose row is gone (removed by hand: its lease keeper registers it again) was not given up.
    other = make_device(db, uid)
    lease(db, [other], sender="s2")
    other_ids = queue(db, uid, other, 1)
    db.execute("DELETE FROM senders WHERE id = 's2'")
    assert [r["id"] for r in db.execute("SELECT * FROM claim_messages('s2', 1000, 100, 1)")] == other_ids
    assert db.execute("SELECT sender_may_begin('s2', now(), %s) AS ok", [other]).fetchone()["ok"]


def statuses(db, ids):
    return {r["status"]: r["n"] for r in db.execute(
        "SELECT status, count(*)::int AS n FROM broadcast_messages WHERE id = ANY(%s) GROUP BY 1", [ids])}


def test_a_fleets_receipts_are_one_call(db, uid):
    """A batch of receipts for many devices is one call (a call per device cost ~0.7 ms, and a burst's
    receipts trailed its sends by seconds): each (device, WhatsApp id) marks that device's message
    only, the earliest time of a message in the batch counts, and an id no settled message carries
    yet waits as an early receipt."""
    d1, d2, d3 = (make_device(db, uid) for _ in range(3))
    for device, wa_id in ((d1, "wa-a"), (d2, "wa-b"), (d3, "wa-a")):   # WhatsApp ids are the sender's: one may repeat
        db.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, status, claimed_at,
                                                      claimed_by, sent_at, wa_message_id)
                      VALUES (%s, %s, '60120000001', 'm', 'sent', now(), 's1', now(), %s)""", [uid, device, wa_id])
    early, late = db.execute("SELECT now() + interval '1 second' AS e, now() + interval '2 seconds' AS l").fetchone().values()
    n = db.execute("SELECT record_receipt_batch(%s, %s, %s, 'delivered') AS n",
                   [[d1, d1, d2, d2, d3], ["wa-a", "wa-a", "wa-b", "wa-a", "wa-x"], [late, early, late, early, early]]).fetchone()["n"]
    assert n == 2
    delivered = {(r["device_id"], r["wa_message_id"]): r["delivered_at"] for r in db.execute(
        "SELECT device_id, wa_message_id, delivered_at FROM broadcast_messages WHERE device_id = ANY(%s)", [[d1, d2, d3]])}
    assert delivered == {(d1, "wa-a"): early, (d2, "wa-b"): late, (d3, "wa-a"): None}
    assert {(r["device_id"], r["wa_message_id"]) for r in db.execute(
        "SELECT device_id, wa_message_id FROM early_receipts WHERE device_id = ANY(%s)", [[d1, d2, d3]])} == {
        (d2, "wa-a"), (d3, "wa-x")}
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="a device, a WhatsApp id and a time"), db.transaction():
        db.execute("SELECT record_receipt_batch(%s, %s, %s, 'read')", [[d1], ["wa-a", "wa-b"], [early]])


def test_skip_rules(db, uid):
    def dev(status, changed_ago="0 seconds", banned_until=None):
        d = make_device(db, uid, status=status)
        db.execute("UPDATE user_devices SET status_changed_at = now() - %s::interval, banned_until = %s WHERE id = %s",
                   [changed_ago, banned_until, d])
        return d

    now = db.execute("SELECT now() AS n").fetchone()["n"]
    cases = {
        "logged_out": (dev("logged_out"), "skipped: device logged out"),
        "banned": (dev("banned"), "skipped: device banned"),
        "ban_expired_long_ago": (dev("banned", banned_until=now - timedelta(hours=1)), "still banned"),
        "offline_long": (dev("offline", "31 minutes"), "offline for more than"),
        "connecting_long": (dev("connecting", "2 hours"), "offline for more than"),
        "temporarily_banned": (dev("banned", banned_until=now + timedelta(hours=1)), None),
        "brief_disconnect": (dev("offline", "5 minutes"), None),
        "online": (dev("online"), None),
    }
    ids = {name: queue(db, uid, d, 2) for name, (d, _) in cases.items()}
    future = queue(db, uid, cases["logged_out"][0], 1, scheduled="1 day")
    held = queue(db, uid, cases["logged_out"][0], 1, held=True)
    deleted = make_device(db, uid)
    orphan = queue(db, uid, deleted, 1)
    db.execute("DELETE FROM user_devices WHERE id = %s", [deleted])

    assert db.execute("SELECT skip_undeliverable() AS n").fetchone()["n"] == 2 * 5 + 1
    for name, (_, reason) in cases.items():
        rows = db.execute("SELECT status, error_message, failed_at FROM broadcast_messages WHERE id = ANY(%s)",
                          [ids[name]]).fetchall()
        if reason is None:
            assert {r["status"] for r in rows} == {"pending"}, name
        else:
            assert {r["status"] for r in rows} == {"skipped"}, name
            assert all(reason in r["error_message"] and r["failed_at"] for r in rows), name
    assert db.execute("SELECT status, error_message FROM broadcast_messages WHERE id = %s", orphan).fetchone() == \
        {"status": "skipped", "error_message": "skipped: device deleted"}
    assert db.execute("SELECT count(*) FROM broadcast_messages WHERE id = ANY(%s) AND status = 'pending'",
                      [future + held]).fetchone()["count"] == 2
    # A shorter grace is a parameter.
    assert db.execute("SELECT skip_undeliverable('1 minute') AS n").fetchone()["n"] == 2


def test_insert_notifies_once_per_statement(connect_committed):
    listener = connect_committed()
    listener.execute("LISTEN wa_dispatch")
    c = connect_committed()
    uid = make_user(c)
    dev = make_device(c, uid)
    queue(c, uid, dev, 500)
    queue(c, uid, dev, 3)
    c.execute("UPDATE broadcast_messages SET held = false WHERE device_id = %s", [dev])
    c.execute("UPDATE broadcast_messages SET content = 'x' WHERE device_id = %s", [dev])  # not a release
    notes = drain_notifies(listener, "wa_dispatch")
    assert [n.channel for n in notes] == ["wa_dispatch"] * 3


def test_device_performance_monitor(db, uid):
    dev = make_device(db, uid, hourly_limit=50, daily_limit=500)
    lease(db, [dev])
    ids = queue(db, uid, dev, 3)
    claim(db)
    db.execute("SELECT complete_messages('s1', %s, %s)", [ids[:1], ["w1"]])
    row = db.execute("SELECT * FROM device_performance_monitor WHERE device_id = %s", [dev]).fetchone()
    assert row["device_status"] == "online" and row["user_id"] == uid
    assert (row["messages_hour"], row["messages_today"], row["processing_now"]) == (3, 3, 2)
    assert (row["hourly_limit"], row["daily_limit"]) == (50, 500)
    assert row["last_sent_at"] is not None


def test_next_dispatch_at(db, uid):
    dev = make_device(db, uid, min_delay=30, max_delay=30)
    lease(db, [dev])
    assert db.execute("SELECT next_dispatch_at('s1') AS t").fetchone()["t"] is None
    queue(db, uid, dev, 2)
    claim(db)
    t = db.execute("SELECT next_dispatch_at('s1') - now() AS t").fetchone()["t"]
    assert t == timedelta(seconds=30)


def test_bulk_enqueue_refreshes_the_queue_statistics(db):
    """A queue analyzed nearly empty that takes a big batch is re-analyzed, so cached claim plans
    fit its real size; a batch small against the queue leaves the statistics alone."""
    uid = make_user(db)
    dev = make_device(db, uid)
    db.execute("ANALYZE message_queue")
    db.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                  SELECT %s, %s, '6012' || lpad(g::text, 8, '0'), 'x' FROM generate_series(1, 5000) g""", [uid, dev])
    assert db.execute("SELECT refresh_queue_stats(5000) AS r").fetchone()["r"] is True
    assert db.execute("SELECT reltuples FROM pg_class WHERE relname = 'message_queue'").fetchone()["reltuples"] >= 5000
    assert db.execute("SELECT refresh_queue_stats(1500) AS r").fetchone()["r"] is False


def test_the_queue_is_analyzed_from_a_small_sample(db):
    """The writer re-analyzes the queue inside every batch that grows it by half (migration 2133):
    from 3,000 sampled rows, ten histogram buckets (30,000 and a hundred by default), while the
    history keeps the default for the analysts."""
    # The sample is 300 rows per unit of the highest target among its columns: one column left at
    # the default (a column added to broadcast_messages later, say) samples 30,000 again.
    wide = [r["attname"] for r in db.execute("""
        SELECT attname FROM pg_attribute
         WHERE attrelid = 'message_queue'::regclass AND attnum > 0 AND NOT attisdropped
           AND NOT attstattarget BETWEEN 0 AND 10""")]
    assert wide == [], f"message_queue columns sampled at the default statistics target: {wide}"
    uid = make_user(db)
    dev = make_device(db, uid)
    db.execute("ANALYZE message_queue")
    db.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, scheduled_at)
                  SELECT %s, %s, '6012' || lpad(g::text, 8, '0'), 'x', now() + make_interval(secs => g)
                    FROM generate_series(1, 20000) g""", [uid, dev])
    assert db.execute("SELECT refresh_queue_stats(20000) AS r").fetchone()["r"] is True
    buckets = lambda table: db.execute("""
        SELECT cardinality(histogram_bounds::text::text[]) AS n FROM pg_stats
         WHERE schemaname = 'public' AND tablename = %s AND attname = 'scheduled_at'""", [table]).fetchone()["n"]
    assert buckets("message_queue") == 11
    db.execute("UPDATE broadcast_messages SET status = 'failed', failed_at = now(), error_message = 'x' WHERE device_id = %s",
               [dev])
    history = db.execute("SELECT tableoid::regclass::text AS t FROM broadcast_messages WHERE device_id = %s LIMIT 1",
                         [dev]).fetchone()["t"]
    db.execute(f"ANALYZE {history}")
    assert buckets(history) == 101


def test_many_small_batches_refresh_the_statistics_too(connect_committed):
    """Batches of a few hundred rows never reach 1,000 on their own; the queue they grow does. Each
    writer's rows must be counted for the next one as soon as they commit: a session flushes its
    counts at most once a second, and 10 s later when it is idle."""
    writers = [connect_committed(), connect_committed()]
    c = writers[0]
    uid = make_user(c)
    dev = make_device(c, uid)
    c.execute("ALTER TABLE message_queue SET (autovacuum_enabled = false)")   # the writers' ANALYZE, not autovacuum's
    try:
        c.execute("ANALYZE message_queue")
        before = c.execute("SELECT reltuples FROM pg_class WHERE relname = 'message_queue'").fetchone()["reltuples"]
        refreshed = []
        for batch in range(12):
            c = writers[batch % 2]
            with c.transaction():
                c.execute("""SELECT count(*) FROM _enqueue_messages(array(
                               SELECT ROW(%s, %s, NULL, '6013' || lpad((%s * 1000 + g)::text, 8, '0'), NULL, 'text', 'x',
                                          NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::message_draft
                                 FROM generate_series(1, 250) g))""", [uid, dev, batch])
            refreshed.append(c.execute("SELECT reltuples FROM pg_class WHERE relname = 'message_queue'").fetchone()["reltuples"])
    finally:
        c.execute("ALTER TABLE message_queue RESET (autovacuum_enabled)")
    assert max(refreshed) >= max(before, 0) + 1000, refreshed


def test_the_claims_refresh_never_waits_behind_another_analyze_or_vacuum(connect_committed):
    """The claim refreshes the statistics when it sees due rows they do not know of; it must not
    queue behind autovacuum or another sender's ANALYZE, whose work refreshes them anyway."""
    holder, c = connect_committed(), connect_committed()
    uid = make_user(c)
    dev = make_device(c, uid, hourly_limit=100_000, daily_limit=100_000)
    lease(c, [dev], sender="nowait")
    c.execute("ALTER TABLE message_queue SET (autovacuum_enabled = false)")   # the statistics stay stale
    try:
        c.execute("DELETE FROM broadcast_messages WHERE status = 'pending'")   # the other tests': a small queue analyzed
        c.execute("ANALYZE message_queue")
        queue(c, uid, dev, 3000)   # unanalyzed: the claim would re-analyze
        c.execute("SET lock_timeout = '5s'")   # waiting would fail the test rather than hang it
        with holder.transaction():
            holder.execute("LOCK TABLE message_queue IN SHARE UPDATE EXCLUSIVE MODE")   # as ANALYZE and VACUUM do
            assert len(claim(c, sender="nowait", per_device=1000)) == 1000
        assert c.execute("SELECT reltuples FROM pg_class WHERE relname = 'message_queue'").fetchone()["reltuples"] < 1000
        assert len(claim(c, sender="nowait", per_device=1000)) == 1000   # the lock gone, this one analyzes
        assert c.execute("SELECT reltuples FROM pg_class WHERE relname = 'message_queue'").fetchone()["reltuples"] >= 2000
    finally:
        c.execute("ALTER TABLE message_queue RESET (autovacuum_enabled)")
        c.execute("DELETE FROM broadcast_messages WHERE user_id = %s", [uid])


def test_the_writers_refresh_waits_behind_a_vacuum_only_while_the_queue_is_nearly_empty(connect_committed):
    """Past 10,000 rows a writer's refresh must not queue behind autovacuum: the vacuum of a large
    queue gives way only after deadlock_timeout (a fan-out chunk stalled 1 s). Below that, where
    plans built for a tiny table go wrong, it waits so its rows' statistics commit with them."""
    holder, c, watcher = connect_committed(), connect_committed(), connect_committed()
    uid = make_user(c)
    dev = make_device(c, uid)

    def enqueue(n, first):
        return c.execute("""SELECT count(*) AS n FROM _enqueue_messages(array(
                              SELECT ROW(%s, %s, NULL, '6014' || lpad((%s + g)::text, 8, '0'), NULL, 'text', 'x',
                                         NULL, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::message_draft
                                FROM generate_series(1, %s) g))""", [uid, dev, first, n]).fetchone()["n"]

    def reltuples():
        return c.execute("SELECT reltuples FROM pg_class WHERE relname = 'message_queue'").fetchone()["reltuples"]

    c.execute("ALTER TABLE message_queue SET (autovacuum_enabled = false)")   # the statistics stay as the test sets them
    try:
        c.execute("DELETE FROM broadcast_messages WHERE status = 'pending'")   # the other tests': analyzed nearly empty
        c.execute("ANALYZE message_queue")
        c.execute("SET lock_timeout = '20s'")   # a wait where none belongs fails the test rather than hang it
        # Nearly empty: the writer waits for the lock, and its statistics land with its rows.
        with holder.transaction():
            holder.execute("LOCK TABLE message_queue IN SHARE UPDATE EXCLUSIVE MODE")   # as VACUUM and ANALYZE do
            written = []
            writer = threading.Thread(target=lambda: written.append(enqueue(12_000, 0)))
            writer.start()
            wait_until_blocked(watcher, holder, writer, "the writer", written)
        writer.join(30)
        assert written == [12_000]
        assert reltuples() >= 12_000
        # Large: the writer leaves the statistics to whoever holds the lock, and never waits.
        with holder.transaction():
            holder.execute("LOCK TABLE message_queue IN SHARE UPDATE EXCLUSIVE MODE")
            c.execute("SET lock_timeout = '2s'")
            assert enqueue(8_000, 100_000) == 8_000
        assert reltuples() < 20_000
        assert enqueue(8_000, 200_000) == 8_000   # the lock gone, this one analyzes
        assert reltuples() >= 28_000
    finally:
        c.execute("RESET lock_timeout")
        c.execute("ALTER TABLE message_queue RESET (autovacuum_enabled)")
        c.execute("DELETE FROM broadcast_messages WHERE user_id = %s", [uid])


def test_the_one_writer_refreshes_the_statistics_before_its_caller_commits(db):
    """_enqueue_messages (fan-out chunks, step activations, AI spreads, retries) re-analyzes the queue
    inside the caller's transaction, so the statistics commit with the rows they describe."""
    uid = make_user(db)
    dev = make_device(db, uid)
    db.execute("ANALYZE message_queue")
    written = db.execute("""
        SELECT count(*) AS n FROM _enqueue_messages(array(
          SELECT ROW(%s, %s, NULL, '6012' || lpad(g::text, 8, '0'), NULL, 'text', 'x', NULL, 0, 0,
                     NULL, NULL, NULL, NULL, NULL, NULL, NULL)::message_draft
            FROM generate_series(1, 3000) g))""", [uid, dev]).fetchone()["n"]
    assert written == 3000
    assert db.execute("SELECT reltuples FROM pg_class WHERE relname = 'message_queue'").fetchone()["reltuples"] >= 3000
