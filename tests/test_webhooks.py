"""Outbound webhooks: the outbox is written in the event's own transaction at every event source,
the deliverer sends each endpoint's events in order, signed, at least once across a kill, retries
a failing endpoint and dead-letters it. Deliveries go to a real HTTP receiver on 127.0.0.1."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from common import fetch
from common.config import ROOT
from common.webhooks import verify
from tests.factories import make_device, make_user
from tests.local_http import local_http
from tests.test_campaigns import campaign, expand_all, status
from tests.test_dispatch_sql import claim, lease, queue
from tests.webutil import signed_in_user
from web import webhooks as web_webhooks

SECRET = "whsec_" + "s" * 40
ALL_EVENTS = ["campaign.finished", "device.status", "lead.opted_out", "lead.replied", "message.received",
              "message.status", "sequence.completed"]


def endpoint(conn, user_id, url="https://hooks.example.com/wa", events=ALL_EVENTS):
    return conn.execute("SELECT create_webhook_endpoint(%s, %s, %s, %s) AS id",
                        [user_id, url, SECRET, events]).fetchone()["id"]


def outbox(conn, endpoint_id):
    return conn.execute("SELECT * FROM webhook_deliveries WHERE endpoint_id = %s ORDER BY id",
                        [endpoint_id]).fetchall()


def wait_for(condition, seconds=60, what="condition"):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# The outbox, in SQL -------------------------------------------------------------------------------

def test_each_event_source_writes_its_event(db):
    uid = make_user(db)
    ep = endpoint(db, uid)
    dev = make_device(db, uid)
    db.execute("INSERT INTO leads (user_id, device_id, phone, name) VALUES (%s, %s, '60123000001', 'Ali')", [uid, dev])

    db.execute("SELECT set_device_status(%s, 'offline', 'gone')", [dev])
    db.execute("SELECT record_inbound_message(%s, 'w1', '60123000001@s.whatsapp.net', '60123000001@s.whatsapp.net',"
               " '60123000001', 'hello', now())", [dev])
    db.execute("SELECT record_inbound_message(%s, 'w2', '60123000001@s.whatsapp.net', '60123000001@s.whatsapp.net',"
               " '60123000001', 'STOP', now())", [dev])
    # A message sent, then delivered.
    lease(db, [dev])
    db.execute("UPDATE user_devices SET status = 'online' WHERE id = %s", [dev])
    ids = queue(db, uid, dev, 1)
    claim(db)
    db.execute("SELECT complete_messages('s1', %s, %s)", [ids, ["wa-out-1"]])
    db.execute("SELECT record_receipts(%s, %s, 'delivered', now())", [dev, ["wa-out-1"]])

    rows = outbox(db, ep)
    types = [r["event_type"] for r in rows]
    assert types == ["device.status", "message.received", "lead.replied", "message.received", "lead.replied",
                     "lead.opted_out", "message.status", "message.status"], types
    by_type = {}
    for r in rows:
        by_type.setdefault(r["event_type"], []).append(r["payload"])
    assert by_type["device.status"][0]["data"] == {"device_id": dev, "status": "offline", "paused": False,
                                                  "reason": "gone", "banned_until": None}
    assert by_type["message.received"][1]["data"]["content"] == "STOP"
    assert by_type["lead.opted_out"][0]["data"]["phone"] == "60123000001"
    assert [p["data"]["status"] for p in by_type["message.status"]] == ["sent", "delivered"]
    assert by_type["message.status"][0]["data"]["message_id"] == ids[0]
    # One event id per event; the payload carries it with an ISO 8601 time.
    for r in rows:
        assert r["payload"]["id"] == str(r["event_id"]) and r["payload"]["type"] == r["event_type"]
        assert "T" in r["payload"]["created_at"]


def test_stuck_failures_and_skips_are_message_status_events(db):
    uid = make_user(db)
    ep = endpoint(db, uid, events=["message.status"])
    dev = make_device(db, uid)
    lease(db, [dev])
    ids = queue(db, uid, dev, 2)
    [stuck] = [r["id"] for r in claim(db, per_device=1)]
    db.execute("UPDATE broadcast_messages SET claimed_at = now() - interval '1 hour' WHERE id = %s", [stuck])
    assert db.execute("SELECT recover_stuck() AS n").fetchone()["n"] == 1
    [waiting] = [i for i in ids if i != stuck]
    assert db.execute("SELECT _delete_device(%s, %s) -> 'messages_skipped' AS n", [uid, dev]).fetchone()["n"] == 1
    data = [r["payload"]["data"] for r in outbox(db, ep)]
    assert [(d["message_id"], d["status"], d["skip_reason"]) for d in data] == [
        (stuck, "failed", None), (waiting, "skipped", "device_deleted")]
    assert [d["error"] for d in data] == ["stuck: sender vanished", "skipped: device deleted"]


def test_a_released_device_going_offline_is_an_event(db):
    uid = make_user(db)
    ep = endpoint(db, uid, events=["device.status"])
    dev = make_device(db, uid)
    lease(db, [dev])
    assert db.execute("SELECT release_leases('s1', %s) AS n", [[dev]]).fetchone()["n"] == 1
    assert [r["payload"]["data"] for r in outbox(db, ep)] == [
        {"device_id": dev, "status": "offline", "paused": False, "reason": "sender released the device",
         "banned_until": None}]


def test_pausing_and_resuming_a_device_are_events(db):
    uid = make_user(db)
    ep = endpoint(db, uid, events=["device.status"])
    dev, other = make_device(db, uid), make_device(db, uid)
    assert db.execute("SELECT set_devices_paused(%s, %s, true) AS n", [uid, [dev, other]]).fetchone()["n"] == 2
    assert db.execute("SELECT set_devices_paused(%s, %s, true) AS n", [uid, [dev]]).fetchone()["n"] == 0  # unchanged
    db.execute("SELECT set_devices_paused(%s, %s, false)", [uid, [dev]])
    db.execute("SELECT set_device_status(%s, 'banned', 'too fast', '2031-01-01T00:00:00Z')", [other])
    events = [(p["data"]["device_id"], p["data"]["status"], p["data"]["paused"], p["data"]["reason"])
              for p in (r["payload"] for r in outbox(db, ep))]
    paused = sorted(events[:2])
    assert paused == [(dev, "online", True, "paused by the owner"), (other, "online", True, "paused by the owner")]
    assert events[2:] == [(dev, "online", False, "resumed by the owner"), (other, "banned", True, "too fast")]
    assert outbox(db, ep)[-1]["payload"]["data"]["banned_until"].startswith("2031-01-01T00:00:00")


def test_campaign_finished_and_sequence_completed(db):
    uid = make_user(db)
    ep = endpoint(db, uid, events=["campaign.finished", "sequence.completed"])
    cid = campaign(db, uid)
    expand_all(db, cid)    # no lead, no device: it fails at once
    assert status(db, cid)["status"] == "failed"
    seq = db.execute("INSERT INTO sequences (user_id, name, trigger, status) VALUES (%s, 'S', 'sq', 'active')"
                     " RETURNING id", [uid]).fetchone()["id"]
    db.execute("""INSERT INTO sequence_enrollments (sequence_id, user_id, contact_phone, next_step_id)
                  VALUES (%s, %s, '60123000002', NULL)""", [seq, uid])
    assert db.execute("SELECT complete_finished_enrollments() AS n").fetchone()["n"] == 1
    rows = outbox(db, ep)
    assert [(r["event_type"], r["payload"]["data"].get("status")) for r in rows] == [
        ("campaign.finished", "failed"), ("sequence.completed", None)]
    assert rows[0]["payload"]["data"]["campaign_id"] == cid
    assert rows[1]["payload"]["data"]["sequence_id"] == seq


def test_filter_disabled_owner_and_rolled_back_events(db):
    uid, other = make_user(db), make_user(db)
    only_devices = endpoint(db, uid, events=["device.status"])
    only_leads = endpoint(db, uid, events=["lead.replied"])
    disabled = endpoint(db, uid, events=["device.status"])
    db.execute("SELECT update_webhook_endpoint(%s, %s, NULL, NULL, NULL, false)", [uid, disabled])
    theirs = endpoint(db, other, events=["device.status"])
    dev = make_device(db, uid)
    db.execute("SAVEPOINT before")
    db.execute("SELECT set_device_status(%s, 'offline')", [dev])
    assert len(outbox(db, only_devices)) == 1
    assert outbox(db, only_leads) == outbox(db, disabled) == outbox(db, theirs) == []
    db.execute("ROLLBACK TO SAVEPOINT before")   # the event never happened: neither did its webhook
    assert outbox(db, only_devices) == []
    # A test event goes to the one endpoint asked, whatever its filter; never to another owner's.
    assert db.execute("SELECT send_test_webhook(%s, %s) AS ok", [uid, disabled]).fetchone()["ok"]
    assert not db.execute("SELECT send_test_webhook(%s, %s) AS ok", [uid, theirs]).fetchone()["ok"]
    assert [r["event_type"] for r in outbox(db, disabled)] == ["webhook.test"]


def test_endpoint_input_is_checked(db):
    uid = make_user(db)
    for events, message in [([], "choose at least one event"), (["message.sent"], 'unknown event "message.sent"')]:
        db.execute("SAVEPOINT s")
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            endpoint(db, uid, events=events)
        db.execute("ROLLBACK TO SAVEPOINT s")
    for _ in range(10):
        endpoint(db, uid)
    with pytest.raises(psycopg.Error, match="10 webhook endpoints"):
        endpoint(db, uid)


def test_claim_serves_each_endpoint_head_once_then_backs_off_and_dead_letters(db):
    uid = make_user(db)
    ep = endpoint(db, uid, events=["device.status"])
    dev = make_device(db, uid)
    for status in ("offline", "online", "offline"):
        db.execute("SELECT set_device_status(%s, %s)", [dev, status])
    first = db.execute("SELECT * FROM claim_webhook_deliveries(10, 30)").fetchall()
    assert [r["payload"]["data"]["status"] for r in first] == ["offline"]     # the head only
    assert db.execute("SELECT * FROM claim_webhook_deliveries(10, 30)").fetchall() == []   # held by the lease
    head = first[0]["delivery_id"]
    assert db.execute("SELECT finish_webhook_delivery(%s, 500, 'HTTP 500', 10, 86400) AS s",
                      [head]).fetchone()["s"] == "pending"
    row = outbox(db, ep)[0]
    wait = (row["next_attempt_at"] - row["last_attempt_at"]).total_seconds()
    assert 5 <= wait <= 10 and row["attempts"] == 1 and row["last_status_code"] == 500
    # Not due yet: the rows behind the failing head wait too (order per endpoint).
    assert db.execute("SELECT * FROM claim_webhook_deliveries(10, 30)").fetchall() == []
    db.execute("UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = %s", [head])
    again = db.execute("SELECT * FROM claim_webhook_deliveries(10, 30)").fetchall()
    assert [r["delivery_id"] for r in again] == [head] and again[0]["attempts"] == 1
    # The second failure's back-off would pass the retry window: dead, and the next row's turn comes.
    assert db.execute("SELECT finish_webhook_delivery(%s, NULL, 'refused', 10, 9) AS s",
                      [head]).fetchone()["s"] == "dead"
    nxt = db.execute("SELECT * FROM claim_webhook_deliveries(10, 30)").fetchall()
    assert [r["payload"]["data"]["status"] for r in nxt] == ["online"]
    assert db.execute("SELECT finish_webhook_delivery(%s, 204, NULL, 10, 15) AS s",
                      [nxt[0]["delivery_id"]]).fetchone()["s"] == "delivered"
    # Redelivery by its owner only, with a fresh window.
    assert not db.execute("SELECT redeliver_webhook(%s, %s) AS ok", [make_user(db), head]).fetchone()["ok"]
    assert db.execute("SELECT redeliver_webhook(%s, %s) AS ok", [uid, head]).fetchone()["ok"]
    assert [(r["status"], r["attempts"]) for r in outbox(db, ep)] == [("pending", 0), ("delivered", 1), ("pending", 0)]



def test_delivered_rows_leave_the_outbox_after_the_retention_and_their_endpoint_keeps_the_count(db):
    """Delivered rows go after webhook_retention_days (purge_history, hourly); the backlog and the dead
    letters stay until handled, and the endpoint's delivered count (the webhooks page) keeps them."""
    uid = make_user(db)
    ep = endpoint(db, uid, events=["device.status"])
    dev = make_device(db, uid)
    for status in ("offline", "online", "offline", "online"):
        db.execute("SELECT set_device_status(%s, %s)", [dev, status])
    delivered = []
    for code in (200, 204, None):   # two delivered, then a refusal that dead-letters the third
        head = db.execute("SELECT * FROM claim_webhook_deliveries(10, 30)").fetchall()[0]["delivery_id"]
        db.execute("SELECT finish_webhook_delivery(%s, %s, 'refused', 10, 0)", [head, code])
        delivered += [head] if code else []
    db.execute("UPDATE webhook_deliveries SET delivered_at = now() - interval '8 days' WHERE id = %s", [delivered[0]])
    db.execute("SELECT purge_history()")
    assert [(r["id"] in delivered, r["status"]) for r in outbox(db, ep)] == [(True, "delivered"), (False, "dead"),
                                                                             (False, "pending")]
    assert outbox(db, ep)[0]["id"] == delivered[1]   # the one delivered 8 days ago went (retention: 7 days)
    listed = db.execute("SELECT * FROM webhook_endpoint_list(%s)", [uid]).fetchone()
    assert (listed["pending"], listed["dead"], listed["delivered"]) == (1, 1, 2)

# The deliverer against a real receiver ------------------------------------------------------------

class Receiver:
    """Records every POST (headers, body) and answers with `self.status`; `self.hold_at` blocks
    that numbered request until `self.release` is set."""

    def __init__(self):
        self.requests, self.status, self.hold_at = [], 200, None
        self.release, self.lock = threading.Event(), threading.Lock()

    def __call__(self, h):
        body = h.rfile.read(int(h.headers["Content-Length"]))
        with self.lock:
            self.requests.append((dict(h.headers), body))
            n = len(self.requests)
        if n == self.hold_at:
            self.release.wait(60)
        h.send_response(self.status)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def event_ids(self):
        with self.lock:
            return [headers["X-Webhook-Id"] for headers, _ in self.requests]


@pytest.fixture
def receiver():
    rec = Receiver()
    with local_http({"/hook": rec}) as srv:
        rec.url = f"http://127.0.0.1:{srv.server_port}/hook"
        yield rec
        rec.release.set()


@pytest.fixture
def deliverers(committed_db_url):
    """Starts deliverer processes (tests/webhook_deliverer_loopback.py) with short timings."""
    procs = []

    def start(**settings):
        env = dict(os.environ, DATABASE_URL=committed_db_url, WEBHOOK_TIMEOUT_SECONDS="2",
                   WEBHOOK_LEASE_SECONDS="3", WEBHOOK_POLL_SECONDS="0.2",
                   **{f"WEBHOOK_{k.upper()}": str(v) for k, v in settings.items()})
        procs.append(subprocess.Popen([sys.executable, "-m", "tests.webhook_deliverer_loopback"], cwd=ROOT, env=env))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(30)


def _owner_with_endpoint(conn, url):
    uid = make_user(conn)
    return uid, endpoint(conn, uid, url=url, events=["device.status"]), make_device(conn, uid)


def _emit(conn, device_id, n):
    """n device.status events, each in its own transaction; their event ids in order."""
    for i in range(n):
        conn.execute("SELECT set_device_status(%s, %s, %s)", [device_id, "offline" if i % 2 else "online", f"#{i}"])
    return [str(r["event_id"]) for r in conn.execute(
        "SELECT event_id FROM webhook_deliveries WHERE user_id = (SELECT user_id FROM user_devices WHERE id = %s)"
        " ORDER BY id", [device_id])]


def _statuses(conn, ep):
    return [r["status"] for r in outbox(conn, ep)]


def test_deliveries_are_signed_and_in_order(connect_committed, receiver, deliverers):
    conn = connect_committed()
    _, ep, dev = _owner_with_endpoint(conn, receiver.url)
    ids = _emit(conn, dev, 20)
    deliverers()
    wait_for(lambda: set(_statuses(conn, ep)) == {"delivered"}, what="every event delivered")
    assert receiver.event_ids() == ids                          # each once, in event order
    for headers, body in receiver.requests:
        assert verify(SECRET, headers, body)
        assert not verify("whsec_" + "x" * 40, headers, body)
        assert not verify(SECRET, headers, body + b" ")
        payload = json.loads(body)
        assert payload["id"] == headers["X-Webhook-Id"] and headers["X-Webhook-Event"] == "device.status"
    assert [json.loads(b)["data"]["reason"] for _, b in receiver.requests] == [f"#{i}" for i in range(20)]
    rows = outbox(conn, ep)
    assert all(r["last_status_code"] == 200 and r["attempts"] == 1 for r in rows)


def test_killed_deliverer_loses_nothing(connect_committed, receiver, deliverers):
    conn = connect_committed()
    _, ep, dev = _owner_with_endpoint(conn, receiver.url)
    ids = _emit(conn, dev, 30)
    receiver.hold_at = 10                                      # the 10th POST is in flight when we kill
    first = deliverers()
    wait_for(lambda: len(receiver.requests) >= 10, what="ten deliveries")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    receiver.release.set()
    assert _statuses(conn, ep).count("delivered") == 9
    deliverers()                                               # the in-flight one is sent again after its lease
    wait_for(lambda: set(_statuses(conn, ep)) == {"delivered"}, what="every event delivered after the restart")
    received = receiver.event_ids()
    assert set(received) == set(ids)                          # nothing lost
    assert len(received) == len(ids) + 1 and received[9] == received[10] == ids[9]   # one repeat, the one in flight
    assert list(dict.fromkeys(received)) == ids              # first deliveries in event order


def test_failing_endpoint_is_retried_then_dead_lettered_and_redelivered(connect_committed, receiver, deliverers):
    conn = connect_committed()
    uid, ep, dev = _owner_with_endpoint(conn, receiver.url)
    warm_up = _emit(conn, dev, 1)
    deliverers(backoff_seconds=0.1, retry_window_seconds=3)
    wait_for(lambda: _statuses(conn, ep) == ["delivered"], what="the deliverer running")   # the window starts now
    receiver.status = 500
    ids = _emit(conn, dev, 2)[1:]
    wait_for(lambda: _statuses(conn, ep) == ["delivered", "dead", "dead"], what="both events dead-lettered")
    assert receiver.event_ids()[0] == warm_up[0]
    first = [i for i in receiver.event_ids() if i == ids[0]]
    assert len(first) >= 3                                     # retried with the same event id
    attempts = [json.loads(b)["id"] for _, b in receiver.requests]
    assert attempts.index(ids[1]) > max(i for i, x in enumerate(attempts) if x == ids[0])   # in order
    row = outbox(conn, ep)[1]
    assert row["last_status_code"] == 500 and row["attempts"] == len(first)
    receiver.status = 200
    assert conn.execute("SELECT redeliver_webhook(%s, %s) AS ok", [uid, row["id"]]).fetchone()["ok"]
    wait_for(lambda: _statuses(conn, ep) == ["delivered", "delivered", "dead"], what="the redelivery")


# The page and the JSON API --------------------------------------------------------------------------

@pytest.fixture
def me(client, committed_db_url):
    uid, token = signed_in_user(client, committed_db_url)
    return {"uid": uid, "h": {"X-CSRFToken": token}}


def test_endpoint_urls_must_be_public(client, me, monkeypatch):
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "http://[::1]/x", "ftp://example.com/",
                "http://user:pw@example.com/", "http://localhost/hook"):
        res = client.post("/api/webhook-endpoints", json={"url": url, "events": ["lead.replied"]}, headers=me["h"])
        assert res.status_code == 400, url
        assert "endpoint URL" in res.json["error"] or "public" in res.json["error"] or "resolve" in res.json["error"]
    # The deliverer refuses them too, whatever reached the table.
    with pytest.raises(fetch.FetchError, match="not a public internet address"):
        fetch.post("http://127.0.0.1:9/hook", b"{}", {})
    monkeypatch.setattr(web_webhooks, "ADDRESS_POLICY", "127.0.0.1".__eq__)
    res = client.post("/api/webhook-endpoints", json={"url": "http://127.0.0.1:9/hook", "events": ["nope"]},
                      headers=me["h"])
    assert res.status_code == 400 and "unknown event" in res.json["error"]


def test_manage_endpoints_and_see_deliveries(client, me, monkeypatch, app, committed_db_url):
    monkeypatch.setattr(web_webhooks, "ADDRESS_POLICY", "127.0.0.1".__eq__)
    res = client.post("/api/webhook-endpoints", headers=me["h"],
                      json={"url": "http://127.0.0.1:9/hook", "events": ["lead.replied", "device.status"],
                            "description": "CRM"})
    assert res.status_code == 201, res.json
    made = res.json["endpoint"]
    assert made["secret"].startswith("whsec_") and made["events"] == ["device.status", "lead.replied"]
    eid = made["id"]
    assert client.post(f"/api/webhook-endpoints/{eid}/test", headers=me["h"]).status_code == 202
    dead = client.get("/api/webhook-deliveries?status=pending").json["deliveries"]
    assert [d["event_type"] for d in dead] == ["webhook.test"]
    res = client.patch(f"/api/webhook-endpoints/{eid}", json={"enabled": False}, headers=me["h"])
    assert res.status_code == 200 and res.json["endpoint"]["enabled"] is False
    page = client.get("/webhooks").get_data(as_text=True)
    assert "http://127.0.0.1:9/hook" in page and "webhook.test" in page
    assert client.post(f"/api/webhook-deliveries/{dead[0]['id']}/redeliver", headers=me["h"]).status_code == 404
    # Another owner sees none of it and can change none of it.
    other = app.test_client()
    oh = {"X-CSRFToken": signed_in_user(other, committed_db_url)[1]}
    assert other.get("/api/webhook-endpoints").json["endpoints"] == []
    assert other.get("/api/webhook-deliveries").json["deliveries"] == []
    assert other.delete(f"/api/webhook-endpoints/{eid}", headers=oh).status_code == 404
    assert other.post(f"/api/webhook-endpoints/{eid}/test", headers=oh).status_code == 404
    assert client.delete(f"/api/webhook-endpoints/{eid}", headers=me["h"]).status_code == 200
    assert client.get("/api/webhook-endpoints").json["endpoints"] == []


def test_deliverer_refuses_a_lease_shorter_than_an_attempt():
    from webhooks.deliverer import WebhookSettings
    with pytest.raises(ValueError, match="LEASE"):
        WebhookSettings(timeout_seconds=10, lease_seconds=5)


def test_procfile_runs_the_deliverer():
    from scripts.run import PROCESSES, procfile
    assert procfile()["webhooks"] == "python -m webhooks" and "webhooks" in PROCESSES
