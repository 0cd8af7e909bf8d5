"""Accounts: hashed passwords, login throttling, CSRF, sessions and API tokens."""
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


def test_api_token_authenticates_without_cookie_or_csrf(app, committed_db_url):
    browser = app.test_client()
    signed_in_user(browser, committed_db_url)
    token = browser.post("/api/tokens", json={"name": "script"},
                         headers={"X-CSRFToken": csrf_token(browser, "/dashboard")}).get_json()["token"]
    script = app.test_client()
    assert script.post("/api/tokens", json={}, headers={"Authorization": f"Bearer {token}"}).status_code == 201
    assert script.post("/api/tokens", json={}, headers={"Authorization": "Bearer nope"}).status_code == 401


def test_logout_ends_the_session(client, committed_db_url):
    _, token = signed_in_user(client, committed_db_url)
    client.post("/logout", data={"csrf_token": token})
    assert client.get("/dashboard").status_code == 302


def test_after_login_only_paths_of_this_site(client, committed_db_url):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        make_user(c, email="next@example.com")
    # Query strings as sent: browsers drop the tab of "/<TAB>/evil.example" and go to evil.example.
    cases = {"next=/%09/evil.example": "/dashboard", "next=//evil.example": "/dashboard",
             "next=/%5Cevil.example": "/dashboard", "next=/%5C/evil.example": "/dashboard",
             "next=https://evil.example/": "/dashboard", "next=/%0d/x": "/dashboard", "next=/%0a/x": "/dashboard",
             "next=javascript:alert(1)": "/dashboard", "next=%2Fleads%3Fniche%3Da%2520b": "/leads?niche=a%20b"}
    for query, expected in cases.items():
        token = csrf_token(client)
        r = client.post(f"/login?{query}", data={"email": "next@example.com", "password": "password",
                                                 "csrf_token": token})
        assert (r.status_code, r.headers["Location"]) == (302, expected), query
        client.post("/logout", data={"csrf_token": csrf_token(client, "/dashboard")})


def test_url_for_options_in_a_query_string_are_plain_parameters(client, committed_db_url):
    signed_in_user(client, committed_db_url)
    for option in ("_scheme", "_external", "_anchor", "_method", "_host"):
        r = client.get(f"/leads?{option}=x&niche=fit")
        assert r.status_code == 200 and b"niche=fit" in r.data, option
