"""message_outcome_counts (the overview's rollup) always equals counting broadcast_messages: through
inserts, claims, completes, fails, stuck recovery, receipts, moved timestamps and deletes."""
from tests.factories import make_device, make_user
from tests.test_dispatch_sql import claim, lease, queue

COUNTED = """SELECT user_id, date_bin('15 minutes', coalesce(sent_at, failed_at), timestamptz '2000-01-01 00:00+00') AS bucket,
                    count(*) FILTER (WHERE status = 'sent') AS sent, count(*) FILTER (WHERE status = 'failed') AS failed
               FROM broadcast_messages WHERE status IN ('sent', 'failed') GROUP BY 1, 2"""


def assert_rollup_matches(db):
    rolled = {(r["user_id"], r["bucket"]): (r["sent"], r["failed"]) for r in db.execute(
        """SELECT user_id, bucket, sum(sent) AS sent, sum(failed) AS failed FROM message_outcome_counts
            GROUP BY 1, 2 HAVING sum(sent) <> 0 OR sum(failed) <> 0""")}
    counted = {(r["user_id"], r["bucket"]): (r["sent"], r["failed"]) for r in db.execute(COUNTED)}
    assert rolled == counted
    return counted


def test_rollup_follows_every_path(db):
    a, b = make_user(db), make_user(db)
    da, db_ = make_device(db, a), make_device(db, b)
    lease(db, [da, db_])
    queue(db, a, da, 6)
    queue(db, b, db_, 3)
    ids = [r["id"] for r in claim(db)]
    assert assert_rollup_matches(db) == {}                     # pending -> queued counts nothing
    db.execute("SELECT complete_messages('s1', %s, %s)", [ids[:4], [f"w{i}" for i in ids[:4]]])
    db.execute("SELECT fail_messages('s1', %s, %s)", [ids[4:6], ["x", "y"]])
    db.execute("SELECT record_receipts(%s, %s, 'read', now())", [da, ["w" + str(i) for i in ids[:4]]])
    db.execute("UPDATE broadcast_messages SET claimed_at = now() - interval '1 hour' WHERE status = 'queued'")
    db.execute("SELECT recover_stuck()")
    counted = assert_rollup_matches(db)
    assert sum(s for s, _ in counted.values()) == 4 and sum(f for _, f in counted.values()) == 5

    # Rows set to sent by hand at past times, a moved timestamp, and deletions (a campaign or an owner going away).
    db.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, scheduled_at)
                  SELECT %s, %s, '601' || lpad(g::text, 8, '0'), 'old', now() - g * interval '7 minutes'
                    FROM generate_series(1, 40) g""", [a, da])
    db.execute("""UPDATE broadcast_messages SET status = 'sent', claimed_at = scheduled_at, claimed_by = 'x',
                                                sent_at = scheduled_at WHERE content = 'old'""")
    assert_rollup_matches(db)
    db.execute("UPDATE broadcast_messages SET sent_at = sent_at - interval '2 days' WHERE content = 'old' AND sent_at > now() - interval '1 hour'")
    assert_rollup_matches(db)
    db.execute("DELETE FROM broadcast_messages WHERE id IN (SELECT id FROM broadcast_messages WHERE status = 'sent' LIMIT 10)")
    assert_rollup_matches(db)
    db.execute("DELETE FROM users WHERE id = %s", [b])
    assert_rollup_matches(db)


def test_overview_reads_the_rollup_in_the_owners_zone(db):
    uid = make_user(db, timezone="Asia/Kolkata")                # +05:30: midnight falls on a half hour
    dev = make_device(db, uid)
    db.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, scheduled_at)
                  VALUES (%s, %s, '60123456789', 'a', _owner_day_start(%s) + interval '1 minute'),
                         (%s, %s, '60123456780', 'b', _owner_day_start(%s) - interval '1 minute')""", [uid, dev, uid] * 2)
    db.execute("""UPDATE broadcast_messages SET status = 'sent', claimed_at = scheduled_at, claimed_by = 'x',
                                                sent_at = scheduled_at WHERE user_id = %s""", [uid])
    today = db.execute("SELECT sent, failed FROM dashboard_today(%s)", [uid]).fetchone()
    assert (today["sent"], today["failed"]) == (1, 0)
