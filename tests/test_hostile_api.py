"""Hostile input against every operation of the JSON API, read from its own OpenAPI document
(/api/openapi.json), so an operation added later is fuzzed without touching this file.

Signed in as user A, every operation gets: hypothesis-generated path parameters (A's ids, user B's
ids, zero, negative, past bigint), query strings and bodies (drawn from the operation's requestBody
schema — its fields with values of their types and hostile ones — and JSON of any shape with the
field names the handlers read, invalid JSON, forms), and then, deterministically, every SQL-injection string and
an oversized value in every field the handlers read. For every response: no 5xx, none of B's data
(B's rows carry a marker), and a rejected write (4xx) changed nothing of A's or B's.

The pages get the same treatment (hostile query strings, url_for's own option names among them,
and hostile login, registration and password forms), and every image URL field gets SSRF targets:
loopback, private, link-local and metadata addresses in every spelling, refused before any
connection is opened."""
import json
import re
import time
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from psycopg.rows import dict_row

from tests.factories import make_device, make_user
from tests.webutil import login, csrf_token

MARK = "ZZLEAKB"
EXAMPLES = 30                       # generated requests per operation (bounded: the file runs in < 1 minute)
SQL_INJECTION = [
    "' OR '1'='1", "'; DROP TABLE users; --", "1; SELECT pg_sleep(5)", "\" OR 1=1 --", "1 UNION SELECT * FROM users",
    "$$; DELETE FROM leads; $$", "\\'; TRUNCATE broadcast_messages; --", "%' AND 1=0 UNION SELECT email FROM users --",
]
OVERSIZED = "A" * 65_536          # in every field at once: a multi-megabyte body
ODD = ["", " ", "\x00", "null", "-1", "0", "9" * 40, "1e309", "NaN", "ü\u202e🙂", "<script>alert(1)</script>",
       "{name}{{nested|spin}}", "../../etc/passwd", "2026-02-30", "24:61"]
INT_PARAMS = [0, -1, 2 ** 31, 2 ** 63 - 1, 2 ** 63, 10 ** 30]


def handler_field_names():
    """The names handlers read from bodies and query strings (literal keys in web/*.py)."""
    names = set()
    for path in (Path(__file__).resolve().parent.parent / "web").glob("*.py"):
        names |= set(re.findall(r"""(?:\.get\(|\[)\s*["']([a-z_]{2,40})["']""", path.read_text()))
    return sorted(names)


FIELDS = handler_field_names()
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=50),
                    st.sampled_from(SQL_INJECTION + ODD))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                            st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=12)


def _conn(url):
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def seed(c, uid, label):
    devices = [make_device(c, uid, name=f"{label} device {n}") for n in range(2)]
    c.execute("""INSERT INTO leads (user_id, device_id, name, phone, niche, trigger)
                 SELECT %s, %s, %s || ' lead ' || g, (60140000000 + %s * 100 + g)::text, 'niche', 'hostile'
                   FROM generate_series(1, 5) g""", [uid, devices[0], label, uid])
    seq = c.execute("SELECT save_sequence(%s, NULL, %s::jsonb) AS id", [uid, json.dumps({
        "name": f"{label} sequence", "trigger": "hostile", "min_delay_seconds": 0, "max_delay_seconds": 0,
        "steps": [{"day_number": 1, "content": f"{label} step one", "trigger_delay_hours": 24},
                  {"day_number": 2, "content": f"{label} step two", "trigger_delay_hours": 0}]})]).fetchone()["id"]
    c.execute("""SELECT record_inbound_message(%s, %s, %s, %s, %s, %s, now(), false, 'text')""",
              [devices[0], f"IN{uid}", f"6015{uid:07d}@s.whatsapp.net", f"6015{uid:07d}@s.whatsapp.net",
               f"6015{uid:07d}", f"{label} says hello"])
    return {"device": devices, "sequence": [seq],
            "chat": [r["id"] for r in c.execute("SELECT id FROM whatsapp_chats WHERE device_id = %s", [devices[0]])],
            "step": [r["id"] for r in c.execute("SELECT id FROM sequence_steps WHERE sequence_id = %s", [seq])]}


def data_digest(c):
    """digest() -> a digest of every row of every table holding users' data (rows of both users),
    by one statement on connection c."""
    tables = [r["table_name"] for r in c.execute("""
        SELECT DISTINCT table_name FROM information_schema.columns
         WHERE table_schema = 'public' AND column_name IN ('user_id', 'device_id', 'sequence_id', 'chat_id')
           AND table_name IN (SELECT table_name FROM information_schema.tables
                               WHERE table_schema = 'public' AND table_type = 'BASE TABLE')
           AND table_name NOT IN ('login_attempts', 'device_events', 'sequence_counter_deltas')
         ORDER BY table_name""")]
    query = "SELECT " + ", ".join(
        f"(SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x) AS {t}" for t in tables)
    return lambda: c.execute(query).fetchone()


def snapshot(world):
    """The digest once no accepted import is still running: its background thread would otherwise
    show as a change made by whichever request comes next."""
    deadline = time.monotonic() + 60
    while world["watch"].execute("""SELECT EXISTS (SELECT FROM lead_imports
                                         WHERE status IN ('uploading', 'validating')) AS busy""").fetchone()["busy"]:
        assert time.monotonic() < deadline, "an accepted import did not finish within 60 s"
        time.sleep(0.05)
    return world["digest"]()


@pytest.fixture(scope="module")
def world(app, module_db_url):
    with _conn(module_db_url) as c:
        a, b = make_user(c), make_user(c, email=f"{MARK.lower()}@example.com")
        c.execute("UPDATE users SET full_name = %s WHERE id = %s", [MARK + " owner", b])
        ids = {"a": seed(c, a, "alpha"), "b": seed(c, b, MARK)}
        email = c.execute("SELECT email FROM users WHERE id = %s", [a]).fetchone()["email"]
    client = app.test_client()
    assert login(client, email).status_code == 302
    token = csrf_token(client, "/dashboard")
    paths = client.get("/api/openapi.json").get_json()["paths"]
    operations = [(path, method.upper()) for path, ops in paths.items() for method in ops]
    schemas = {(path, method.upper()): op["requestBody"]["content"]["application/json"]["schema"]
               for path, ops in paths.items() for method, op in ops.items()
               if "application/json" in op.get("requestBody", {}).get("content", {})}
    with _conn(module_db_url) as watch:   # one connection for the before/after digests of every write
        yield {"client": client, "token": token, "ids": ids, "operations": operations, "schemas": schemas,
               "url": module_db_url, "tried": 0, "watch": watch, "digest": data_digest(watch)}


def from_schema(schema):
    """Bodies shaped by a requestBody schema: each property present or not, with a value of one of
    its types (a hostile one among them) or of any other shape."""
    types = schema.get("type", "object")
    types = [types] if isinstance(types, str) else types
    options = [JSON_VALUES]
    for t in types:
        if t == "object" and "properties" in schema:
            options.append(st.fixed_dictionaries({}, optional={n: from_schema(sub)
                                                               for n, sub in schema["properties"].items()}))
        elif t == "array":
            options.append(st.lists(from_schema(schema.get("items", {})), max_size=4))
        elif t == "string":
            options.append(st.one_of(st.text(max_size=50), st.sampled_from(SQL_INJECTION + ODD)
                                     | st.sampled_from(schema.get("enum") or ["x"])))
        elif t == "integer":
            options.append(st.one_of(st.integers(), st.sampled_from(INT_PARAMS)))
        elif t == "boolean":
            options.append(st.booleans())
        elif t == "null":
            options.append(st.none())
    return st.one_of(*options)


def param_values(world, name):
    kind = name.removesuffix("_id")
    own, other = world["ids"]["a"].get(kind, []), world["ids"]["b"].get(kind, [])
    if name == "action":
        return ["activate", "deactivate", "pause"] + SQL_INJECTION[:3]
    return own + other + INT_PARAMS


def fill(path, params):
    return re.sub(r"\{(\w+)\}", lambda m: str(params[m.group(1)]), path)


def call(world, method, path, query=None, body=None, raw=None, form=None):
    """One request as A; checks the promise on the response and, for a rejected write, the data."""
    client = world["client"]
    headers = {"X-CSRFToken": world["token"]}
    write = method not in ("GET", "HEAD")
    before = None
    if write:
        before = snapshot(world)
    kw = {"query_string": query or {}, "headers": headers}
    if raw is not None:
        kw.update(data=raw, content_type="application/json")
    elif form is not None:
        kw.update(data=form)
    elif body is not None:
        kw["json"] = body
    r = client.open(path, method=method, **kw)
    world["tried"] += 1
    text = r.get_data(as_text=True)
    assert r.status_code < 500, f"{method} {path} -> {r.status_code}: {text[:300]}"
    assert MARK not in text and MARK.lower() not in text, f"{method} {path} leaked user B's data"
    if write and 400 <= r.status_code < 500:
        assert snapshot(world) == before, f"{method} {path} -> {r.status_code} but data changed"
    return r


@pytest.mark.timeout(1200)   # ~1 minute idle, but every operation × EXAMPLES: 5 × longer on a loaded machine
def test_every_operation_survives_generated_input(world):
    for path, method in world["operations"]:
        names = re.findall(r"\{(\w+)\}", path)
        params = st.fixed_dictionaries({n: st.sampled_from(param_values(world, n)) for n in names})
        bodies = st.one_of(st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=6), JSON_VALUES)
        if (path, method) in world["schemas"]:
            bodies = st.one_of(from_schema(world["schemas"][(path, method)]), bodies)
        queries = st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(SQL_INJECTION + ODD), max_size=3)
        raws = st.sampled_from([None, None, None, b"{", b"[1,", b"\xff\xfe", b'{"a":' * 2000])

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(params=params, body=bodies, query=queries, raw=raws)
        def one_request(params, body, query, raw):
            call(world, method, fill(path, params), query=query, body=body, raw=raw)

        one_request()


@pytest.mark.parametrize("value", SQL_INJECTION + [OVERSIZED])
def test_injection_and_oversized_values_in_every_field(world, value):
    for path, method in world["operations"]:
        params = {n: param_values(world, n)[0] for n in re.findall(r"\{(\w+)\}", path)}
        target = fill(path, params)
        if method == "DELETE":
            continue                     # deleting A's own object is not an input problem; fuzzed above
        call(world, method, target, query={f: value for f in FIELDS[:20]})
        if method != "GET":
            call(world, method, target, body={f: value for f in FIELDS})
            call(world, method, target, form={f: value for f in FIELDS})


def test_a_body_past_the_size_limit_is_refused_whole(world):
    path = next(p for p, m in world["operations"] if m == "POST" and "{" not in p)
    r = call(world, "POST", path, raw=b'{"x": "' + b"A" * (65 * 1024 * 1024) + b'"}')
    assert r.status_code == 413


def test_b_is_untouched_and_report(world):
    with _conn(world["url"]) as c:
        b = c.execute("SELECT id FROM users WHERE email = %s", [f"{MARK.lower()}@example.com"]).fetchone()["id"]
        rows = c.execute("""SELECT (SELECT count(*) FROM user_devices WHERE user_id = %(b)s) AS devices,
                                   (SELECT count(*) FROM leads WHERE user_id = %(b)s) AS leads,
                                   (SELECT count(*) FROM sequences WHERE user_id = %(b)s) AS sequences,
                                   (SELECT count(*) FROM whatsapp_chats c JOIN user_devices d ON d.id = c.device_id
                                     WHERE d.user_id = %(b)s) AS chats""", {"b": b}).fetchone()
    assert rows == {"devices": 2, "leads": 5, "sequences": 1, "chats": 1}
    print(f"\nhostile API: {len(world['operations'])} operations, {world['tried']} requests, no 5xx, no leak")


# SSRF: image URLs aimed at this machine, its private networks and the cloud metadata address,
# spelled every way a resolver accepts. Each is refused before any connection is opened.
SSRF_TARGETS = [
    "http://127.0.0.1:54329/", "http://localhost:5432/", "http://127.1/", "http://2130706433/", "http://0x7f000001/",
    "http://0.0.0.0:3000/", "http://[::1]:3000/", "http://[::ffff:127.0.0.1]/", "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/", "http://10.0.0.1/", "http://172.16.0.1:8080/", "http://192.168.1.1/", "http://100.64.0.1/",
    "https://127.0.0.1:443/", "http://[fe80::1]/",
]


def test_ssrf_targets_in_every_image_and_webhook_url_are_refused_without_a_connection(world, monkeypatch):
    from common import fetch

    opened = []
    monkeypatch.setattr(fetch.socket, "create_connection", lambda *a, **k: opened.append(a) or 1 / 0)
    for url in SSRF_TARGETS:
        r = call(world, "POST", "/api/campaigns", body={"title": "t", "message": "m", "campaign_date": "2030-01-01",
                                                        "time_schedule": "09:00", "image_url": url})
        assert r.status_code == 400 and "not a public internet address" in r.get_json()["error"], (url, r.get_json())
        r = call(world, "POST", "/api/sequences", body={"name": "s", "trigger": "ssrf", "steps": [
            {"day_number": 1, "content": "hi", "media_url": url}]})
        assert r.status_code == 400 and "not a public internet address" in r.get_json()["error"], (url, r.get_json())
        r = call(world, "POST", "/api/webhook-endpoints", body={"url": url, "events": ["lead.replied"]})
        assert r.status_code == 400 and "not a public internet address" in r.get_json()["error"], (url, r.get_json())
    assert opened == []


PAGE_VALUES = [SQL_INJECTION[0], "A" * 4096, "\x00", "ü\u202e🙂<script>alert(1)</script>", "/\r/x", "/\t/evil.example"]
URL_FOR_OPTIONS = ["_scheme", "_external", "_anchor", "_method", "_host", "next"]


def test_every_page_survives_hostile_query_strings_and_forms(app, world):
    pages = sorted({r.rule for r in app.url_map.iter_rules()
                    if not r.rule.startswith(("/api/", "/static/")) and not r.websocket and "GET" in r.methods})
    for rule in pages:
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(param_values(world, m.group(1))[0])
                      if m.group(1) != "name" else "chart.js", rule)
        for value in PAGE_VALUES:
            call(world, "GET", path, query={f: value for f in FIELDS[:20] + URL_FOR_OPTIONS})
    stranger = app.test_client()                  # forms of the signed-out pages, from someone else
    token = csrf_token(stranger, "/login")
    for value in PAGE_VALUES:
        form = {"email": value, "password": value, "full_name": value, "timezone": value, "csrf_token": token}
        for path in ("/login", "/register", f"/login?next={value[:100]}"):
            r = stranger.post(path, data=form)
            assert r.status_code < 500, (path, value[:40], r.status_code)
        r = call(world, "POST", "/account/password", form={"current_password": value, "new_password": value,
                                                          "csrf_token": world["token"]})
    print(f"\nhostile pages: {len(pages)} pages, {len(pages) * len(PAGE_VALUES)} hostile GETs, forms of 3 pages")
