"""The devices page and API: CRUD, commands for the sender, QR rendering, owner scoping."""
import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories import set_quota
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
    assert res.get_json() == {"deleted": True, "pending": False, "command_id": None, "leads_to_pool": 1,
                              "leads_merged_into_pool": 0, "messages_skipped": 0,
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


def test_add_many_then_search_filter_sort_and_page(client, owner, committed_db_url):
    uid, headers = owner
    # Past the account's device quota the whole batch is refused.
    res = client.post("/api/devices/batch", json={"name_pattern": "Sales {n}", "count": 120}, headers=headers)
    assert res.status_code == 403 and "quota" in res.get_json()["error"]
    assert client.get("/api/devices").get_json()["total"] == 0
    with psycopg.connect(committed_db_url, autocommit=True) as c:
        set_quota(c, uid, "devices", 3000)
    res = client.post("/api/devices/batch", json={"name_pattern": "Sales {n}", "count": 120, "first_number": 1,
                                                   "hourly_limit": 40}, headers=headers)
    assert res.status_code == 201 and res.get_json()["count"] == 120
    listed = client.get("/api/devices?per_page=50&page=2&sort=created&dir=desc").get_json()
    assert (listed["total"], listed["page"], listed["pages"], len(listed["devices"])) == (120, 2, 3, 50)
    assert listed["devices"][0]["device_name"] == "Sales 70" and listed["devices"][0]["hourly_limit"] == 40
    found = client.get("/api/devices?q=sales 11").get_json()
    assert sorted(d["device_name"] for d in found["devices"]) == ["Sales 11", "Sales 110", "Sales 111", "Sales 112",
                                                                  "Sales 113", "Sales 114", "Sales 115", "Sales 116",
                                                                  "Sales 117", "Sales 118", "Sales 119"]
    assert client.get("/api/devices?page=99").get_json()["page"] == 3        # past the end: the last page
    assert client.get("/api/devices?status=asleep").status_code == 400
    assert client.get("/api/devices?sort=colour").status_code == 400
    # The page renders one page of rows and the pager; the list fragment is what the script swaps in.
    page = client.get("/devices?q=Sales 1&sort=name").get_data(as_text=True)
    assert page.count('data-device-id="') == 32 and "1–32 of 32" in page
    fragment = client.get("/devices?status=paused&fragment=list").get_data(as_text=True)
    assert fragment.startswith('<div id="device-list"') and "No device matches." in fragment
    assert client.post("/api/devices/batch", json={"name_pattern": "x", "count": 0}, headers=headers).status_code == 400


def test_bulk_settings_pause_and_resume(client, owner, committed_db_url):
    uid, headers = owner
    ids = client.post("/api/devices/batch", json={"name_pattern": "Desk {n}", "count": 3}, headers=headers).get_json()["device_ids"]
    res = client.patch("/api/devices", json={"device_ids": ids[:2], "min_delay_seconds": 45, "max_delay_seconds": 90,
                                             "daily_limit": 500}, headers=headers)
    assert res.get_json() == {"updated": 2}
    rows = sql(committed_db_url, "SELECT id, min_delay_seconds, max_delay_seconds, daily_limit FROM user_devices"
                                 " WHERE id = ANY (%s) ORDER BY id", [ids])
    assert [(r["min_delay_seconds"], r["max_delay_seconds"], r["daily_limit"]) for r in rows] == [
        (45, 90, 500), (45, 90, 500), (30, 60, 800)]
    # All or nothing: one device would end with max < min, so none changes.
    bad = client.patch("/api/devices", json={"device_ids": ids, "max_delay_seconds": 40}, headers=headers)
    assert bad.status_code == 400 and "would be below the minimum" in bad.get_json()["error"]
    assert [r["max_delay_seconds"] for r in sql(committed_db_url, "SELECT max_delay_seconds FROM user_devices"
                                                " WHERE id = ANY (%s) ORDER BY id", [ids])] == [90, 90, 60]
    one = client.patch(f"/api/devices/{ids[2]}", json={"device_name": "Front", "hourly_limit": 20}, headers=headers)
    assert one.get_json()["device"]["device_name"] == "Front"
    assert client.post("/api/devices/pause", json={"device_ids": ids}, headers=headers).get_json() == {"changed": 3}
    paused = client.get("/api/devices?status=paused").get_json()
    assert paused["total"] == 3 and all(d["paused"] for d in paused["devices"])
    assert client.post("/api/devices/resume", json={"device_ids": ids[:1]}, headers=headers).get_json() == {"changed": 1}
    assert client.post("/api/devices/pause", json={"device_ids": "all"}, headers=headers).status_code == 400


def test_picker_lists_and_ids_follow_search_and_status(client, owner, committed_db_url):
    uid, headers = owner
    ids = client.post("/api/devices/batch", json={"name_pattern": "Phone {n}", "count": 5}, headers=headers).get_json()["device_ids"]
    sql(committed_db_url, "UPDATE user_devices SET status = 'online' WHERE id = ANY (%s) RETURNING id", [ids[1:4]])
    online = client.get("/api/devices/ids?status=online").get_json()
    assert online == {"device_ids": ids[1:4], "total": 3}
    page = client.get("/api/devices/choices?q=phone&limit=2&offset=2").get_json()
    assert page["total"] == 5 and [d["device_name"] for d in page["devices"]] == ["Phone 3", "Phone 4"]
    assert set(page["devices"][0]) == {"device_id", "device_name", "phone", "status", "paused"}
