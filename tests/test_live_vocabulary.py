"""The live-event vocabulary is one list (web/live.py EVENTS): every event SQL sends is on it, every
event on it is sent, and every type a page's script listens to is on it (or is the channel's own)."""
import re

from common.config import ROOT
from web.live import CHANNEL_EVENTS, CLIENT_EVENTS, EVENTS

SQL_CALL = re.compile(r"\bnotify_user\s*\(")
SQL_TYPED = re.compile(r"\bnotify_user\s*\(\s*[^,()]+(?:\([^()]*\))?\s*,\s*'([^']*)'")
JS_ON = re.compile(r"""\blive\.on\(\s*["']([^"']+)["']""")
JS_REFRESH = re.compile(r"""\blive\.refreshOn\(\s*\[([^\]]*)\]""")
JS_STRING = re.compile(r"""["']([^"']+)["']""")


def sql_event_types():
    found, untyped = set(), []
    for path in sorted((ROOT / "db").rglob("*.sql")):
        text = path.read_text()
        text = re.sub(r"--[^\n]*", "", text)
        for call in SQL_CALL.finditer(text):
            if re.search(r"FUNCTION\s+$", text[:call.start()]):
                continue   # the definition and its COMMENT, not a call
            typed = SQL_TYPED.match(text, call.start())
            if typed:
                found.add(typed.group(1))
            else:
                untyped.append(f"{path.name}: {text[call.start():call.start() + 80]!r}")
    return found, untyped


def js_listened_types():
    found = {}
    for path in sorted((ROOT / "web").rglob("*.js")) + sorted((ROOT / "web" / "templates").rglob("*.html")):
        text = path.read_text()
        for m in JS_ON.finditer(text):
            found.setdefault(m.group(1), path.name)
        for m in JS_REFRESH.finditer(text):
            for t in JS_STRING.findall(m.group(1)):
                found.setdefault(t, path.name)
    return found


def test_sql_sends_exactly_the_listed_events():
    sent, untyped = sql_event_types()
    assert not untyped, f"notify_user calls must name their type as a literal: {untyped}"
    assert sent - set(EVENTS) == set(), "events SQL sends that web/live.py EVENTS does not list"
    assert set(EVENTS) - sent == set(), "events listed in web/live.py EVENTS that no SQL sends"


def test_pages_listen_only_to_listed_events():
    known = set(EVENTS) | set(CHANNEL_EVENTS) | set(CLIENT_EVENTS) | {"*"}
    listened = js_listened_types()
    assert listened, "the pages' live.on / live.refreshOn calls were not found"
    unknown = {t: where for t, where in listened.items() if t not in known}
    assert not unknown, f"pages listen to events nobody sends: {unknown}"


def test_client_events_are_the_ones_live_js_raises():
    live_js = (ROOT / "web" / "static" / "live.js").read_text()
    for name in CLIENT_EVENTS:
        assert f'"{name}"' in live_js or f'"{name.split(".")[1]}"' in live_js, name


def test_pages_have_no_subscriber_lists_of_their_own():
    """A list of types each passed to live.on is what live.refreshOn replaces."""
    for path in sorted((ROOT / "web" / "static").glob("*.js")):
        text = path.read_text()
        assert not re.search(r"\]\s*\.forEach\(\s*function\s*\(\s*\w+\s*\)\s*\{\s*live\.on\(", text), path.name
        assert not re.search(r"\]\.forEach\(\(?\w+\)?\s*=>\s*live\.on\(", text), path.name


def test_page_scripts_call_the_server_through_api_js():
    """One JSON helper (api.js) owns the CSRF token and the error handling: no page script reads the
    token's meta tag or defines an api() of its own (leads.js takes api.csrf() for its upload XHR)."""
    for path in sorted((ROOT / "web" / "static").glob("*.js")):
        if path.name == "api.js":
            continue
        text = path.read_text()
        assert "csrf-token" not in text and not re.search(r"function\s+api\s*\(", text), path.name
