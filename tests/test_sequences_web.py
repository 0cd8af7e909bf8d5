"""The sequences pages and JSON API: CONTRACT.md's summary shape, CRUD scoped to the owner, and the
detail page's per-flow figures with the contacts behind them."""
import psycopg
from psycopg.rows import dict_row

from tests.factories import make_device
from tests.webutil import signed_in_user

SEQUENCE = {"name": "Welcome", "trigger": "welcome", "min_delay_seconds": 0, "max_delay_seconds": 0,
            "steps": [{"day_number": 1, "content": "Hi {name}"}, {"day_number": 2, "content": "Day two"}]}


def create(client, token, body=SEQUENCE):
    return client.post("/api/sequences", json=body, headers={"X-CSRFToken": token})


def test_summary_json_has_exactly_the_contract_shape(client, module_db_url):
    uid, token = signed_in_user(client, module_db_url)
    sid = create(client, token).get_json()["id"]
    assert client.post(f"/api/sequences/{sid}/activate", headers={"X-CSRFToken": token}).status_code == 200
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        make_device(c, uid)
        for i in range(3):
            c.execute("INSERT INTO leads (user_id, name, phone, trigger) VALUES (%s, 'A', %s, 'welcome')",
                      [uid, f"6019{i:07d}"])
        assert c.execute("SELECT activate_due_steps() AS n").fetchone()["n"] == 3
    body = client.get("/api/sequences/summary").get_json()
    assert set(body) == {"sequences", "total_flows", "total_should_send", "total_done_send", "total_failed_send",
                         "total_remaining_send", "recent_sequences"}
    assert body["sequences"] == {"total": 1, "active": 1, "inactive": 0}
    assert (body["total_flows"], body["total_should_send"], body["total_done_send"], body["total_failed_send"],
            body["total_remaining_send"]) == (2, 6, 0, 0, 6)
    [recent] = body["recent_sequences"]
    assert recent == {"id": sid, "name": "Welcome", "trigger": "welcome", "total_flows": 2, "should_send": 6,
                      "done_send": 0, "failed_send": 0, "remaining_send": 6}
    page = client.get("/sequences").get_data(as_text=True)
    assert "Welcome" in page and "6" in page
    detail = client.get(f"/sequences/{sid}").get_data(as_text=True)
    assert "welcome_day2" in detail
    step1 = client.get(f"/api/sequences/{sid}").get_json()["steps"][0]["id"]
    contacts = client.get(f"/api/sequences/{sid}/flows/{step1}/contacts?kind=remaining").get_json()["contacts"]
    assert len(contacts) == 3 and {c["status"] for c in contacts} == {"pending"}
    shown = client.get(f"/sequences/{sid}?step={step1}&kind=remaining").get_data(as_text=True)
    assert "60190000001" in shown


def test_crud_and_validation(client, module_db_url):
    _, token = signed_in_user(client, module_db_url)
    h = {"X-CSRFToken": token}
    r = create(client, token, {**SEQUENCE, "trigger": "two words"})
    assert r.status_code == 400 and "trigger" in r.get_json()["error"]
    sid = create(client, token, {**SEQUENCE, "trigger": "crud"}).get_json()["id"]
    assert create(client, token, {**SEQUENCE, "trigger": "crud"}).status_code == 409
    updated = client.put(f"/api/sequences/{sid}", json={**SEQUENCE, "trigger": "crud", "name": "Renamed",
                                                          "steps": SEQUENCE["steps"][:1]}, headers=h).get_json()
    assert updated["name"] == "Renamed" and len(updated["steps"]) == 1
    assert client.get("/api/sequences/%d/flows?from=2024-13-01" % sid).status_code == 400
    assert client.get(f"/api/sequences/{sid}/flows?from=2024-01-01&to=2024-01-31").status_code == 200
    assert client.post(f"/api/sequences/{sid}/deactivate", headers=h).get_json()["status"] == "inactive"
    assert client.post("/api/sequences", json={**SEQUENCE, "trigger": "x"}).status_code == 400   # no CSRF
    assert client.delete(f"/api/sequences/{sid}", headers=h).status_code == 200
    assert client.get(f"/api/sequences/{sid}").status_code == 404


def test_user_a_cannot_read_or_change_user_b_sequences(app, module_db_url):
    a, b = app.test_client(), app.test_client()
    _, token_a = signed_in_user(a, module_db_url)
    _, token_b = signed_in_user(b, module_db_url)
    sid = create(b, token_b, {**SEQUENCE, "trigger": "secret"}).get_json()["id"]
    step = b.get(f"/api/sequences/{sid}").get_json()["steps"][0]["id"]
    h = {"X-CSRFToken": token_a}
    for resp in [a.get(f"/api/sequences/{sid}"), a.get(f"/sequences/{sid}"), a.get(f"/sequences/{sid}/edit"),
                 a.get(f"/api/sequences/{sid}/flows"), a.get(f"/api/sequences/{sid}/flows/{step}/contacts"),
                 a.put(f"/api/sequences/{sid}", json=SEQUENCE, headers=h),
                 a.post(f"/api/sequences/{sid}/activate", headers=h),
                 a.delete(f"/api/sequences/{sid}", headers=h)]:
        assert resp.status_code == 404
    assert a.get("/api/sequences/summary").get_json()["sequences"]["total"] == 0
    assert "secret" not in a.get("/sequences").get_data(as_text=True)
    assert b.get(f"/api/sequences/{sid}").status_code == 200


def test_builder_pages_render(client, module_db_url):
    _, token = signed_in_user(client, module_db_url)
    assert client.get("/sequences/new").status_code == 200
    sid = create(client, token, {**SEQUENCE, "trigger": "page"}).get_json()["id"]
    page = client.get(f"/sequences/{sid}/edit").get_data(as_text=True)
    assert 'id="sequence-builder"' in page and "page_day2" in page
    assert client.get("/api/sequences").get_json()["sequences"][0]["trigger"] == "page"


def test_contacts_api_pages_every_contact_with_per_step_state_and_retry_queues_failed_steps(client, module_db_url):
    uid, token = signed_in_user(client, module_db_url)
    sid = create(client, token, dict(SEQUENCE, trigger="paged")).get_json()["id"]
    client.post(f"/api/sequences/{sid}/activate", headers={"X-CSRFToken": token})
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        make_device(c, uid)
        c.execute("""INSERT INTO leads (user_id, name, phone, trigger)
                     SELECT %s, 'P' || g, (60190000000 + g)::text, 'paged' FROM generate_series(1, 105) g""", [uid])
        assert c.execute("SELECT activate_due_steps() AS n").fetchone()["n"] == 105
        failed = c.execute("""UPDATE broadcast_messages SET status = 'failed', failed_at = now(), error_message = 'x'
                               WHERE id = (SELECT min(id) FROM broadcast_messages WHERE sequence_id = %s)
                               RETURNING id, recipient_phone""", [sid]).fetchone()
    first = client.get(f"/api/sequences/{sid}/contacts").get_json()
    assert (first["total"], len(first["contacts"])) == (105, 100)
    assert len(client.get(f"/api/sequences/{sid}/contacts?offset=100").get_json()["contacts"]) == 5
    ann = first["contacts"][0]
    assert ann["contact_phone"] == failed["recipient_phone"] and ann["status"] == "active"
    assert [(s["day_number"], s["status"], s["attempts"]) for s in ann["steps"]] == [(1, "failed", 1), (2, "waiting", None)]
    assert [s["status"] for s in first["contacts"][1]["steps"]] == ["pending", "waiting"]

    retried = client.post(f"/api/sequences/{sid}/retry", json={}, headers={"X-CSRFToken": token})
    assert retried.status_code == 200 and retried.get_json() == {"queued": 1}
    ann = client.get(f"/api/sequences/{sid}/contacts").get_json()["contacts"][0]
    assert [(s["status"], s["attempts"]) for s in ann["steps"]][0] == ("pending", 2)
    with psycopg.connect(module_db_url, row_factory=dict_row) as c:
        assert c.execute("SELECT retry_of FROM broadcast_messages WHERE sequence_id = %s ORDER BY id DESC LIMIT 1",
                         [sid]).fetchone()["retry_of"] == failed["id"]

    other_client = client.application.test_client()
    signed_in_user(other_client, module_db_url)
    assert other_client.get(f"/api/sequences/{sid}/contacts").status_code == 404
    assert client.post(f"/api/sequences/{sid}/retry", json={"step_id": "x"},
                       headers={"X-CSRFToken": token}).status_code == 400
