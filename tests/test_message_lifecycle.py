"""A message's state has one owner: the queue family of db/functions writes broadcast_messages and
nothing else does; skips carry a reason from a closed set; every outcome is pushed live."""
import json
import re
import threading
from pathlib import Path

import psycopg
import pytest

from tests.factories import drain_notifies, make_device, make_user
from tests.test_dispatch_sql import claim, lease, queue
from tests.test_sender_support import wait_until

DB = Path(__file__).resolve().parent.parent / "db"
# The queue family (db/functions/queue.sql's header says what each file does).
FAMILY = {"queue.sql", "queue_enqueue.sql", "queue_waiting.sql", "queue_receipts.sql", "queue_failover.sql",
          "triggers_broadcast_messages.sql"}
WRITE = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(broadcast_messages|message_queue|message_history\w*)\b",
                   re.I)
CODE_DIRS = ["common", "sender", "web", "webhooks"]


def without_comments(sql):
    return re.sub(r"--[^\n]*", "", sql)


def family_functions():
    names = set()
    for f in FAMILY:
        names |= set(re.findall(r"CREATE OR REPLACE FUNCTION (\w+)\(", (DB / "functions" / f).read_text()))
    return names


def test_no_file_outside_the_queue_family_writes_messages():
    offenders = []
    for f in sorted((DB / "functions").glob("*.sql")) + sorted((DB / "views").glob("*.sql")):
        if f.name not in FAMILY:
            offenders += [f"{f.relative_to(DB)}: {m.group(0)}" for m in WRITE.finditer(without_comments(f.read_text()))]
    root = DB.parent
    for d in CODE_DIRS:
        for f in sorted((root / d).rglob("*.py")):
            offenders += [f"{f.relative_to(root)}: {m.group(0)}" for m in WRITE.finditer(f.read_text())]
    assert offenders == []


def test_every_function_writing_messages_belongs_to_the_family(db):
    """The same rule read from the applied catalogue (a function moved between files cannot hide)."""
    writers = {r["proname"] for r in db.execute("""
        SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'public' AND p.prosrc ~* %s""",
        [r"(insert\s+into|update|delete\s+from)\s+(broadcast_messages|message_queue|message_history)"])}
    family = family_functions()
    assert writers - family == set()
    assert {"_insert_drafts", "_skip_messages", "claim_messages", "_settle_claimed"} <= writers   # _insert_drafts: _enqueue_messages' insert


def test_skip_reasons_are_a_closed_set_each_with_its_text(db):
    codes = [r["c"] for r in db.execute("SELECT unnest(enum_range(NULL::skip_reason))::text AS c")]
    texts = {r["code"]: r["message"] for r in db.execute("SELECT code::text, message FROM skip_reasons")}
    assert set(codes) == set(texts) and all(texts.values())
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        db.execute("SELECT _skip_messages('{}', 'because')")


def test_a_skip_records_its_reason_and_no_skipped_row_lacks_one(db):
    uid = make_user(db)
    dev = make_device(db, uid)
    ids = queue(db, uid, dev, 3)
    claim_id = ids[2]
    lease(db, [dev])
    db.execute("UPDATE broadcast_messages SET status = 'queued', claimed_at = now(), claimed_by = 's1' WHERE id = %s",
               [claim_id])
    assert db.execute("SELECT _skip_messages(%s, 'device_offline', '30 minutes') AS n", [ids]).fetchone()["n"] == 2
    rows = db.execute("SELECT id, status, skip_reason::text, error_message FROM broadcast_messages WHERE id = ANY(%s)"
                      " ORDER BY id", [ids]).fetchall()
    assert [(r["status"], r["skip_reason"]) for r in rows] == [("skipped", "device_offline")] * 2 + [("queued", None)]
    assert rows[0]["error_message"] == "skipped: device offline for more than 30 minutes"
    assert db.execute("SELECT skip_reason::text, meaning, messages FROM skipped_messages_by_reason WHERE user_id = %s",
                      [uid]).fetchall() == [{"skip_reason": "device_offline", "messages": 2,
                                             "meaning": "its device stayed offline past the grace"}]
    with pytest.raises(psycopg.errors.CheckViolation, match="broadcast_messages_skipped_has_reason"):
        with db.transaction():
            db.execute("UPDATE broadcast_messages SET skip_reason = NULL WHERE id = %s", [ids[0]])


def test_skips_and_stuck_failures_are_pushed_live(connect_committed):
    listener = connect_committed()
    listener.execute("LISTEN wa_events")
    c = connect_committed()
    uid = make_user(c)
    dev = make_device(c, uid)
    lease(c, [dev], sender="live")
    ids = queue(c, uid, dev, 3)
    [first] = [r["id"] for r in claim(c, sender="live", per_device=1)]
    c.execute("UPDATE broadcast_messages SET claimed_at = now() - interval '1 hour' WHERE id = %s", [first])
    drain_notifies(listener)
    assert c.execute("SELECT recover_stuck() AS n").fetchone()["n"] == 1
    rest = [i for i in ids if i != first]
    assert c.execute("SELECT opt_out_phone(%s, recipient_phone) AS n FROM broadcast_messages WHERE id = %s",
                     [uid, rest[0]]).fetchone()["n"] == 0   # a manual message is not skipped by an opt-out
    assert c.execute("SELECT _skip_messages(%s, 'device_logged_out') AS n", [rest]).fetchone()["n"] == 2
    events = [json.loads(n.payload) for n in drain_notifies(listener)]
    status = [(e["data"]["status"], e["data"]["ids"]) for e in events
              if e["type"] == "message_status" and e["user_id"] == uid]
    assert status == [("failed", [first]), ("skipped", sorted(rest))]


# A campaign draft for _enqueue_messages: (user, device, phone, campaign) as parameters.
DRAFT = "ROW(%s, %s, NULL, %s, 'A', NULL, 'Hi', NULL, 0, 0, NULL, NULL, %s, NULL, NULL, NULL, NULL)::message_draft"


def campaign_owner(c):
    """An owner with a device and a broadcast campaign: (user id, device id, campaign id)."""
    uid = make_user(c)
    dev = make_device(c, uid)
    cid = c.execute("SELECT create_campaign(%s, 'broadcast', 'P', '', 'all', 'Hi', NULL, NULL, NULL, "
                    "'2020-01-01', '09:00', 0, 0) AS id", [uid]).fetchone()["id"]
    return uid, dev, cid


def test_enqueue_returns_the_keys_of_the_rows_it_wrote_and_none_for_a_draft_it_left_out(db):
    uid, dev, cid = campaign_owner(db)
    first = db.execute(f"SELECT * FROM _enqueue_messages(ARRAY[{DRAFT}])", [uid, dev, "60111111111", cid]).fetchall()
    rows = db.execute(f"SELECT * FROM _enqueue_messages(ARRAY[{DRAFT}, {DRAFT}])",
                      [uid, dev, "60122222222", cid, uid, dev, "60111111111", cid]).fetchall()  # the second is queued already
    written = db.execute("SELECT id FROM broadcast_messages WHERE campaign_id = %s ORDER BY id", [cid]).fetchall()
    assert first + rows == [{"id": w["id"], "enrollment_id": None, "sequence_stepid": None} for w in written]
    assert len(rows) == 1


def indexes_entered(db, message_id):
    """The indexes of message_queue whose predicate the row satisfies (each one an insertion)."""
    entered = []
    for ix in db.execute("""SELECT c.relname AS name, pg_get_expr(i.indpred, i.indrelid) AS pred
                              FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                             WHERE i.indrelid = 'message_queue'::regclass ORDER BY 1""").fetchall():
        if db.execute(f"SELECT ({ix['pred'] or 'true'}) AS ok FROM message_queue WHERE id = %s",
                      [message_id]).fetchone()["ok"]:
            entered.append(ix["name"])
    return entered


def test_a_queued_row_enters_only_the_indexes_its_readers_and_guards_need(db):
    """The live queue's write cost: each index a row enters costs the fan-out 7-16 % of its time
    (migrations 2101, 2103, 2105). A campaign row enters the primary key, the claim's two due indexes
    (by device; by time, to find the devices with due work) and the one-message-per-phone guard; a
    sequence step the one-live-step guard and the sequence's index instead of the phone guard. A
    device's live rows are read through the due and in-flight indexes."""
    uid, dev, cid = campaign_owner(db)
    [row] = db.execute(f"SELECT id FROM _enqueue_messages(ARRAY[{DRAFT}])", [uid, dev, "60111111111", cid]).fetchall()
    assert indexes_entered(db, row["id"]) == ["message_queue_campaign_phone", "message_queue_due", "message_queue_due_at",
                                              "message_queue_pkey"]
    [step] = db.execute("""SELECT id FROM _enqueue_messages(ARRAY[ROW(%s, %s, NULL, '60122222222', 'A', NULL, 'Hi', NULL,
                              0, 0, NULL, NULL, NULL, 7, 8, 9, NULL)::message_draft])""", [uid, dev]).fetchall()
    assert indexes_entered(db, step["id"]) == ["message_queue_due", "message_queue_due_at", "message_queue_one_active_step",
                                               "message_queue_pkey", "message_queue_sequence"]


def test_queueing_builds_no_transition_table_and_the_writer_keeps_the_rollups(db):
    """An AFTER INSERT trigger with a transition table copies every queued row whole; the writer counts
    its rows instead (migration 2102): the campaign's rollup and a step's in-flight count see them."""
    assert db.execute("""SELECT array_agg(tgname) AS t FROM pg_trigger
                          WHERE tgrelid = 'broadcast_messages'::regclass AND tgtype & 4 <> 0
                            AND tgnewtable IS NOT NULL""").fetchone()["t"] is None   # 4: TRIGGER_TYPE_INSERT
    uid, dev, cid = campaign_owner(db)
    db.execute(f"SELECT * FROM _enqueue_messages(ARRAY[{DRAFT}, {DRAFT}])", [uid, dev, "60111111111", cid,
                                                                           uid, dev, "60122222222", cid])
    row = db.execute("""SELECT sum(assigned) AS assigned, sum(current) AS current, sum(pending) AS pending
                          FROM campaign_counts WHERE campaign_id = %s AND device_id = %s""", [cid, dev]).fetchone()
    assert row == {"assigned": 2, "current": 2, "pending": 2}


def test_a_batch_repeating_a_key_is_refused_whole(db):
    """Twins within one call are a caller's bug: raised, nothing written (not one of them kept at random)."""
    uid, dev, cid = campaign_owner(db)
    with pytest.raises(psycopg.errors.UniqueViolation), db.transaction():
        db.execute(f"SELECT * FROM _enqueue_messages(ARRAY[{DRAFT}, {DRAFT}, {DRAFT}])",
                   [uid, dev, "60111111111", cid, uid, dev, "60122222222", cid, uid, dev, "60111111111", cid])
    assert db.execute("SELECT count(*) AS n FROM broadcast_messages WHERE campaign_id = %s", [cid]).fetchone()["n"] == 0


def test_a_concurrent_writer_of_the_same_key_makes_the_other_leave_its_draft_out(connect_committed):
    """The probe cannot see an uncommitted row: the insert waits on the index, gets a unique
    violation when the other commits, and the retried statement leaves the draft out."""
    setup = connect_committed()
    uid, dev, cid = campaign_owner(setup)
    a, b = connect_committed(), connect_committed()
    a.execute("BEGIN")
    a.execute(f"SELECT * FROM _enqueue_messages(ARRAY[{DRAFT}])", [uid, dev, "60111111111", cid])
    result = {}

    def second():
        result["rows"] = b.execute(f"SELECT * FROM _enqueue_messages(ARRAY[{DRAFT}, {DRAFT}])",
                                   [uid, dev, "60111111111", cid, uid, dev, "60122222222", cid]).fetchall()

    t = threading.Thread(target=second)
    t.start()
    wait_until(lambda: setup.execute("""SELECT count(*) AS n FROM pg_stat_activity
                                         WHERE wait_event_type = 'Lock' AND query LIKE '%%_enqueue_messages%%'""")
               .fetchone()["n"] == 1, what="the second writer to wait on the first's row")
    a.execute("COMMIT")
    t.join(60)
    assert not t.is_alive() and len(result["rows"]) == 1
    phones = setup.execute("SELECT recipient_phone FROM broadcast_messages WHERE campaign_id = %s ORDER BY 1",
                           [cid]).fetchall()
    assert [p["recipient_phone"] for p in phones] == ["60111111111", "60122222222"]


PHONES = ["6012345", "601234", "0123456789", "123456789012345", "1234567890123456", "12345a7", "１２３４５６７",
          "1234567 ", " 1234567", "1234567\n", ""]


def test_the_message_phone_check_is_the_phone_rule_of_the_other_tables(db):
    """broadcast_messages spells the rule without a regex (migration 1921); it accepts exactly what the regex does."""
    uid = make_user(db)
    dev = make_device(db, uid)
    for phone in PHONES:
        valid = db.execute("SELECT %s ~ '^[1-9][0-9]{6,14}$' AS ok", [phone]).fetchone()["ok"]
        try:
            with db.transaction():
                db.execute("INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content) "
                           "VALUES (%s, %s, %s, 'x')", [uid, dev, phone])
            accepted = True
        except psycopg.errors.CheckViolation as e:
            assert e.diag.constraint_name == "broadcast_messages_recipient_phone_check"
            accepted = False
        assert accepted == valid, phone
