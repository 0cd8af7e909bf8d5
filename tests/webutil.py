"""Helpers for driving the Flask app like a browser: CSRF token from the page, signing in."""
import re

import psycopg
from psycopg.rows import dict_row

from tests.factories import PASSWORD, make_user

_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


def csrf_token(client, path="/login"):
    return _CSRF.search(client.get(path).get_data(as_text=True)).group(1)


def login(client, email, password=PASSWORD):
    token = csrf_token(client)
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def signed_in_user(client, db_url, **kw):
    """A new committed user, signed in on `client`; returns (user_id, csrf token for JSON calls)."""
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as c:
        uid = make_user(c, **kw)
        email = c.execute("SELECT email FROM users WHERE id = %s", [uid]).fetchone()["email"]
    assert login(client, email).status_code == 302
    return uid, csrf_token(client, "/dashboard")
