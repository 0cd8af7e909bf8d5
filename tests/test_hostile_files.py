"""Hostile files and live-channel messages: the bad CSV corpus through the lead import, the bad
image corpus through the chat upload, websocket messages from user A about user B's device,
oversized websocket frames and more sockets than an account may hold. No 5xx, nothing of B's
touched or shown, a rejected file leaves nothing half-written."""
import io
import json
import time

import psycopg
import pytest
from psycopg.rows import dict_row
from simple_websocket import ConnectionClosed, ConnectionError as WsConnectionError

from tests.corpus import bad_csvs, bad_images
from tests.factories import make_device, make_user
from tests.liveserver import DEADLINE, LiveClient, serving, session_cookie
from tests.test_hostile_api import data_digest
from tests.webutil import csrf_token, login
from web.live import SOCKETS_PER_USER


def _conn(url):
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


@pytest.fixture(scope="module")
def people(app, module_db_url):
    with _conn(module_db_url) as c:
        a, b = make_user(c), make_user(c)
        dev_a, dev_b = make_device(c, a), make_device(c, b)
        chats = {}
        for uid, dev in ((a, dev_a), (b, dev_b)):
            c.execute("SELECT record_inbound_message(%s, %s, %s, %s, %s, 'hi', now(), false, 'text')",
                      [dev, f"IN{dev}", f"6016{dev:07d}@s.whatsapp.net", f"6016{dev:07d}@s.whatsapp.net",
                       f"6016{dev:07d}"])
            chats[uid] = c.execute("SELECT id FROM whatsapp_chats WHERE device_id = %s", [dev]).fetchone()["id"]
        emails = {u: c.execute("SELECT email FROM users WHERE id = %s", [u]).fetchone()["email"] for u in (a, b)}
    return {"a": a, "b": b, "dev_a": dev_a, "dev_b": dev_b, "chats": chats, "emails": emails}


def test_bad_csvs_end_with_a_reason_and_touch_nothing_else(app, module_db_url, people):
    lead_import = pytest.importorskip("web.lead_import")   # lands with the leads helper's work
    stage, validate_in_background = lead_import.stage, lead_import.validate_in_background
    pool = app.extensions["db_pool"]
    corpus = bad_csvs(other_device=people["dev_b"])
    with _conn(module_db_url) as c:
        b_before = c.execute("SELECT md5(string_agg(l::text, '|' ORDER BY l.id)) AS h FROM leads l WHERE user_id = %s",
                             [people["b"]]).fetchone()["h"]
        for name, data in corpus.items():
            import_id = c.execute("SELECT start_lead_import(%s, %s, %s, %s) AS id",
                                  [people["a"], people["dev_a"], name + ".csv", len(data)]).fetchone()["id"]
            with _conn(module_db_url) as copy_conn, _conn(module_db_url) as progress:
                stage(copy_conn, progress, import_id, io.BytesIO(data))
            validate_in_background(pool, import_id).join(60)
            status = c.execute("SELECT * FROM lead_import_status(%s, %s)", [people["a"], import_id]).fetchone()
            assert status["status"] in ("finished", "failed"), (name, status)
            if status["status"] == "failed":
                assert status["error"], name
            else:
                bad = c.execute("SELECT * FROM lead_import_report(%s, %s)", [people["a"], import_id]).fetchall()
                assert all(r["reason"] for r in bad), name
                assert status["rows_bad"] == len(bad), (name, status)
        foreign = c.execute("SELECT count(*) AS n FROM leads WHERE user_id = %s AND device_id IS NOT NULL "
                            "AND device_id <> %s", [people["a"], people["dev_a"]]).fetchone()["n"]
        assert foreign == 0                          # no lead of A was put on B's device
        assert c.execute("SELECT count(*) AS n FROM leads WHERE phone = '60123456792' AND user_id = %s",
                         [people["a"]]).fetchone()["n"] == 1      # 5000 copies of one phone: one lead
        b_after = c.execute("SELECT md5(string_agg(l::text, '|' ORDER BY l.id)) AS h FROM leads l WHERE user_id = %s",
                            [people["b"]]).fetchone()["h"]
        assert b_after == b_before
    print(f"\nhostile CSVs: {len(corpus)} files")


def test_bad_images_are_refused_whole(app, module_db_url, people):
    client = app.test_client()
    assert login(client, people["emails"][people["a"]]).status_code == 302
    token = csrf_token(client, "/dashboard")
    corpus = bad_images()
    with _conn(module_db_url) as c:
        digest = data_digest(c)
        for name, data in corpus.items():
            before = digest()
            r = client.post(f"/api/chats/{people['chats'][people['a']]}/messages", headers={"X-CSRFToken": token},
                            data={"image": (io.BytesIO(data), name + ".png"), "caption": "x"},
                            content_type="multipart/form-data")
            assert r.status_code < 500, (name, r.status_code, r.get_data(as_text=True)[:200])
            if r.status_code >= 400:
                assert digest() == before, f"{name}: refused but something was written"
            assert r.status_code == 400, (name, r.status_code)     # every one of them is refused
    # Another user's chat: 404 whatever the file.
    r = client.post(f"/api/chats/{people['chats'][people['b']]}/messages", headers={"X-CSRFToken": token},
                    data={"image": (io.BytesIO(corpus["gif_animation"]), "x.gif")}, content_type="multipart/form-data")
    assert r.status_code == 404
    print(f"\nhostile images: {len(corpus)} files")


HOSTILE_WATCH = [True, False, None, "1", 1.5, -1, 0, 2 ** 63, 10 ** 30, [1], {"id": 1}, "1; DROP TABLE users"]


def test_websocket_messages_about_another_users_device(app, module_db_url, people):
    with serving(app) as host:
        ws = LiveClient(host, session_cookie(app, people["emails"][people["a"]]))
        try:
            for device_id in [people["dev_b"]] + HOSTILE_WATCH:
                ws.send({"type": "watch", "device_id": device_id})
                assert ws.wait_for("live.error")["data"]["error"] == "device not found", device_id
            for raw in ["not json", "[]", "null", json.dumps({"type": "watch"}), "x" * 16_000,
                        json.dumps({"type": "subscribe", "user_id": people["b"]})]:
                ws.ws.send(raw)
                assert ws.wait_for("live.error"), raw[:40]
            ws.send({"type": "ping"})
            assert ws.wait_for("pong")                  # the socket survived all of it
            with _conn(module_db_url) as c:
                c.execute("SELECT notify_user(%s, 'chat_message', %s::jsonb)",
                          [people["b"], json.dumps({"device_id": people["dev_b"], "text": "secret of b"})])
                c.execute("SELECT notify_user(%s, 'test.end', '{}')", [people["a"]])
            assert all("secret of b" not in json.dumps(e) for e in ws.until("test.end"))
        finally:
            ws.close()


def test_websocket_frames_past_the_limit_close_the_socket(app, people):
    with serving(app) as host:
        ws = LiveClient(host, session_cookie(app, people["emails"][people["a"]]))
        try:
            ws.ws.send("x" * 1_000_000)
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    ws.ws.receive(timeout=DEADLINE)
            assert closed.value.reason == 1009                     # message too big
        finally:
            ws.close()


def test_an_account_gets_a_few_websockets_not_the_server(app, people):
    with serving(app) as host:
        cookie = session_cookie(app, people["emails"][people["a"]])
        sockets = [LiveClient(host, cookie) for _ in range(SOCKETS_PER_USER)]
        try:
            with pytest.raises(WsConnectionError) as refused:
                LiveClient(host, cookie)
            assert refused.value.status_code == 429
            other = LiveClient(host, session_cookie(app, people["emails"][people["b"]]))   # others are not affected
            other.close()
            sockets.pop().close()
            deadline = time.monotonic() + DEADLINE
            while True:                                             # its place frees once the server sees it go
                try:
                    sockets.append(LiveClient(host, cookie))
                    break
                except WsConnectionError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
        finally:
            for ws in sockets:
                ws.close()
