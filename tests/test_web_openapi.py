"""/api/openapi.json is generated from the url_map: every /api route, every method, documented."""
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


def test_path_parameters_are_typed(client):
    op = client.get("/api/openapi.json").get_json()["paths"]["/api/chats/{chat_id}/messages"]["post"]
    assert op["parameters"] == [{"name": "chat_id", "in": "path", "required": True, "schema": {"type": "integer"}}]
    assert op["responses"]["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
