"""Overview and monitoring: figures computed in SQL for the owner's day and zone, nothing of
another user's, and the pages render them."""
import re

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories import make_device, make_user, record_sends
from tests.webutil import signed_in_user


def add_message(c, user_id, device_id, status, at_sql="now()", **kw):
    """A broadcast_messages row in `status`, its state timestamps at `at_sql`: queued pending by the one
    writer of new rows, then moved (new rows enter pending; the rollups count the move)."""
    sets = {"pending": "", "queued": f"claimed_at = {at_sql}, claimed_by = 's1'",
            "sent": f"claimed_at = {at_sql}, claimed_by = 's1', sent_at = {at_sql}",
            "failed": f"claimed_at = {at_sql}, claimed_by = 's1', failed_at = {at_sql}, error_message = 'boom'"}[status]
    mid = c.execute(f"""SELECT id FROM _enqueue_messages(ARRAY[ROW(%s, %s, NULL, '60123456789', NULL, 'text', 'hi',
                          NULL, NULL, NULL, {kw.get('scheduled', 'now()')}, {kw.get('held', 'false')},
                          NULL, NULL, NULL, NULL, NULL)::message_draft])""", [user_id, device_id]).fetchone()["id"]
    if sets:
        c.execute(f"UPDATE broadcast_messages SET status = %s, {sets} WHERE id = %s", [status, mid])


@pytest.fixture
def owner(client, committed_db_url):
    uid, token = signed_in_user(client, committed_db_url, timezone="Asia/Kuala_Lumpur")
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        online, banned = make_device(c, uid, status="online"), make_device(c, uid, status="banned")
        for _ in range(3):
            add_message(c, uid, online, "sent")
        # earlier today (local midnight may be less than 3 hours ago)
        add_message(c, uid, online, "sent", f"greatest(_owner_day_start({uid}), now() - interval '3 hours')")
        add_message(c, uid, online, "sent", "now() - interval '3 days'")   # not today, not in 24 h
        add_message(c, uid, online, "failed")
        add_message(c, uid, online, "pending")
        add_message(c, uid, online, "pending", scheduled="now() + interval '1 day'")
        add_message(c, uid, online, "pending", held="true")                  # paused: not counted
        add_message(c, uid, banned, "queued")
        record_sends(c, online, 5)
        # Another user's traffic never shows.
        other = make_user(c)
        add_message(c, other, make_device(c, other), "sent")
    return {"id": uid, "online": online, "banned": banned}


def test_overview_counts_the_owners_day(client, owner):
    data = client.get("/api/overview").get_json()
    assert data["today"] == {"sent": 4, "failed": 1, "pending": 2, "in_flight": 1}
    assert data["devices_by_status"] == {"online": 1, "connecting": 0, "offline": 0, "banned": 1, "logged_out": 0}
    assert len(data["hourly"]) == 24
    assert sum(h["sent"] for h in data["hourly"]) == 4
    assert data["hourly"][-1]["sent"] >= 3 and data["hourly"][-1]["failed"] == 1


def test_the_overviews_message_figures_come_alone(client, owner):
    """What every message moves, as /api/overview has it, without the devices by status and health band
    (the page refetches these on device events only: a health score reads each device's last two days)."""
    whole, figures = client.get("/api/overview").get_json(), client.get("/api/overview/figures").get_json()
    assert figures == {k: whole[k] for k in ("today", "day_start", "hourly")}
    assert figures["today"] == {"sent": 4, "failed": 1, "pending": 2, "in_flight": 1}


def test_overview_page_renders_figures_and_chart(client, owner):
    html = client.get("/dashboard").get_data(as_text=True)
    assert 'data-stat="failed">1<' in html
    assert 'id="hourly-chart"' in html and "/vendor/chart.js" in html
    assert 'data-status="banned">1<' in html


def test_chart_library_is_served_from_node_modules(client):
    r = client.get("/vendor/chart.js")
    assert r.status_code == 200 and b"Chart" in r.data[:2000]
    assert client.get("/vendor/nothing.js").status_code == 404


def test_monitoring_shows_queue_load_and_senders(client, owner, committed_db_url):
    with psycopg.connect(committed_db_url, autocommit=True) as c:
        c.execute("INSERT INTO senders (id, hostname, pid, capacity) VALUES ('s1', 'host-a', 42, 10), ('s2', 'host-b', 43, 10)")
        c.execute("INSERT INTO device_leases (device_id, sender_id, expires_at) VALUES (%s, 's1', now() + interval '30 s')",
                  [owner["online"]])
    data = client.get("/api/monitoring").get_json()
    queue = {q["device_id"]: q for q in data["queue"]}
    assert (queue[owner["online"]]["due_now"], queue[owner["online"]]["scheduled_later"]) == (1, 1)
    assert queue[owner["banned"]]["in_flight"] == 1
    load = {d["device_id"]: d for d in data["devices"]}
    assert (load[owner["online"]]["messages_hour"], load[owner["online"]]["hourly_limit"]) == (5, 80)
    label = load[owner["online"]]["sender_id"]
    assert label.startswith("sender ") and label != "s1"
    # Only the sender running this owner's device is shown to a non-admin, under a label, without
    # its host, pid, capacity or the other tenants' device count.
    assert [(s["sender_id"], s["alive"], s["own_devices_leased"], s["hostname"], s["pid"], s["capacity"],
             s["devices_leased"]) for s in data["senders"]] == [(label, True, 1, None, None, None, None)]
    html = client.get("/monitoring").get_data(as_text=True)
    assert "host-a" not in html and "host-b" not in html and ">s1<" not in html and "5 / 80" in html


@pytest.fixture
def fleet(client, committed_db_url):
    """A signed-in owner with five devices, Sales 1..5 (Sales 3 offline), a message waiting on Sales 2
    and one in flight on Sales 4; and another owner's Sales 9, busy too."""
    uid, _ = signed_in_user(client, committed_db_url)
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        ids = [make_device(c, uid, name=f"Sales {n}", status="offline" if n == 3 else "online") for n in range(1, 6)]
        add_message(c, uid, ids[1], "pending")
        add_message(c, uid, ids[3], "queued")
        other = make_user(c)
        theirs = make_device(c, other, name="Sales 9")
        add_message(c, other, theirs, "pending")
    return {"id": uid, "ids": ids, "theirs": theirs}


def test_monitoring_shows_a_page_of_the_fleet_in_the_devices_query(client, fleet):
    """A fleet is thousands of devices and the page refetches itself every 2 s while a campaign sends:
    it shows one page of them, in the devices page's search, filter and order, both tables the same
    devices in the same order, and the owner's whole queue above them."""
    ids = fleet["ids"]
    data = client.get("/api/monitoring?per_page=2&sort=name&dir=desc").get_json()
    assert (data["total"], data["page"], data["pages"], data["per_page"]) == (5, 1, 3, 2)
    assert [d["device_id"] for d in data["queue"]] == [d["device_id"] for d in data["devices"]] == [ids[4], ids[3]]
    assert (data["waiting"], data["in_flight"]) == (1, 1)   # every device of the owner's, not this page's
    assert data["queue"][1]["in_flight"] == data["devices"][1]["processing_now"] == 1
    last = client.get("/api/monitoring?per_page=2&sort=name&dir=desc&page=3").get_json()
    assert [d["device_id"] for d in last["queue"]] == [d["device_id"] for d in last["devices"]] == [ids[0]]
    past = client.get("/api/monitoring?per_page=2&page=9").get_json()    # devices deleted meanwhile
    assert past["page"] == 3 and [d["device_id"] for d in past["devices"]] == [ids[4]]
    found = client.get("/api/monitoring?q=sales+2").get_json()
    assert [(q["device_id"], q["due_now"]) for q in found["queue"]] == [(ids[1], 1)] and found["total"] == 1
    offline = client.get("/api/monitoring?status=offline").get_json()
    assert [d["device_id"] for d in offline["devices"]] == [ids[2]]
    assert fleet["theirs"] not in [d["device_id"] for d in client.get("/api/monitoring?per_page=500").get_json()["queue"]]
    assert client.get("/api/monitoring?status=gone").status_code == 400
    assert client.get("/api/monitoring?page=x").status_code == 400
    html = client.get("/monitoring?per_page=2&page=2").get_data(as_text=True)
    assert "3–4 of 5" in html and "page 2 of 3" in html and 'id="monitor-filter"' in html
    assert ">Sales 3<" in html and ">Sales 1<" not in html and "Sales 9" not in html
    assert "No devices match." in client.get("/monitoring?q=nothing+like+it").get_data(as_text=True)


def test_the_monitoring_figures_are_the_page_devices_of_the_owner_alone(db):
    """monitor_queue_depth and monitor_device_load give the owner's devices among those asked for (a
    page), never another owner's; and their probes follow the page, not the fleet."""
    uid, other = make_user(db), make_user(db)
    mine = [make_device(db, uid) for _ in range(12)]
    theirs = make_device(db, other)
    for device in (*mine, theirs):
        add_message(db, uid if device != theirs else other, device, "pending")
    db.execute("SELECT fold_device_queue_counts()")   # as the minute's job leaves them: a row a device
    page = [mine[3], mine[7], theirs]
    assert [q["due_now"] for q in db.execute("SELECT * FROM monitor_queue_depth(%s, %s::bigint[])", [uid, page])] == [1, 1]
    for fn in ("monitor_queue_depth", "monitor_device_load"):
        got = [r["device_id"] for r in db.execute(f"SELECT * FROM {fn}(%s, %s::bigint[])", [uid, page])]
        assert got == [mine[3], mine[7]], fn
        assert len(db.execute(f"SELECT * FROM {fn}(%s)", [uid]).fetchall()) == 12, fn
        plan = "\n".join(r["QUERY PLAN"] for r in db.execute(
            f"EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) SELECT * FROM {fn}(%s, %s::bigint[])", [uid, page]))
        # each probe a device (the first waiting row, the messages in flight) runs for the page's two
        loops = [int(n) for n in re.findall(r"on message_queue \w+ \(actual rows=\d+ loops=(\d+)\)", plan)]
        assert loops and max(loops) <= 2, plan


def test_admin_sees_every_sender(client, committed_db_url):
    signed_in_user(client, committed_db_url, is_admin=True)
    with psycopg.connect(committed_db_url, autocommit=True) as c:
        c.execute("INSERT INTO senders (id, hostname, pid, capacity) VALUES ('s9', 'host-z', 1, 1) ON CONFLICT DO NOTHING")
    senders = client.get("/api/monitoring").get_json()["senders"]
    assert ("s9", "host-z", 1) in [(s["sender_id"], s["hostname"], s["pid"]) for s in senders]
    assert "host-z · 1" in client.get("/monitoring").get_data(as_text=True)


def test_the_device_table_labels_each_sender_once_and_a_lease_of_a_pruned_sender_too(db):
    """The monitoring page's device table names each device's sender by a label (an md5 of its id):
    computed once per sender, not once per device (3,000 devices of one sender: 4.5 ms of each 2-second
    refresh's ~20), and still shown for a lease whose sender row is gone."""
    uid = make_user(db)
    a, b, c = (make_device(db, uid) for _ in range(3))
    db.execute("INSERT INTO senders (id, hostname, pid, capacity) VALUES ('labelled', 'host-a', 42, 10)")
    db.execute("""INSERT INTO device_leases (device_id, sender_id, acquired_at, expires_at)
                  VALUES (%s, 'labelled', now(), now() + interval '30 s'),
                         (%s, 'gone', now() - interval '2 days', now() - interval '2 days' + interval '30 s')""", [a, b])
    labels = {r["device_id"]: r["sender_id"] for r in db.execute("SELECT * FROM monitor_device_load(%s)", [uid])}
    expected = db.execute("SELECT _sender_label('labelled', false) AS labelled, _sender_label('gone', false) AS gone").fetchone()
    assert labels == {a: expected["labelled"], b: expected["gone"], c: None}
    plan = "\n".join(r["QUERY PLAN"] for r in db.execute("EXPLAIN VERBOSE SELECT * FROM monitor_device_load(%s)", [uid]))
    # the label read per device only where no sender row has one: inside the COALESCE, never bare
    per_lease = plan.count("md5(l.sender_id)")
    assert plan.count("md5(s.id)") >= 1 and per_lease == plan.count("COALESCE(lab.label, CASE"), plan
