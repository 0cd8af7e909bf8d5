"""The authorisation matrix: every route of the app × (anonymous, owner, other user, admin).

- anonymous: 302 to /login or 401 everywhere except the public routes;
- other user: 404 on every route that names one of the owner's resources, for every method;
- owner and admin: never refused, never a server error, on every GET (but the owner gets 403 on
  the administrators' routes);
- every cookie-authenticated write without a CSRF token: 400.
Routes are read from app.url_map, so a new route is covered the day it is added; a route whose
path parameter cannot be filled here fails the test until RESOURCES learns it."""
import re

import psycopg
import pytest
from psycopg.rows import dict_row
from werkzeug.routing import AnyConverter

from tests.factories import make_device, make_user
from tests.webutil import csrf_token, login

# Not behind a session: the signed-out pages, files, and what carries its own secret (webhook lead
# intake; /metrics takes METRICS_TOKEN, test_metrics.py).
PUBLIC = re.compile(r"^/($|login|logout|register|healthz|metrics|static/|vendor/|api/openapi\.json|api/webhooks/leads)")
ADMIN_ONLY = re.compile(r"^/api/admin/")
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Path parameter -> the owner's resource it names (by parameter name, or by the path segment before `<id>`).
RESOURCES = {"device": "device", "devices": "device", "chat": "chat", "chats": "chat", "campaign": "campaign",
             "campaigns": "campaign", "lead": "lead", "leads": "lead", "sequence": "sequence",
             "sequences": "sequence", "step": "step", "steps": "step", "import": "import", "imports": "import",
             "media": "media", "token": "token", "tokens": "token", "message": "message", "endpoint": "endpoint",
             "delivery": "delivery"}


def owner_resources(c, uid):
    device = make_device(c, uid)
    c.execute("SELECT record_inbound_message(%s, 'w1', '60111111111@s.whatsapp.net', '60111111111@s.whatsapp.net', "
              "'60111111111', 'hi', now())", [device])
    ids = {"device": device,
           "chat": c.execute("SELECT id FROM whatsapp_chats WHERE device_id = %s", [device]).fetchone()["id"],
           "message": c.execute("SELECT record_inbound_message(%s, 'w2', '60111111111@s.whatsapp.net', "
                                "'60111111111@s.whatsapp.net', '60111111111', '', now(), false, 'image', '', "
                                "'\\xffd8'::bytea) AS id", [device]).fetchone()["id"],
           "lead": c.execute("INSERT INTO leads (user_id, device_id, name, phone) VALUES (%s, %s, 'L', '60122222222') "
                             "RETURNING id", [uid, device]).fetchone()["id"],
           "campaign": c.execute("""INSERT INTO campaigns (user_id, title, message, campaign_date, time_schedule, scheduled_at)
                                    VALUES (%s, 'C', 'hello', current_date + 1, '09:00', now() + interval '1 day')
                                    RETURNING id""", [uid]).fetchone()["id"],
           "sequence": c.execute("INSERT INTO sequences (user_id, name, trigger) VALUES (%s, 'S', 'start') RETURNING id",
                                 [uid]).fetchone()["id"]}
    ids["step"] = c.execute("""INSERT INTO sequence_steps (sequence_id, day_number, trigger, content, is_entry_point)
                               VALUES (%s, 1, 'start', 'day one', true) RETURNING id""", [ids["sequence"]]).fetchone()["id"]
    ids["media"] = c.execute("SELECT store_media(%s, '\\xffd8'::bytea) AS id", [uid]).fetchone()["id"]
    ids["token"] = c.execute("SELECT id FROM issue_token(%s, 'api', 'matrix', 'secret-of-the-owner', 30)",
                             [uid]).fetchone()["id"]
    ids["endpoint"] = c.execute("SELECT create_webhook_endpoint(%s, 'https://hooks.example.com/x', %s, %s) AS id",
                                [uid, "whsec_" + "a" * 40, ["lead.replied"]]).fetchone()["id"]
    c.execute("SELECT send_test_webhook(%s, %s)", [uid, ids["endpoint"]])
    ids["delivery"] = c.execute("UPDATE webhook_deliveries SET status = 'dead' WHERE endpoint_id = %s RETURNING id",
                                [ids["endpoint"]]).fetchone()["id"]
    if c.execute("SELECT to_regclass('lead_imports') AS t").fetchone()["t"]:
        ids["import"] = c.execute("SELECT start_lead_import(%s, NULL, 'a.csv', NULL) AS id", [uid]).fetchone()["id"]
    return ids


def resource_for(rule, arg):
    if arg.endswith("_id"):
        return RESOURCES.get(arg[:-3])
    if arg == "id":
        before = rule.rule.split("<")[0].rstrip("/").split("/")[-1]
        return RESOURCES.get(before)
    return None


def routes(app):
    """(rule, method) for every HTTP route."""
    return [(rule, method) for rule in app.url_map.iter_rules()
            # /ws is covered by tests/test_web_live.py; static files are public
            if not rule.websocket and rule.endpoint != "static"
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]


@pytest.fixture(scope="module")
def world(app, module_db_url):
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        owner, other, admin = make_user(c), make_user(c), make_user(c, is_admin=True)
        emails = {k: c.execute("SELECT email FROM users WHERE id = %s", [v]).fetchone()["email"]
                  for k, v in (("owner", owner), ("other", other), ("admin", admin))}
        ids = owner_resources(c, owner)
    return {"emails": emails, "ids": ids}


def url_for_rule(rule, ids):
    """The rule's path with the owner's ids; None when a parameter is not an owner's resource."""
    values = {}
    for arg in rule.arguments:
        converter = rule._converters.get(arg)
        if isinstance(converter, AnyConverter):  # e.g. <any(activate, deactivate):action>
            values[arg] = min(converter.items)
            continue
        kind = resource_for(rule, arg)
        if kind is None or ids.get(kind) is None:
            return None
        values[arg] = ids[kind]
    return rule.build(values, append_unknown=False)[1] if values else rule.rule


def signed_in(app, email):
    client = app.test_client()
    assert login(client, email).status_code == 302
    return client, csrf_token(client, "/dashboard")


def call(client, method, url, token=None):
    headers = {"X-CSRFToken": token} if token else {}
    return client.open(url, method=method, json={} if method in WRITE_METHODS else None, headers=headers)


def test_every_route_is_fillable(app, world):
    unfilled = {f"{sorted(r.methods)} {r.rule}" for r, _ in routes(app)
                if r.arguments and not PUBLIC.match(r.rule) and url_for_rule(r, world["ids"]) is None}
    assert not unfilled, f"teach RESOURCES these parameters: {unfilled}"
    assert len(routes(app)) >= 15


def test_anonymous_is_sent_to_sign_in_everywhere_but_public_routes(app, world):
    client = app.test_client()
    token = csrf_token(client)  # a valid token, so what is tested is authentication, not CSRF
    wrong = []
    for rule, method in routes(app):
        url = url_for_rule(rule, world["ids"])
        if url is None or PUBLIC.match(rule.rule):
            continue
        r = call(client, method, url, token)
        ok = r.status_code == 401 or (r.status_code == 302 and "/login" in r.headers["Location"])
        if not ok:
            wrong.append(f"{method} {url} -> {r.status_code}")
    assert not wrong, wrong


def names_a_resource(rule):
    """A path parameter other than a fixed choice (<any(pause, resume):action>) names an owner's object."""
    return any(not isinstance(rule._converters.get(arg), AnyConverter) for arg in rule.arguments)


def test_another_user_gets_404_on_the_owners_ids(app, world):
    client, token = signed_in(app, world["emails"]["other"])
    wrong = []
    for rule, method in routes(app):
        if not names_a_resource(rule) or PUBLIC.match(rule.rule):
            continue
        url = url_for_rule(rule, world["ids"])
        if url is None:
            continue  # reported by test_every_route_is_fillable
        r = call(client, method, url, token)
        if r.status_code != 404:
            wrong.append(f"{method} {url} -> {r.status_code}")
    assert not wrong, wrong


@pytest.mark.parametrize("who", ["owner", "admin"])
def test_signed_in_gets_are_never_refused_or_broken(app, world, who):
    client, _ = signed_in(app, world["emails"][who])
    wrong = []
    for rule, method in routes(app):
        if method != "GET" or PUBLIC.match(rule.rule) or rule.rule == "/logout":
            continue
        url = url_for_rule(rule, world["ids"])
        if url is None:
            continue
        r = call(client, method, url)
        if who == "owner" and ADMIN_ONLY.match(rule.rule):
            if r.status_code != 403:
                wrong.append(f"{method} {url} -> {r.status_code}, not 403 for a non-administrator")
            continue
        refused = r.status_code in (401, 403) or r.status_code >= 500
        if who == "owner":
            refused = refused or r.status_code == 404 or (r.status_code == 302 and "/login" in r.headers["Location"])
        if refused:
            wrong.append(f"{method} {url} -> {r.status_code}")
    assert not wrong, wrong


def test_cookie_writes_without_csrf_token_are_rejected(app, world):
    client, _ = signed_in(app, world["emails"]["owner"])
    wrong = []
    for rule, method in routes(app):
        if method not in WRITE_METHODS or rule.rule in ("/login", "/register"):
            continue
        url = url_for_rule(rule, world["ids"])
        if url is None:
            continue
        r = call(client, method, url)
        if r.status_code != 400 or "CSRF" not in (r.get_json(silent=True) or {}).get("error", r.get_data(as_text=True)):
            wrong.append(f"{method} {url} -> {r.status_code}")
    assert not wrong, wrong
