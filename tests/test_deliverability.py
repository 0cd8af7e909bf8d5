"""Deliverability in SQL (issue 17): warm-up caps and reach-out timelocks enforced by the claim,
warm contacts, self-pause after failed sends, and the health score. The transports' side of the
timelock (error 463 -> ReachOutTimelock) is in tests/test_transport_contract.py."""
from datetime import timedelta

import pytest

from tests.factories import make_device, make_user, make_warm_contact, record_sends
from tests.test_dispatch_sql import claim, lease, queue


@pytest.fixture
def uid(db):
    return make_user(db)


def paired(db, dev, phone, days_ago=0):
    db.execute("SELECT device_paired(%s, %s, %s)", [dev, f"{phone}.0:1@s.whatsapp.net", phone])
    db.execute("UPDATE user_devices SET warmup_started_at = warmup_started_at - make_interval(days => %s) "
               "WHERE id = %s", [days_ago, dev])


def health(db, dev):
    return db.execute("SELECT * FROM device_health WHERE device_id = %s", [dev]).fetchone()


def test_a_newly_paired_number_warms_up_in_the_claim(db, uid):
    dev = make_device(db, uid, daily_limit=800, hourly_limit=1000, phone="60111111111")
    paired(db, dev, "60122222222", days_ago=3)       # day 3 of 14 (the pairing day and the next are day 1)
    lease(db, [dev])
    queue(db, uid, dev, 200)
    cap = 20 + (800 - 20) * 2 // 14
    assert len(claim(db, per_device=1000)) == cap        # not 800
    h = health(db, dev)
    assert (h["warmup_day"], h["warmup_days"], h["daily_cap"]) == (3, 14, cap)
    assert not db.execute("SELECT is_available FROM device_load(ARRAY[%s]::bigint[])", [uid]).fetchone()["is_available"]


def test_warm_up_ends_and_re_pairing_the_same_number_does_not_restart_it(db, uid):
    dev = make_device(db, uid, daily_limit=50, hourly_limit=1000)
    paired(db, dev, "60122222223", days_ago=15)      # day 15: past the ramp
    lease(db, [dev])
    queue(db, uid, dev, 60)
    assert len(claim(db)) == 50
    paired(db, dev, "60122222223")                    # the same number again: no new warm-up
    assert health(db, dev)["warmup_day"] is None
    paired(db, dev, "60133333333")                    # another number: day 1
    assert (health(db, dev)["warmup_day"], health(db, dev)["daily_cap"]) == (1, 20)


def test_a_number_paired_before_midnight_keeps_its_first_days_cap_through_the_next_day(db, uid):
    # Paired a minute before its owner's last midnight: a minute old by the calendar's day 2, so on
    # warm-up day 1 still (day 2's cap of 75 would be its first 24 hours at ~5x the first day's).
    dev = make_device(db, uid, daily_limit=800, hourly_limit=1000, phone="60111111112")
    paired(db, dev, "60122222224")
    db.execute("""UPDATE user_devices d SET warmup_started_at =
                    date_trunc('day', now() AT TIME ZONE u.timezone) AT TIME ZONE u.timezone - interval '1 minute'
                    FROM users u WHERE u.id = d.user_id AND d.id = %s""", [dev])
    assert (health(db, dev)["warmup_day"], health(db, dev)["daily_cap"]) == (1, 20)
    lease(db, [dev])
    queue(db, uid, dev, 100)
    assert len(claim(db, per_device=1000)) == 20
    # the day after the next: day 2, whatever the time of the pairing
    db.execute("UPDATE user_devices SET warmup_started_at = warmup_started_at - interval '1 day' WHERE id = %s", [dev])
    assert (health(db, dev)["warmup_day"], health(db, dev)["daily_cap"]) == (2, 20 + (800 - 20) // 14)


def test_devices_without_a_pairing_record_are_not_warming_up(db, uid):
    dev = make_device(db, uid, daily_limit=800)
    assert (health(db, dev)["warmup_day"], health(db, dev)["daily_cap"]) == (None, 800)


def test_a_timelocked_device_sends_to_warm_contacts_only_until_the_lock_ends(db, uid):
    dev = make_device(db, uid, hourly_limit=1000)
    lease(db, [dev])
    cold = queue(db, uid, dev, 3)
    db.execute("SELECT record_inbound_message(%s, 'in1', '60120000002@s.whatsapp.net', "
               "'60120000002@s.whatsapp.net', '60120000002', 'hi', now())", [dev])
    assert db.execute("SELECT device_timelocked(%s, NULL) AS ok", [dev]).fetchone()["ok"]
    locked = db.execute("SELECT timelocked_until - now() AS left FROM user_devices WHERE id = %s", [dev]).fetchone()
    assert locked["left"].total_seconds() == 24 * 3600    # the timelock_default_hours setting
    taken = claim(db)
    assert [r["recipient_phone"] for r in taken] == ["60120000002"]   # the one who wrote, not the others
    assert health(db, dev)["timelocked_until"] is not None
    # Another 463 while locked keeps the known end; WhatsApp's own end wins; lifting frees the rest.
    db.execute("SELECT device_timelocked(%s, now() + interval '6 days')", [dev])
    assert db.execute("SELECT count(*) AS n FROM device_events WHERE device_id = %s AND event = 'timelocked'",
                      [dev]).fetchone()["n"] == 2
    db.execute("SELECT device_timelocked(%s, NULL, false)", [dev])
    db.execute("UPDATE device_pacing SET next_send_at = '-infinity' WHERE device_id = %s", [dev])
    assert len(claim(db)) == len(cold) - 1


def test_a_device_that_cannot_reach_out_is_read_every_few_seconds_not_by_every_claim(db, uid):
    """A timelocked device (or one whose cold share of the day is used) with only new contacts due
    was read to its last due row by every claim: 1,500 such devices with 100 rows each, 88 ms a
    claim that claims nothing. The claim that finds nothing for it marks it for 5 seconds, and the
    next ones pass it by meanwhile."""
    dev = make_device(db, uid, hourly_limit=1000)
    lease(db, [dev])
    queue(db, uid, dev, 3)                            # 6012000000{1,2,3}: never talked with
    db.execute("SELECT device_timelocked(%s, NULL)", [dev])
    assert claim(db) == []
    assert db.execute("SELECT warm_none_until - now() AS d FROM device_pacing WHERE device_id = %s",
                      [dev]).fetchone()["d"] == timedelta(seconds=5)
    # Warm now: the next claim does not read the device until the 5 seconds are over.
    db.execute("SELECT record_inbound_message(%s, 'in1', '60120000002@s.whatsapp.net', "
               "'60120000002@s.whatsapp.net', '60120000002', 'hi', now())", [dev])
    assert claim(db) == []
    db.execute("UPDATE device_pacing SET warm_none_until = now() - interval '1 second' WHERE device_id = %s", [dev])
    assert [r["recipient_phone"] for r in claim(db)] == ["60120000002"]


def test_a_passed_by_device_that_may_reach_out_again_is_read_at_once(db, uid):
    """The mark holds only while the device still cannot reach new contacts: a lifted timelock
    frees its cold messages at the next claim (a guard of the claim's filter)."""
    dev = make_device(db, uid, hourly_limit=1000)
    lease(db, [dev])
    queue(db, uid, dev, 3)
    db.execute("SELECT device_timelocked(%s, NULL)", [dev])
    assert claim(db) == []
    db.execute("SELECT device_timelocked(%s, NULL, false)", [dev])
    assert len(claim(db)) == 3


def test_self_pause_after_too_many_failures_and_resume(db, uid):
    dev = make_device(db, uid, hourly_limit=1000)
    lease(db, [dev])
    ids = queue(db, uid, dev, 20)
    claim(db)
    db.execute("SELECT complete_messages('s1', %s, %s)", [ids[:10], [f"wa{i}" for i in range(10)]])
    db.execute("SELECT fail_messages('s1', %s, %s)", [ids[10:19], ["boom"] * 9])
    refused = queue(db, uid, dev, 5)
    db.execute("UPDATE device_pacing SET next_send_at = '-infinity' WHERE device_id = %s", [dev])
    claim(db)
    db.execute("SELECT fail_messages('s1', %s, %s)", [refused, ["reach-out timelock (error 463): refused"] * 5])
    # The recipient's doing, not the device's: a number not on WhatsApp (sender/transport/base.py Undeliverable).
    unregistered = queue(db, uid, dev, 5)
    db.execute("UPDATE device_pacing SET next_send_at = '-infinity' WHERE device_id = %s", [dev])
    claim(db)
    db.execute("SELECT fail_messages('s1', %s, %s)",
               [unregistered, ["undeliverable: no LID found for 6019@s.whatsapp.net"] * 5])
    assert db.execute("SELECT paused_at FROM user_devices WHERE id = %s", [dev]).fetchone()["paused_at"] is None
    db.execute("SELECT fail_messages('s1', %s, %s)", [ids[19:], ["boom"]])   # 10 of the last 20
    row = db.execute("SELECT paused_at, pause_reason FROM user_devices WHERE id = %s", [dev]).fetchone()
    assert row["paused_at"] is not None and "10 of its last 20 sends failed" in row["pause_reason"]
    assert db.execute("SELECT set_devices_paused(%s, %s, false) AS n", [uid, [dev]]).fetchone()["n"] == 1
    row = db.execute("SELECT d.paused_at, d.pause_reason, p.recent_outcomes::text AS bits FROM user_devices d "
                     "JOIN device_pacing p ON p.device_id = d.id WHERE d.id = %s", [dev]).fetchone()
    assert (row["paused_at"], row["pause_reason"], row["bits"]) == (None, None, "")


def test_health_score_falls_with_failures_bans_and_timelocks(db, uid):
    good, bad = make_device(db, uid), make_device(db, uid)
    assert health(db, good)["health_score"] == 100
    db.execute("UPDATE device_pacing SET recent_outcomes = B'1111100000' WHERE device_id = %s", [bad])
    db.execute("INSERT INTO device_events (device_id, event) VALUES (%s, 'banned')", [bad])
    db.execute("SELECT device_timelocked(%s, NULL)", [bad])
    assert health(db, bad)["health_score"] == 100 - 20 - 15 - 20
    page = db.execute("SELECT device_id, health_score FROM device_page(%s, p_sort => 'health')", [uid]).fetchall()
    assert [r["device_id"] for r in page] == [bad, good]
    bands = {r["band"]: r["devices"] for r in db.execute("SELECT * FROM device_health_distribution(%s)", [uid])}
    assert bands == {"0-24": 0, "25-49": 1, "50-74": 0, "75-100": 1}


def test_the_reply_rate_weighs_two_days_of_sends(db, uid):
    """Few replies cost up to 10 points from 20 sends in 48 h on (the hour ring: whole UTC hours from
    the one that begins nearest 48 h ago)."""
    recent, older = make_device(db, uid), make_device(db, uid)
    record_sends(db, recent, 25, 47 * 60)
    record_sends(db, older, 25, 49 * 60)
    assert health(db, recent)["health_score"] == 100 - 10     # nobody wrote back
    assert health(db, older)["health_score"] == 100


def test_the_health_score_is_an_expression_its_readers_inline(db):
    """The overview's health bands score every device of the owner on each refresh: as a call a device
    (an argument used more than once too costly for the planner to copy: the warm-up day with its
    settings, the hour ring's expression), 3,000 devices took 44-78 ms, inlined 21-33."""
    plan = "\n".join(r["QUERY PLAN"] for r in db.execute(
        "EXPLAIN VERBOSE SELECT * FROM device_health_distribution(1)").fetchall())
    assert "LEAST('100'::numeric" in plan, plan   # the bands' own body is in the plan, the score's formula in it
    assert "_health_score(" not in plan, plan


def failover_campaign(db, uid, failover=True):
    return db.execute("SELECT create_campaign(%s, 'broadcast', 'f', '', 'all', 'hi', NULL, NULL, NULL, '2020-01-01', "
                      "'09:00', 0, 0, NULL, %s) AS id", [uid, failover]).fetchone()["id"]


def queue_for(db, uid, dev, campaign_id, n):
    return [r["id"] for r in db.execute(
        """INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content)
           SELECT %s, %s, %s, '6019' || lpad(g::text, 7, '0'), 'm' FROM generate_series(1, %s) g RETURNING id""",
        [uid, dev, campaign_id, n])]


def where(db, ids):
    return {r["id"]: r for r in db.execute("SELECT id, device_id, status, skip_reason::text, error_message "
                                           "FROM broadcast_messages WHERE id = ANY(%s)", [ids])}


def test_failover_moves_waiting_messages_to_devices_with_room_once(db, uid):
    banned = make_device(db, uid, status="banned")
    helper = make_device(db, uid, daily_limit=800, hourly_limit=3)          # room for 3 this hour
    make_device(db, uid, status="online", name="paused")
    db.execute("UPDATE user_devices SET paused_at = now() WHERE device_name = 'paused'")
    other_owner = make_device(db, make_user(db))                           # never another owner's device
    on = queue_for(db, uid, banned, failover_campaign(db, uid), 5)
    off = queue_for(db, uid, banned, failover_campaign(db, uid, failover=False), 2)
    assert db.execute("SELECT _failover_messages('30 minutes') AS n").fetchone()["n"] == 3
    rows = where(db, on + off)
    assert [rows[i]["device_id"] for i in on] == [helper] * 3 + [banned] * 2
    assert all(rows[i]["device_id"] == banned and rows[i]["status"] == "pending" for i in off)
    assert other_owner not in {r["device_id"] for r in rows.values()}
    # The helper's room is taken once the moved messages are claimed: nothing moves twice.
    lease(db, [helper])
    assert {r["id"] for r in claim(db)} == set(on[:3])
    assert db.execute("SELECT _failover_messages('30 minutes') AS n").fetchone()["n"] == 0
    assert db.execute("SELECT detail FROM device_events WHERE device_id = %s AND event = 'failover'",
                      [banned]).fetchone()["detail"].startswith("3 ")


def test_failover_without_room_skips_with_the_reason_when_the_device_is_gone(db, uid):
    gone = make_device(db, uid, status="logged_out")
    brief = make_device(db, uid, status="offline")
    db.execute("UPDATE user_devices SET status_changed_at = now() - interval '15 minutes' WHERE id = %s", [brief])
    lost = queue_for(db, uid, gone, failover_campaign(db, uid), 2)
    waits = queue_for(db, uid, brief, failover_campaign(db, uid), 2)
    db.execute("SELECT skip_undeliverable()")
    rows = where(db, lost + waits)
    assert {(rows[i]["status"], rows[i]["skip_reason"]) for i in lost} == {("skipped", "no_failover_device")}
    assert {rows[i]["status"] for i in waits} == {"pending"}        # offline 15 min: waits for room or its device
    online = make_device(db, uid)
    db.execute("SELECT skip_undeliverable()")
    assert {where(db, waits)[i]["device_id"] for i in waits} == {online}


def test_sequences_keep_their_failover_option(db, uid):
    seq = db.execute("SELECT save_sequence(%s, NULL, %s) AS id", [uid, '{"name": "s", "trigger": "t", "failover": true, '
                     '"steps": [{"day_number": 1, "content": "hi"}]}']).fetchone()["id"]
    assert db.execute("SELECT sequence_definition(%s, %s) AS d", [uid, seq]).fetchone()["d"]["failover"] is True


def test_sequence_steps_go_from_the_device_the_contact_wrote_to(db, uid):
    from tests.test_sequences import activate, add_lead, make_sequence, messages
    own, talked, idle = make_device(db, uid), make_device(db, uid), make_device(db, uid)
    stranger = make_device(db, make_user(db))
    for dev in (talked, stranger):          # another owner's device that talked with it does not count
        make_warm_contact(db, dev, "60111111111")
    sid = make_sequence(db, uid)
    add_lead(db, uid, "60111111111", "promo", device_id=own)      # warm with `talked`: goes from there
    add_lead(db, uid, "60111111112", "promo", device_id=own)      # cold: its own device, as before
    assert activate(db) == 2
    chosen = {m["recipient_phone"]: m["device_id"] for m in messages(db, sid)}
    assert chosen == {"60111111111": talked, "60111111112": own}
    assert idle not in chosen.values()


def test_ai_campaign_leads_go_from_the_device_they_wrote_to_within_its_room(db, uid):
    from tests.test_ai_campaigns import load
    from tests.test_campaigns import campaign, expand_all, lead, messages
    busy, idle = make_device(db, uid), make_device(db, uid)
    load(db, busy, 50)                                   # the spread alone would pick idle first
    pool = [lead(db, uid, None, f"6012{i}666666", f"P{i}") for i in range(4)]
    for i in (0, 1, 2):                                  # three wrote to busy; its room is two
        make_warm_contact(db, busy, db.execute("SELECT phone FROM leads WHERE id = %s", [pool[i]]).fetchone()["phone"])
    cid = campaign(db, uid, kind="ai", ai_limit=2, devices=[busy, idle])
    expand_all(db, cid)
    chosen = {r["lead_id"]: r["device_id"] for r in messages(db, cid)}
    assert chosen == {pool[0]: busy, pool[1]: busy, pool[2]: idle, pool[3]: idle}


def test_cold_contacts_take_at_most_their_share_of_the_day(db, uid):
    dev = make_device(db, uid, daily_limit=10, hourly_limit=1000)    # cold share 0.5: 5 a day
    lease(db, [dev])
    make_warm_contact(db, dev, "60120000007")
    ids = queue(db, uid, dev, 8)                                      # 60120000001 .. 08, one of them warm
    taken = [r["id"] for r in claim(db)]
    assert len(taken) == 8                                            # under the share nothing is held
    db.execute("SELECT complete_messages('s1', %s, %s)", [taken, [f"wa{i}" for i in taken]])
    row = db.execute("SELECT cold_count, cold_day FROM device_pacing WHERE device_id = %s", [dev]).fetchone()
    assert row["cold_count"] == 7 and row["cold_day"] is not None
    db.execute("UPDATE device_pacing SET day_count = 0, next_send_at = '-infinity'")
    # Those 8 are warm now (sent to); new numbers wait, the one who wrote still goes.
    db.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                  SELECT %s, %s, '6013' || lpad(g::text, 7, '0'), 'new' FROM generate_series(1, 3) g""", [uid, dev])
    again = queue(db, uid, dev, 1)                                    # 60120000001: written to before
    assert [r["id"] for r in claim(db)] == again                      # the share is spent: warm only
    assert len(ids) == 8
