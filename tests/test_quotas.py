"""Per-account quotas: sane defaults, set by an administrator, a clear 403 when one is reached,
and nothing half-written."""
import io

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories import make_user
from tests.webutil import csrf_token, signed_in_user


def _conn(url):
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


@pytest.fixture
def me(app, committed_db_url):
    """A signed-in account allowed 1 of everything (2 leads), and an administrator."""
    client = app.test_client()
    uid, token = signed_in_user(client, committed_db_url)
    with _conn(committed_db_url) as c:
        admin = make_user(c, is_admin=True)
        for kind, n in (("devices", 1), ("leads", 2), ("campaigns", 1), ("sequences", 1), ("tokens", 1), ("media", 1)):
            c.execute("SELECT set_quota(%s, %s, %s, %s)", [admin, uid, kind, n])
    return {"uid": uid, "client": client, "h": {"X-CSRFToken": token}, "admin": admin}


def refused(r):
    assert r.status_code == 403, (r.status_code, r.get_data(as_text=True)[:200])
    assert r.get_json()["error"].startswith("quota reached: an account may have at most")
    return True


def test_defaults_exist_for_every_kind(db):
    rows = {r["kind"]: r["max_rows"] for r in db.execute("SELECT kind, max_rows FROM quotas WHERE user_id IS NULL")}
    assert rows == {"devices": 100, "leads": 200000, "campaigns": 100, "sequences": 100, "tokens": 20, "media": 2000}


def test_each_kind_stops_at_its_quota_with_a_403(me, committed_db_url):
    client, h = me["client"], me["h"]
    assert client.post("/api/devices", json={"device_name": "one"}, headers=h).status_code == 201
    assert refused(client.post("/api/devices", json={"device_name": "two"}, headers=h))
    for phone in ("60111111111", "60111111112"):
        assert client.post("/api/leads", json={"phone": phone}, headers=h).status_code == 201
    assert refused(client.post("/api/leads", json={"phone": "60111111113"}, headers=h))
    campaign = {"title": "t", "message": "m", "campaign_date": "2030-01-01", "time_schedule": "09:00"}
    first = client.post("/api/campaigns", json=campaign, headers=h)
    assert first.status_code == 201
    assert refused(client.post("/api/campaigns", json=campaign, headers=h))
    client.post(f"/api/campaigns/{first.get_json()['campaign']['id']}/cancel", headers=h)
    assert client.post("/api/campaigns", json=campaign, headers=h).status_code == 201   # an ended one frees room
    sequence = {"name": "s", "trigger": "s1", "steps": [{"day_number": 1, "content": "hi"}]}
    assert client.post("/api/sequences", json=sequence, headers=h).status_code == 201
    assert refused(client.post("/api/sequences", json={**sequence, "trigger": "s2"}, headers=h))
    assert client.post("/api/tokens", json={"name": "a"}, headers=h).status_code == 201
    assert refused(client.post("/api/tokens", json={"name": "b"}, headers=h))
    from tests.test_media import png
    upload = {"content_type": "multipart/form-data", "headers": h}
    assert client.post("/api/media", data={"image": (io.BytesIO(png()), "a.png")}, **upload).status_code == 201
    assert client.post("/api/media", data={"image": (io.BytesIO(png()), "a.png")}, **upload).status_code == 201  # same
    assert refused(client.post("/api/media", data={"image": (io.BytesIO(png(size=(9, 9))), "b.png")}, **upload))
    quotas = client.get("/api/quotas").get_json()["quotas"]
    assert quotas["leads"] == {"limit": 2, "used": 2} and quotas["devices"] == {"limit": 1, "used": 1}


def test_leads_by_webhook_and_import_stop_at_the_quota_and_undo_the_chunk(me, app, committed_db_url):
    client, h = me["client"], me["h"]
    secret = client.post("/api/tokens", json={"name": "crm", "purpose": "webhook"}, headers=h).get_json()["token"]
    hook = {"headers": {"X-Webhook-Token": secret}}
    anon = app.test_client()
    assert anon.post("/api/webhooks/leads", json={"phone": "60122222221"}, **hook).status_code == 201
    # One fits, two do not: neither lands (one chunk: the numbers share their lane, an odd last digit).
    csv = b"name,phone\nA,60133333331\nB,60133333333\n"
    r = client.post("/api/leads/import?filename=a.csv", data=csv, headers={**h, "Content-Type": "text/csv"})
    assert r.status_code == 202
    from tests.test_sender_support import wait_until
    with _conn(committed_db_url) as c:
        status = wait_until(lambda: c.execute("SELECT * FROM lead_import_status(%s, %s) WHERE status <> 'validating'",
                                              [me["uid"], r.get_json()["id"]]).fetchone(), what="import ended")
        assert status["status"] == "failed" and status["error"].startswith("quota reached")
        assert c.execute("SELECT count(*) AS n FROM leads WHERE user_id = %s", [me["uid"]]).fetchone()["n"] == 1
    assert anon.post("/api/webhooks/leads", json={"phone": "60122222222"}, **hook).status_code == 201
    assert refused(anon.post("/api/webhooks/leads", json={"phone": "60122222223"}, **hook))
    again = anon.post("/api/webhooks/leads", json={"phone": "60122222222", "name": "merged"}, **hook)
    assert again.status_code == 200                          # a merge adds nothing: still fine at the quota
    assert refused(client.post("/api/leads/import?filename=b.csv", data=csv,
                               headers={**h, "Content-Type": "text/csv"}))


def test_only_an_administrator_sets_quotas(me, app, committed_db_url):
    client, h = me["client"], me["h"]
    assert client.put("/api/admin/quotas", json={"kind": "devices", "max_rows": 999}, headers=h).status_code == 403
    admin = app.test_client()
    with _conn(committed_db_url) as c:
        email = c.execute("SELECT email FROM users WHERE id = %s", [me["admin"]]).fetchone()["email"]
    from tests.webutil import login
    assert login(admin, email).status_code == 302
    ah = {"X-CSRFToken": csrf_token(admin, "/dashboard")}
    r = admin.put("/api/admin/quotas", json={"kind": "devices", "max_rows": 3, "user_id": me["uid"]}, headers=ah)
    assert r.status_code == 200 and {"user_id": me["uid"], "email": r.get_json()["quotas"][-1]["email"],
                                     "kind": "devices", "max_rows": 3} in r.get_json()["quotas"]
    assert admin.put("/api/admin/quotas", json={"kind": "planets", "max_rows": 3}, headers=ah).status_code == 400
    assert client.get("/api/quotas").get_json()["quotas"]["devices"]["limit"] == 3
    r = admin.put("/api/admin/quotas", json={"kind": "devices", "max_rows": None, "user_id": me["uid"]}, headers=ah)
    assert r.status_code == 200
    assert client.get("/api/quotas").get_json()["quotas"]["devices"]["limit"] == 100    # back to the default
