"""The hot queue and the partitioned history: settled messages leave the queue, retention drops
whole weeks of history, and the rollups keep the dropped weeks' figures."""
import threading
import time

from tests.factories import make_device, make_user
from tests.test_dispatch_sql import claim, lease, queue
from tests.test_message_outcome_counts import COUNTED


def partition_of(db, ids):
    return {r["id"]: r["part"] for r in db.execute(
        "SELECT id, tableoid::regclass::text AS part FROM broadcast_messages WHERE id = ANY(%s)", [ids])}


def test_settled_messages_move_from_the_queue_to_their_week(db):
    uid = make_user(db)
    dev = make_device(db, uid)
    lease(db, [dev])
    queue(db, uid, dev, 3)
    ids = [r["id"] for r in claim(db)]
    assert set(partition_of(db, ids).values()) == {"message_queue"}
    db.execute("SELECT complete_messages('s1', %s, %s)", [ids[:2], ["w1", "w2"]])
    db.execute("SELECT fail_messages('s1', %s, %s)", [ids[2:], ["no"]])
    week = db.execute("SELECT 'message_history_' || to_char(date_trunc('week', now(), 'UTC') AT TIME ZONE 'UTC', 'YYYYMMDD') AS w").fetchone()["w"]
    assert set(partition_of(db, ids).values()) == {week}
    assert db.execute("SELECT count(*) AS n FROM message_queue").fetchone()["n"] == 0
    # Receipts still find a settled message by its WhatsApp id.
    db.execute("SELECT record_receipts(%s, %s, 'read', now())", [dev, ["w1"]])
    assert db.execute("SELECT read_at IS NOT NULL AS r FROM broadcast_messages WHERE id = %s", [ids[0]]).fetchone()["r"]


def test_retention_drops_whole_weeks_and_the_rollups_keep_them(db):
    uid = make_user(db)
    dev = make_device(db, uid)
    old = db.execute("SELECT now() - interval '200 days' AS t").fetchone()["t"]
    made = db.execute("SELECT created FROM maintain_message_history(%s, 0)", [old]).fetchone()["created"]
    assert len(made) == 1                                     # that week, ahead of nothing
    db.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, scheduled_at)
                  VALUES (%s, %s, '60123456789', 'old', %s), (%s, %s, '60123456780', 'new', now())""",
               [uid, dev, old, uid, dev])
    db.execute("""UPDATE broadcast_messages SET status = 'sent', claimed_at = scheduled_at, claimed_by = 'x',
                                                sent_at = scheduled_at WHERE user_id = %s""", [uid])
    rolled = db.execute("SELECT sum(sent) AS n FROM message_outcome_counts WHERE user_id = %s", [uid]).fetchone()["n"]
    assert rolled == 2

    assert db.execute("SELECT setting('message_retention_days') AS d").fetchone()["d"] == 180   # the default
    db.execute("UPDATE settings SET value = 365 WHERE name = 'message_retention_days'")   # longer: nothing to drop
    assert db.execute("SELECT dropped FROM maintain_message_history()").fetchone()["dropped"] == []
    db.execute("UPDATE settings SET value = 180 WHERE name = 'message_retention_days'")
    r = db.execute("SELECT created, dropped FROM maintain_message_history()").fetchone()
    assert r["dropped"] == made and r["created"] == []          # this week and 4 ahead already exist
    assert [m["content"] for m in db.execute("SELECT content FROM broadcast_messages WHERE user_id = %s", [uid])] == ["new"]
    assert db.execute("SELECT to_regclass(%s) AS t", [made[0]]).fetchone()["t"] is None
    # The overview's rollup still counts the dropped message; the raw rows no longer do.
    assert db.execute("SELECT sum(sent) AS n FROM message_outcome_counts WHERE user_id = %s", [uid]).fetchone()["n"] == 2
    assert sum(r["sent"] for r in db.execute(COUNTED) if r["user_id"] == uid) == 1


def test_maintenance_creates_the_weeks_ahead_and_runs_as_a_job(db):
    ahead = db.execute("SELECT now() + interval '10 weeks' AS t").fetchone()["t"]
    made = db.execute("SELECT created FROM maintain_message_history(%s, 1)", [ahead]).fetchone()["created"]
    assert len(made) == 2
    assert db.execute("SELECT created FROM maintain_message_history(%s, 1)", [ahead]).fetchone()["created"] == []
    assert db.execute("SELECT command FROM app_jobs() WHERE name = 'message-history'").fetchone()["command"] \
        == "SELECT maintain_message_history()"


def test_a_completion_racing_stuck_recovery_leaves_the_settled_row_alone(connect_committed):
    """Stuck recovery settles (moves) a row while its sender completes it: the completion waits,
    then finds the row no longer queued instead of failing on the moved row."""
    setup = connect_committed()
    uid = make_user(setup)
    dev = make_device(setup, uid)
    lease(setup, [dev], sender="race")
    queue(setup, uid, dev, 1)
    [row] = claim(setup, sender="race")
    setup.execute("UPDATE broadcast_messages SET claimed_at = now() - interval '1 hour' WHERE id = %s", [row["id"]])
    sweeper, sender = connect_committed(), connect_committed()
    sweeper.execute("BEGIN")
    assert sweeper.execute("SELECT recover_stuck() AS n").fetchone()["n"] == 1   # holds the row, moved
    result = {}
    t = threading.Thread(target=lambda: result.update(n=sender.execute(
        "SELECT complete_messages('race', %s, %s) AS n", [[row["id"]], ["w"]]).fetchone()["n"]))
    t.start()
    deadline = time.monotonic() + 60
    while not setup.execute("""SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'
                                                AND query LIKE '%%complete_messages%%') AS w""").fetchone()["w"]:
        assert time.monotonic() < deadline, "the completion never waited on the sweeper's lock"
        time.sleep(0.05)
    sweeper.execute("COMMIT")
    t.join(60)
    assert result == {"n": 0}
    assert setup.execute("SELECT status FROM broadcast_messages WHERE id = %s", [row["id"]]).fetchone()["status"] == "failed"


def test_maintenance_leaves_a_step_to_the_next_run_rather_than_stop_completions_behind_a_long_read(connect_committed):
    """Making or dropping a week locks message_history exclusively. Queued behind an analyst's long
    read, that lock request would hold up every completion until the read ends; each step instead
    gives up after a moment, and the next run, the read over, does it."""
    reader, maint, c = connect_committed(), connect_committed(), connect_committed()
    uid = make_user(c)
    dev = make_device(c, uid)
    old = c.execute("SELECT now() - interval '200 days' AS t").fetchone()["t"]
    old_week = c.execute("SELECT created FROM maintain_message_history(%s, 0)", [old]).fetchone()["created"]
    assert len(old_week) == 1
    lease(c, [dev], sender="long-read")
    queue(c, uid, dev, 1)
    ids = [r["id"] for r in claim(c, sender="long-read")]
    maint_pid = maint.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"]
    made, outcome = [], {}

    def run_maintenance():
        outcome["result"] = maint.execute("SELECT * FROM maintain_message_history(now(), 8)").fetchone()

    try:
        with reader.transaction():
            reader.execute("SELECT count(*) FROM broadcast_messages")   # an analyst's read, still open
            worker = threading.Thread(target=run_maintenance)
            worker.start()
            deadline = time.monotonic() + 30
            while worker.is_alive() and not c.execute("SELECT pg_blocking_pids(%s) <> '{}' AS b", [maint_pid]).fetchone()["b"]:
                assert time.monotonic() < deadline, "the maintenance never asked for its lock"
                time.sleep(0.01)
            c.execute("SET lock_timeout = '10s'")   # queued behind the maintenance, the completion fails here
            c.execute("SELECT complete_messages('long-read', %s, %s)", [ids, ["w-long-read"]])
            c.execute("RESET lock_timeout")
            worker.join(30)
            assert outcome["result"] == {"created": [], "dropped": []}   # both left to the next run
        result = maint.execute("SELECT * FROM maintain_message_history(now(), 8)").fetchone()   # the read over
        made = result["created"]
        assert result["dropped"] == old_week and len(made) >= 4   # weeks 5 to 8 ahead
        assert c.execute("SELECT status FROM broadcast_messages WHERE id = %s", ids).fetchone()["status"] == "sent"
    finally:
        c.execute("RESET lock_timeout")
        for name in made + old_week:   # back as the module's other tests expect the weeks
            if c.execute("SELECT to_regclass(%s) IS NOT NULL AS e", [name]).fetchone()["e"]:
                c.execute(f"ALTER TABLE message_history DETACH PARTITION {name}")
                c.execute(f"DROP TABLE {name}")
