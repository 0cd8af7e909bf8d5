"""Drip sequences in SQL: enrollment, activation order and window, one active step, failure and
stuck handling, completion and chaining, stopping, and the rollups behind the reports."""
import json
import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories import make_device, make_user, record_sends
from tests.superuser import superuser

DUPLICATES = """SELECT sequence_id, contact_phone, current_step, count(*) FROM sequence_contacts
                 GROUP BY sequence_id, contact_phone, current_step HAVING count(*) > 1"""


def make_sequence(conn, user_id, trigger="promo", steps=3, delay_hours=24, active=True, **extra):
    definition = {"name": f"seq {trigger}", "trigger": trigger, "min_delay_seconds": 0, "max_delay_seconds": 0,
                  "steps": [{"day_number": d, "content": f"Hi {{name}}, day {d}",
                             "trigger_delay_hours": delay_hours if d < steps else 0} for d in range(1, steps + 1)]}
    definition.update(extra)
    sid = conn.execute("SELECT save_sequence(%s, NULL, %s) AS id", [user_id, json.dumps(definition)]).fetchone()["id"]
    if active:
        conn.execute("SELECT set_sequence_status(%s, %s, 'active')", [user_id, sid])
    return sid


def steps_of(conn, sid):
    return [r["id"] for r in conn.execute(
        "SELECT id FROM sequence_steps WHERE sequence_id = %s ORDER BY day_number", [sid])]


def add_lead(conn, user_id, phone, trigger=None, device_id=None, name="Ann"):
    return conn.execute("INSERT INTO leads (user_id, device_id, name, phone, trigger) VALUES (%s, %s, %s, %s, %s) "
                        "RETURNING id", [user_id, device_id, name, phone, trigger]).fetchone()["id"]


def enrollment(conn, sid, phone):
    return conn.execute("SELECT * FROM sequence_enrollments WHERE sequence_id = %s AND contact_phone = %s",
                        [sid, phone]).fetchone()


def activate(conn, limit=5000, at=None):
    if at is None:
        return conn.execute("SELECT activate_due_steps(%s) AS n", [limit]).fetchone()["n"]
    return conn.execute("SELECT activate_due_steps(%s, %s) AS n", [limit, at]).fetchone()["n"]


def finish(conn, message_ids, ok=True):
    """What a sender does: claim, then complete or fail."""
    conn.execute("UPDATE broadcast_messages SET status = 'queued', claimed_at = now(), claimed_by = 'test' "
                 "WHERE id = ANY(%s)", [message_ids])
    if ok:
        conn.execute("SELECT complete_messages('test', %s, %s)", [message_ids, [f"w{i}" for i in message_ids]])
    else:
        conn.execute("SELECT fail_messages('test', %s, %s)", [message_ids, ["boom"] * len(message_ids)])


def messages(conn, sid):
    return conn.execute("""SELECT b.id, b.recipient_phone, b.status, b.device_id, b.content, st.day_number
                             FROM broadcast_messages b JOIN sequence_steps st ON st.id = b.sequence_stepid
                            WHERE b.sequence_id = %s ORDER BY b.id""", [sid]).fetchall()


def make_due(conn, sid, phone):
    conn.execute("UPDATE sequence_enrollments SET next_due_at = now() - interval '1 minute' "
                 "WHERE sequence_id = %s AND contact_phone = %s", [sid, phone])


def test_lead_with_the_trigger_is_enrolled_once_at_its_first_step(db):
    uid = make_user(db)
    sid = make_sequence(db, uid)
    add_lead(db, uid, "60111111111", "Promo, vip")
    add_lead(db, uid, "60111111112", "promotion")          # a token, not a substring
    lid = add_lead(db, uid, "60111111113")
    db.execute("UPDATE leads SET trigger = 'promo' WHERE id = %s", [lid])
    db.execute("UPDATE leads SET trigger = 'promo,x' WHERE id = %s", [lid])   # again: still once
    rows = db.execute("SELECT contact_phone, next_step_id, next_due_at <= now() AS due FROM sequence_enrollments "
                      "WHERE sequence_id = %s ORDER BY 1", [sid]).fetchall()
    first = steps_of(db, sid)[0]
    assert [(r["contact_phone"], r["next_step_id"], r["due"]) for r in rows] == [
        ("60111111111", first, True), ("60111111113", first, True)]


def test_sweep_enrolls_what_the_trigger_missed_and_inactive_sequences_wait(db):
    uid = make_user(db)
    sid = make_sequence(db, uid, active=False)
    add_lead(db, uid, "60111111111", "promo")
    assert enrollment(db, sid, "60111111111") is None      # inactive: not enrolled
    db.execute("SELECT set_sequence_status(%s, %s, 'active')", [uid, sid])
    assert enrollment(db, sid, "60111111111") is not None  # activation enrolls leads carrying the trigger
    db.execute("ALTER TABLE leads DISABLE TRIGGER leads_sequences_ins")
    add_lead(db, uid, "60111111112", "promo")
    assert enrollment(db, sid, "60111111112") is None
    assert db.execute("SELECT sequence_enrollment_sweep() AS n").fetchone()["n"] == 1
    assert enrollment(db, sid, "60111111112") is not None


def test_due_steps_activate_by_time_not_step_number(db):
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid)
    s1, s2, s3 = steps_of(db, sid)
    for phone, step, hours_ago in [("60111111111", s3, 2), ("60111111112", s1, 1), ("60111111113", s2, 3)]:
        add_lead(db, uid, phone, "promo")
        db.execute("UPDATE sequence_enrollments SET next_step_id = %s, next_due_at = now() - %s * interval '1 hour' "
                   "WHERE sequence_id = %s AND contact_phone = %s", [step, hours_ago, sid, phone])
    for _ in range(3):
        assert activate(db, 1) == 1
    assert [(m["recipient_phone"], m["day_number"]) for m in messages(db, sid)] == [
        ("60111111113", 2), ("60111111111", 3), ("60111111112", 1)]
    assert activate(db) == 0


def test_step_due_outside_the_window_waits_for_the_next_one_across_midnight(db):
    uid = make_user(db, timezone="America/New_York")
    make_device(db, uid)
    # Window 22:30 - 00:30 New York time.
    sid = make_sequence(db, uid, schedule_time="23:30", schedule_tolerance_minutes=60)
    add_lead(db, uid, "60111111111", "promo")
    local = lambda ts: db.execute("SELECT %s::timestamp AT TIME ZONE 'America/New_York' AS t", [ts]).fetchone()["t"]
    db.execute("UPDATE sequence_enrollments SET next_due_at = %s", [local("2030-01-10 00:45")])
    assert activate(db, at=local("2030-01-10 01:00")) == 0
    pending = db.execute("SELECT status, next_trigger_time FROM sequence_contacts WHERE sequence_id = %s",
                         [sid]).fetchone()
    assert pending["status"] == "pending" and pending["next_trigger_time"] == local("2030-01-10 22:30")
    assert activate(db, at=local("2030-01-10 22:29")) == 0
    assert activate(db, at=local("2030-01-11 00:20")) == 1    # after midnight, still inside


def test_one_active_step_under_concurrent_activation(committed_db_url, connect_committed):
    setup = connect_committed()
    uid = make_user(setup)
    make_device(setup, uid)
    sid = make_sequence(setup, uid, trigger="rush", steps=3, delay_hours=0)
    for i in range(200):
        add_lead(setup, uid, f"6012{i:07d}", "rush")
    barrier = threading.Barrier(4)
    counts = []

    def worker():
        with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
            barrier.wait()
            for _ in range(5):
                counts.append(activate(c, 37))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    while (n := activate(setup, 1000)):       # what the concurrent rounds skipped as locked
        counts.append(n)
    # Every step-1 message is active (nobody sent it), so step 2 never started for anyone.
    per_contact = setup.execute("""SELECT recipient_phone, count(*) AS n FROM broadcast_messages
                                    WHERE sequence_id = %s AND status IN ('pending', 'queued')
                                    GROUP BY 1""", [sid]).fetchall()
    assert sum(counts) == 200 and len(per_contact) == 200 and {r["n"] for r in per_contact} == {1}
    assert setup.execute(DUPLICATES).fetchall() == []


def test_failed_step_stays_failed_and_the_contact_moves_on(db):
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid)
    add_lead(db, uid, "60111111111", "promo")
    assert activate(db) == 1
    first = messages(db, sid)[0]
    finish(db, [first["id"]], ok=False)
    assert activate(db) == 0                      # step 2 is due in 24 hours, not now: no retry
    make_due(db, sid, "60111111111")
    assert activate(db) == 1
    assert [(m["day_number"], m["status"]) for m in messages(db, sid)] == [(1, "failed"), (2, "pending")]


def test_stuck_step_is_failed_and_the_next_waits_until_then(db):
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid, delay_hours=0)
    add_lead(db, uid, "60111111111", "promo")
    assert activate(db) == 1
    mid = messages(db, sid)[0]["id"]
    db.execute("UPDATE broadcast_messages SET status = 'queued', claimed_at = now() - interval '6 minutes', "
               "claimed_by = 'gone' WHERE id = %s", [mid])
    assert activate(db) == 0                      # step 2 is due but step 1 is still in processing
    assert db.execute("SELECT recover_stuck() AS n").fetchone()["n"] == 1
    assert activate(db) == 1
    assert [(m["day_number"], m["status"]) for m in messages(db, sid)] == [(1, "failed"), (2, "pending")]


def in_flight(conn, sid, phone):
    return enrollment(conn, sid, phone)["step_in_flight"]


def test_a_contacts_step_is_in_flight_from_its_queueing_until_its_message_and_any_retry_settle(db):
    """The tick reads only contacts whose step is not in flight; the flag must follow the queue: set
    with the message, cleared once no message of the contact is pending or queued, never left set
    without a message that will clear it."""
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid, delay_hours=0)
    add_lead(db, uid, "60111111111", "promo")
    assert not in_flight(db, sid, "60111111111")
    assert activate(db) == 1 and in_flight(db, sid, "60111111111")
    assert activate(db) == 0                      # step 2 is due, step 1 still queued
    first = messages(db, sid)[0]
    finish(db, [first["id"]], ok=False)
    # Failed, then retried before the tick saw the failure: the retry keeps the step in flight.
    assert db.execute("SELECT retry_failed_steps(%s, %s) AS n", [uid, sid]).fetchone()["n"] == 1
    assert activate(db) == 0 and in_flight(db, sid, "60111111111")
    retry = [m for m in messages(db, sid) if m["status"] == "pending"][0]
    finish(db, [retry["id"]])
    assert activate(db) == 1                      # the retry sent: step 2 goes
    assert in_flight(db, sid, "60111111111")
    # An opt-out stops the contact: its waiting step is skipped and the flag clears on the next chunk.
    db.execute("INSERT INTO opt_outs (user_id, phone) VALUES (%s, '60111111111')", [uid])
    assert enrollment(db, sid, "60111111111")["status"] == "stopped"
    assert activate(db) == 0 and not in_flight(db, sid, "60111111111")
    assert db.execute("SELECT count(*) AS n FROM enrollment_steps_settled").fetchone()["n"] == 0


def test_a_receipt_calls_none_of_the_counts_it_cannot_change(module_db_url):
    """A message is claimed, completed, then earns two receipts (delivered, read); only its
    completion changes a sequence's counts (a claim keeps it in flight) or the sent/failed rollup.
    The statement triggers see that and stop, rather than copying the rows and calling the writers
    for nothing."""
    watched = ["_record_message_count_deltas", "_add_message_outcomes"]
    query = "SELECT funcname, calls FROM pg_stat_xact_user_functions WHERE funcname = ANY (%s)"
    with superuser(module_db_url) as su, su.transaction() as tx:
        su.execute("SET LOCAL track_functions = 'all'")
        uid = make_user(su)
        dev = make_device(su, uid)
        sid = make_sequence(su, uid, delay_hours=0)
        add_lead(su, uid, "60111111112", "promo")
        assert activate(su) == 1
        sent = messages(su, sid)[0]["id"]
        finish(su, [sent])
        completed = {r["funcname"]: r["calls"] for r in su.execute(query, [watched])}
        assert completed == {f: 1 for f in watched}           # the completion is counted; the claim changed no count
        for kind in ("delivered", "read"):
            assert su.execute("SELECT record_receipts(%s, %s, %s, now()) AS n", [dev, [f"w{sent}"], kind]).fetchone()["n"] == 1
        assert {r["funcname"]: r["calls"] for r in su.execute(query, [watched])} == completed
        row = su.execute("SELECT delivered_at, read_at FROM broadcast_messages WHERE id = %s", [sent]).fetchone()
        assert row["delivered_at"] is not None and row["read_at"] is not None
        raise psycopg.Rollback(tx)


def test_a_reply_calls_only_what_it_can_change(module_db_url):
    """A lead's reply sets its replied_at: no trigger changed, so no lead can enter a sequence, and
    its sequences are stopped once (by the leads trigger), touching nothing when none was running.
    Each reply called the enrollment (a SQL function planned per call) for no lead, and stopped the
    number's sequences twice, each time skipping an empty list: 2.4-2.5 ms a reply, 0.85-1.0 ms now."""
    watched = ["_enroll_leads", "stop_sequences_for_reply", "_skip_messages", "_record_enrollment_count_deltas"]
    query = "SELECT funcname, calls FROM pg_stat_xact_user_functions WHERE funcname = ANY (%s) ORDER BY 1"
    with superuser(module_db_url) as su, su.transaction() as tx:
        su.execute("SET LOCAL track_functions = 'all'")
        uid = make_user(su)
        dev = make_device(su, uid)
        make_sequence(su, uid, delay_hours=0)
        add_lead(su, uid, "60111111113", "promo")     # enrolled
        add_lead(su, uid, "60111111114", None)        # in no sequence
        before = {r["funcname"]: r["calls"] for r in su.execute(query, [watched])}

        def reply(phone):
            su.execute("SELECT record_inbound_message(%s, %s, %s, %s, %s, 'Ok thanks', now() + interval '1 minute')",
                       [dev, f"in-{phone}", f"{phone}@s.whatsapp.net", f"{phone}@s.whatsapp.net", phone])
            calls = {r["funcname"]: r["calls"] for r in su.execute(query, [watched])}
            return {f: calls.get(f, 0) - before.get(f, 0) for f in watched}

        assert reply("60111111114") == {"_enroll_leads": 0, "stop_sequences_for_reply": 1, "_skip_messages": 0,
                                        "_record_enrollment_count_deltas": 0}
        before = {r["funcname"]: r["calls"] for r in su.execute(query, [watched])}
        assert reply("60111111113") == {"_enroll_leads": 0, "stop_sequences_for_reply": 1, "_skip_messages": 1,
                                        "_record_enrollment_count_deltas": 1}
        assert [r["status"] for r in su.execute(
            "SELECT status FROM sequence_enrollments WHERE contact_phone = '60111111113'")] == ["stopped"]
        raise psycopg.Rollback(tx)


def test_a_completion_never_waits_for_the_contacts_enrollment(connect_committed):
    """A sender completing a step message records the settled step; it does not write the
    enrollment, whose row a tick's chunk or a stop may hold for seconds."""
    c, holder = connect_committed(), connect_committed()
    uid = make_user(c)
    make_device(c, uid)
    sid = make_sequence(c, uid, trigger="nowait", delay_hours=0)
    add_lead(c, uid, "60177777777", "nowait")
    assert activate(c) == 1
    [m] = messages(c, sid)
    with holder.transaction():
        holder.execute("SELECT 1 FROM sequence_enrollments WHERE sequence_id = %s FOR UPDATE", [sid])
        c.execute("SET lock_timeout = '5s'")
        finish(c, [m["id"]])
        c.execute("RESET lock_timeout")
    assert activate(c) == 1 and [x["status"] for x in messages(c, sid)] == ["sent", "pending"]


def test_completion_removes_the_trigger_and_chaining_enrolls_the_next_sequence(db):
    uid = make_user(db)
    make_device(db, uid)
    follow = make_sequence(db, uid, trigger="followup", steps=1)
    promo = make_sequence(db, uid, trigger="promo", steps=2, delay_hours=0)
    db.execute("UPDATE sequence_steps SET chain_sequence_id = %s WHERE sequence_id = %s AND day_number = 2",
               [follow, promo])
    lid = add_lead(db, uid, "60111111111", "vip,promo")
    for _ in range(2):
        assert activate(db) == 1
        finish(db, [m["id"] for m in messages(db, promo) if m["status"] == "pending"])
    assert db.execute("SELECT complete_finished_enrollments() AS n").fetchone()["n"] == 1
    assert enrollment(db, promo, "60111111111")["status"] == "completed"
    assert db.execute("SELECT trigger FROM leads WHERE id = %s", [lid]).fetchone()["trigger"] == "followup,vip"
    assert enrollment(db, follow, "60111111111")["status"] == "active"
    assert activate(db) == 1
    finish(db, [messages(db, follow)[0]["id"]])
    assert db.execute("SELECT complete_finished_enrollments() AS n").fetchone()["n"] == 1
    assert db.execute("SELECT trigger FROM leads WHERE id = %s", [lid]).fetchone()["trigger"] == "vip"
    completed = db.execute("SELECT count(*) AS n FROM sequence_contacts WHERE status = 'completed' "
                           "AND contact_phone = '60111111111'").fetchone()["n"]
    assert completed == 2


def test_reply_stops_sequences_that_say_so(db):
    uid = make_user(db)
    make_device(db, uid)
    stops = make_sequence(db, uid, trigger="a")
    keeps = make_sequence(db, uid, trigger="b", stop_on_reply=False)
    lid = add_lead(db, uid, "60111111111", "a,b")
    assert activate(db) == 2
    db.execute("UPDATE leads SET replied_at = now() + interval '1 second' WHERE id = %s", [lid])
    assert enrollment(db, stops, "60111111111")["status"] == "stopped"
    assert enrollment(db, stops, "60111111111")["stop_reason"] == "reply"
    assert enrollment(db, keeps, "60111111111")["status"] == "active"
    assert [m["status"] for m in messages(db, stops)] == ["skipped"]
    assert [m["status"] for m in messages(db, keeps)] == ["pending"]
    assert db.execute("SELECT stop_sequences_for_reply(%s, '60111111111') AS n", [uid]).fetchone()["n"] == 0


def test_opt_out_stops_every_sequence_and_blocks_enrollment(db):
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid, stop_on_reply=False)
    add_lead(db, uid, "60111111111", "promo")
    assert activate(db) == 1
    db.execute("INSERT INTO opt_outs (user_id, phone) VALUES (%s, '60111111111'), (%s, '60111111112')", [uid, uid])
    assert enrollment(db, sid, "60111111111")["stop_reason"] == "opt_out"
    assert [m["status"] for m in messages(db, sid)] == ["skipped"]
    add_lead(db, uid, "60111111112", "promo")
    assert enrollment(db, sid, "60111111112") is None


def test_deactivation_holds_and_reactivation_resumes(db):
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid, delay_hours=0)
    add_lead(db, uid, "60111111111", "promo")
    add_lead(db, uid, "60111111112", "promo")
    db.execute("UPDATE sequence_enrollments SET next_due_at = now() + interval '1 hour' "
               "WHERE contact_phone = '60111111112'")
    assert activate(db) == 1
    db.execute("SELECT set_sequence_status(%s, %s, 'inactive')", [uid, sid])
    assert db.execute("SELECT held FROM broadcast_messages WHERE sequence_id = %s", [sid]).fetchone()["held"]
    make_due(db, sid, "60111111112")
    assert activate(db) == 0
    db.execute("SELECT set_sequence_status(%s, %s, 'active')", [uid, sid])
    assert not db.execute("SELECT held FROM broadcast_messages WHERE sequence_id = %s", [sid]).fetchone()["held"]
    assert activate(db) == 1


def test_device_choice_own_device_then_lowest_score_spread(db):
    uid = make_user(db)
    own = make_device(db, uid)
    busy = make_device(db, uid)
    idle = make_device(db, uid)
    idle2 = make_device(db, uid)
    offline = make_device(db, uid, status="offline")
    record_sends(db, own, 60)
    record_sends(db, busy, 70)
    sid = make_sequence(db, uid)
    add_lead(db, uid, "60111111111", "promo", device_id=idle)      # own device online, idle: used
    add_lead(db, uid, "60111111112", "promo", device_id=own)       # own device over 50 this hour
    add_lead(db, uid, "60111111113", "promo", device_id=offline)   # own device offline
    assert activate(db) == 3
    chosen = {m["recipient_phone"]: m["device_id"] for m in messages(db, sid)}
    assert chosen["60111111111"] == idle
    assert {chosen["60111111112"], chosen["60111111113"]} == {idle, idle2}   # spread, lowest score first
    assert messages(db, sid)[0]["content"] == "Hi Ann, day 1"


def test_a_sequence_with_a_device_set_sends_only_from_those_devices(db):
    uid = make_user(db)
    outside, chosen, chosen2, paused = (make_device(db, uid) for _ in range(4))
    db.execute("SELECT set_devices_paused(%s, %s, true)", [uid, [paused]])
    sid = make_sequence(db, uid, device_ids=[chosen, chosen2, paused])
    assert db.execute("SELECT sequence_definition(%s, %s)->'device_ids' AS d", [uid, sid]).fetchone()["d"] == \
        [chosen, chosen2, paused]
    add_lead(db, uid, "60111111111", "promo", device_id=outside)   # own device not in the set
    add_lead(db, uid, "60111111112", "promo", device_id=chosen2)   # own device in the set: used
    add_lead(db, uid, "60111111113", "promo")                      # pool lead
    add_lead(db, uid, "60111111114", "promo", device_id=paused)    # in the set but paused
    assert activate(db) == 4
    used = {m["recipient_phone"]: m["device_id"] for m in messages(db, sid)}
    assert used["60111111112"] == chosen2
    assert set(used.values()) <= {chosen, chosen2}
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not one of your devices"), db.transaction():
        make_sequence(db, uid, trigger="other", device_ids=[make_device(db, make_user(db))])


def test_no_available_device_means_the_step_waits(db):
    uid = make_user(db)
    make_device(db, uid, status="offline")
    sid = make_sequence(db, uid)
    add_lead(db, uid, "60111111111", "promo")
    assert activate(db) == 0
    assert enrollment(db, sid, "60111111111")["steps_done"] == 0


def expected_flows(conn, sid, day_from=None, day_to=None):
    """The per-flow figures counted from the rows themselves (what the rollups must equal)."""
    return conn.execute("""
        SELECT st.id AS step_id,
               count(*) FILTER (WHERE c.status = 'sent' AND c.sequence_stepid = st.id AND in_range) AS done_send,
               count(*) FILTER (WHERE c.status = 'failed' AND c.sequence_stepid = st.id AND in_range) AS failed_send,
               count(*) FILTER (WHERE (c.status = 'active' AND c.sequence_stepid = st.id)
                                   OR (c.status = 'pending' AND c.current_step <= st.day_number)) AS remaining_send
          FROM sequence_steps st
          JOIN sequences s ON s.id = st.sequence_id
          JOIN users u ON u.id = s.user_id
          LEFT JOIN LATERAL (
            SELECT x.*, ((x.completed_at AT TIME ZONE u.timezone)::date
                         BETWEEN coalesce(%(f)s::date, '-infinity') AND coalesce(%(t)s::date, 'infinity')) AS in_range
              FROM sequence_contacts x WHERE x.sequence_id = st.sequence_id) c ON true
         WHERE st.sequence_id = %(sid)s GROUP BY st.id, st.day_number ORDER BY st.day_number""",
                        {"sid": sid, "f": day_from, "t": day_to}).fetchall()


def flows(conn, uid, sid, day_from=None, day_to=None):
    return conn.execute("SELECT step_id, done_send, failed_send, remaining_send, should_send FROM "
                        "sequence_flows(%s, %s, %s, %s)", [uid, sid, day_from, day_to]).fetchall()


def test_per_flow_counts_equal_the_rows(db):
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid, steps=3, delay_hours=0)
    for i in range(12):
        add_lead(db, uid, f"6013{i:07d}", "promo")
    assert activate(db) == 12
    db.execute("SELECT fold_sequence_counters()")                 # part folded, part still deltas
    first = messages(db, sid)
    pending = [m["id"] for m in first]
    finish(db, pending[:6])
    finish(db, pending[6:9], ok=False)
    db.execute("UPDATE broadcast_messages SET sent_at = sent_at - interval '3 days' WHERE id = ANY(%s)", [pending[:2]])
    assert activate(db) == 9                                      # those done move to step 2
    finish(db, [m["id"] for m in messages(db, sid) if m["status"] == "pending" and m["day_number"] == 2][:4])
    db.execute("UPDATE leads SET replied_at = now() + interval '1 second' WHERE phone = %s",
               [first[11]["recipient_phone"]])                  # its step 1 is still pending: skipped
    for when in [None, "fold"]:
        if when:
            db.execute("SELECT fold_sequence_counters()")
        got = flows(db, uid, sid)
        want = expected_flows(db, sid)
        assert [(r["step_id"], r["done_send"], r["failed_send"], r["remaining_send"]) for r in got] == \
               [(r["step_id"], r["done_send"], r["failed_send"], r["remaining_send"]) for r in want]
        assert all(r["should_send"] == r["done_send"] + r["failed_send"] + r["remaining_send"] for r in got)
    today = db.execute("SELECT (now() AT TIME ZONE 'Asia/Kuala_Lumpur')::date AS d").fetchone()["d"]
    got = flows(db, uid, sid, today, today)
    want = expected_flows(db, sid, today, today)
    assert [(r["done_send"], r["failed_send"]) for r in got] == [(r["done_send"], r["failed_send"]) for r in want]
    assert got[0]["done_send"] == 4                               # two of the six were sent 3 days ago
    monitor = db.execute("SELECT * FROM sequence_progress_monitor WHERE sequence_id = %s", [sid]).fetchone()
    assert (monitor["contacts"], monitor["stopped"], monitor["active"]) == (12, 1, 11)
    assert monitor["sent"] == sum(r["done_send"] for r in flows(db, uid, sid))
    failed = db.execute("SELECT count(*) AS n FROM failed_flows_monitor WHERE sequence_id = %s", [sid]).fetchone()
    assert failed["n"] == monitor["failed"] == 4                  # 3 failed + 1 skipped by the reply
    assert db.execute(DUPLICATES).fetchall() == []


def test_flow_contacts_are_the_ones_counted(db):
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid, steps=2)
    for i in range(5):
        add_lead(db, uid, f"6014{i:07d}", "promo")
    activate(db)
    ids = [m["id"] for m in messages(db, sid)]
    finish(db, ids[:2])
    finish(db, ids[2:3], ok=False)
    s1, s2 = steps_of(db, sid)
    got = {(s, k): db.execute("SELECT count(*) AS n FROM sequence_flow_contacts(%s, %s, %s)",
                              [uid, s, k]).fetchone()["n"] for s in (s1, s2) for k in ("done", "failed", "remaining")}
    figures = {r["step_id"]: r for r in flows(db, uid, sid)}
    for (step, kind), n in got.items():
        assert n == figures[step][f"{kind}_send"]
    other = make_user(db)
    assert db.execute("SELECT count(*) AS n FROM sequence_flow_contacts(%s, %s, 'done')", [other, s1]).fetchone()["n"] == 0


def test_builder_generates_triggers_and_rejects_bad_input(db):
    uid = make_user(db)
    target = make_sequence(db, uid, trigger="next", steps=1)
    sid = db.execute("SELECT save_sequence(%s, NULL, %s) AS id", [uid, json.dumps({
        "name": "Welcome", "trigger": " Welcome ", "steps": [
            {"day_number": 1, "content": "a"}, {"day_number": 3, "content": "b", "trigger": "custom"},
            {"day_number": 2, "content": "c", "chain_sequence_id": None},
            {"day_number": 5, "content": "d", "chain_sequence_id": target}]})]).fetchone()["id"]
    d = db.execute("SELECT sequence_definition(%s, %s) AS d", [uid, sid]).fetchone()["d"]
    assert d["trigger"] == "welcome"
    assert [(s["day_number"], s["trigger"], s["next_trigger"], s["is_entry_point"], float(s["trigger_delay_hours"]))
            for s in d["steps"]] == [(1, "welcome", "welcome_day2", True, 24.0), (2, "welcome_day2", "custom", False, 24.0),
                                     (3, "custom", "welcome_day5", False, 24.0), (5, "welcome_day5", "next", False, 0.0)]
    assert d["schedule_tolerance_minutes"] == 10 and d["allow_reentry"] is False   # the replaced system's window
    for bad in [{"name": "x", "trigger": "a b", "steps": []},
                {"name": "", "trigger": "ok", "steps": []},
                {"name": "x", "trigger": "ok", "steps": [{"day_number": 32, "content": "a"}]},
                {"name": "x", "trigger": "ok", "steps": [{"day_number": 1, "content": "a"}, {"day_number": 1, "content": "b"}]},
                {"name": "x", "trigger": "ok", "steps": [{"day_number": 1, "content": " "}]},
                {"name": "x", "trigger": "ok", "min_delay_seconds": 9, "max_delay_seconds": 3, "steps": []},
                {"name": "x", "trigger": "ok", "schedule_time": "25:99", "steps": []},
                {"name": "x", "trigger": "ok", "steps": {"day_number": 1}},
                {"name": "x", "trigger": "ok", "schedule_tolerance_minutes": 721, "steps": []},
                {"name": "x", "trigger": "ok", "steps": [{"day_number": 1, "content": "a", "trigger_delay_hours": -1}]},
                {"name": "x", "trigger": "ok", "steps": [{"day_number": 1, "content": "a", "chain_sequence_id": 10 ** 12}]},
                {"name": "x", "trigger": "ok", "steps": [{"day_number": "x", "content": "a"}]}]:
        with pytest.raises(psycopg.errors.InvalidParameterValue), db.transaction():
            db.execute("SELECT save_sequence(%s, NULL, %s)", [uid, json.dumps(bad)])
    other = make_user(db)
    assert db.execute("SELECT save_sequence(%s, %s, %s) AS id", [other, sid, json.dumps(
        {"name": "x", "trigger": "x"})]).fetchone()["id"] is None
    assert db.execute("SELECT set_sequence_status(%s, %s, 'active') AS ok", [other, sid]).fetchone()["ok"] is False
    assert db.execute("SELECT delete_sequence(%s, %s) AS ok", [other, sid]).fetchone()["ok"] is False


def test_removing_a_step_moves_waiting_contacts_on(db):
    uid = make_user(db)
    sid = make_sequence(db, uid, steps=3)
    s1, s2, s3 = steps_of(db, sid)
    add_lead(db, uid, "60111111111", "promo")
    db.execute("UPDATE sequence_enrollments SET next_step_id = %s", [s2])
    definition = db.execute("SELECT sequence_definition(%s, %s) AS d", [uid, sid]).fetchone()["d"]
    definition["steps"] = [s for s in definition["steps"] if s["day_number"] != 2]
    db.execute("SELECT save_sequence(%s, %s, %s)", [uid, sid, json.dumps(definition)])
    assert enrollment(db, sid, "60111111111")["next_step_id"] == s3
    assert steps_of(db, sid) == [s1, s3]


def test_tick_procedure_runs_the_whole_cycle(connect_committed):
    c = connect_committed()
    uid = make_user(c)
    make_device(c, uid)
    sid = make_sequence(c, uid, trigger="tick", steps=1)
    add_lead(c, uid, "60155555555", "tick")
    c.execute("CALL sequence_tick()")
    [m] = messages(c, sid)
    finish(c, [m["id"]])
    c.execute("CALL sequence_tick()")
    assert enrollment(c, sid, "60155555555")["status"] == "completed"
    assert c.execute("SELECT count(*) AS n FROM sequence_counter_deltas WHERE sequence_id = %s",
                     [sid]).fetchone()["n"] > 0   # the completion's own delta, folded next tick
    c.execute("CALL sequence_tick()")
    assert c.execute("SELECT count(*) AS n FROM sequence_counter_deltas").fetchone()["n"] == 0
    assert c.execute("SELECT sent, completed FROM sequence_progress_monitor WHERE sequence_id = %s",
                     [sid]).fetchone() == {"sent": 1, "completed": 1}


def test_tick_starts_no_chunk_past_its_budget(connect_committed):
    """A minute's tick stays inside its budget: a chunk starts only while one more fits."""
    c = connect_committed()
    uid = make_user(c)
    make_device(c, uid, hourly_limit=1000)
    sid = make_sequence(c, uid, trigger="budget", steps=1)
    for i in range(3):
        add_lead(c, uid, f"6016000000{i}", "budget")
    c.execute("CALL sequence_tick(1, '0 seconds')")
    assert messages(c, sid) == []                 # no room for even one chunk
    c.execute("CALL sequence_tick(1, '1 minute')")
    assert len(messages(c, sid)) == 3             # with room, chunk after chunk until none is due
