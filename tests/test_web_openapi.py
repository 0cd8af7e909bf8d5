"""/api/openapi.json is generated from the url_map: every /api route, every method, documented;
request bodies from the definitions that validate them, response rows from the SQL functions
that return them, so responses conform and dates are ISO 8601."""
import io
import json
import re
from datetime import date, datetime, time

import pytest

from tests.factories import make_device
from tests.test_campaigns import campaign, expand_all, mark, messages
from tests.webutil import signed_in_user
from web import webhooks as web_webhooks
from web.openapi import _PARAM


def api_operations(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                yield _PARAM.sub(r"{\2}", rule.rule), method.lower(), rule


def test_every_api_route_is_described_with_a_summary(app, client):
    doc = client.get("/api/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    missing, undocumented = [], []
    for path, method, rule in api_operations(app):
        op = doc["paths"].get(path, {}).get(method)
        if op is None:
            missing.append(f"{method.upper()} {path}")
        elif not op["summary"]:
            undocumented.append(f"{method.upper()} {path} ({rule.endpoint}: add a docstring)")
    assert not missing and not undocumented, (missing, undocumented)
    assert "/api/overview" in doc["paths"] and "/api/chats/{chat_id}/messages" in doc["paths"]


# Writes that take nothing but their path: any other write must declare its request body.
BODILESS_WRITES = {
    "post /api/chats/{chat_id}/read", "post /api/campaigns/{campaign_id}/{action}",
    "post /api/sequences/{sequence_id}/{action}", "post /api/webhook-endpoints/{endpoint_id}/test",
    "post /api/webhook-deliveries/{delivery_id}/redeliver",
    *(f"post /api/devices/{{device_id}}/{a}" for a in ("pair", "simulate-scan", "logout", "reconnect")),
}


def test_every_operation_has_its_response_schema_and_every_write_its_body(app, client):
    doc = client.get("/api/openapi.json").get_json()
    no_response, no_body = [], []
    for path, method, rule in api_operations(app):
        op, name = doc["paths"][path][method], f"{method} {path}"
        success = [(code, r.get("content")) for code, r in op["responses"].items() if code.startswith("2")]
        if not success or not all(all(m.get("schema") for m in content.values()) if content else code == "204"
                                  for code, content in success):
            no_response.append(f"{name} ({rule.endpoint}: add @returns)")
        if method in ("post", "put", "patch") and name not in BODILESS_WRITES:
            body = op.get("requestBody", {}).get("content", {})
            if not body or not all(m.get("schema", {}).get("properties") for m in body.values()):
                no_body.append(f"{name} ({rule.endpoint}: add @accepts or @describes)")
    assert not no_response and not no_body, (no_response, no_body)
    assert set(doc["paths"]["/api/leads/import"]["post"]["requestBody"]["content"]) == {"multipart/form-data"}
    assert doc["paths"]["/api/devices/{device_id}/pair-phone"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["properties"]["phone"]


def test_path_parameters_are_typed(client):
    op = client.get("/api/openapi.json").get_json()["paths"]["/api/chats/{chat_id}/messages"]["post"]
    assert op["parameters"] == [{"name": "chat_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    assert op["responses"]["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


# Schemas: request bodies from the definitions that validate them, response rows from SQL ---------

_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict,
          "null": type(None)}
_FORMATS = {"date-time": datetime.fromisoformat, "date": date.fromisoformat, "time": time.fromisoformat}


def conforms(value, schema, doc, where="$"):
    """Checks `value` against the subset of JSON Schema the document uses; raises with the path."""
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    for part in schema.get("allOf", []):
        conforms(value, part, doc, where)
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        ok = any(isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                 for t in types)
        assert ok, f"{where}: {value!r} is not {types}"
    if isinstance(value, str) and schema.get("format") in _FORMATS:
        _FORMATS[schema["format"]](value)          # ISO 8601, or ValueError
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, f"{where}: {name} missing"
        for name, sub in schema.get("properties", {}).items():
            if name in value:
                conforms(value[name], sub, doc, f"{where}.{name}")
        if isinstance(schema.get("additionalProperties"), dict):
            for name in set(value) - set(schema.get("properties", {})):
                conforms(value[name], schema["additionalProperties"], doc, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for n, item in enumerate(value):
            conforms(item, schema["items"], doc, f"{where}[{n}]")


def test_every_reference_resolves_to_a_described_row(client):
    doc = client.get("/api/openapi.json").get_json()
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', json.dumps(doc["paths"])))
    assert {"get_lead", "find_leads", "webhook_endpoint_list", "webhook_delivery_list"} <= refs
    for name in refs:
        schema = doc["components"]["schemas"][name]
        assert schema["type"] == "object" and schema["properties"], name
    # Views and JSON built in SQL are described field by field, nested documents too.
    assert {"campaign_report", "campaign_device_report", "chat_messages", "sequence_definition_doc",
            "sequence_summary_doc", "sequence_contacts_page_doc", "device_delete_doc"} <= refs
    contacts = doc["components"]["schemas"]["sequence_contacts_page_doc"]["properties"]["contacts"]
    assert contacts["items"]["properties"]["steps"]["items"]["properties"]["done_at"]["format"] == "date-time"
    assert doc["components"]["schemas"]["campaign_report"]["description"] == "a row of the campaign_report view"
    assert "sequence_summary()" in doc["components"]["schemas"]["sequence_summary_doc"]["description"]
    lead = doc["components"]["schemas"]["get_lead"]["properties"]
    assert lead["created_at"] == {"type": ["string", "null"], "format": "date-time"}
    assert lead["id"]["type"] == ["integer", "null"]


def object_schemas(node):
    if isinstance(node, dict):
        if node.get("type") in ("object", ["object", "null"]):
            yield node
        for value in node.values():
            yield from object_schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from object_schemas(value)


def test_no_answer_is_an_undescribed_object(client):
    doc = client.get("/api/openapi.json").get_json()
    vague = [(path, method, schema.get("description")) for path, ops in doc["paths"].items()
             for method, op in ops.items() for code, response in op["responses"].items() if code.startswith("2")
             for schema in object_schemas(response) if path != "/api/openapi.json"
             and not {"properties", "additionalProperties", "allOf"} & set(schema)]
    assert not vague, vague


def test_request_bodies_are_documented_from_their_definitions(client):
    from web.campaigns import NEW_CAMPAIGN
    from web.leads import LEAD

    paths = client.get("/api/openapi.json").get_json()["paths"]
    body = lambda path, method: paths[path][method]["requestBody"]["content"]["application/json"]["schema"]  # noqa: E731
    assert body("/api/leads", "post") == LEAD.json_schema() == body("/api/leads/{lead_id}", "put")
    assert body("/api/campaigns", "post") == NEW_CAMPAIGN.json_schema()
    assert body("/api/campaigns", "post")["properties"]["campaign_date"]["format"] == "date"
    assert body("/api/webhook-endpoints", "post")["required"] == ["url", "events"]
    sequence = body("/api/sequences", "post")["properties"]
    assert "allow_reentry" in sequence and "maxLength" not in sequence["steps"]["items"]["properties"]["media_url"]
    for path, method in [("/api/devices", "post"), ("/api/devices/batch", "post"), ("/api/sequences", "post"),
                         ("/api/sequences/{sequence_id}", "put"), ("/api/webhook-endpoints/{endpoint_id}", "patch"),
                         ("/api/campaigns/{campaign_id}", "put"), ("/api/devices/{device_id}", "patch"),
                         ("/api/sequences/{sequence_id}/retry", "post")]:
        assert body(path, method)["type"] == "object", (path, method)


def wrong_value(schema):
    """A value of none of the schema's types."""
    types = set([schema["type"]] if isinstance(schema["type"], str) else schema["type"])
    return {"a": 1} if "object" not in types else ["list"]


@pytest.mark.parametrize("path", ["/api/leads", "/api/campaigns", "/api/devices", "/api/devices/batch",
                                  "/api/sequences", "/api/webhook-endpoints"])
def test_a_body_against_its_schema_is_refused_field_by_field(client, committed_db_url, path):
    _, token = signed_in_user(client, committed_db_url)
    schema = client.get("/api/openapi.json").get_json()["paths"][path]["post"]["requestBody"]["content"][
        "application/json"]["schema"]
    for name, sub in schema["properties"].items():
        res = client.post(path, json={name: wrong_value(sub)}, headers={"X-CSRFToken": token})
        assert res.status_code == 400, (path, name, res.get_json())
        assert name in res.get_json()["error"], (path, name, res.get_json())


def checker(client, headers):
    """check(method, path, template, status, **request): the answer, checked against its documented
    schema (JSON) or content type (anything else: then the answer's bytes)."""
    doc = client.get("/api/openapi.json").get_json()

    def check(method, path, template, status, **kw):
        res = client.open(path, method=method.upper(), headers=headers, **kw)
        assert res.status_code == int(status), (path, res.get_data()[:200])
        [(media, content)] = doc["paths"][template][method]["responses"][status]["content"].items()
        assert res.mimetype == media, (path, res.mimetype, media)
        if media != "application/json":
            assert content["schema"] == {"type": "string", "format": "binary"} and res.get_data(), path
            return res.get_data()
        conforms(res.get_json(), content["schema"], doc, f"{method.upper()} {path}")
        return res.get_json()
    return check


def test_responses_conform_to_their_schemas(client, committed_db_url, monkeypatch):
    monkeypatch.setattr(web_webhooks, "ADDRESS_POLICY", "127.0.0.1".__eq__)
    _, token = signed_in_user(client, committed_db_url)
    h = {"X-CSRFToken": token}
    check = checker(client, h)
    lead = check("post", "/api/leads", "/api/leads", "201", json={"name": "Ana", "phone": "60123456789"})
    check("get", f"/api/leads/{lead['id']}", "/api/leads/{lead_id}", "200")
    check("put", f"/api/leads/{lead['id']}", "/api/leads/{lead_id}", "200", json={"name": "Ana B", "phone": "60123456789"})
    check("get", "/api/leads", "/api/leads", "200")
    made = check("post", "/api/webhook-endpoints", "/api/webhook-endpoints", "201",
                 json={"url": "http://127.0.0.1:9/x", "events": ["lead.replied"]})["endpoint"]
    check("post", f"/api/webhook-endpoints/{made['id']}/test", "/api/webhook-endpoints/{endpoint_id}/test", "202")
    check("get", "/api/webhook-endpoints", "/api/webhook-endpoints", "200")
    deliveries = check("get", "/api/webhook-deliveries", "/api/webhook-deliveries", "200")["deliveries"]
    assert deliveries and deliveries[0]["created_at"].count("T") == 1        # ISO 8601, not RFC 1123
    check("patch", f"/api/webhook-endpoints/{made['id']}", "/api/webhook-endpoints/{endpoint_id}", "200",
          json={"enabled": False})
    check("delete", f"/api/webhook-endpoints/{made['id']}", "/api/webhook-endpoints/{endpoint_id}", "200")


def test_device_campaign_sequence_and_import_responses_conform(client, committed_db_url):
    _, token = signed_in_user(client, committed_db_url)
    check = checker(client, {"X-CSRFToken": token})
    for path in ("/api/overview", "/api/monitoring", "/api/quotas", "/api/tokens", "/api/sequences/summary"):
        check("get", path, path, "200")
    check("post", "/api/tokens", "/api/tokens", "201", json={"name": "ci"})
    device = check("post", "/api/devices", "/api/devices", "201", json={"device_name": "Phone A"})["device"]["device_id"]
    check("post", "/api/devices/batch", "/api/devices/batch", "201", json={"count": 2, "name_pattern": "B {n}"})
    for path in ("/api/devices", "/api/devices/choices", "/api/devices/ids"):
        check("get", path, path, "200")
    check("patch", f"/api/devices/{device}", "/api/devices/{device_id}", "200", json={"hourly_limit": 30})
    check("patch", "/api/devices", "/api/devices", "200", json={"device_ids": [device], "daily_limit": 100})
    check("post", "/api/devices/pause", "/api/devices/{action}", "200", json={"device_ids": [device]})
    check("post", f"/api/devices/{device}/pair-phone", "/api/devices/{device_id}/pair-phone", "202",
          json={"phone": "60123456789"})
    check("get", f"/api/devices/{device}/chats", "/api/devices/{device_id}/chats", "200")
    check("post", "/api/leads", "/api/leads", "201", json={"name": "Ana", "phone": "60123456780", "niche": "fit",
                                                            "device_id": device})
    made = check("post", "/api/campaigns", "/api/campaigns", "201", json={
        "title": "Launch", "niche": "fit", "target_status": "all", "message": "Hello {name}", "device_ids": [device],
        "campaign_date": "2999-01-01", "time_schedule": "09:30", "min_delay_seconds": 5, "max_delay_seconds": 10})
    campaign = made["campaign"]["id"]
    check("get", "/api/campaigns", "/api/campaigns", "200")
    check("get", f"/api/campaigns/{campaign}", "/api/campaigns/{campaign_id}", "200")
    check("get", f"/api/campaigns/{campaign}/leads", "/api/campaigns/{campaign_id}/leads", "200")
    check("post", f"/api/campaigns/{campaign}/cancel", "/api/campaigns/{campaign_id}/{action}", "200")
    sequence = check("post", "/api/sequences", "/api/sequences", "201", json={
        "name": "Drip", "trigger": "drip", "steps": [{"day_number": 1, "content": "hi"}]})["id"]
    check("get", "/api/sequences", "/api/sequences", "200")
    check("get", f"/api/sequences/{sequence}/flows", "/api/sequences/{sequence_id}/flows", "200")
    check("get", f"/api/sequences/{sequence}/contacts", "/api/sequences/{sequence_id}/contacts", "200")
    check("post", f"/api/sequences/{sequence}/activate", "/api/sequences/{sequence_id}/{action}", "200")
    check("delete", f"/api/sequences/{sequence}", "/api/sequences/{sequence_id}", "200")
    upload = check("post", "/api/leads/import", "/api/leads/import", "202", content_type="multipart/form-data",
                   data={"file": (io.BytesIO(b"name,phone\nBo,60123456781\n"), "leads.csv")})
    check("get", f"/api/leads/imports/{upload['id']}", "/api/leads/imports/{import_id}", "200")
    check("get", "/api/leads/imports", "/api/leads/imports", "200")
    check("delete", f"/api/devices/{device}", "/api/devices/{device_id}", "200")


def test_json_built_in_sql_views_and_binary_answers_conform(client, committed_db_url, connect_committed):
    """Rows of views, JSON documents built in SQL (field by field) and binary answers, live."""
    uid, token = signed_in_user(client, committed_db_url)
    check = checker(client, {"X-CSRFToken": token})
    db = connect_committed()
    device = make_device(db, uid)
    db.execute("INSERT INTO leads (user_id, device_id, phone, name, trigger) VALUES "
               "(%s, %s, '60123000001', 'Ali', 'drip'), (%s, %s, '60123000002', 'Bo', NULL)", [uid, device] * 2)
    # A campaign with a sent and a failed message, retried: the report's view rows.
    cid = campaign(db, uid)
    expand_all(db, cid)
    sent, failed = [m["id"] for m in messages(db, cid)]
    mark(db, [sent], "sent")
    mark(db, [failed], "failed")
    retried = check("post", f"/api/campaigns/{cid}/retry", "/api/campaigns/{campaign_id}/retry", "200", json={})
    assert retried["queued"] == 1 and retried["report"]["retried"] == 1 and retried["devices"][0]["device_id"] == device
    check("get", "/api/campaigns", "/api/campaigns", "200")
    # A sequence with two steps and one contact: definition, summary and contacts page.
    seq = check("post", "/api/sequences", "/api/sequences", "201", json={
        "name": "Drip", "trigger": "drip", "steps": [{"day_number": 1, "content": "hi", "trigger_delay_hours": 1.5},
                                                     {"day_number": 2, "content": "again"}]})["id"]
    definition = check("get", f"/api/sequences/{seq}", "/api/sequences/{sequence_id}", "200")
    assert [s["trigger_delay_hours"] for s in definition["steps"]][0] == 1.5
    check("post", f"/api/sequences/{seq}/activate", "/api/sequences/{sequence_id}/{action}", "200")
    summary = check("get", "/api/sequences/summary", "/api/sequences/summary", "200")
    assert summary["sequences"]["active"] == 1 and summary["recent_sequences"][0]["id"] == seq
    page = check("get", f"/api/sequences/{seq}/contacts", "/api/sequences/{sequence_id}/contacts", "200")
    assert page["total"] == 1 and [s["day_number"] for s in page["contacts"][0]["steps"]] == [1, 2]
    # A chat's history with a received image and its thumbnail (JPEG), and a pairing QR (SVG).
    db.execute("SELECT record_inbound_message(%s, 'P1', '60170000007@s.whatsapp.net', '60170000007@s.whatsapp.net', "
               "'60170000007', '', now(), false, 'image', '', '\\xffd8aa'::bytea)", [device])
    chat = db.execute("SELECT id FROM chats WHERE device_id = %s", [device]).fetchone()["id"]
    [image] = check("get", f"/api/chats/{chat}/messages", "/api/chats/{chat_id}/messages", "200")["messages"]
    assert check("get", image["thumbnail_url"], "/api/chat-thumbnails/{message_id}.jpg", "200") == b"\xff\xd8\xaa"
    svg = check("post", f"/api/devices/{device}/qr.svg", "/api/devices/{device_id}/qr.svg", "200",
                json={"code": "2@abc,def,ghi"})
    assert svg.lstrip().startswith(b"<?xml") or b"<svg" in svg[:200]
    deleted = check("delete", f"/api/devices/{device}", "/api/devices/{device_id}", "200")
    assert deleted["deleted"] and deleted["pending"] is False and deleted["leads_to_pool"] == 2
