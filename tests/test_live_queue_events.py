"""Queue outcomes reach the dashboards live: complete_messages, fail_messages and record_receipts
push one message_status event (and one campaign_progress event when campaign messages changed)
per owner per call, never one per row, and each owner hears only about their own messages."""
import json

import pytest

from tests.factories import drain_notifies, make_device, make_user


def listen(conn):
    conn.execute("LISTEN wa_events")
    return conn


def drain(conn):
    """Every wa_events payload committed so far, as (user_id, type, data)."""
    return [(m["user_id"], m["type"], m["data"]) for m in (json.loads(n.payload) for n in drain_notifies(conn))]


def claimed(c, user_id, device_id, n, campaign_id=None, sender="s1"):
    """n messages already claimed by `sender` (the state complete/fail act on)."""
    return [r["id"] for r in c.execute(
        """INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content, status,
                                           claimed_at, claimed_by)
           SELECT %s, %s, %s, '6013' || lpad((g + %s * 1000)::text, 7, '0'), 'hi', 'queued', now(), %s
             FROM generate_series(1, %s) g RETURNING id""",
        [user_id, device_id, campaign_id, device_id, sender, n])]


def campaign(c, user_id):
    return c.execute("""INSERT INTO campaigns (user_id, title, message, campaign_date, time_schedule, scheduled_at,
                                               status, triggered_at)
                        VALUES (%s, 'promo', 'hi', current_date, '09:00', now(), 'processing', now())
                        RETURNING id""", [user_id]).fetchone()["id"]


@pytest.fixture
def world(connect_committed):
    c = connect_committed()
    owner, other = make_user(c), make_user(c)
    d1, d2, d3 = make_device(c, owner), make_device(c, owner), make_device(c, other)
    listener = listen(connect_committed())
    drain(listener)
    return c, listener, owner, other, (d1, d2, d3)


def test_complete_sends_one_event_per_owner_with_ids_and_campaign_progress(world):
    c, listener, owner, other, (d1, d2, d3) = world
    promo = campaign(c, owner)
    mine = claimed(c, owner, d1, 5, promo) + claimed(c, owner, d2, 3)
    theirs = claimed(c, other, d3, 2)
    ids = mine + theirs
    assert c.execute("SELECT complete_messages('s1', %s, %s) AS n",
                     [ids, [f"w{i}" for i in ids]]).fetchone()["n"] == 10

    events = drain(listener)
    status = [e for e in events if e[1] == "message_status"]
    assert sorted(e[0] for e in status) == sorted([owner, other])        # one per owner, not per row
    by_user = {e[0]: e[2] for e in status}
    assert by_user[owner]["status"] == "sent" and by_user[owner]["count"] == 8
    assert sorted(by_user[owner]["ids"]) == sorted(mine)
    assert sorted(by_user[owner]["device_ids"]) == sorted([d1, d2])
    assert by_user[other]["ids"] == sorted(theirs) and by_user[other]["device_ids"] == [d3]
    progress = [e for e in events if e[1] == "campaign_progress"]
    assert progress == [(owner, "campaign_progress",
                         {"status": "sent", "campaigns": [{"id": promo, "count": 5}], "truncated": False})]


def test_fail_and_receipts_push_their_status(world):
    c, listener, owner, _other, (d1, _d2, _d3) = world
    failing, sending = claimed(c, owner, d1, 2), claimed(c, owner, d1, 3)
    c.execute("SELECT fail_messages('s1', %s, %s)", [failing, ["boom", ""]])
    c.execute("SELECT complete_messages('s1', %s, %s)", [sending, ["r1", "r2", "r3"]])
    drained = drain(listener)
    assert [(e[2]["status"], sorted(e[2]["ids"])) for e in drained if e[1] == "message_status"] == \
        [("failed", sorted(failing)), ("sent", sorted(sending))]

    c.execute("SELECT record_receipts(%s, %s, 'read', now())", [d1, ["r1", "r2"]])
    c.execute("SELECT record_receipts(%s, %s, 'read', now())", [d1, ["r1", "r2"]])   # nothing changes: silent
    events = [e for e in drain(listener) if e[1] == "message_status"]
    assert [(e[0], e[2]["status"], sorted(e[2]["ids"]), e[2]["device_ids"]) for e in events] == \
        [(owner, "read", sorted(sending[:2]), [d1])]


def test_a_large_batch_over_many_campaigns_stays_one_small_event_each(world):
    c, listener, owner, _other, (d1, _d2, _d3) = world
    campaigns = [campaign(c, owner) for _ in range(300)]
    ids = []
    for k, promo in enumerate(campaigns):       # 2 messages in each of 300 campaigns, distinct phones
        ids += [r["id"] for r in c.execute(
            """INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content, status,
                                               claimed_at, claimed_by)
               SELECT %s, %s, %s, '6015' || lpad((%s * 10 + g)::text, 7, '0'), 'hi', 'queued', now(), 's1'
                 FROM generate_series(1, 2) g RETURNING id""", [owner, d1, promo, k])]
    c.execute("SELECT complete_messages('s1', %s, %s)", [ids, [f"b{i}" for i in ids]])
    events = drain(listener)
    [status] = [e[2] for e in events if e[1] == "message_status"]
    assert status["count"] == 600 and status["truncated"] is True and len(status["ids"]) == 200
    [progress] = [e[2] for e in events if e[1] == "campaign_progress"]
    assert progress["truncated"] is True and len(progress["campaigns"]) == 100
    assert all(len(json.dumps(e[2])) < 7000 for e in events)


def test_batch_events_survive_the_websocket_coalescing():
    from web.live import coalesce
    burst = [{"type": "message_status", "data": {"status": "sent", "ids": [1, 2], "device_ids": [7]}},
             {"type": "message_status", "data": {"status": "read", "ids": [1], "device_ids": [7]}},
             {"type": "device_status", "data": {"device_id": 7, "status": "offline"}},
             {"type": "device_status", "data": {"device_id": 7, "status": "online"}}]
    assert coalesce(burst) == burst[:2] + burst[3:]
