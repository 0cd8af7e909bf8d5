"""The queue's figures on the overview (dashboard_today's pending and in flight) and the monitoring page
(monitor_queue_depth's per device), both from device_queue_counts, always equal counting the queue:
through enqueues, holds, claims, completions, failures, releases, skips, stuck recovery, a moved or
deleted device, deletes and a deleted owner, folded or not; every apply counts what ran before the
rollup's writers, holding no claim meanwhile. And they cost the same however many messages wait."""
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories import make_device, make_user
from tests.test_dispatch_sql import claim, lease
from tests.superuser import superuser
from tests.test_plan_guards import MESSAGE_TABLES, Plans, rows_read


def enqueue(db, user_id, device_id, n, held=False, first=1, later=False):
    """n messages through the one writer of new rows, as every enqueuer writes them (later: due in an hour)."""
    return [r["id"] for r in db.execute(
        """SELECT id FROM _enqueue_messages(array(
             SELECT ROW(%s, %s, NULL, '6013' || lpad(g::text, 7, '0'), NULL, 'text', 'hi ' || g, NULL, NULL, NULL,
                        CASE WHEN %s THEN now() + interval '1 hour' END, %s, NULL, NULL, NULL, NULL, NULL)::message_draft
               FROM generate_series(%s::int, %s::int) g))""",
        [user_id, device_id, later, held, first, first + n - 1])]


def queue_figures(db, user_id):
    today = db.execute("SELECT pending, in_flight FROM dashboard_today(%s)", [user_id]).fetchone()
    return today["pending"], today["in_flight"]


def counted(db, user_id):
    """The overview's figures counted from the rows."""
    row = db.execute("""SELECT count(*) FILTER (WHERE status = 'pending' AND NOT held) AS pending,
                               count(*) FILTER (WHERE status = 'queued') AS in_flight
                          FROM message_queue WHERE user_id = %s AND device_id IS NOT NULL""", [user_id]).fetchone()
    return row["pending"], row["in_flight"]


def counted_per_device(db, user_id):
    """The monitoring page's figures counted from the rows, device by device."""
    return db.execute("""
        SELECT d.id AS device_id,
               count(m.id) FILTER (WHERE m.status = 'pending' AND NOT m.held AND m.scheduled_at <= now()) AS due_now,
               count(m.id) FILTER (WHERE m.status = 'pending' AND NOT m.held AND m.scheduled_at > now()) AS later,
               count(m.id) FILTER (WHERE m.status = 'queued') AS in_flight,
               min(m.scheduled_at) FILTER (WHERE m.status = 'pending' AND NOT m.held) AS oldest
          FROM user_devices d LEFT JOIN message_queue m ON m.device_id = d.id
         WHERE d.user_id = %s GROUP BY d.id ORDER BY d.id""", [user_id]).fetchall()


def per_device_figures(db, user_id):
    return db.execute("""SELECT device_id, due_now, scheduled_later AS later, in_flight, oldest_due_at AS oldest
                           FROM monitor_queue_depth(%s) ORDER BY device_id""", [user_id]).fetchall()


def assert_figures_match(db, *users):
    for u in users:
        assert queue_figures(db, u) == counted(db, u)
        assert per_device_figures(db, u) == counted_per_device(db, u)


def test_queue_figures_follow_every_path(db):
    a, b = make_user(db), make_user(db)
    a1, a2, b1 = make_device(db, a), make_device(db, a), make_device(db, b)
    lease(db, [a1, a2, b1])
    enqueue(db, a, a1, 6)
    held = enqueue(db, a, a2, 4, held=True, first=7)
    enqueue(db, a, None, 2, first=11)                         # no device yet: no device's queue
    enqueue(db, b, b1, 5)
    enqueue(db, a, a2, 2, first=21, later=True)               # waiting, not due yet
    assert queue_figures(db, a) == (8, 0) and queue_figures(db, b) == (5, 0)
    db.execute("SELECT _hold_messages(%s, false)", [held[:3]])      # resumed
    assert_figures_match(db, a, b)

    ids = [r["id"] for r in claim(db, per_device=4)]
    assert queue_figures(db, a) == (4, 7)                     # a claim moves rows from waiting to in flight
    assert_figures_match(db, a, b)
    db.execute("SELECT complete_messages('s1', %s, %s)", [ids[:3], ["w1", "w2", "w3"]])
    db.execute("SELECT fail_messages('s1', %s, %s)", [ids[3:5], ["x", "y"]])
    db.execute("SELECT release_messages('s1', %s, '0 seconds')", [ids[5:6]])
    db.execute("SELECT release_messages('s1', %s, '1 hour')", [ids[6:7]])     # back, and later
    assert_figures_match(db, a, b)
    db.execute("SELECT fold_device_queue_counts()")            # folding changes no figure
    assert_figures_match(db, a, b)

    db.execute("UPDATE broadcast_messages SET claimed_at = now() - interval '1 hour' WHERE status = 'queued'")
    db.execute("SELECT recover_stuck()")
    db.execute("SELECT _hold_messages(%s, true)", [held[3:]])       # still held: no change
    pending_a = [r["id"] for r in db.execute(
        "SELECT id FROM message_queue WHERE user_id = %s AND status = 'pending' ORDER BY id", [a])]
    db.execute("SELECT _skip_messages(%s, 'opted_out')", [pending_a[:1]])
    db.execute("UPDATE broadcast_messages SET device_id = %s WHERE user_id = %s AND device_id IS NULL", [a2, a])
    db.execute("""UPDATE broadcast_messages SET device_id = %s
                   WHERE id = (SELECT min(id) FROM message_queue WHERE device_id = %s AND status = 'pending')""",
               [a2, a1])                                          # moved to another device (a failover)
    assert_figures_match(db, a, b)
    db.execute("DELETE FROM user_devices WHERE id = %s", [a1])      # its waiting rows lose their device
    db.execute("DELETE FROM broadcast_messages WHERE id = %s", [pending_a[-1]])
    assert_figures_match(db, a, b)
    db.execute("SELECT fold_device_queue_counts()")
    assert_figures_match(db, a, b)
    assert db.execute("SELECT count(*) AS n FROM device_queue_counts WHERE device_id = %s", [a1]).fetchone()["n"] == 0
    db.execute("DELETE FROM users WHERE id = %s", [b])
    db.execute("SELECT fold_device_queue_counts()")
    assert_figures_match(db, a)
    assert db.execute("SELECT count(*) AS n FROM device_queue_counts WHERE user_id = %s", [b]).fetchone()["n"] == 0


def test_queue_figures_read_no_waiting_row(module_db_url):
    """Counted on each refresh, the overview and the monitoring page read every waiting row of the owner
    (1M: 148 ms and 167-300 ms, every 1.5-2 s of an open page while a campaign sends); now only what is
    in flight, what waits for a later time, and each device's first waiting row."""
    with superuser(module_db_url) as c, c.transaction(force_rollback=True):   # auto_explain: superuser
        uid = make_user(c)
        devices = [make_device(c, uid) for _ in range(5)]
        lease(c, devices)
        for k, d in enumerate(devices):
            enqueue(c, uid, d, 1000, first=k * 1000 + 1)
        enqueue(c, uid, devices[0], 3, first=9001, later=True)
        claimed = len(claim(c, per_device=10))
        c.execute("ANALYZE message_queue")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as p:
            assert queue_figures(c, uid) == (5003 - claimed, claimed)
        assert p.plans and rows_read(p, MESSAGE_TABLES) <= claimed
        with Plans(c, analyze=True) as p:
            figures = per_device_figures(c, uid)
        assert sum(f["due_now"] for f in figures) == 5000 - claimed and sum(f["later"] for f in figures) == 3
        assert p.plans and rows_read(p, MESSAGE_TABLES) <= claimed + 3 + len(devices)


def test_every_apply_counts_what_ran_before_the_rollups_writers(committed_db_url):
    """Writes that ran the code before this rollup's writers were in place (a migration's first
    apply, a release's old processes meanwhile) are counted from the queue when the apply puts them
    in place: a row written around the one writer is seen, and the apply warns that it was off."""
    from scripts.apply import apply
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        uid = make_user(c)
        device = make_device(c, uid)
        enqueue(c, uid, device, 3)
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                     VALUES (%s, %s, '60139999999', 'written around _enqueue_messages')""", [uid, device])
        assert queue_figures(c, uid) == (3, 0) and counted(c, uid) == (4, 0)
        assert per_device_figures(c, uid)[0]["due_now"] == 3
        apply(committed_db_url)
        assert_figures_match(c, uid)
        assert c.execute("SELECT recount_device_queue() AS off").fetchone()["off"] == 0


def test_the_recount_holds_writes_through_the_table_but_no_claim(committed_db_url):
    """While an apply recounts (until it commits), writes through broadcast_messages wait: none may
    change a count between the count and the commit. The claim, which writes the queue partition
    itself and changes no count here, goes on: sends do not stop for a deploy."""
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        uid = make_user(c)
        device = make_device(c, uid)
        lease(c, [device])
        enqueue(c, uid, device, 4)
        with psycopg.connect(committed_db_url, row_factory=dict_row) as apply_tx:
            apply_tx.execute("SELECT recount_device_queue()")         # its transaction left open
            c.execute("SET lock_timeout = '5s'")
            assert len(claim(c, per_device=2)) == 2
            c.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                c.execute("SELECT _hold_messages(array(SELECT id FROM message_queue WHERE user_id = %s), true)", [uid])
            apply_tx.rollback()
        c.execute("RESET lock_timeout")
        assert counted(c, uid) == (2, 2)
        assert_figures_match(c, uid)
