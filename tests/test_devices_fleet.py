"""Devices at fleet scale in SQL: add many at once by a name pattern, change delays and caps of
one device or a selection (all or nothing), pause and resume (a paused device keeps its connection
and sends nothing), and the search, filter, sort and paging behind the devices page and picker."""
import json

import psycopg
import pytest

from tests.factories import drain_notifies, make_device, make_user
from tests.test_dispatch_sql import claim, lease, queue


def settings(db, device_id):
    return db.execute("""SELECT device_name, min_delay_seconds, max_delay_seconds, hourly_limit, daily_limit
                           FROM user_devices WHERE id = %s""", [device_id]).fetchone()


def update(db, uid, ids, **values):
    return db.execute("SELECT update_devices(%s, %s, %s::jsonb) AS n",
                      [uid, ids, psycopg.types.json.Jsonb(values)]).fetchone()["n"]


def search(db, uid, query=None, status=None, sort="name", descending=False, limit=50, offset=0):
    return db.execute("SELECT * FROM device_search(%s, %s, %s, %s, %s, %s, %s)",
                      [uid, query, status, sort, descending, limit, offset]).fetchall()


@pytest.fixture
def uid(db):
    return make_user(db)


def test_add_many_devices_by_a_name_pattern(db, uid):
    ids = db.execute("SELECT create_devices(%s, 3, 'Sales {n} KL', 7, 5, 15, 40, 400) AS ids", [uid]).fetchone()["ids"]
    rows = db.execute("""SELECT device_name, status, min_delay_seconds, max_delay_seconds, hourly_limit, daily_limit,
                                EXISTS (SELECT 1 FROM device_pacing p WHERE p.device_id = d.id) AS paced
                           FROM user_devices d WHERE id = ANY (%s) ORDER BY id""", [ids]).fetchall()
    assert [r["device_name"] for r in rows] == ["Sales 7 KL", "Sales 8 KL", "Sales 9 KL"]
    assert {(r["status"], r["min_delay_seconds"], r["max_delay_seconds"], r["hourly_limit"], r["daily_limit"], r["paced"])
            for r in rows} == {("offline", 5, 15, 40, 400, True)}
    # Without {n} several devices are numbered at the end; one device keeps the name as typed.
    more = db.execute("SELECT create_devices(%s, 2, '  Booth ') AS ids", [uid]).fetchone()["ids"]
    assert [settings(db, d)["device_name"] for d in more] == ["Booth 1", "Booth 2"]
    one = db.execute("SELECT create_device(%s, ' Front desk ') AS id", [uid]).fetchone()["id"]
    assert settings(db, one)["device_name"] == "Front desk"


@pytest.mark.parametrize("count,pattern,first,delays,error", [
    (0, "x {n}", 1, (30, 60, 80, 800), "1 to 5000"),
    (5001, "x {n}", 1, (30, 60, 80, 800), "1 to 5000"),
    (2, "   ", 1, (30, 60, 80, 800), "besides the number"),
    (2, "{n}", 1, (30, 60, 80, 800), "besides the number"),
    (1, "   ", 1, (30, 60, 80, 800), "besides the number"),
    (2, "x" * 99 + "{n}", 9, (30, 60, 80, 800), "1 to 100 characters"),
    (2, "x {n}", -1, (30, 60, 80, 800), "first number"),
    (2, "x {n}", 1, (60, 30, 80, 800), "at least the minimum"),
    (2, "x {n}", 1, (30, 60, 0, 800), "caps must be at least 1"),
])
def test_add_many_checks_everything_first(db, uid, count, pattern, first, delays, error):
    before = db.execute("SELECT count(*) AS n FROM user_devices WHERE user_id = %s", [uid]).fetchone()["n"]
    sql = "SELECT create_devices(%s, %s, %s, %s, %s, %s, %s, %s) AS ids"
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=error), db.transaction():
        db.execute(sql, [uid, count, pattern, first, *delays])
    assert db.execute("SELECT count(*) AS n FROM user_devices WHERE user_id = %s", [uid]).fetchone()["n"] == before


def test_settings_of_one_device_or_a_selection(db, uid):
    a, b, c = (make_device(db, uid, min_delay=10, max_delay=20) for _ in range(3))
    assert update(db, uid, [a], device_name="  Front desk ", hourly_limit=50) == 1
    assert settings(db, a) == {"device_name": "Front desk", "min_delay_seconds": 10, "max_delay_seconds": 20,
                               "hourly_limit": 50, "daily_limit": 800}
    assert update(db, uid, [a, b], min_delay_seconds=40, max_delay_seconds=90, daily_limit=300) == 2
    for d in (a, b):
        row = settings(db, d)
        assert (row["min_delay_seconds"], row["max_delay_seconds"], row["daily_limit"]) == (40, 90, 300)
    assert settings(db, a)["hourly_limit"] == 50           # absent: unchanged
    assert settings(db, c)["min_delay_seconds"] == 10      # not selected: unchanged


@pytest.mark.parametrize("values,error", [
    ({"min_delay_seconds": 30}, 'on "(second|first)" the maximum delay \\(20 s\\) would be below'),
    ({"hourly_limit": 0}, "caps must be at least 1"),
    ({"daily_limit": -5}, "caps must be at least 1"),
    ({"min_delay_seconds": "soon"}, "whole numbers"),
    ({"min_delay_seconds": 1.5}, "whole numbers"),
    ({"device_name": "same for both"}, "one device at a time"),
    ({"colour": "red"}, 'unknown device setting "colour"'),
])
def test_a_bad_setting_changes_no_device(db, uid, values, error):
    first = make_device(db, uid, name="first", min_delay=10, max_delay=40)
    second = make_device(db, uid, name="second", min_delay=10, max_delay=20)
    before = [settings(db, d) for d in (first, second)]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=error), db.transaction():
        update(db, uid, [first, second], **values)
    assert [settings(db, d) for d in (first, second)] == before


def test_another_owners_device_is_refused_and_nothing_changes(db, uid):
    mine, theirs = make_device(db, uid), make_device(db, make_user(db))
    for call in ("SELECT update_devices(%s, %s, '{\"hourly_limit\": 5}')", "SELECT set_devices_paused(%s, %s, true)"):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=f"device {theirs} is not one of your devices"), \
                db.transaction():
            db.execute(call, [uid, [mine, theirs]])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least one device"), db.transaction():
        db.execute("SELECT set_devices_paused(%s, '{}', true)", [uid])
    assert db.execute("SELECT hourly_limit, paused_at FROM user_devices WHERE id = %s", [mine]).fetchone() == \
        {"hourly_limit": 80, "paused_at": None}


def test_a_paused_device_keeps_its_connection_and_sends_nothing_until_resumed(db, uid):
    paused, running = make_device(db, uid), make_device(db, uid)
    lease(db, [paused, running])
    queue(db, uid, paused, 2)
    queue(db, uid, running, 2)
    assert db.execute("SELECT set_devices_paused(%s, %s, true) AS n", [uid, [paused]]).fetchone()["n"] == 1
    assert db.execute("SELECT set_devices_paused(%s, %s, true) AS n", [uid, [paused]]).fetchone()["n"] == 0  # already
    assert {r["device_id"] for r in claim(db)} == {running}
    row = db.execute("""SELECT d.status, l.sender_id, lb.is_available, next_dispatch_at('s1') AS next_at
                          FROM user_devices d JOIN device_leases l ON l.device_id = d.id
                          JOIN device_load_balance lb ON lb.device_id = d.id WHERE d.id = %s""", [paused]).fetchone()
    # Still online and leased (the sender keeps the connection), but not available and no wake-up for it.
    assert (row["status"], row["sender_id"], row["is_available"], row["next_at"]) == ("online", "s1", False, None)
    assert db.execute("SELECT count(*) AS n FROM broadcast_messages WHERE device_id = %s AND status = 'pending'",
                      [paused]).fetchone()["n"] == 2
    db.execute("SELECT set_devices_paused(%s, %s, false)", [uid, [paused]])
    assert {r["device_id"] for r in claim(db)} == {paused}
    events = db.execute("SELECT event FROM device_events WHERE device_id = %s ORDER BY id", [paused]).fetchall()
    assert [e["event"] for e in events] == ["paused", "resumed"]


def test_pause_and_settings_are_pushed_live(connect_committed):
    conn, listener = connect_committed(), connect_committed()
    uid = make_user(conn)
    dev = make_device(conn, uid)
    listener.execute("LISTEN wa_events")
    listener.execute("LISTEN wa_dispatch")
    conn.execute("SELECT set_devices_paused(%s, %s, true)", [uid, [dev]])
    conn.execute("SELECT update_devices(%s, %s, '{\"hourly_limit\": 9}')", [uid, [dev]])
    conn.execute("SELECT set_devices_paused(%s, %s, false)", [uid, [dev]])
    got = drain_notifies(listener)   # every channel it listens to, up to the marker
    events = [(n.channel, n.payload) for n in got]
    live = [json.loads(p) for ch, p in events if ch == "wa_events"]
    assert [(e["type"], e["data"].get("paused"), e["data"]["device_ids"]) for e in live] == [
        ("devices_paused", True, [dev]), ("devices_updated", None, [dev]), ("devices_paused", False, [dev])]
    assert live[1]["data"]["settings"] == {"hourly_limit": 9}
    assert ("wa_dispatch", "") in events          # resuming wakes the senders


def test_search_filter_sort_and_pages(db, uid):
    other = make_user(db)
    make_device(db, other, name="Alpha elsewhere")
    names = ["alpha", "Bravo", "charlie", "Delta", "echo"]
    ids = {n: make_device(db, uid, name=n, phone=f"60110000{i:03d}") for i, n in enumerate(names)}
    db.execute("UPDATE user_devices SET status = 'offline', last_seen = now() - interval '1 day' WHERE id = %s",
               [ids["Bravo"]])
    db.execute("UPDATE user_devices SET status = 'banned', last_seen = now() WHERE id = %s", [ids["charlie"]])
    db.execute("SELECT set_devices_paused(%s, %s, true)", [uid, [ids["Delta"]]])

    page = search(db, uid, limit=2)
    assert [r["device_name"] for r in page] == ["alpha", "Bravo"] and page[0]["total"] == 5
    assert [r["device_name"] for r in search(db, uid, limit=2, offset=4)] == ["echo"]
    assert [r["device_name"] for r in search(db, uid, descending=True)] == ["echo", "Delta", "charlie", "Bravo", "alpha"]
    assert [r["device_name"] for r in search(db, uid, query="A")] == ["alpha", "Bravo", "charlie", "Delta"]
    assert [r["device_name"] for r in search(db, uid, query="0002")] == ["charlie"]   # by number
    assert [r["device_name"] for r in search(db, uid, status="offline")] == ["Bravo"]
    assert [(r["device_name"], r["paused"]) for r in search(db, uid, status="paused")] == [("Delta", True)]
    by_status = [r["device_name"] for r in search(db, uid, sort="status")]
    assert by_status[-2:] == ["Bravo", "charlie"]          # online first, then offline, then banned
    assert [r["device_name"] for r in search(db, uid, sort="last_seen", descending=True)][:2] == ["charlie", "Bravo"]
    assert len(search(db, uid, limit=None)) == 5
    for bad in ({"status": "asleep"}, {"sort": "colour"}, {"offset": -1}):
        with pytest.raises(psycopg.errors.InvalidParameterValue), db.transaction():
            search(db, uid, **bad)


def test_device_page_adds_health_and_settings_to_the_page_rows(db, uid):
    dev = make_device(db, uid, name="Sales", min_delay=5, max_delay=9, hourly_limit=40)
    db.execute("INSERT INTO device_events (device_id, event) VALUES (%s, 'offline')", [dev])
    row = db.execute("SELECT * FROM device_page(%s)", [uid]).fetchone()
    assert (row["device_name"], row["disconnects_24h"], row["paused"], row["min_delay_seconds"],
            row["max_delay_seconds"], row["hourly_limit"], row["daily_limit"], row["total"]) == (
        "Sales", 1, False, 5, 9, 40, 800, 1)
