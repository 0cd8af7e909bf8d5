"""Sequences as the replaced system defined them: the wait after a step, the entry step at once,
the migration that kept existing timings, niche and re-entry, retry of failed steps, the per-contact
page, the stuck check, and fairness between accounts in activation."""
import json
import re
from pathlib import Path

from tests.factories import make_device, make_user
from tests.test_sequences import (DUPLICATES, activate, add_lead, enrollment, finish, make_due, make_sequence, messages,
                                  steps_of)

MIGRATION = Path(__file__).resolve().parent.parent / "db" / "migrations" / "1300_sequence_timing.sql"


def due_in_hours(conn, sid, phone):
    return float(conn.execute("""SELECT round(extract(epoch FROM next_due_at - now()) / 3600, 2) AS h
                                   FROM sequence_enrollments WHERE sequence_id = %s AND contact_phone = %s
                                    AND status = 'active'""", [sid, phone]).fetchone()["h"])


def test_the_wait_comes_after_each_step_and_the_entry_step_goes_at_once(db):
    uid = make_user(db)
    make_device(db, uid)
    # The replaced system's example: day 1 -> 24 h -> day 2 -> 48 h -> day 3 (last step 0).
    sid = db.execute("SELECT save_sequence(%s, NULL, %s) AS id", [uid, json.dumps({
        "name": "drip", "trigger": "drip", "min_delay_seconds": 0, "max_delay_seconds": 0, "steps": [
            {"day_number": 1, "content": "one", "trigger_delay_hours": 24},
            {"day_number": 2, "content": "two", "trigger_delay_hours": 48},
            {"day_number": 3, "content": "three", "trigger_delay_hours": 0}]})]).fetchone()["id"]
    db.execute("SELECT set_sequence_status(%s, %s, 'active')", [uid, sid])
    add_lead(db, uid, "60111111111", "drip")
    assert due_in_hours(db, sid, "60111111111") <= 0            # entered: the entry step is due now
    assert activate(db) == 1
    assert due_in_hours(db, sid, "60111111111") == 24.0         # day 1's wait
    finish(db, [messages(db, sid)[0]["id"]])
    db.execute("UPDATE sequence_enrollments SET next_due_at = now() WHERE sequence_id = %s", [sid])
    assert activate(db) == 1
    assert due_in_hours(db, sid, "60111111111") == 48.0         # day 2's wait
    assert [m["content"] for m in messages(db, sid)] == ["one", "two"]


def test_the_migration_keeps_existing_timings(db):
    """Steps saved with the old meaning (delay before the step) take their successor's delay."""
    uid = make_user(db)
    sid = make_sequence(db, uid, steps=3, active=False)
    db.execute("""UPDATE sequence_steps SET trigger_delay_hours = CASE day_number WHEN 1 THEN 0 WHEN 2 THEN 24 ELSE 48 END
                   WHERE sequence_id = %s""", [sid])
    conversion = re.search(r"^UPDATE sequence_steps.*?;$", MIGRATION.read_text(), re.S | re.M).group(0)
    db.execute(conversion)
    assert [float(r["trigger_delay_hours"]) for r in db.execute(
        "SELECT trigger_delay_hours FROM sequence_steps WHERE sequence_id = %s ORDER BY day_number", [sid])] == \
        [24.0, 48.0, 0.0]


def test_niche_limits_enrollment_and_reentry_is_an_option(db):
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid, steps=1, niche="Cars")
    add_lead(db, uid, "60111111111", "promo")                               # no niche
    db.execute("INSERT INTO leads (user_id, name, phone, niche, trigger) VALUES (%s, 'Bo', '60111111112', "
               "'boats, cars', 'promo')", [uid])
    assert enrollment(db, sid, "60111111111") is None
    assert enrollment(db, sid, "60111111112") is not None

    again = make_sequence(db, uid, trigger="again", steps=1, allow_reentry=True)
    once = make_sequence(db, uid, trigger="once", steps=1)
    lid = add_lead(db, uid, "60111111113", "again,once")
    for _ in range(2):
        assert activate(db) >= 1
        finish(db, [m["id"] for s in (again, once) for m in messages(db, s) if m["status"] == "pending"])
        db.execute("SELECT complete_finished_enrollments()")
        assert "again" not in (db.execute("SELECT trigger FROM leads WHERE id = %s", [lid]).fetchone()["trigger"] or "")
        db.execute("UPDATE leads SET trigger = 'again,once' WHERE id = %s", [lid])   # the trigger set again
    passes = lambda s: [r["status"] for r in db.execute(
        "SELECT status FROM sequence_enrollments WHERE sequence_id = %s ORDER BY id", [s])]
    assert passes(again) == ["completed", "completed", "active"]
    assert passes(once) == ["completed"]
    assert db.execute(DUPLICATES).fetchall() == []                  # the view shows the latest pass


def test_failed_steps_are_retried_as_new_rows_and_the_figures_follow(db):
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid, steps=2)
    for phone in ("60111111111", "60111111112"):
        add_lead(db, uid, phone, "promo")
    assert activate(db) == 2
    first, second = messages(db, sid)
    finish(db, [first["id"]], ok=False)
    finish(db, [second["id"]])
    s1 = steps_of(db, sid)[0]
    flows = lambda: {r["day_number"]: (r["done_send"], r["failed_send"], r["should_send"]) for r in db.execute(
        "SELECT * FROM sequence_flows(%s, %s)", [uid, sid])}
    assert flows()[1] == (1, 1, 2)
    assert db.execute("SELECT retry_failed_steps(%s, %s, NULL) AS n", [make_user(db), sid]).fetchone()["n"] is None
    assert db.execute("SELECT retry_failed_steps(%s, %s, %s) AS n", [uid, sid, s1]).fetchone()["n"] == 1
    assert db.execute("SELECT retry_failed_steps(%s, %s, NULL) AS n", [uid, sid]).fetchone()["n"] == 0  # once
    retry = db.execute("SELECT * FROM broadcast_messages WHERE retry_of = %s", [first["id"]]).fetchone()
    assert (retry["status"], retry["sequence_stepid"], retry["content"]) == ("pending", s1, "Hi Ann, day 1")
    assert flows()[1] == (1, 0, 2)                                   # the retry stands for the failed one
    finish(db, [retry["id"]])
    assert flows()[1] == (2, 0, 2)
    assert db.execute("SELECT status FROM broadcast_messages WHERE id = %s", [first["id"]]).fetchone()["status"] == "failed"
    assert db.execute(DUPLICATES).fetchall() == []


def test_a_contact_with_two_failed_steps_gets_one_retry_at_a_time(db):
    """The queue holds one step in flight per contact: the earliest failed step goes first."""
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid, steps=3)
    add_lead(db, uid, "60111111111", "promo")
    s1, s2, _ = steps_of(db, sid)
    for _ in range(2):
        assert activate(db) == 1
        finish(db, [m["id"] for m in messages(db, sid) if m["status"] == "pending"], ok=False)
        make_due(db, sid, "60111111111")
    retry = lambda: db.execute("SELECT retry_failed_steps(%s, %s, NULL) AS n", [uid, sid]).fetchone()["n"]
    assert retry() == 1
    assert retry() == 0                                              # its step is in flight
    first = db.execute("SELECT id, sequence_stepid FROM broadcast_messages WHERE sequence_id = %s AND status = 'pending'",
                       [sid]).fetchall()
    assert [m["sequence_stepid"] for m in first] == [s1]
    finish(db, [first[0]["id"]])
    assert retry() == 1
    assert db.execute("SELECT sequence_stepid FROM broadcast_messages WHERE sequence_id = %s AND status = 'pending'",
                      [sid]).fetchone()["sequence_stepid"] == s2
    assert db.execute(DUPLICATES).fetchall() == []


def test_the_stuck_check_returns_only_steps_actually_stuck(db):
    uid = make_user(db)
    make_device(db, uid)
    sid = make_sequence(db, uid, steps=1)
    for phone in ("60111111111", "60111111112", "60111111113", "60111111114"):
        add_lead(db, uid, phone, "promo")
    assert activate(db) == 4
    sent, failed, stuck, fresh = [m["id"] for m in messages(db, sid)]
    finish(db, [sent])
    finish(db, [failed], ok=False)
    db.execute("UPDATE broadcast_messages SET claimed_at = now() - interval '10 minutes' WHERE id = ANY(%s)",
               [[sent, failed]])
    db.execute("UPDATE broadcast_messages SET status = 'queued', claimed_by = 't', claimed_at = now() - interval "
               "'6 minutes' WHERE id = %s", [stuck])
    db.execute("UPDATE broadcast_messages SET status = 'queued', claimed_by = 't', claimed_at = now() WHERE id = %s",
               [fresh])
    rows = db.execute("""SELECT * FROM sequence_contacts WHERE processing_device_id IS NOT NULL
                           AND processing_started_at < NOW() - INTERVAL '5 minutes'""").fetchall()
    assert [r["id"] for r in rows] == [stuck]


def account_with_backlog(db, trigger, leads, device_status="online", hours_overdue=0):
    """An account with one device and a one-step sequence whose `leads` contacts are overdue."""
    uid = make_user(db)
    make_device(db, uid, status=device_status)
    sid = make_sequence(db, uid, trigger=trigger, steps=1)
    db.execute("""INSERT INTO leads (user_id, name, phone, trigger)
                  SELECT %s, 'L', (%s + g)::text, %s FROM generate_series(1, %s) g""",
               [uid, 60120000000 + uid * 1000, trigger, leads])
    db.execute("UPDATE sequence_enrollments SET next_due_at = now() - %s * interval '1 hour' WHERE sequence_id = %s",
               [hours_overdue, sid])
    return sid


def test_one_account_backlog_on_offline_devices_does_not_starve_others(db):
    """A big, older backlog of an account whose devices are all offline used to head every chunk:
    locked, never queued, and the tick stopped after that one chunk."""
    big = account_with_backlog(db, "promo", 50, device_status="offline", hours_overdue=2)
    bulk = account_with_backlog(db, "bulk", 50, hours_overdue=1)
    drip = account_with_backlog(db, "drip", 1)

    assert activate(db, 10) == 10
    queued = lambda s: len(messages(db, s))
    assert queued(big) == 0 and queued(drip) == 1 and queued(bulk) == 9   # its share, not the whole chunk
