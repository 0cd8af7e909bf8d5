"""pytest against a real PostgreSQL.

- A template database is created once per test run through the one apply path (scripts/apply.py).
- Each test module gets its own clone of it (`module_db_url`), so modules never see each other.
- `db` is a connection inside a transaction rolled back after each test.
- `committed_db_url` / `connect_committed` are for tests that need commits, NOTIFY or several
  connections: they use the module's clone, so clean-up is dropping the clone.
"""
import os
import time
import uuid

import psycopg
import pytest
from psycopg.rows import dict_row

from common.config import database_url
from common.db import database_name, with_database
from scripts import apply

RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"


def _admin(url):
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session")
def base_url():
    url = database_url()
    if not url:
        pytest.exit("no database: run `make test` (it starts the embedded cluster)", returncode=2)
    return url


@pytest.fixture(scope="session")
def template_url(base_url):
    name = f"wa_tpl_{RUN_ID}"
    with _admin(base_url) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = with_database(base_url, name)
    apply.apply(url)
    with _admin(base_url) as c:
        # No connection may stay on a template while it is cloned. Autovacuum workers (no role: only a
        # superuser may signal them) are stopped by CREATE DATABASE itself.
        c.execute("""SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE datname = %s AND backend_type = 'client backend'""", [name])
    yield url
    with _admin(base_url) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def clone_database(base_url, template_url, label):
    name = f"wa_t_{RUN_ID}_{label}"[:63]
    template = database_name(template_url)
    with _admin(base_url) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name, with_database(base_url, name)


def drop_database(base_url, name, timeout=60):
    with _admin(base_url) as c:
        # A superuser's session (tests/superuser.py) its test closed may still be ending, and the
        # application role may not end it for FORCE ("must be a superuser to terminate superuser
        # process", seen with both cores busy): wait for it to go first.
        deadline = time.monotonic() + timeout
        while c.execute("""SELECT EXISTS (SELECT 1 FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
                                           WHERE a.datname = %s AND r.rolsuper)""", [name]).fetchone()[0]:
            if time.monotonic() > deadline:
                break   # the DROP below then says what still holds the database
            time.sleep(0.1)
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def module_db_url(request, base_url, template_url):
    label = uuid.uuid4().hex[:8]
    name, url = clone_database(base_url, template_url, label)
    yield url
    drop_database(base_url, name)


@pytest.fixture
def db(module_db_url):
    """A connection in a transaction that is rolled back after the test."""
    conn = psycopg.connect(module_db_url, row_factory=dict_row)
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


@pytest.fixture
def committed_db_url(module_db_url):
    """The module's clone, for tests whose work must commit (NOTIFY, several connections)."""
    return module_db_url


@pytest.fixture
def connect_committed(committed_db_url):
    conns = []

    def _connect(**kw):
        c = psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row, **kw)
        conns.append(c)
        return c

    yield _connect
    for c in conns:
        c.close()


@pytest.fixture(scope="module")
def app(module_db_url):
    from web import create_app

    application = create_app(module_db_url, testing=True)
    yield application
    application.extensions["db_pool"].close()


@pytest.fixture
def client(app):
    return app.test_client()
