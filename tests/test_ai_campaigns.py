"""AI campaigns: the pool (leads_ai) spread over chosen devices by load-balance score, at most N per
device; a device banned mid-run is dropped and its unsent leads move to the others; per-device report."""
import psycopg

from tests.factories import make_device, make_user, record_sends
from tests.superuser import superuser
from tests.test_campaigns import campaign, expand_all, lead, mark, messages, status
from tests.test_plan_guards import Plans, _nodes, rows_read


def per_device(db, cid):
    return {r["device_id"]: r for r in db.execute("SELECT * FROM campaign_device_report WHERE campaign_id = %s", [cid])}


def load(db, device_id, sends):
    record_sends(db, device_id, sends)


def test_pool_spread_at_most_n_per_device_least_loaded_first(db):
    uid = make_user(db)
    busy, idle, quiet, unused = (make_device(db, uid) for _ in range(4))
    offline = make_device(db, uid, status="offline")
    load(db, busy, 50)
    load(db, quiet, 5)
    pool = [lead(db, uid, None, f"01{i}6666666", f"P{i}") for i in range(5)]
    lead(db, uid, busy, "0199999999")   # has a device: not in the pool
    cid = campaign(db, uid, kind="ai", ai_limit=2, devices=[busy, idle, quiet, offline])
    expand_all(db, cid)
    rows = messages(db, cid)
    assert sorted(r["lead_id"] for r in rows) == sorted(pool)
    by_device = {}
    for r in rows:
        by_device.setdefault(r["device_id"], []).append(r["lead_id"])
    # Slot 1 of every device by score (idle 0, quiet 3.5, busy 35), then slot 2: 5 leads -> 2, 2, 1.
    assert {d: len(v) for d, v in by_device.items()} == {idle: 2, quiet: 2, busy: 1}
    assert by_device[idle][0] == pool[0] and by_device[quiet][0] == pool[1] and by_device[busy] == [pool[2]]
    assert unused not in by_device and offline not in by_device
    report = per_device(db, cid)
    assert report[idle]["limit_reached"] and report[quiet]["limit_reached"] and not report[busy]["limit_reached"]
    assert status(db, cid)["status"] == "processing"


def test_more_leads_than_room_leaves_the_rest_in_the_pool(db):
    uid = make_user(db)
    d1, d2 = make_device(db, uid), make_device(db, uid)
    for i in range(7):
        lead(db, uid, None, f"01{i}7777777")
    cid = campaign(db, uid, kind="ai", ai_limit=3)
    expand_all(db, cid)
    assert len(messages(db, cid)) == 6
    assert {r["assigned"] for r in per_device(db, cid).values()} == {3}
    assert db.execute("SELECT count(*) AS n FROM leads_ai WHERE user_id = %s", [uid]).fetchone()["n"] == 7
    assert d1 != d2


def test_banned_device_is_dropped_and_its_unsent_leads_move(db):
    uid = make_user(db)
    d1, d2, d3 = (make_device(db, uid) for _ in range(3))
    for i in range(6):
        lead(db, uid, None, f"01{i}8888888")
    cid = campaign(db, uid, kind="ai", ai_limit=4)
    expand_all(db, cid)
    on_d1 = [r for r in messages(db, cid) if r["device_id"] == d1]
    assert len(on_d1) == 2
    mark(db, [on_d1[0]["id"]], "sent")                     # one went out before the ban
    db.execute("SELECT set_device_status(%s, 'banned', 'test ban')", [d1])
    assert db.execute("SELECT _rebalance_ai_campaigns() AS n").fetchone()["n"] == 1
    rows = messages(db, cid)
    moved = [r for r in rows if r["retry_of"] == on_d1[1]["id"]]
    assert len(moved) == 1 and moved[0]["device_id"] in (d2, d3) and moved[0]["status"] == "pending"
    original = next(r for r in rows if r["id"] == on_d1[1]["id"])
    assert original["status"] == "skipped" and "device dropped" in original["error_message"]
    report = per_device(db, cid)
    assert (report[d1]["assigned"], report[d1]["sent"], report[d1]["moved_away"], report[d1]["device_status"]) == (
        2, 1, 1, "banned")
    assert report[d2]["assigned"] + report[d3]["assigned"] == 5
    assert db.execute("SELECT _rebalance_ai_campaigns() AS n").fetchone()["n"] == 0   # nothing left to move
    live = db.execute("""SELECT count(*) AS n FROM broadcast_messages WHERE campaign_id = %s
                          AND status IN ('pending', 'queued', 'sent')""", [cid]).fetchone()["n"]
    assert live == 6   # every lead still has exactly one live message


def test_moved_leads_respect_the_limit(db):
    uid = make_user(db)
    d1, d2 = make_device(db, uid), make_device(db, uid)
    for i in range(4):
        lead(db, uid, None, f"01{i}9999999")
    cid = campaign(db, uid, kind="ai", ai_limit=2)
    expand_all(db, cid)
    db.execute("SELECT set_device_status(%s, 'logged_out')", [d1])
    assert db.execute("SELECT _rebalance_ai_campaigns() AS n").fetchone()["n"] == 0   # d2 is full
    assert per_device(db, cid)[d1]["skipped"] == 2
    assert per_device(db, cid)[d2]["limit_reached"]


def test_ai_campaign_without_online_devices_fails(db):
    uid = make_user(db)
    make_device(db, uid, status="offline")
    lead(db, uid, None, "0112345678")
    cid = campaign(db, uid, kind="ai", ai_limit=5)
    expand_all(db, cid)
    assert status(db, cid)["status"] == "failed"


def spread_over_ten_devices(su, ai_limit):
    """An AI campaign of 3,000 pool leads spread over ten devices (300 each); returns its id and the devices."""
    uid = make_user(su)
    devices = [make_device(su, uid) for _ in range(10)]
    su.execute("""INSERT INTO leads (user_id, name, phone)
                  SELECT %s, 'Pool ' || g, (60120000000 + g)::text FROM generate_series(1, 3000) g""", [uid])
    cid = campaign(su, uid, kind="ai", ai_limit=ai_limit)
    expand_all(su, cid)
    assert len(messages(su, cid)) == 3000
    return cid, devices


def test_a_device_dropped_from_an_ai_campaign_costs_a_read_of_its_rollup_not_its_messages(module_db_url):
    """When a device drops, the tick moves its unsent leads to the others within each one's room (its
    limit less its live or sent messages of the campaign): read from campaign_counts, not by counting
    the campaign's messages once per device (devices x messages, through every week of the history)."""
    with superuser(module_db_url) as su, su.transaction() as tx:
        cid, devices = spread_over_ten_devices(su, 400)
        rows = messages(su, cid)
        dropped = devices[0]
        stranded = [r["id"] for r in rows if r["device_id"] == dropped][:10]
        mark(su, [r["id"] for r in rows if r["id"] not in stranded], "sent")
        su.execute("ANALYZE broadcast_messages")
        su.execute("SELECT set_device_status(%s, 'banned', 'test ban')", [dropped])
        su.execute("LOAD 'auto_explain'")
        with Plans(su, analyze=True) as p:
            assert su.execute("SELECT _rebalance_ai_campaigns() AS n").fetchone()["n"] == 10
        read = sum(node.get("Actual Rows", 0) * node.get("Actual Loops", 1) for _, plan in p.plans
                   for node in _nodes(plan) if node.get("Relation Name", "").startswith("message_history"))
        assert read < 1000, read
        room = {r["device_id"]: r["room"] for r in su.execute(
            "SELECT d.device_id, d.room FROM campaigns c, _ai_campaign_devices(c) d WHERE c.id = %s", [cid])}
        assert sum(room.values()) == 9 * 100 - 10 and set(room) == set(devices[1:])
        raise psycopg.Rollback(tx)


def test_the_tick_reads_the_dropped_devices_messages_not_every_pending_one_of_the_campaign(module_db_url):
    """Each minute the tick looks for an AI campaign's messages on dropped devices: it read every pending
    row of the campaign to find them (1M pending: 335 ms a tick, most of them for nothing)."""
    with superuser(module_db_url) as su, su.transaction() as tx:
        cid, devices = spread_over_ten_devices(su, 400)   # all pending
        su.execute("ANALYZE broadcast_messages")
        su.execute("SELECT set_device_status(%s, 'banned', 'test ban')", [devices[0]])
        su.execute("LOAD 'auto_explain'")
        with Plans(su, analyze=True) as p:
            assert su.execute("SELECT _rebalance_ai_campaigns() AS n").fetchone()["n"] == 300
        read = rows_read(p, "message_queue", where=lambda query: "AS why" in query)
        assert read <= 300 + 10, f"{read} queue rows read to find the banned device's 300"
        raise psycopg.Rollback(tx)


def test_placing_a_dropped_devices_leads_makes_the_slots_it_fills_not_every_device_room(module_db_url):
    """The spread hands out slots round-robin (slot k of every device before k+1 of any) and made every
    slot of every device's room: a device dropped from a campaign of 100,000 a device made 29M slots to
    place its 6,666 leads (24 s a tick). It makes those down to the depth the leads reach."""
    with superuser(module_db_url) as su, su.transaction() as tx:
        cid, devices = spread_over_ten_devices(su, 10000)
        su.execute("SELECT set_device_status(%s, 'banned', 'test ban')", [devices[0]])
        su.execute("LOAD 'auto_explain'")
        with Plans(su, analyze=True) as p:
            assert su.execute("SELECT _rebalance_ai_campaigns() AS n").fetchone()["n"] == 300
        slots = sum(node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
                    for query, plan in p.plans if "slots AS MATERIALIZED" in query
                    for node in _nodes(plan) if node.get("Function Name") == "generate_series")
        assert 300 <= slots <= 300 + 9, f"{slots} slots made to place 300 leads on 9 devices"
        moved = per_device(su, cid)
        assert sorted(moved[d]["assigned"] for d in devices[1:]) == [333] * 6 + [334] * 3   # round-robin, none past its room
        raise psycopg.Rollback(tx)
