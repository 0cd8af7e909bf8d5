"""The devices page and API: CRUD, commands for the sender, QR rendering, owner scoping."""
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.webutil import signed_in_user


@pytest.fixture
def owner(client, committed_db_url):
    uid, token = signed_in_user(client, committed_db_url)
    return uid, {"X-CSRFToken": token}


def add(client, headers, name="Sales 1", **kw):
    res = client.post("/api/devices", json={"device_name": name, **kw}, headers=headers)
    assert res.status_code == 201, res.get_json()
    return res.get_json()["device"]


def sql(url, query, params=()):
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as c:
        return c.execute(query, params).fetchall()


def test_create_list_rename_and_page(client, owner):
    uid, headers = owner
    dev = add(client, headers, hourly_limit=50)
    assert dev["status"] == "offline" and dev["device_name"] == "Sales 1"
    res = client.patch(f"/api/devices/{dev['device_id']}", json={"device_name": "Front desk"}, headers=headers)
    assert res.get_json()["device"]["device_name"] == "Front desk"
    listed = client.get("/api/devices").get_json()["devices"]
    assert [d["device_name"] for d in listed] == ["Front desk"]
    page = client.get("/devices").get_data(as_text=True)
    assert "Front desk" in page and 'data-action="pair"' in page and 'data-action="simulate-scan"' in page


@pytest.mark.parametrize("body,status", [({}, 400), ({"device_name": "  "}, 400),
                                         ({"device_name": "x", "hourly_limit": "lots"}, 400),
                                         ({"device_name": "x", "hourly_limit": 0}, 400)])
def test_create_refuses_bad_input(client, owner, body, status):
    assert client.post("/api/devices", json=body, headers=owner[1]).status_code == status


def test_writes_need_the_csrf_token(client, owner):
    assert client.post("/api/devices", json={"device_name": "x"}).status_code == 400


def test_pair_and_commands_become_device_commands(client, owner, committed_db_url):
    uid, headers = owner
    dev = add(client, headers)["device_id"]
    res = client.post(f"/api/devices/{dev}/pair", json={}, headers=headers)
    assert res.status_code == 202
    again = client.post(f"/api/devices/{dev}/pair", json={}, headers=headers).get_json()
    assert again["command_id"] == res.get_json()["command_id"]     # a double click is one command
    res = client.post(f"/api/devices/{dev}/pair-phone", json={"phone": "+60 12-345 6789"}, headers=headers)
    assert res.status_code == 202
    rows = sql(committed_db_url, "SELECT command, phone, status FROM device_commands WHERE device_id = %s ORDER BY id", [dev])
    assert rows == [{"command": "pair", "phone": None, "status": "pending"},
                    {"command": "pair_phone", "phone": "60123456789", "status": "pending"}]
    assert sql(committed_db_url, "SELECT status FROM user_devices WHERE id = %s", [dev])[0]["status"] == "connecting"


def test_commands_that_make_no_sense_are_409(client, owner):
    dev = add(client, owner[1])["device_id"]
    res = client.post(f"/api/devices/{dev}/logout", json={}, headers=owner[1])
    assert res.status_code == 409 and "no WhatsApp session" in res.get_json()["error"]
    assert client.post(f"/api/devices/{dev}/pair-phone", json={"phone": "12"}, headers=owner[1]).status_code == 400


def test_simulate_scan_only_with_the_simulated_transport(client, owner, monkeypatch):
    dev = add(client, owner[1])["device_id"]
    monkeypatch.setenv("WA_TRANSPORT", "neonize")
    assert client.post(f"/api/devices/{dev}/simulate-scan", json={}, headers=owner[1]).status_code == 409
    monkeypatch.setenv("WA_TRANSPORT", "sim")
    assert client.post(f"/api/devices/{dev}/simulate-scan", json={}, headers=owner[1]).status_code == 202


def test_qr_is_rendered_as_svg(client, owner):
    dev = add(client, owner[1])["device_id"]
    res = client.post(f"/api/devices/{dev}/qr.svg", json={"code": "2@abc,def,ghi"}, headers=owner[1])
    assert res.status_code == 200 and res.mimetype == "image/svg+xml" and b"<svg" in res.data
    assert client.post(f"/api/devices/{dev}/qr.svg", json={"code": ""}, headers=owner[1]).status_code == 400


def test_delete_of_an_offline_device_says_what_happened(client, owner, committed_db_url):
    uid, headers = owner
    dev = add(client, headers)["device_id"]
    sql(committed_db_url, "INSERT INTO leads (user_id, device_id, phone) VALUES (%s, %s, '60123000001') RETURNING id", [uid, dev])
    res = client.delete(f"/api/devices/{dev}", headers=headers)
    assert res.status_code == 200
    assert res.get_json() == {"deleted": True, "leads_to_pool": 1, "leads_merged_into_pool": 0, "messages_skipped": 0,
                              "messages_in_flight": 0, "session_removed": False}
    assert client.get("/api/devices").get_json()["devices"] == []


def test_another_users_device_is_404_everywhere(client, owner, committed_db_url, app):
    uid, headers = owner
    dev = add(client, headers)["device_id"]
    other = app.test_client()
    _, token = signed_in_user(other, committed_db_url)
    h = {"X-CSRFToken": token}
    assert other.patch(f"/api/devices/{dev}", json={"device_name": "mine"}, headers=h).status_code == 404
    assert other.delete(f"/api/devices/{dev}", headers=h).status_code == 404
    for action in ("pair", "logout", "simulate-scan", "reconnect", "qr.svg"):
        assert other.post(f"/api/devices/{dev}/{action}", json={"code": "x"}, headers=h).status_code == 404
    assert other.get("/api/devices").get_json()["devices"] == []
    assert sql(committed_db_url, "SELECT device_name FROM user_devices WHERE id = %s", [dev])[0]["device_name"] == "Sales 1"


def test_anonymous_gets_401_and_the_page_redirects(app):
    anon = app.test_client()
    assert anon.get("/api/devices").status_code == 401
    assert anon.get("/devices").status_code == 302
