"""Leads: phone normalisation, whole-token matching, the merge rule, owner scoping (SQL and API),
and the webhook intake."""
import threading
import time

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories import make_device, make_user
from tests.webutil import signed_in_user


def create_lead(conn, user_id, device_id=None, name="Ali", phone="012-345 6789", niche="", status="prospect",
                trigger=None):
    return conn.execute("SELECT create_lead(%s, %s, %s, %s, %s, %s, %s) AS id",
                        [user_id, device_id, name, phone, niche, status, trigger]).fetchone()["id"]


@pytest.mark.parametrize("raw, country, expected", [
    ("012-345 6789", "60", "60123456789"),
    ("+60 12-345 6789", "60", "60123456789"),
    ("0060 12 345 6789", "60", "60123456789"),
    ("60123456789", "60", "60123456789"),
    ("(012) 345.6789", "60", "60123456789"),
    ("0812 3456", "65", "658123456"),
    ("+1 415 555 0100", "60", "14155550100"),
])
def test_phone_numbers_are_normalised(db, raw, country, expected):
    assert db.execute("SELECT _normalize_phone(%s, %s) AS p", [raw, country]).fetchone()["p"] == expected


@pytest.mark.parametrize("raw, reason", [
    ("", "empty"),
    ("012-345 67x9", "may only hold digits"),
    ("0123", "too short"),
    ("+60 12 3456 7890 1234 5", "too long"),
    ("+0 12 345 6789", "no valid country code"),
])
def test_invalid_phone_numbers_are_rejected_with_the_reason(db, raw, reason):
    uid = make_user(db)
    assert db.execute("SELECT _normalize_phone(%s, '60') AS p", [raw]).fetchone()["p"] is None
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=reason):
        create_lead(db, uid, phone=raw)


def test_default_country_comes_from_the_owner(db):
    uid = make_user(db)
    db.execute("UPDATE users SET country_code = '65' WHERE id = %s", [uid])
    lead = create_lead(db, uid, phone="0812 3456")
    assert db.execute("SELECT phone FROM leads WHERE id = %s", [lead]).fetchone()["phone"] == "658123456"


def test_niche_and_trigger_match_whole_tokens_only(db):
    uid = make_user(db)
    fit = create_lead(db, uid, phone="0111111111", niche="fit, yoga", trigger="promo")
    fitness = create_lead(db, uid, phone="0122222222", niche="Fitness", trigger="promotion")
    both = create_lead(db, uid, phone="0133333333", niche="gym,FIT", trigger="promo, vip")

    def ids(**filters):
        return {r["id"] for r in db.execute(
            "SELECT id FROM find_leads(%s, p_niche => %s, p_trigger => %s)",
            [uid, filters.get("niche", ""), filters.get("trigger", "")])}

    assert ids(niche="fit") == {fit, both}
    assert ids(niche="fitness") == {fitness}
    assert ids(niche="fitn") == set()
    assert ids(niche="yoga, gym") == {fit, both}
    assert ids(trigger="promo") == {fit, both}
    assert ids(trigger="promotion") == {fitness}
    assert ids() == {fit, fitness, both}


@pytest.mark.parametrize("raw, tokens", [
    ("Gym", ["gym"]), ("fitness, gym", ["fitness", "gym"]), ("Gym,fitness", ["fitness", "gym"]), ("a, A ,a", ["a"]),
    (" , ,", []), ("x,", ["x"]), ("b, a ,, c,a", ["a", "b", "c"]), ("", []), ("two words, x", ["two words", "x"]),
])
def test_tokens_are_trimmed_lower_case_sorted_and_unique(db, raw, tokens):
    assert db.execute("SELECT lead_tokens(%s) AS t", [raw]).fetchone()["t"] == tokens


def test_filters_and_keyset_pages(db):
    uid = make_user(db)
    d1, d2 = make_device(db, uid), make_device(db, uid)
    made = [create_lead(db, uid, d1 if i % 2 else d2, phone=f"01{i}0000000", status="customer" if i < 3 else "prospect")
            for i in range(6)]
    page1 = db.execute("SELECT id FROM find_leads(%s, p_limit => 4)", [uid]).fetchall()
    page2 = db.execute("SELECT id FROM find_leads(%s, p_before_id => %s, p_limit => 4)", [uid, page1[-1]["id"]]).fetchall()
    assert [r["id"] for r in page1 + page2] == sorted(made, reverse=True)
    on_d1 = db.execute("SELECT id FROM find_leads(%s, p_device_id => %s)", [uid, d1]).fetchall()
    assert {r["id"] for r in on_d1} == {made[i] for i in (1, 3, 5)}
    customers = db.execute("SELECT id FROM find_leads(%s, p_target_status => 'customer')", [uid]).fetchall()
    assert {r["id"] for r in customers} == set(made[:3])


def test_same_phone_once_per_device_and_merged_on_intake(db):
    uid = make_user(db)
    d1, d2 = make_device(db, uid), make_device(db, uid)
    lead = create_lead(db, uid, d1, name="Ali", niche="gym")
    with pytest.raises(psycopg.errors.UniqueViolation, match="already exists"):
        with db.transaction():
            create_lead(db, uid, d1, phone="+60 12-345 6789")
    other_device = create_lead(db, uid, d2)  # the same number on another device is another lead
    assert other_device != lead
    again = db.execute("SELECT * FROM intake_lead(%s, %s, '', '60123456789', 'fit', 'customer', NULL)", [uid, d1]).fetchone()
    assert again == {"lead_id": lead, "created": False}
    row = db.execute("SELECT name, niche, target_status FROM leads WHERE id = %s", [lead]).fetchone()
    assert row == {"name": "Ali", "niche": "fit", "target_status": "customer"}  # blank name kept, others merged


def test_a_lead_cannot_be_put_on_another_owners_device(db):
    a, b = make_user(db), make_user(db)
    b_device = make_device(db, b)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not one of your devices"):
        create_lead(db, a, b_device)


def test_a_leads_owner_and_device_must_exist_and_their_deletion_carries_over(db):
    """Checked once per statement by triggers (they were foreign keys): a missing owner or device is
    refused, a deleted device's leads go to the pool, a deleted owner's leads go with them."""
    uid = make_user(db)
    d = make_device(db, uid)
    insert = "INSERT INTO leads (user_id, device_id, phone) VALUES (%s, %s, %s)"
    for owner, device in ((uid, 999999999), (999999999, None)):
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="does not exist"):
            with db.transaction():
                db.execute(insert, [owner, device, "60123456789"])
    lead = create_lead(db, uid, d)
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="device does not exist"):
        with db.transaction():
            db.execute("UPDATE leads SET device_id = 999999999 WHERE id = %s", [lead])
    db.execute("DELETE FROM user_devices WHERE id = %s", [d])
    assert db.execute("SELECT device_id FROM leads WHERE id = %s", [lead]).fetchone()["device_id"] is None
    db.execute("DELETE FROM users WHERE id = %s", [uid])
    assert db.execute("SELECT count(*) AS n FROM leads WHERE id = %s", [lead]).fetchone()["n"] == 0


def test_merge_updates_existing_leads_and_inserts_the_rest_last_repeat_winning(db):
    uid = make_user(db)
    d = make_device(db, uid)
    existing = create_lead(db, uid, d, name="Ali", phone="0111111111", niche="gym")
    rows = db.execute("SELECT * FROM _merge_leads(%s, %s, %s, %s, %s, %s, %s)", [
        uid, [d, None, None, d], ["", "Bee", "Bee 2", "Ali B"], ["60111111111", "60122222222", "60122222222", "60133333333"],
        ["fit", "", "yoga", ""], ["customer", "", "", ""], [None, None, "promo", None]]).fetchall()
    assert sorted((r["lead_id"] == existing, r["inserted"]) for r in rows) == [(False, True), (False, True), (True, False)]
    leads = db.execute("SELECT device_id, name, phone, niche, target_status, trigger FROM leads WHERE user_id = %s "
                       "ORDER BY phone", [uid]).fetchall()
    assert leads == [
        {"device_id": d, "name": "Ali", "phone": "60111111111", "niche": "fit", "target_status": "customer", "trigger": None},
        {"device_id": None, "name": "Bee 2", "phone": "60122222222", "niche": "yoga", "target_status": "prospect",
         "trigger": "promo"},
        {"device_id": d, "name": "Ali B", "phone": "60133333333", "niche": "", "target_status": "prospect", "trigger": None},
    ]


def test_a_lead_added_by_another_transaction_meanwhile_is_merged_into(connect_committed):
    """The merge inserts without ON CONFLICT; the lead another transaction inserts (not yet committed)
    makes its INSERT wait and then fail on the unique key, and the merge runs again into that lead."""
    first, second, watcher = connect_committed(), connect_committed(), connect_committed()
    uid = make_user(first)
    d = make_device(first, uid)
    result = {}
    with first.transaction():
        lead = create_lead(first, uid, d, name="First", phone="0111111111")
        merging = threading.Thread(target=lambda: result.update(second.execute(
            "SELECT * FROM intake_lead(%s, %s, 'Second', '0111111111', 'gym', NULL, NULL)", [uid, d]).fetchone()))
        merging.start()
        deadline = time.monotonic() + 60   # until the merge waits on the uncommitted lead's key
        while not watcher.execute("SELECT wait_event_type = 'Lock' AS w FROM pg_stat_activity WHERE pid = %s",
                                [second.info.backend_pid]).fetchone()["w"]:
            assert time.monotonic() < deadline, "the merge never waited on the uncommitted lead"
            time.sleep(0.02)
    merging.join(60)
    assert result == {"lead_id": lead, "created": False}
    assert first.execute("SELECT name, niche FROM leads WHERE user_id = %s", [uid]).fetchall() == [
        {"name": "Second", "niche": "gym"}]


def test_leads_ai_is_the_pool(db):
    uid = make_user(db)
    d = make_device(db, uid)
    pooled = create_lead(db, uid, None, phone="0111111111")
    create_lead(db, uid, d, phone="0122222222")
    assert [r["id"] for r in db.execute("SELECT id FROM leads_ai WHERE user_id = %s", [uid])] == [pooled]


# API ------------------------------------------------------------------------------------------

def _device(db_url, uid):
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        return make_device(c, uid)


def test_api_create_edit_list_delete(client, module_db_url):
    uid, token = signed_in_user(client, module_db_url)
    h = {"X-CSRFToken": token}
    dev = _device(module_db_url, uid)
    r = client.post("/api/leads", json={"device_id": dev, "name": "Siti", "phone": "013-999 8888",
                                        "niche": "beauty", "target_status": "prospect"}, headers=h)
    assert r.status_code == 201, r.get_json()
    lead_id = r.get_json()["id"]
    assert r.get_json()["phone"] == "60139998888"
    bad = client.post("/api/leads", json={"phone": "12ab"}, headers=h)
    assert bad.status_code == 400 and "digits" in bad.get_json()["error"]
    r = client.put(f"/api/leads/{lead_id}", json={"device_id": dev, "name": "Siti A", "phone": "0139998888",
                                                  "niche": "beauty, spa", "target_status": "customer"}, headers=h)
    assert r.status_code == 200 and r.get_json()["target_status"] == "customer"
    listed = client.get("/api/leads?niche=spa").get_json()["leads"]
    assert [x["id"] for x in listed] == [lead_id]
    assert client.get("/api/leads?niche=sp").get_json()["leads"] == []
    assert client.delete(f"/api/leads/{lead_id}", headers=h).status_code == 204
    assert client.get(f"/api/leads/{lead_id}").status_code == 404
    assert client.get("/leads").status_code == 200


def test_api_one_user_cannot_see_or_touch_anothers_leads(app, module_db_url):
    alice, bob = app.test_client(), app.test_client()
    a_uid, a_token = signed_in_user(alice, module_db_url)
    _, b_token = signed_in_user(bob, module_db_url)
    lead_id = alice.post("/api/leads", json={"phone": "0121112222", "name": "A"},
                         headers={"X-CSRFToken": a_token}).get_json()["id"]
    assert bob.get(f"/api/leads/{lead_id}").status_code == 404
    assert bob.put(f"/api/leads/{lead_id}", json={"phone": "0121112222"},
                   headers={"X-CSRFToken": b_token}).status_code == 404
    assert bob.delete(f"/api/leads/{lead_id}", headers={"X-CSRFToken": b_token}).status_code == 404
    assert lead_id not in [x["id"] for x in bob.get("/api/leads").get_json()["leads"]]
    assert alice.get(f"/api/leads/{lead_id}").status_code == 200


def test_webhook_requires_its_token_and_is_idempotent(client, module_db_url):
    uid, token = signed_in_user(client, module_db_url)
    dev = _device(module_db_url, uid)
    secret = client.post("/api/tokens", json={"purpose": "webhook", "name": "crm"},
                         headers={"X-CSRFToken": token}).get_json()["token"]
    api_token = client.post("/api/tokens", json={"purpose": "api", "name": "script"},
                            headers={"X-CSRFToken": token}).get_json()["token"]
    anon = client.application.test_client()
    body = {"device_id": dev, "name": "Web Lead", "phone": "+60 17-222 3333", "niche": "fit"}
    assert anon.post("/api/webhooks/leads", json=body).status_code == 401
    assert anon.post("/api/webhooks/leads", json=body, headers={"X-Webhook-Token": "nope"}).status_code == 401
    assert anon.post("/api/webhooks/leads", json=body, headers={"X-Webhook-Token": api_token}).status_code == 401
    first = anon.post("/api/webhooks/leads", json=body, headers={"X-Webhook-Token": secret})
    assert first.status_code == 201, first.get_json()
    assert anon.post(f"/api/webhooks/leads?token={secret}", json=body).status_code == 401   # never in a URL
    again = anon.post("/api/webhooks/leads", json=body, headers={"X-Webhook-Token": secret})
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"] and again.get_json()["created"] is False
    bad = anon.post("/api/webhooks/leads", json={**body, "phone": "x"}, headers={"X-Webhook-Token": secret})
    assert bad.status_code == 400
    with psycopg.connect(module_db_url, row_factory=dict_row) as c:
        assert c.execute("SELECT count(*) AS n FROM leads WHERE user_id = %s AND phone = '60172223333'",
                         [uid]).fetchone()["n"] == 1
