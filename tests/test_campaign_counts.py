"""The campaign reports read a rollup (campaign_counts) kept by a statement trigger: after any mix of
fan-out, claims, completions, failures, receipts, retries, skips, device deletion and cancellation it
equals counting the messages, and it keeps a campaign's figures when retention drops its weeks."""
from tests.factories import make_device, make_user
from tests.test_campaigns import campaign, expand_all, lead, mark, messages, running_campaign
from tests.test_dispatch_sql import claim, lease

# What the reports counted from the messages before the rollup: the reference.
RECOUNT = """
SELECT b.device_id, count(*) AS assigned,
       count(*) FILTER (WHERE x.current) AS should_send,
       count(*) FILTER (WHERE x.current AND b.status = 'sent') AS sent,
       count(*) FILTER (WHERE x.current AND b.status = 'failed') AS failed,
       count(*) FILTER (WHERE x.current AND b.status = 'skipped') AS skipped,
       count(*) FILTER (WHERE x.current AND b.status IN ('pending', 'queued')) AS pending,
       count(*) FILTER (WHERE x.current AND b.delivered_at IS NOT NULL) AS delivered,
       count(*) FILTER (WHERE x.current AND b.read_at IS NOT NULL) AS read,
       count(*) FILTER (WHERE NOT x.current) AS moved_away
  FROM broadcast_messages b
 CROSS JOIN LATERAL (SELECT NOT EXISTS (SELECT 1 FROM broadcast_messages r WHERE r.retry_of = b.id) AS current) x
 WHERE b.campaign_id = %s GROUP BY b.device_id"""
COLUMNS = ["assigned", "should_send", "sent", "failed", "skipped", "pending", "delivered", "read", "moved_away"]


TOTALS = ["should_send", "sent", "failed", "skipped", "pending", "delivered", "read"]


def reported(db, cid):
    """Per device, as the campaign's device report shows it; the campaign's totals (campaign_report, kept
    apart in campaign_totals) must be their sums."""
    per_device = {r["device_id"]: {k: r[k] for k in COLUMNS}
                  for r in db.execute("SELECT * FROM campaign_device_report WHERE campaign_id = %s", [cid])}
    totals = db.execute("SELECT * FROM campaign_report WHERE campaign_id = %s", [cid]).fetchone()
    assert {k: totals[k] for k in TOTALS} == {k: sum(d[k] for d in per_device.values()) for k in TOTALS}
    return per_device


def recounted(db, cid):
    return {r["device_id"]: {k: r[k] for k in COLUMNS} for r in db.execute(RECOUNT, [cid])}


def test_the_rollup_equals_counting_the_messages_through_a_campaigns_life(db):
    uid = make_user(db)
    d1, d2, d3 = (make_device(db, uid) for _ in range(3))
    for i in range(12):
        lead(db, uid, (d1, d2)[i % 2], f"6014{i:02d}55555")
    cid = campaign(db, uid)
    expand_all(db, cid)
    assert reported(db, cid) == recounted(db, cid)

    rows = [r["id"] for r in messages(db, cid)]
    lease(db, [d1, d2])
    db.execute("UPDATE user_devices SET min_delay_seconds = 0, max_delay_seconds = 0 WHERE id IN (%s, %s)", [d1, d2])
    claimed = [r["id"] for r in claim(db)]
    assert claimed                                                  # pending -> queued: counts unchanged
    assert reported(db, cid) == recounted(db, cid)
    db.execute("SELECT complete_messages('s1', %s, %s)", [claimed[:4], [f"w{i}" for i in range(4)]])
    db.execute("SELECT fail_messages('s1', %s, %s)", [claimed[4:6], ["no", "no"]])
    db.execute("SELECT record_receipts(%s, %s, 'read', now())", [d1, ["w0", "w1", "w2", "w3"]])
    db.execute("SELECT record_receipts(%s, %s, 'delivered', now())", [d2, ["w0", "w1", "w2", "w3"]])
    assert reported(db, cid) == recounted(db, cid)

    assert db.execute("SELECT retry_failed_messages(%s, %s, %s) AS n", [uid, cid, d3]).fetchone()["n"] == 2
    assert reported(db, cid) == recounted(db, cid)                 # the failed attempts are superseded
    skipped_phone = db.execute("SELECT recipient_phone FROM broadcast_messages WHERE campaign_id = %s"
                               " AND status = 'pending' ORDER BY id LIMIT 1", [cid]).fetchone()["recipient_phone"]
    db.execute("SELECT opt_out_phone(%s, %s)", [uid, skipped_phone])
    mark(db, [r for r in rows if r not in claimed][:1], "sent")
    db.execute("SELECT _delete_device(%s, %s)", [uid, d3])          # its retries: skipped, device gone (0)
    assert reported(db, cid) == recounted(db, cid)
    db.execute("SELECT cancel_campaign(%s, %s)", [uid, cid])
    assert reported(db, cid) == recounted(db, cid)

    report = db.execute("SELECT * FROM campaign_report WHERE campaign_id = %s", [cid]).fetchone()
    totals = {k: sum(v[k] for v in recounted(db, cid).values())
              for k in ("should_send", "sent", "failed", "skipped", "pending", "delivered", "read")}
    assert {k: report[k] for k in totals} == totals and report["retried"] == 2


def test_a_campaign_keeps_its_figures_after_retention_drops_its_messages(db):
    _, cid, _ = running_campaign(db, leads=3)
    old = db.execute("SELECT now() - interval '200 days' AS t").fetchone()["t"]
    week = db.execute("SELECT created FROM maintain_message_history(%s, 0)", [old]).fetchone()["created"]
    db.execute("""UPDATE broadcast_messages SET status = 'sent', claimed_at = %s, claimed_by = 'x', sent_at = %s
                   WHERE campaign_id = %s""", [old, old, cid])
    before = db.execute("SELECT should_send, sent FROM campaign_report WHERE campaign_id = %s", [cid]).fetchone()
    assert before == {"should_send": 3, "sent": 3}
    assert db.execute("SELECT dropped FROM maintain_message_history()").fetchone()["dropped"] == week
    assert messages(db, cid) == []
    assert db.execute("SELECT should_send, sent FROM campaign_report WHERE campaign_id = %s", [cid]).fetchone() == before


def test_a_campaigns_state_lock_never_holds_back_its_rollups_foreign_key_check(connect_committed):
    """The tick and the owner's actions lock a campaign's row to change its state; campaign_counts'
    foreign key check takes KEY SHARE on it whenever a completion adds a rollup row. FOR UPDATE made
    the check wait: a completion waited on the tick, the tick on a row the completion had written —
    a deadlock the soak hit (the sender's batch failed, it reconnected). A state lock is FOR NO KEY
    UPDATE, which the check passes."""
    setup = connect_committed()
    uid = make_user(setup)
    device = make_device(setup, uid)
    for i in range(3):
        lead(setup, uid, device, f"60{i}4444444")
    cid = campaign(setup, uid)
    expand_all(setup, cid)
    lease(setup, [device])
    sent = [r["id"] for r in claim(setup)]
    assert len(sent) == 3
    holder, sender = connect_committed(), connect_committed()
    sender.execute("SET lock_timeout = '5s'")
    for lock, args in (("SELECT settle_campaign(%s)", [cid]),                     # the tick
                       ("SELECT expand_campaign_chunk(%s)", [cid]),
                       ("SELECT pause_campaign(%s, %s, true)", [uid, cid]),      # the owner
                       ("SELECT retry_failed_messages(%s, %s)", [uid, cid])):
        holder.execute("BEGIN")
        holder.execute(lock, args)
        sender.execute("SELECT 1 FROM campaigns WHERE id = %s FOR KEY SHARE", [cid])   # what the check does
        holder.execute("ROLLBACK")
    holder.execute("BEGIN")
    holder.execute("SELECT settle_campaign(%s)", [cid])
    # not the last message: that one settles the campaign, which waits for the tick by design
    sender.execute("SELECT complete_messages('s1', %s, %s)", [sent[:2], ["W1", "W2"]])   # commits meanwhile
    holder.execute("ROLLBACK")
    assert setup.execute("SELECT sum(sent) AS n FROM campaign_counts WHERE campaign_id = %s", [cid]).fetchone()["n"] == 2
