"""The /ws live channel against a real server and real NOTIFY: routing per user, refusal of
another user's device, coalescing, bounded queues, the handshake's authentication."""
import psycopg
import pytest
import simple_websocket
from psycopg.rows import dict_row

from tests.factories import make_device, make_user
from tests.liveserver import DEADLINE, LiveClient, serving, session_cookie
from tests.webutil import csrf_token, signed_in_user
from web import live


@pytest.fixture(scope="module")
def server(app):
    with serving(app) as host:
        yield host


@pytest.fixture(scope="module")
def people(module_db_url):
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        a, b = make_user(c), make_user(c)
        emails = {u: c.execute("SELECT email FROM users WHERE id = %s", [u]).fetchone()["email"] for u in (a, b)}
        devices = {a: make_device(c, a), b: make_device(c, b)}
    return {"a": a, "b": b, "emails": emails, "devices": devices}


def notify(url, user_id, type_, data):
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SELECT notify_user(%s, %s, %s::jsonb)", [user_id, type_, psycopg.types.json.Jsonb(data)])


def client_for(app, server, people, who):
    return LiveClient(server, session_cookie(app, people["emails"][people[who]]))


def end_marker(url, *users):
    """A last event to each user: NOTIFYs arrive in commit order, so what came before it is all."""
    for user_id in users:
        notify(url, user_id, "test.end", {})


def test_each_user_receives_only_their_own_events(app, server, people, module_db_url):
    with client_for(app, server, people, "a") as ca, client_for(app, server, people, "b") as cb:
        assert app.extensions["live_hub"].listening.wait(DEADLINE)
        notify(module_db_url, people["a"], "device_status", {"device_id": 1, "status": "online"})
        notify(module_db_url, people["b"], "chat_message", {"device_id": 2, "text": "for b"})
        end_marker(module_db_url, people["a"], people["b"])
        got_a, got_b = ca.until("test.end")[:-1], cb.until("test.end")[:-1]
        assert [e["type"] for e in got_a] == ["device_status"]
        assert got_a[0]["data"] == {"device_id": 1, "status": "online"}
        assert [e["data"] for e in got_b] == [{"device_id": 2, "text": "for b"}]


def test_watching_another_users_device_is_refused(app, server, people, module_db_url):
    with client_for(app, server, people, "a") as ca:
        ca.send({"type": "watch", "device_id": people["devices"][people["b"]]})
        refused = ca.wait_for("live.error")
        assert refused["data"]["error"] == "device not found"
        own = people["devices"][people["a"]]
        ca.send({"type": "watch", "device_id": own})
        assert ca.wait_for("live.watching")["data"] == {"device_id": own}
        # Watching narrows chat events (WATCHED in web/live.py EVENTS) to that device; other types still arrive.
        notify(module_db_url, people["a"], "chat", {"device_id": own + 1000, "text": "other"})
        notify(module_db_url, people["a"], "chat", {"device_id": own, "text": "mine"})
        notify(module_db_url, people["a"], "campaign_progress", {"campaign_id": 5, "sent": 1})
        end_marker(module_db_url, people["a"])
        got = ca.until("test.end")[:-1]
        assert [(e["type"], e["data"].get("text")) for e in got] == [("chat", "mine"), ("campaign_progress", None)]


def test_a_burst_leaves_in_one_frame_with_states_coalesced(app, server, people, module_db_url):
    with client_for(app, server, people, "a") as ca:
        with psycopg.connect(module_db_url, autocommit=False) as c:  # one commit: one burst
            for sent in range(1, 51):
                c.execute("SELECT notify_user(%s, 'campaign_progress', jsonb_build_object('campaign_id', 9, 'sent', %s::int))",
                          [people["a"], sent])
            for text in ("one", "two"):
                c.execute("SELECT notify_user(%s, 'chat_message', jsonb_build_object('device_id', 3, 'text', %s::text))",
                          [people["a"], text])
        frame = ca.next_frame()
        assert [(e["type"], e["data"].get("sent") or e["data"].get("text")) for e in frame] == [
            ("campaign_progress", 50), ("chat_message", "one"), ("chat_message", "two")]


def test_anonymous_and_cross_site_handshakes_are_refused(app, server, people):
    with pytest.raises(simple_websocket.ConnectionError) as anonymous:
        simple_websocket.Client.connect(f"ws://{server}/ws")
    assert anonymous.value.status_code == 401
    cookie = session_cookie(app, people["emails"][people["a"]])
    with pytest.raises(simple_websocket.ConnectionError) as cross_site:
        simple_websocket.Client.connect(f"ws://{server}/ws", headers={
            "Cookie": f"session={cookie}", "Origin": "http://evil.example"})
    assert cross_site.value.status_code == 403


def test_a_full_queue_drops_the_oldest_and_asks_for_a_resync():
    sub = live.Subscriber(1)
    for n in range(live.QUEUE_LIMIT + 10):
        sub.put({"type": "chat", "data": {"n": n}})
    batch = sub.take(0)
    assert batch[0]["type"] == "live.resync"
    assert len(batch) == live.QUEUE_LIMIT + 1
    assert batch[1]["data"]["n"] == 10 and batch[-1]["data"]["n"] == live.QUEUE_LIMIT + 9


def test_malformed_payloads_are_ignored():
    h = live.Hub(pool=None)
    sub = live.Subscriber(7)
    h._subscribers[7].add(sub)
    h.dispatch("not json", '{"type": "x"}', '{"user_id": "abc", "type": "x"}',
               '{"user_id": 7, "type": "device_status", "data": {"device_id": 1}}')
    assert sub.take(0) == [{"type": "device_status", "data": {"device_id": 1}}]


def test_an_open_socket_ends_with_its_session(app, committed_db_url, monkeypatch):
    monkeypatch.setattr(live, "SESSION_CHECK_SECONDS", 0.2)
    browser = app.test_client()
    signed_in_user(browser, committed_db_url)
    with serving(app) as host:
        ws = LiveClient(host, browser.get_cookie("session").value)
        try:
            browser.post("/logout", data={"csrf_token": csrf_token(browser, "/dashboard")})
            with pytest.raises(simple_websocket.ConnectionClosed) as closed:
                while True:
                    ws.ws.receive(timeout=DEADLINE)
            assert closed.value.reason == 1008
        finally:
            ws.close()
