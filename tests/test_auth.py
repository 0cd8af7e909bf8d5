"""Accounts: hashed passwords, login throttling, CSRF, sessions and API tokens."""
import re

import psycopg
from psycopg.rows import dict_row

from tests.factories import make_user
from tests.webutil import csrf_token, login, signed_in_user


def test_healthz_answers_without_login(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json()["database"] is True


def test_pages_need_login(client):
    r = client.get("/dashboard")
    assert r.status_code == 302 and "/login" in r.headers["Location"]
    assert client.get("/api/tokens").status_code in (401, 405)


def test_register_stores_an_argon2_hash_and_signs_in(client, committed_db_url):
    token = csrf_token(client, "/register")
    r = client.post("/register", data={"email": "New@Example.com", "password": "s3cret-pass",
                                       "full_name": "New", "timezone": "Asia/Kuala_Lumpur",
                                       "csrf_token": token})
    assert r.status_code == 302
    with psycopg.connect(committed_db_url, row_factory=dict_row) as c:
        row = c.execute("SELECT email, password_hash FROM users WHERE email = 'new@example.com'").fetchone()
    assert row["password_hash"].startswith("$argon2id$") and "s3cret-pass" not in row["password_hash"]
    assert client.get("/dashboard").status_code == 200


def test_short_password_rejected(client):
    token = csrf_token(client, "/register")
    r = client.post("/register", data={"email": "short@example.com", "password": "abc", "csrf_token": token})
    assert r.status_code == 400 and b"at least 8" in r.data


def test_wrong_password_then_throttled(client, committed_db_url):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        make_user(c, email="victim@example.com")
    for _ in range(5):
        assert login(client, "victim@example.com", "wrong-guess").status_code == 401
    # Even the right password is refused while throttled.
    assert login(client, "victim@example.com").status_code == 429


def test_form_post_without_csrf_token_is_rejected(client, committed_db_url):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        make_user(c, email="csrf@example.com")
    r = client.post("/login", data={"email": "csrf@example.com", "password": "password"})
    assert r.status_code == 400 and "CSRF" in r.get_json()["error"]


def _token(browser, **body):
    return browser.post("/api/tokens", json={"name": "script", **body},
                        headers={"X-CSRFToken": csrf_token(browser, "/dashboard")})


def test_api_tokens_are_named_listed_expiring_revocable_and_cannot_mint(app, committed_db_url):
    browser = app.test_client()
    signed_in_user(browser, committed_db_url)
    assert _token(browser, name="").status_code == 400                       # named
    assert _token(browser, expires_in_days=0).status_code == 400
    assert _token(browser, expires_in_days=366).status_code == 400
    made = _token(browser, expires_in_days=30)
    assert made.status_code == 201 and made.get_json()["name"] == "script"
    token, token_id = made.get_json()["token"], made.get_json()["id"]
    script = app.test_client()
    bearer = {"Authorization": f"Bearer {token}"}
    listed = script.get("/api/tokens", headers=bearer).get_json()["tokens"]
    assert [t["id"] for t in listed] == [token_id] and token not in str(listed) and listed[0]["last_used_at"]
    assert script.post("/api/tokens", json={"name": "more"}, headers=bearer).status_code == 403   # no minting
    assert script.get("/api/leads", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert browser.get("/account").status_code == 200 and b"script" in browser.get("/account").data
    assert browser.delete(f"/api/tokens/{token_id}",
                          headers={"X-CSRFToken": csrf_token(browser, "/dashboard")}).status_code == 204
    assert script.get("/api/leads", headers=bearer).status_code == 401                 # revoked: at once
    other = _token(browser).get_json()
    with psycopg.connect(committed_db_url, autocommit=True) as c:
        c.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = %s", [other["id"]])
    assert script.get("/api/leads", headers={"Authorization": f"Bearer {other['token']}"}).status_code == 401


def test_logout_ends_the_session_on_the_server(app, committed_db_url):
    browser = app.test_client()
    _, token = signed_in_user(browser, committed_db_url)
    stolen = browser.get_cookie("session").value
    browser.post("/logout", data={"csrf_token": token})
    assert browser.get("/dashboard").status_code == 302
    thief = app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get("/dashboard").status_code == 302                 # the copied cookie is dead too


def test_a_password_change_signs_out_every_other_browser(app, committed_db_url):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        make_user(c, email="pw@example.com")
    here, elsewhere = app.test_client(), app.test_client()
    for browser in (here, elsewhere):
        assert login(browser, "pw@example.com").status_code == 302
    r = here.post("/account/password", data={"current_password": "password", "new_password": "n3w-passw0rd",
                                             "csrf_token": csrf_token(here, "/account/password")})
    assert r.status_code == 302
    assert here.get("/dashboard").status_code == 200
    assert elsewhere.get("/dashboard").status_code == 302


def test_security_headers_and_secure_cookies_over_https(app, committed_db_url):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        make_user(c, email="tls@example.com")
    plain = app.test_client()
    for r in (plain.get("/login"), plain.get("/api/leads"), plain.get("/healthz")):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert "Strict-Transport-Security" not in r.headers
    assert login(plain, "tls@example.com").status_code == 302
    assert not plain.get_cookie("session").secure
    tls = app.test_client()
    token = csrf_token(tls, "https://localhost/login")
    r = tls.post("https://localhost/login", data={"email": "tls@example.com", "password": "password",
                                                   "csrf_token": token},
                 headers={"Referer": "https://localhost/login"})     # checked over https, as browsers send it
    assert r.status_code == 302 and r.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Secure" in r.headers["Set-Cookie"]


def test_after_login_only_paths_of_this_site(app, client, committed_db_url):
    from web.auth import _safe_next
    with app.test_request_context():
        for target in ("/\t/evil.example", "//evil.example", "/\\evil.example", "/\\/evil.example", "/\n/x",
                       "https://evil.example/", "javascript:alert(1)", "", None, "/ü"):
            assert _safe_next(target) == "/dashboard", target
        assert _safe_next("/leads?niche=a%20b") == "/leads?niche=a%20b"
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        make_user(c, email="next@example.com")
    # The review's requests, as sent: browsers drop the tab of "/<TAB>/evil.example" and leave.
    for query, expected in {"next=/%09/evil.example": "/dashboard", "next=/%0d/x": "/dashboard",
                            "next=%2Fleads%3Fniche%3Da%2520b": "/leads?niche=a%20b"}.items():
        r = client.post(f"/login?{query}", data={"email": "next@example.com", "password": "password",
                                                 "csrf_token": csrf_token(client)})
        assert (r.status_code, r.headers["Location"]) == (302, expected), query


def test_url_for_options_in_a_query_string_are_plain_parameters(client, committed_db_url):
    signed_in_user(client, committed_db_url)
    for option in ("_scheme", "_external", "_anchor", "_method", "_host"):
        r = client.get(f"/leads?{option}=x&niche=fit")
        assert r.status_code == 200 and b"niche=fit" in r.data, option


def _from(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_a_guesser_locks_out_only_their_own_address(app, committed_db_url):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        make_user(c, email="target@example.com")
        make_user(c, email="bystander@example.com")
    guesser = _from(app, "203.0.113.7")
    for _ in range(5):
        assert login(guesser, "target@example.com", "wrong-guess").status_code == 401
    assert login(guesser, "target@example.com").status_code == 429           # even the right password
    assert login(_from(app, "198.51.100.1"), "target@example.com").status_code == 302   # the owner is not locked out
    with psycopg.connect(committed_db_url, autocommit=True) as c:   # 25 more failures from it, any emails
        for n in range(25):
            c.execute("SELECT begin_auth_attempt('login', %s, '203.0.113.7')", [f"nobody{n}@example.com"])
    assert login(guesser, "bystander@example.com").status_code == 429
    assert login(_from(app, "198.51.100.2"), "bystander@example.com").status_code == 302


def test_no_account_enumeration_by_message_or_by_skipping_the_hash(app, committed_db_url, monkeypatch):
    from web import auth
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        make_user(c, email="exists@example.com")
    checks, real = [], auth.hasher

    class Counting:
        hash = real.hash

        def verify(self, stored, password):
            checks.append(stored)
            return real.verify(stored, password)
    monkeypatch.setattr(auth, "hasher", Counting())
    answers = []
    for email in ("exists@example.com", "missing@example.com"):
        r = login(_from(app, "192.0.2.10"), email, "wrong-guess")
        page = re.sub(r'"[\w.-]{40,}"', "TOKEN", r.get_data(as_text=True))      # CSRF tokens differ
        answers.append((r.status_code, page.replace(email, "EMAIL")))
    assert answers[0] == answers[1] and answers[0][0] == 401
    assert len(checks) == 2                                   # a hash was checked for the missing account too


def test_concurrent_guesses_are_counted_before_any_hashing(db):
    ids = [db.execute("SELECT begin_auth_attempt('login', 'race@example.com', '192.0.2.20') AS id").fetchone()["id"]
           for _ in range(6)]
    assert all(ids[:5]) and ids[5] is None                    # five in flight: the sixth waits its turn


def test_registrations_per_address_are_limited(app):
    client = _from(app, "192.0.2.30")
    statuses = []
    for n in range(6):
        token = csrf_token(client, "/register")
        statuses.append(client.post("/register", data={"email": f"reg{n}@example.com", "password": "s3cret-pass",
                                                       "csrf_token": token}).status_code)
        client.post("/logout", data={"csrf_token": csrf_token(client, "/register")})
    assert statuses == [302] * 5 + [429]
    token = csrf_token(client, "/register")
    r = _from(app, "192.0.2.31").post("/register", data={"email": "reg0@example.com", "password": "s3cret-pass",
                                                         "csrf_token": token})
    assert r.status_code in (400, 409)          # a taken email: the form again with the reason, not an error page


def test_password_hashing_is_bounded_per_process(app, committed_db_url, monkeypatch):
    import threading

    from web import auth
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        make_user(c, email="busy@example.com")
    monkeypatch.setattr(auth, "_HASHING", threading.BoundedSemaphore(1))
    monkeypatch.setattr(auth, "HASH_WAIT_SECONDS", 0.05)
    auth._HASHING.acquire()                                   # another sign-in is hashing
    try:
        assert login(_from(app, "192.0.2.40"), "busy@example.com").status_code == 503
    finally:
        auth._HASHING.release()
    assert login(_from(app, "192.0.2.40"), "busy@example.com").status_code == 302


def test_healthz_names_no_host_user_or_driver_error(client, monkeypatch):
    from web import health

    def down(*_):
        raise psycopg.OperationalError('connection to server at "10.1.2.3", port 5432 failed: '
                                  'FATAL:  password authentication failed for user "wa"')
    monkeypatch.setattr(health, "one", down)
    r = client.get("/healthz")
    assert r.status_code == 503 and r.get_json() == {"status": "error", "database": False,
                                                     "error": "database unavailable"}
