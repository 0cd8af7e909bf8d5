"""Campaigns: schedule in the owner's zone, fan-out (own device, audience tokens, opt-outs, one
message per phone, chunks), the status rule, pause/resume/cancel, retry, reports, concurrent
expansion, and owner scoping through the API."""
import threading
import time
from datetime import datetime, timezone

import psycopg
import pytest
from psycopg.rows import dict_row

from common.db import database_name
from tests.factories import make_device, make_user
from tests.superuser import superuser
from tests.test_plan_guards import Plans, _nodes
from tests.webutil import signed_in_user


def lead(conn, uid, device_id, phone, name="Lead", niche="", status="prospect"):
    return conn.execute("SELECT create_lead(%s, %s, %s, %s, %s, %s, NULL) AS id",
                        [uid, device_id, name, phone, niche, status]).fetchone()["id"]


def campaign(conn, uid, kind="broadcast", niche="", target="all", message="Hi {name}", image=None, devices=None,
             ai_limit=None, date="2020-01-01", time="09:00", media_id=None):
    return conn.execute("SELECT create_campaign(%s, %s, 'Promo', %s, %s, %s, %s, %s, %s, %s, %s, 0, 0, %s) AS id",
                        [uid, kind, niche, target, message, image, devices, ai_limit, date, time,
                         media_id]).fetchone()["id"]


def expand_all(conn, campaign_id, chunk=50000):
    conn.execute("SELECT _trigger_due_campaigns()")
    while conn.execute("SELECT expand_campaign_chunk(%s, %s) AS n", [campaign_id, chunk]).fetchone()["n"] is not None:
        pass


def status(conn, campaign_id):
    return conn.execute("SELECT status, status_reason FROM campaigns WHERE id = %s", [campaign_id]).fetchone()


def messages(conn, campaign_id):
    return conn.execute("SELECT * FROM broadcast_messages WHERE campaign_id = %s ORDER BY id", [campaign_id]).fetchall()


def mark(conn, ids, outcome):
    """Plays the dispatch engine's part: the rows were claimed and then sent or failed."""
    if outcome == "sent":
        conn.execute("UPDATE broadcast_messages SET status = 'sent', claimed_at = now(), claimed_by = 't', "
                     "sent_at = now() WHERE id = ANY(%s)", [ids])
    else:
        conn.execute("UPDATE broadcast_messages SET status = 'failed', claimed_at = now(), claimed_by = 't', "
                     "failed_at = now(), error_message = 'boom' WHERE id = ANY(%s)", [ids])


@pytest.mark.parametrize("zone, local, utc", [
    ("Asia/Kuala_Lumpur", "09:00", "01:00"),
    ("America/New_York", "09:00", "14:00"),   # EST in January
    ("UTC", "09:00", "09:00"),
])
def test_wall_clock_time_is_the_owners_zone(db, zone, local, utc):
    uid = make_user(db, timezone=zone)
    cid = campaign(db, uid, date="2031-01-15", time=local)
    at = db.execute("SELECT to_char(scheduled_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS t FROM campaigns WHERE id = %s",
                    [cid]).fetchone()["t"]
    assert at == f"2031-01-15 {utc}"
    assert status(db, cid)["status"] == "pending"
    db.execute("SELECT _trigger_due_campaigns()")
    assert status(db, cid)["status"] == "pending"  # not due yet


def test_fan_out_each_lead_on_its_own_device_with_audience_and_opt_outs(db):
    uid = make_user(db)
    d1, d2 = make_device(db, uid), make_device(db, uid)
    a = lead(db, uid, d1, "0111111111", "Ali", niche="fit")
    b = lead(db, uid, d2, "0122222222", "Bee", niche="gym, FIT", status="customer")
    lead(db, uid, d1, "0133333333", "Cee", niche="fitness")        # substring only: out
    lead(db, uid, None, "0144444444", "Pool", niche="fit")          # no device: the AI pool, out
    lead(db, uid, d2, "0155555555", "Opted", niche="fit")
    db.execute("INSERT INTO opt_outs (user_id, phone) VALUES (%s, '60155555555')", [uid])
    other = make_user(db)
    lead(db, other, make_device(db, other), "0166666666", niche="fit")  # another owner's: out
    image = db.execute("SELECT store_media(%s, '\\xffd8'::bytea, 'https://x/img.jpg') AS id", [uid]).fetchone()["id"]
    cid = campaign(db, uid, niche="fit", message="Hi {name}", image="https://x/img.jpg", media_id=image)
    expand_all(db, cid)
    rows = messages(db, cid)
    stored = f"/media/{image}"      # the stored copy, never the URL it came from
    assert {(r["lead_id"], r["device_id"], r["content"], r["message_type"], r["media_url"]) for r in rows} == {
        (a, d1, "Hi Ali", "image", stored), (b, d2, "Hi Bee", "image", stored)}
    assert status(db, cid)["status"] == "processing"

    customers = campaign(db, uid, niche="fit", target="customer", devices=[d2])
    expand_all(db, customers)
    assert [r["lead_id"] for r in messages(db, customers)] == [b]


def test_a_chunk_on_its_generic_plan_computes_the_campaigns_fields_once_not_per_lead(module_db_url):
    """The scheduler's long-lived session runs the chunk statement again and again, so PL/pgSQL may
    switch it to its generic plan, where the campaign's fields are parameters, not constants (an AI
    spread, a SQL function, is always planned so): what is derived from them alone (the audience's
    tokens, the image's path) must be computed once per chunk. It was computed per lead (media_path
    was not even inlined: its body was less immutable than it said, test_sql_static)."""
    watched = ["lead_in_audience", "lead_tokens", "_lead_tokens_split", "media_path"]
    with superuser(module_db_url) as su, su.transaction() as tx:
        su.execute("SET LOCAL track_functions = 'all'")
        su.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        uid = make_user(su)
        device = make_device(su, uid)
        su.execute("""INSERT INTO leads (user_id, device_id, name, phone, niche)
                      SELECT %s, CASE WHEN g <= 300 THEN %s END, 'Lead ' || g, (60120000000 + g)::text, 'fit, gym'
                        FROM generate_series(1, 600) g""", [uid, device])     # 300 on the device, 300 in the AI pool
        image = su.execute("SELECT store_media(%s, '\\xffd8'::bytea, 'https://x/img.jpg') AS id", [uid]).fetchone()["id"]
        broadcast = campaign(su, uid, niche="gym", image="https://x/img.jpg", media_id=image)
        ai = campaign(su, uid, kind="ai", niche="gym", ai_limit=1000, image="https://x/img.jpg", media_id=image)
        query = "SELECT funcname, calls FROM pg_stat_xact_user_functions WHERE funcname = ANY (%s)"
        before = {r["funcname"]: r["calls"] for r in su.execute(query, [watched])}
        expand_all(su, broadcast, chunk=50)
        expand_all(su, ai)
        for cid in (broadcast, ai):
            rows = messages(su, cid)
            assert len(rows) == 300 and {(r["media_url"], r["message_type"]) for r in rows} == {(f"/media/{image}", "image")}
        calls = {r["funcname"]: r["calls"] - before.get(r["funcname"], 0) for r in su.execute(query, [watched])}
        assert all(n <= 2 * (7 + 1) for n in calls.values()), calls     # 7 chunks of 50 leads, 1 spread
        raise psycopg.Rollback(tx)


def test_one_message_per_phone_even_when_on_two_devices(db):
    uid = make_user(db)
    d1, d2 = make_device(db, uid), make_device(db, uid)
    lead(db, uid, d1, "0111111111")
    lead(db, uid, d2, "0111111111")
    cid = campaign(db, uid)
    expand_all(db, cid)
    assert len(messages(db, cid)) == 1


def test_a_chunk_wrong_about_its_fresh_drafts_is_written_again_with_the_guards(db):
    """A broadcast's chunk tells the writer its drafts are fresh (its lane's cursor has passed none of
    their phones), so their duplicate probes are skipped. Were it wrong -- here its lane rewound by
    hand over phones still queued -- the queue's unique index raises, and the batch is written again
    with the probes, which leave those phones out."""
    uid = make_user(db)
    d = make_device(db, uid)
    for i in (0, 2, 4):   # all in lane 0 of 2
        lead(db, uid, d, f"011111111{i}")
    cid = campaign(db, uid)
    expand_all(db, cid)
    assert len(messages(db, cid)) == 3
    db.execute("UPDATE campaigns SET expanded_at = NULL, status = 'triggered' WHERE id = %s", [cid])
    db.execute("UPDATE campaign_fanout_lanes SET phone_cursor = '', done_at = NULL WHERE campaign_id = %s AND lane = 0",
               [cid])
    lead(db, uid, d, "0111111116")
    assert db.execute("SELECT expand_campaign_chunk(%s, 50000) AS n", [cid]).fetchone()["n"] == 1
    assert sorted(m["recipient_phone"][-1] for m in messages(db, cid)) == ["0", "2", "4", "6"]


def test_chunks_move_each_lanes_cursor_and_the_status(db):
    """A broadcast is expanded in lanes (campaign_fanout_lanes, 2 by default), a lead in the lane of its
    phone's last digit; each call takes the lane furthest behind, and the campaign is expanded (and
    processing) in a call of its own once every lane is done."""
    uid = make_user(db)
    d = make_device(db, uid)
    for i in range(5):   # last digits 0..4: lane 0 holds 0, 2, 4; lane 1 holds 1, 3
        lead(db, uid, d, f"011111111{i}")
    cid = campaign(db, uid)
    db.execute("SELECT _trigger_due_campaigns()")
    assert status(db, cid)["status"] == "triggered"
    lanes = lambda: [(r["lane"], r["done"]) for r in db.execute(
        "SELECT lane, done_at IS NOT NULL AS done FROM campaign_fanout_lanes WHERE campaign_id = %s ORDER BY lane",
        [cid])]
    assert lanes() == [(0, False), (1, False)]
    steps = [db.execute("SELECT expand_next_campaign_chunk(2) AS n").fetchone()["n"] for _ in range(4)]
    assert steps == [2, 2, 1, 0]   # lane 0, lane 1, lane 0 (ends), lane 1 (ends)
    assert lanes() == [(0, True), (1, True)]
    assert status(db, cid)["status"] == "triggered"
    assert db.execute("SELECT expand_campaign_chunk(%s, 2) AS n", [cid]).fetchone()["n"] == 0   # the finish
    assert status(db, cid)["status"] == "processing"
    assert db.execute("SELECT expand_next_campaign_chunk(2) AS n").fetchone()["n"] is None
    assert sorted(m["recipient_phone"][-1] for m in messages(db, cid)) == ["0", "1", "2", "3", "4"]


def test_a_campaign_past_its_time_queues_messages_due_from_now_not_before_the_queue(db):
    """Its rows go after what is already due: with the campaign's own (past) time they sorted before
    every due row, and every claim's time-ordered scan stepped over a chunk still being written."""
    uid = make_user(db)
    d = make_device(db, uid)
    lead(db, uid, d, "0121111111")
    cid = campaign(db, uid, date="2020-01-01")
    expand_all(db, cid)
    now = db.execute("SELECT now() AS t").fetchone()["t"]
    assert [m["scheduled_at"] for m in messages(db, cid)] == [now]


def test_status_rule_finished_failed_and_reasons(db):
    uid = make_user(db)
    d = make_device(db, uid)
    ids = [lead(db, uid, d, f"01{i}2222222") for i in range(3)]
    cid = campaign(db, uid)
    expand_all(db, cid)
    rows = [r["id"] for r in messages(db, cid)]
    mark(db, rows[:2], "sent")
    db.execute("SELECT settle_running_campaigns()")
    assert status(db, cid)["status"] == "processing"
    mark(db, rows[2:], "failed")
    db.execute("SELECT settle_running_campaigns()")
    assert status(db, cid)["status"] == "finished"
    assert len(ids) == 3

    all_failed = campaign(db, uid)
    expand_all(db, all_failed)
    mark(db, [r["id"] for r in messages(db, all_failed)], "failed")
    db.execute("SELECT settle_running_campaigns()")
    assert status(db, all_failed) == {"status": "failed", "status_reason": "no message could be sent"}

    nobody = campaign(db, uid, niche="nosuchniche")
    expand_all(db, nobody)
    assert status(db, nobody)["status"] == "failed" and "no lead" in status(db, nobody)["status_reason"]

    lonely = make_user(db)
    no_devices = campaign(db, lonely)
    expand_all(db, no_devices)
    assert status(db, no_devices) == {"status": "failed", "status_reason": "no device to send from"}


def running_campaign(db, leads=2):
    """A running campaign with a queued message for each of `leads` leads: (owner, campaign, message rows)."""
    uid = make_user(db)
    d = make_device(db, uid)
    for i in range(leads):
        lead(db, uid, d, f"60{i}3333333")
    cid = campaign(db, uid)
    expand_all(db, cid)
    rows = messages(db, cid)
    assert len(rows) == leads and status(db, cid)["status"] == "processing"
    return uid, cid, rows


def test_a_campaign_ends_when_its_last_message_settles(db):
    """No minute tick: the completion of the last message settles the campaign (settle_campaign pushes its event)."""
    _, cid, rows = running_campaign(db)
    mark(db, [rows[0]["id"]], "sent")
    assert status(db, cid)["status"] == "processing"
    mark(db, [rows[1]["id"]], "failed")
    assert status(db, cid)["status"] == "finished"


def test_a_campaign_whose_last_messages_are_skipped_ends_at_once(db):
    uid, cid, rows = running_campaign(db)
    db.execute("SELECT opt_out_phone(%s, %s)", [uid, rows[0]["recipient_phone"]])
    assert status(db, cid)["status"] == "processing"
    db.execute("SELECT opt_out_phone(%s, %s)", [uid, rows[1]["recipient_phone"]])   # the last: no minute tick needed
    assert status(db, cid) == {"status": "finished", "status_reason": None}


def test_pause_resume_cancel(db):
    uid, cid, _ = running_campaign(db, leads=3)
    db.execute("SELECT pause_campaign(%s, %s, true)", [uid, cid])
    assert {r["held"] for r in messages(db, cid)} == {True}
    db.execute("SELECT pause_campaign(%s, %s, false)", [uid, cid])
    assert {r["held"] for r in messages(db, cid)} == {False}
    first = messages(db, cid)[0]["id"]
    mark(db, [first], "sent")
    assert db.execute("SELECT cancel_campaign(%s, %s) AS s", [uid, cid]).fetchone()["s"] == "cancelled"
    rows = messages(db, cid)
    assert [(r["status"], r["error_message"]) for r in rows] == [
        ("sent", None), ("skipped", "campaign cancelled"), ("skipped", "campaign cancelled")]
    with pytest.raises(psycopg.errors.RaiseException, match="already cancelled"):
        db.execute("SELECT cancel_campaign(%s, %s)", [uid, cid])


def test_a_campaign_paused_before_its_time_queues_held_messages(db):
    uid = make_user(db)
    d = make_device(db, uid)
    lead(db, uid, d, "0114444444")
    cid = campaign(db, uid)
    db.execute("SELECT pause_campaign(%s, %s, true)", [uid, cid])
    expand_all(db, cid)
    assert [r["held"] for r in messages(db, cid)] == [True]


def test_retry_failed_queues_new_rows_and_keeps_history(db):
    uid = make_user(db)
    d1, d2 = make_device(db, uid), make_device(db, uid)
    for i in range(3):
        lead(db, uid, d1, f"01{i}5555555")
    cid = campaign(db, uid)
    expand_all(db, cid)
    rows = messages(db, cid)
    mark(db, [rows[0]["id"]], "sent")
    mark(db, [rows[1]["id"], rows[2]["id"]], "failed")
    db.execute("SELECT settle_running_campaigns()")
    assert status(db, cid)["status"] == "finished"
    assert db.execute("SELECT retry_failed_messages(%s, %s, %s) AS n", [uid, cid, d2]).fetchone()["n"] == 2
    assert db.execute("SELECT retry_failed_messages(%s, %s, %s) AS n", [uid, cid, d2]).fetchone()["n"] == 0
    after = messages(db, cid)
    assert [(r["status"], r["error_message"]) for r in after[:3]] == [("sent", None), ("failed", "boom"), ("failed", "boom")]
    assert [(r["retry_of"], r["device_id"], r["status"]) for r in after[3:]] == [
        (rows[1]["id"], d2, "pending"), (rows[2]["id"], d2, "pending")]
    assert status(db, cid)["status"] == "processing"
    report = db.execute("SELECT * FROM campaign_report WHERE campaign_id = %s", [cid]).fetchone()
    assert (report["should_send"], report["sent"], report["failed"], report["pending"], report["retried"]) == (3, 1, 0, 2, 2)
    per_device = {r["device_id"]: r for r in db.execute("SELECT * FROM campaign_device_report WHERE campaign_id = %s", [cid])}
    assert (per_device[d1]["assigned"], per_device[d1]["sent"], per_device[d1]["moved_away"]) == (3, 1, 2)
    assert per_device[d2]["pending"] == 2
    pending = db.execute("SELECT recipient_phone FROM campaign_report_leads(%s, %s, NULL, 'pending')", [uid, cid]).fetchall()
    assert {r["recipient_phone"] for r in pending} == {rows[1]["recipient_phone"], rows[2]["recipient_phone"]}
    assert db.execute("SELECT count(*) AS n FROM campaign_report_leads(%s, %s, NULL, 'pending')", [make_user(db), cid]).fetchone()["n"] == 0


def test_each_report_number_pages_its_own_leads(db):
    uid = make_user(db)
    dev = make_device(db, uid)
    phones = [f"01{i}6666666" for i in range(6)]
    for phone in phones:
        lead(db, uid, dev, phone)
    cid = campaign(db, uid)
    expand_all(db, cid)
    rows = messages(db, cid)
    mark(db, [r["id"] for r in rows[:3]], "sent")
    mark(db, [rows[3]["id"]], "failed")
    wa = {r["id"]: f"W{r['id']}" for r in rows[:3]}
    db.execute("UPDATE broadcast_messages SET wa_message_id = 'W' || id WHERE id = ANY(%s)", [list(wa)])
    db.execute("SELECT record_receipts(%s, %s, 'delivered', now())", [dev, [wa[rows[1]["id"]], wa[rows[2]["id"]]]])
    db.execute("SELECT record_receipts(%s, %s, 'read', now())", [dev, [wa[rows[2]["id"]]]])
    page = lambda bucket, limit=100, offset=0: [r["recipient_phone"] for r in db.execute(
        "SELECT recipient_phone FROM campaign_report_leads(%s, %s, NULL, %s, %s, %s)", [uid, cid, bucket, limit, offset])]
    by_id = [r["recipient_phone"] for r in rows]
    assert page("should_send") == by_id
    assert page("sent") == by_id[:3]
    assert page("delivered") == by_id[1:3]
    assert page("read") == by_id[2:3]
    assert page("failed") == by_id[3:4]
    assert page("pending") == by_id[4:]
    assert page("skipped") == []
    assert page("should_send", 2, 3) == by_id[3:5]
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        page("bogus")


def test_a_report_page_reads_its_campaigns_rows_not_the_weeks(module_db_url):
    """A report page reads the history by (campaign_id, status, id), whatever the statistics (the
    page of every status, should_send, one such walk per status): with few campaigns in them, the
    generic plan read each week by id, filtering by campaign, and stepped over every row of the
    others first (50M rows of history: 150 ms a page)."""
    with superuser(module_db_url) as su, su.transaction() as tx:
        uid = make_user(su)
        device = make_device(su, uid)
        other, mine = campaign(su, uid), campaign(su, uid)
        for cid, first in ((other, 1), (mine, 30_001)):   # the other campaign's rows first, by id
            su.execute("""
                INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content, status,
                                                claimed_at, claimed_by, sent_at, failed_at, error_message)
                SELECT %(u)s, %(d)s, %(c)s, (60130000000 + g)::text, 'Old news', s.status, t.at, 'old',
                       CASE WHEN s.status = 'sent' THEN t.at END, CASE WHEN s.status = 'failed' THEN t.at END,
                       CASE WHEN s.status = 'failed' THEN 'old failure' END
                  FROM generate_series(%(f)s, %(f)s + 29999) g,
                       LATERAL (SELECT CASE WHEN g %% 10 = 0 THEN 'failed' ELSE 'sent' END AS status) s,
                       LATERAL (SELECT now() - interval '1 hour' AS at) t""", {"u": uid, "d": device, "c": cid, "f": first})
        su.execute("ANALYZE broadcast_messages")
        # 50M rows of history do not fit the cache: the planner then weighs a scan out of the heap's
        # order by its page reads, which at this test's scale only a small effective_cache_size says.
        su.execute("SET LOCAL effective_cache_size = '256kB'")
        fetched = "SELECT coalesce(sum(idx_tup_fetch + seq_tup_read), 0) AS n FROM pg_stat_xact_user_tables WHERE relname LIKE 'message_history%%'"
        before = su.execute(fetched).fetchone()["n"]
        page = lambda bucket, offset=0: [r["message_id"] for r in su.execute(
            "SELECT message_id FROM campaign_report_leads(%s, %s, NULL, %s, 100, %s)", [uid, mine, bucket, offset])]
        pages = {(bucket, 0): page(bucket) for bucket in ("failed", "sent", "should_send")}
        assert su.execute(fetched).fetchone()["n"] - before < 1000
        pages["should_send", 150] = page("should_send", 150)
        # The pages' rows: should_send merges the statuses (interleaved by id here) in id order.
        rows = su.execute("SELECT id, status FROM broadcast_messages WHERE campaign_id = %s ORDER BY id", [mine]).fetchall()
        ids = [r["id"] for r in rows]
        assert pages == {("failed", 0): [r["id"] for r in rows if r["status"] == "failed"][:100],
                         ("sent", 0): [r["id"] for r in rows if r["status"] == "sent"][:100],
                         ("should_send", 0): ids[:100], ("should_send", 150): ids[150:250]}
        raise psycopg.Rollback(tx)


REPORT_PLANS = """SELECT ident FROM pg_backend_memory_contexts
                   WHERE name = 'CachedPlan' AND ident LIKE 'SELECT * FROM _campaign_report_rows(%'"""


def test_preparing_a_session_plans_the_report_pages_once_for_it(module_db_url):
    """The settled page's generic plan spans every week of the history (35-70 ms to make with 26
    weeks): prepare_web_session makes it, and the live page's, and the pages then run on those two."""
    with superuser(module_db_url) as su, su.transaction() as tx:
        assert su.execute(REPORT_PLANS).fetchall() == []
        su.execute("SELECT prepare_web_session()")
        plans = len(su.execute(REPORT_PLANS).fetchall())
        assert plans == 2                    # the settled page's and the live page's
        uid = make_user(su)
        for bucket in ("failed", "should_send", "pending"):
            su.execute("SELECT * FROM campaign_report_leads(%s, %s, NULL, %s)", [uid, campaign(su, uid), bucket])
        assert len(su.execute(REPORT_PLANS).fetchall()) == plans
        raise psycopg.Rollback(tx)


def test_the_webs_pool_prepares_each_connection_before_it_serves(module_db_url):
    """A connection the web's pool opens has run prepare_web_session before any request gets it, so
    a user's first report page on it does not make its plans."""
    from web import create_app

    calls = "SELECT coalesce(sum(calls), 0) AS n FROM pg_stat_user_functions WHERE funcname = 'prepare_web_session'"
    name = database_name(module_db_url)
    with superuser(module_db_url) as su:
        su.execute(f'ALTER DATABASE "{name}" SET track_functions = \'pl\'')   # for the connections opened from here
        try:
            before = su.execute(calls).fetchone()["n"]
            app = create_app(module_db_url, testing=True)
            try:
                with app.extensions["db_pool"].connection() as conn:
                    assert conn.execute("SHOW track_functions").fetchone()["track_functions"] == "pl"
                    conn.execute("SELECT pg_stat_force_next_flush()")   # its counts, as of before this request
                deadline = time.monotonic() + 30
                while su.execute(calls).fetchone()["n"] == before:
                    assert time.monotonic() < deadline, "the pool's connection never ran prepare_web_session"
                    time.sleep(0.1)
            finally:
                app.extensions["db_pool"].close()
        finally:
            su.execute(f'ALTER DATABASE "{name}" RESET track_functions')


def test_a_new_campaigns_fan_out_reads_none_of_the_history(module_db_url):
    """A campaign that has sent nothing needs no probe of the history for its sent rows, and makes
    none. Asked as a semi-join, the planner hashed every sent row of the history instead when one
    campaign filled the statistics (bench_history: 45M rows read per chunk, 26 s instead of 1)."""
    with superuser(module_db_url) as su, su.transaction() as tx:
        uid = make_user(su)
        device = make_device(su, uid)
        old = campaign(su, uid)
        su.execute("""
            INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content, status,
                                            claimed_at, claimed_by, sent_at)
            SELECT %s, %s, %s, (60130000000 + g)::text, 'Old news', 'sent', t.at, 'old', t.at
              FROM generate_series(1, 30000) g, LATERAL (SELECT now() - interval '1 hour' AS at) t""", [uid, device, old])
        su.execute("""INSERT INTO leads (user_id, device_id, name, phone)
                      SELECT %s, %s, 'Lead ' || g, (60120000000 + g)::text FROM generate_series(1, 500) g""", [uid, device])
        su.execute("ANALYZE broadcast_messages")
        new = campaign(su, uid)
        su.execute("LOAD 'auto_explain'")
        with Plans(su, analyze=True) as p:
            expand_all(su, new, chunk=250)
        read = sum(node.get("Actual Rows", 0) * node.get("Actual Loops", 1) for _, plan in p.plans
                   for node in _nodes(plan) if node.get("Relation Name", "").startswith("message_history"))
        assert len(messages(su, new)) == 500
        assert read < 100
        raise psycopg.Rollback(tx)


def test_two_concurrent_expansions_never_duplicate(committed_db_url, connect_committed):
    setup = connect_committed()
    uid = make_user(setup)
    devices = [make_device(setup, uid) for _ in range(3)]
    setup.execute("""INSERT INTO leads (user_id, device_id, phone)
                     SELECT %s, (%s::bigint[])[1 + g %% 3], (60120000000 + g %% 700)::text FROM generate_series(1, 2000) g
                     ON CONFLICT DO NOTHING""", [uid, devices])
    cid = campaign(setup, uid)
    setup.execute("SELECT _trigger_due_campaigns()")
    # Rewind the lanes' cursors half-way through so the second pass overlaps the first (which no
    # real fan-out does: its chunks' drafts are fresh and skip the duplicate guards): the queue's
    # unique index catches the overlap, and the batch is written again with the guards.
    barrier = threading.Barrier(2)
    errors = []

    def expand(rewind):
        try:
            c = connect_committed()
            barrier.wait()
            while True:
                if rewind:
                    c.execute("""UPDATE campaign_fanout_lanes SET phone_cursor = '', done_at = NULL
                                  WHERE campaign_id = %s
                                    AND (SELECT expanded_at IS NULL FROM campaigns WHERE id = %s)""", [cid, cid])
                    rewind = False
                if c.execute("SELECT expand_campaign_chunk(%s, 150) AS n", [cid]).fetchone()["n"] is None:
                    break
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=expand, args=(i == 1,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    counts = setup.execute("""SELECT count(*) AS n, count(DISTINCT recipient_phone) AS phones
                                FROM broadcast_messages WHERE campaign_id = %s""", [cid]).fetchone()
    expected = setup.execute("SELECT count(DISTINCT phone) AS n FROM leads WHERE user_id = %s", [uid]).fetchone()["n"]
    assert counts == {"n": expected, "phones": expected}


def _lane_world(conn, n=400):
    """n leads on two devices, phones ending in every digit, a phone on both devices now and then."""
    uid = make_user(conn)
    devices = [make_device(conn, uid) for _ in range(2)]
    conn.execute("""INSERT INTO leads (user_id, device_id, name, phone)
                    SELECT %s, (%s::bigint[])[1 + g %% 2], 'Lead ' || g, (60150000000 + g %% (%s - 7))::text
                      FROM generate_series(1, %s) g ON CONFLICT DO NOTHING""", [uid, devices, n, n])
    cid = campaign(conn, uid)
    conn.execute("SELECT _trigger_due_campaigns()")
    phones = conn.execute("SELECT count(DISTINCT phone) AS n FROM leads WHERE user_id = %s", [uid]).fetchone()["n"]
    return uid, cid, phones


def _waiting(observer, conn):
    return observer.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted) AS w",
                            [conn.info.backend_pid]).fetchone()["w"]


def test_two_sessions_expand_one_broadcasts_lanes_side_by_side(connect_committed):
    """A broadcast is queued in lanes (campaign_fanout_lanes, 2) that two sessions expand at once, a
    core each: while one holds its lane's chunk uncommitted, the other queues the other lane's
    leads without waiting. With the campaign's row lock around every chunk (the code before), the
    second session waited for the first's commit: one core for a whole fan-out. Every phone is
    queued once, whichever lane and device its leads are on."""
    setup, first, second = connect_committed(), connect_committed(), connect_committed()
    while second.info.backend_pid % 16 == first.info.backend_pid % 16:
        # the rollups' shard follows the connection: on one shard, the second would wait at its chunk's
        # end for the first's rollup rows (by design, briefly; here the first stays open on purpose)
        second = connect_committed()
    uid, cid, phones = _lane_world(setup)
    second.execute("SET lock_timeout = '3s'")
    with first.transaction():
        got_first = first.execute("SELECT expand_campaign_chunk(%s, 100000) AS n", [cid]).fetchone()["n"]
        got_second = second.execute("SELECT expand_campaign_chunk(%s, 100000) AS n", [cid]).fetchone()["n"]
        assert got_first > 0 and got_second > 0
        # both lanes are at work or done: nothing left for a third session
        assert second.execute("SELECT expand_campaign_chunk(%s, 100000) AS n", [cid]).fetchone()["n"] is None
    while setup.execute("SELECT expand_campaign_chunk(%s, 100000) AS n", [cid]).fetchone()["n"] is not None:
        pass
    assert status(setup, cid)["status"] == "processing"
    counts = setup.execute("""SELECT count(*) AS n, count(DISTINCT recipient_phone) AS phones
                                FROM broadcast_messages WHERE campaign_id = %s""", [cid]).fetchone()
    assert counts == {"n": phones, "phones": phones} and got_first + got_second == phones


def test_a_pause_waits_for_a_lanes_chunk_and_holds_what_it_queued(connect_committed):
    """A lane's chunk reads its campaign FOR SHARE: lanes do not wait on each other, but a pause (its
    owner's state change, FOR NO KEY UPDATE) waits for the chunk at work, then holds its rows; the
    chunks after it queue held rows. Without the lock the pause would not see the chunk's rows,
    uncommitted, and they would go out paused."""
    setup, lane, owner = connect_committed(), connect_committed(), connect_committed()
    uid, cid, phones = _lane_world(setup)
    pause = threading.Thread(target=owner.execute, args=("SELECT pause_campaign(%s, %s, true)", [uid, cid]))
    with lane.transaction():
        assert lane.execute("SELECT expand_campaign_chunk(%s, 100000) AS n", [cid]).fetchone()["n"] > 0
        pause.start()
        deadline = time.monotonic() + 60
        while not _waiting(setup, owner):
            assert time.monotonic() < deadline, "the pause never waited for the lane's chunk"
            time.sleep(0.05)
    pause.join(60)
    assert not pause.is_alive()
    while setup.execute("SELECT expand_campaign_chunk(%s, 100000) AS n", [cid]).fetchone()["n"] is not None:
        pass
    held = setup.execute("""SELECT count(*) FILTER (WHERE held) AS held, count(*) AS n
                              FROM broadcast_messages WHERE campaign_id = %s""", [cid]).fetchone()
    assert held == {"held": phones, "n": phones}


def test_the_tick_and_its_helper_job_queue_a_broadcast_together(connect_committed):
    """app_jobs runs a helper beside the campaign tick for each lane past the first; run side by side,
    they take a lane each and the campaign is queued whole, each phone once. The helper's command,
    as scheduled, queues and settles a campaign by itself too."""
    setup = connect_committed()
    jobs = {j["name"]: j["command"] for j in setup.execute("SELECT name, command FROM app_jobs()")}
    lanes = int(setup.execute("SELECT setting('campaign_fanout_lanes') AS n").fetchone()["n"])
    helpers = sorted(n for n in jobs if n.startswith("campaign-fanout-"))
    assert lanes == 2 and helpers == ["campaign-fanout-2"] and jobs[helpers[0]] == "CALL expand_campaigns()"
    uid, cid, phones = _lane_world(setup, 1200)
    runners = [connect_committed() for _ in range(2)]
    threads = [threading.Thread(target=r.execute, args=(cmd,))
               for r, cmd in zip(runners, ["CALL run_campaigns(60, 500)", "CALL expand_campaigns(60, 500)"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert status(setup, cid)["status"] == "processing"
    counts = setup.execute("""SELECT count(*) AS n, count(DISTINCT recipient_phone) AS phones
                                FROM broadcast_messages WHERE campaign_id = %s""", [cid]).fetchone()
    assert counts == {"n": phones, "phones": phones}

    uid, alone, phones = _lane_world(setup, 300)
    setup.execute(jobs["campaign-fanout-2"])
    assert status(setup, alone)["status"] == "processing"
    assert len(messages(setup, alone)) == phones


def test_a_runner_waits_for_anothers_trigger_but_never_for_its_chunk(connect_committed):
    """The tick and its helper start together and each triggers what is due first. The one that
    triggers a campaign commits and holds it FOR SHARE through its first chunk at once. The other, which
    had found it pending, waited on the campaign's row and followed it into that chunk (the code before:
    bench_fanout --quick, one round in five 3.5 s instead of 2.1, one lane idle). It waits for the
    trigger by the trigger's own lock, then leaves the campaign without touching its row."""
    setup, first, second, chunk = (connect_committed() for _ in range(4))
    uid = make_user(setup)
    lead(setup, uid, make_device(setup, uid), "60123450001")
    cid = campaign(setup, uid)
    second.execute("SET lock_timeout = '20s'")
    result = {}

    def trigger():
        try:
            second.execute("SELECT _trigger_due_campaigns()")
            result["ok"] = True
        except psycopg.Error as exc:
            result["error"] = exc

    with first.transaction():
        first.execute("SELECT _trigger_due_campaigns()")
        runner = threading.Thread(target=trigger)
        runner.start()
        deadline = time.monotonic() + 60
        while not _waiting(setup, second):
            assert time.monotonic() < deadline, "the second runner never waited for the first one's trigger"
            time.sleep(0.05)
        waits_on = setup.execute("SELECT locktype FROM pg_locks WHERE pid = %s AND NOT granted",
                                 [second.info.backend_pid]).fetchone()["locktype"]
        assert waits_on == "advisory", f"the second runner waits on the campaign's row ({waits_on})"
    with chunk.transaction():   # the first runner's first chunk
        chunk.execute("SELECT id FROM campaigns WHERE id = %s FOR SHARE", [cid])
        runner.join(60)
        assert not runner.is_alive() and result == {"ok": True}
    assert status(setup, cid)["status"] == "triggered"


def test_a_chunk_keeps_its_work_in_memory(connect_committed):
    """A chunk holds its leads, sorts them (one lead per phone, then by id) and unnests its drafts'
    arrays on the way to the insert, each a tuplestore or sort of the whole chunk: at the default
    work_mem of 4 MB a chunk of 50k bench leads wrote and read back 11 temporary files, 32 MB. The
    chunk sets its own work_mem, whatever the server's (here a session at 1 MB)."""
    c = connect_committed()
    uid = make_user(c)
    d = make_device(c, uid)
    c.execute("""INSERT INTO leads (user_id, device_id, name, phone)
                 SELECT %s, %s, 'Lead ' || g, (60160000000 + g)::text FROM generate_series(1, 40000) g""",
              [uid, d])   # 20k a lane
    cid = campaign(c, uid, message="Hello {name}, our offer is on.")
    c.execute("SELECT _trigger_due_campaigns()")
    c.execute("SET work_mem = '1MB'")

    def temp():   # this session's counts flushed (at the end of the statement that asks), then read
        c.execute("SELECT pg_stat_force_next_flush()")
        return c.execute("SELECT temp_files FROM pg_stat_database WHERE datname = current_database()"
                         ).fetchone()["temp_files"]
    before = temp()
    assert c.execute("SELECT expand_campaign_chunk(%s, 50000) AS n", [cid]).fetchone()["n"] == 20000
    assert temp() == before
    c.execute("DELETE FROM campaigns WHERE id = %s", [cid])   # its messages with it: the module's queue stays small


# API ------------------------------------------------------------------------------------------

def test_api_create_edit_act_and_report(client, module_db_url):
    uid, token = signed_in_user(client, module_db_url)
    h = {"X-CSRFToken": token}
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        dev = make_device(c, uid)
        lead(c, uid, dev, "0117777777", "Ana", niche="fit")
    body = {"title": "Launch", "niche": "fit", "target_status": "all", "message": "Hello {name}",
            "device_ids": [dev], "campaign_date": "2999-01-01", "time_schedule": "09:30",
            "min_delay_seconds": 5, "max_delay_seconds": 10}
    r = client.post("/api/campaigns", json=body, headers=h)
    assert r.status_code == 201, r.get_json()
    cid = r.get_json()["campaign"]["id"]
    scheduled = datetime.fromisoformat(r.get_json()["campaign"]["scheduled_at"])    # ISO 8601, not RFC 1123
    assert scheduled == datetime(2999, 1, 1, 1, 30, tzinfo=timezone.utc)
    assert r.get_json()["campaign"]["campaign_date"] == "2999-01-01"
    bad = client.post("/api/campaigns", json={**body, "min_delay_seconds": 9, "max_delay_seconds": 1}, headers=h)
    assert bad.status_code == 400 and "delays" in bad.get_json()["error"]
    r = client.put(f"/api/campaigns/{cid}", json={**body, "title": "Launch 2", "campaign_date": "2000-01-01"}, headers=h)
    assert r.status_code == 200 and r.get_json()["campaign"]["title"] == "Launch 2"
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        expand_all(c, cid)
    assert client.put(f"/api/campaigns/{cid}", json=body, headers=h).status_code == 409  # no longer pending
    r = client.post(f"/api/campaigns/{cid}/pause", headers=h)
    assert r.status_code == 200 and r.get_json()["campaign"]["paused_at"] is not None
    assert client.post(f"/api/campaigns/{cid}/resume", headers=h).get_json()["campaign"]["paused_at"] is None
    rep = client.get(f"/api/campaigns/{cid}").get_json()
    assert (rep["report"]["should_send"], rep["report"]["pending"]) == (1, 1)
    assert [d["device_id"] for d in rep["devices"]] == [dev]
    leads = client.get(f"/api/campaigns/{cid}/leads?bucket=pending").get_json()["leads"]
    assert [x["recipient_name"] for x in leads] == ["Ana"]
    assert client.get(f"/api/campaigns/{cid}/leads?bucket=nonsense").status_code == 400
    assert client.get("/campaigns").status_code == 200
    assert client.get(f"/campaigns/{cid}").status_code == 200
    assert client.post(f"/api/campaigns/{cid}/cancel", headers=h).get_json()["campaign"]["status"] == "cancelled"


def test_api_one_user_cannot_see_or_touch_anothers_campaign(app, module_db_url):
    alice, bob = app.test_client(), app.test_client()
    _, a_token = signed_in_user(alice, module_db_url)
    _, b_token = signed_in_user(bob, module_db_url)
    body = {"title": "Mine", "message": "Hi", "campaign_date": "2999-01-01", "time_schedule": "09:00"}
    cid = alice.post("/api/campaigns", json=body, headers={"X-CSRFToken": a_token}).get_json()["campaign"]["id"]
    hb = {"X-CSRFToken": b_token}
    assert bob.get(f"/api/campaigns/{cid}").status_code == 404
    assert bob.get(f"/campaigns/{cid}").status_code == 404
    assert bob.put(f"/api/campaigns/{cid}", json=body, headers=hb).status_code == 404
    for action in ("cancel", "pause", "resume", "retry"):
        assert bob.post(f"/api/campaigns/{cid}/{action}", json={}, headers=hb).status_code == 404
    assert bob.get(f"/api/campaigns/{cid}/leads").status_code == 404
    assert cid not in [c["campaign_id"] for c in bob.get("/api/campaigns").get_json()["campaigns"]]
    assert alice.get(f"/api/campaigns/{cid}").get_json()["campaign"]["status"] == "pending"


def test_the_scheduled_tick_triggers_expands_in_committed_chunks_and_settles(connect_committed):
    c = connect_committed()
    uid = make_user(c)
    d = make_device(c, uid)
    for i in range(3):
        lead(c, uid, d, f"01{i}6666666")
    due, later = campaign(c, uid), campaign(c, uid, date="2999-01-01")
    c.execute("CALL run_campaigns(10, 2)")   # chunks of 2: two committed chunks
    assert status(c, due)["status"] == "processing" and len(messages(c, due)) == 3
    assert status(c, later)["status"] == "pending"
    mark(c, [r["id"] for r in messages(c, due)], "sent")
    c.execute("CALL run_campaigns()")
    assert status(c, due)["status"] == "finished"
    assert c.execute("SELECT command FROM app_jobs() WHERE name = 'campaigns'").fetchone()["command"] == "CALL run_campaigns()"


def test_a_chunks_queue_statistics_commit_with_its_rows(connect_committed):
    """Senders wake on a chunk's commit and claim with plans built from the queue's statistics, so
    those must already count the chunk. Refreshed after the commit instead, the first claims ran on
    the plan for an empty queue: a nested loop over every due row, 20 s per claim with 100k due."""
    c, blocker, runner = connect_committed(), connect_committed(), connect_committed()
    uid = make_user(c)
    d = make_device(c, uid)
    c.execute("""INSERT INTO leads (user_id, device_id, name, phone, niche, target_status)
                 SELECT %s, %s, 'Lead ' || g, '6013' || lpad(g::text, 8, '0'), '', 'prospect'
                   FROM generate_series(1, 3000) g""", [uid, d])   # 1,500 a lane
    cid = campaign(c, uid)
    c.execute("ANALYZE message_queue")
    tick = threading.Thread(target=runner.execute, args=("CALL run_campaigns()",))
    with blocker.transaction():
        blocker.execute("LOCK TABLE message_queue IN SHARE UPDATE EXCLUSIVE MODE")   # holds off ANALYZE, not inserts
        tick.start()
        deadline = time.monotonic() + 60
        while not blocker.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted) AS w",
                                  [runner.info.backend_pid]).fetchone()["w"]:
            assert time.monotonic() < deadline, "the tick never reached the statistics refresh"
            time.sleep(0.05)
        # The tick waits to analyze: its chunk must not be visible yet.
        assert c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE campaign_id = %s",
                         [cid]).fetchone()["n"] == 0
    tick.join(60)
    assert len(messages(c, cid)) == 3000
    assert c.execute("SELECT reltuples FROM pg_class WHERE relname = 'message_queue'").fetchone()["reltuples"] >= 1500
