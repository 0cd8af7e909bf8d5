"""Plan guards for a long-lived session: a big statement after small ones.

A statement trigger's queries over its transition tables have no parameters, so PL/pgSQL plans
each once per session and keeps the plan, sized by the rows of the session's first statement. A
sender, a web worker or an import holds its connection for hours: after one small statement
(a single receipt, one STOP reply, one lead edited), a join of the transition tables planned
for one row on each side ran as a nested loop for every later statement — skipping 22,000
messages of a campaign after a STOP reply compared 440M pairs (49 s), a cancelled 1M-message
campaign would never have finished. Each case below runs small statements first, then a big
one, on the same connection, and refuses any plan that re-reads a transition table per row. The
other way round, a plan kept from a big first deletion hashed whole tables for each later small
one: the last two cases bound what a small deletion reads after a big one.
"""
import json

from tests.factories import make_device, make_user
from tests.superuser import superuser
from tests.test_plan_guards import MESSAGE_TABLES, Plans, rows_read, violations
from tests.test_plan_guards_fresh import _rows_handled

BIG = 20_000


def _campaign(c, uid):
    return c.execute("""SELECT create_campaign(%s, 'broadcast', 'session', '', 'all', 'hi', NULL, NULL, NULL,
                                               current_date, '00:00', 0, 0) AS id""", [uid]).fetchone()["id"]


def _queue(c, uid, dev, campaign, first_phone, n):
    return [r["id"] for r in c.execute(
        """INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content)
           SELECT %s, %s, %s, (%s::bigint + g)::text, 'm' FROM generate_series(1, %s) g RETURNING id""",
        [uid, dev, campaign, first_phone, n])]


def _assert_linear(plans, what, rows=BIG):
    # (A whole-table scan where the statement writes most of a small table is the planner's right
    # call here; tests/test_plan_guards.py judges scans on a queue of realistic size.)
    found = [v for v in violations(plans) if "per row" in v]
    assert found == [], f"{what}:\n" + "\n".join(found)
    handled = _rows_handled(plans, lambda q: True)   # every node of every nested statement: ~60 a row
    assert handled <= 150 * rows, f"{handled:,.0f} rows handled by {what} of {rows:,} rows"


def test_a_big_skip_after_a_small_one_on_the_same_session_stays_linear(module_db_url):
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev = make_device(c, uid)
        campaign = _campaign(c, uid)
        ids = _queue(c, uid, dev, campaign, 60310000000, BIG + 6)
        c.execute("VACUUM ANALYZE")
        for phone in range(60310000001, 60310000007):   # the small ones: past the plan cache's five custom plans
            assert c.execute("SELECT opt_out_phone(%s, %s) AS n", [uid, str(phone)]).fetchone()["n"] == 1
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            assert c.execute("SELECT _skip_messages(%s, 'device_logged_out') AS n", [ids]).fetchone()["n"] == BIG
        _assert_linear(plans, "a skip")
        assert c.execute("SELECT sum(skipped) AS n FROM campaign_counts WHERE campaign_id = %s",
                         [campaign]).fetchone()["n"] == BIG + 6


def test_a_campaigns_delete_after_a_small_one_stays_linear(module_db_url):
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev = make_device(c, uid)
        campaign = _campaign(c, uid)
        ids = _queue(c, uid, dev, campaign, 60320000000, BIG // 2 + 6)
        c.execute("SELECT _skip_messages(%s, 'device_logged_out')", [ids])
        c.execute("""INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content, retry_of)
                     SELECT user_id, device_id, campaign_id, recipient_phone, content, id
                       FROM broadcast_messages WHERE id = ANY (%s)""", [ids])   # each retried
        c.execute("VACUUM ANALYZE")
        for small in ids[:6]:   # the small ones
            c.execute("DELETE FROM broadcast_messages WHERE id = %s OR retry_of = %s", [small, small])
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            c.execute("DELETE FROM campaigns WHERE id = %s", [campaign])
        _assert_linear(plans, "a campaign's delete")


def test_a_big_lead_update_after_a_small_one_on_the_same_session_stays_linear(module_db_url):
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev, other = make_device(c, uid), make_device(c, uid)
        sid = c.execute("SELECT save_sequence(%s, NULL, %s::jsonb) AS id", [uid, json.dumps(
            {"name": "session", "trigger": "session", "steps": [{"day_number": 1, "content": "hi", "trigger_delay_hours": 0}]})]
        ).fetchone()["id"]
        c.execute("SELECT set_sequence_status(%s, %s, 'active')", [uid, sid])
        c.execute("""INSERT INTO leads (user_id, device_id, name, phone)
                     SELECT %s, %s, 'Lead ' || g, (60330000000 + g)::text FROM generate_series(1, %s) g""",
                  [uid, dev, BIG + 1])
        c.execute("VACUUM ANALYZE")
        for _ in range(6):   # the small ones
            c.execute("UPDATE leads SET device_id = %s, trigger = 'session', replied_at = now() "
                      "WHERE user_id = %s AND phone = '60330000001'", [other if _ % 2 else dev, uid])
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            c.execute("UPDATE leads SET device_id = %s, trigger = 'session' WHERE user_id = %s AND phone <> '60330000001'",
                      [other, uid])
        _assert_linear(plans, "a leads update")
        assert c.execute("SELECT count(*) AS n FROM sequence_enrollments WHERE sequence_id = %s AND status = 'active'",
                         [sid]).fetchone()["n"] == BIG   # (the small ones' lead replied since it entered: stopped)
        c.execute("ANALYZE sequence_enrollments")   # as autovacuum would after 20,000 new rows
        with Plans(c, analyze=True) as plans:   # replies stop sequences one contact at a time: fewer
            c.execute("UPDATE leads SET replied_at = now() WHERE user_id = %s AND phone::bigint BETWEEN 60330000002 AND 60330003001",
                      [uid])
        _assert_linear(plans, "a leads update", rows=3000)
        assert c.execute("SELECT count(*) AS n FROM sequence_enrollments WHERE sequence_id = %s AND status = 'active'",
                         [sid]).fetchone()["n"] == BIG - 3000


def test_deleting_one_device_after_many_reads_its_own_chats(module_db_url):
    """The other way round: planned for a first statement deleting many devices, the trigger kept
    joining every later device's deletion with all chats (and warm contacts) of every device."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        devices = [make_device(c, uid) for _ in range(60)]
        c.execute("""INSERT INTO chats (user_id, device_id, chat_jid, phone, talked_at)
                     SELECT %s, d, g || '@s.whatsapp.net', g::text, now()
                       FROM unnest(%s::bigint[]) d, generate_series(60340000001, 60340000400) g""", [uid, devices])
        c.execute("VACUUM ANALYZE")
        c.execute("DELETE FROM user_devices WHERE id = ANY (%s)", [devices[:50]])   # many first
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            c.execute("DELETE FROM user_devices WHERE id = %s", [devices[50]])
        read = rows_read(plans, "chats")
        assert read <= 2 * 400, f"{read:,.0f} chats read to delete a device with 400"
        assert c.execute("SELECT count(*) AS n FROM chats WHERE device_id = ANY (%s)", [devices]).fetchone()["n"] == 9 * 400


def test_deleting_one_enrollment_after_many_reads_its_own_messages(module_db_url):
    """Planned for a first statement deleting half of a sequence's contacts, the trigger standing in
    for the messages' foreign keys kept hashing every waiting message for each later deletion."""
    with superuser(module_db_url) as c:
        uid = make_user(c)
        dev = make_device(c, uid, hourly_limit=100_000, daily_limit=100_000)
        sid = c.execute("SELECT save_sequence(%s, NULL, %s::jsonb) AS id", [uid, json.dumps(
            {"name": "forget", "trigger": "forget", "steps": [{"day_number": 1, "content": "hi", "trigger_delay_hours": 0}]})]
        ).fetchone()["id"]
        c.execute("SELECT set_sequence_status(%s, %s, 'active')", [uid, sid])
        c.execute("""INSERT INTO leads (user_id, device_id, name, phone, trigger)
                     SELECT %s, %s, 'Lead ' || g, (60350000000 + g)::text, 'forget' FROM generate_series(1, %s) g""",
                  [uid, dev, BIG])
        c.execute("SELECT activate_due_steps(%s)", [10 * BIG])   # (and any step the module's other tests left due)
        assert c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE sequence_id = %s", [sid]).fetchone()["n"] == BIG
        c.execute("VACUUM ANALYZE")
        enrollments = [r["id"] for r in c.execute("SELECT id FROM sequence_enrollments WHERE sequence_id = %s ORDER BY id", [sid])]
        c.execute("DELETE FROM sequence_enrollments WHERE id = ANY (%s)", [enrollments[:BIG // 2]])   # many first
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            c.execute("DELETE FROM sequence_enrollments WHERE id = %s", [enrollments[-1]])
        read = rows_read(plans, MESSAGE_TABLES)
        assert read <= 20, f"{read:,.0f} messages read to delete one contact's enrollment"
        assert c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE sequence_id = %s", [sid]).fetchone()["n"] == BIG // 2 - 1
