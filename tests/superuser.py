"""The embedded cluster's superuser, for tests that load extensions or settings the application
role may not (it is deliberately not a superuser)."""
import psycopg
import pytest
from psycopg.rows import dict_row

from common.db import database_name


def superuser(url, **kw):
    """A connection as the embedded cluster's superuser to the database of `url` (the application
    role is not one). Fails the test, saying why, when the database is not the embedded cluster."""
    from scripts import embedded
    try:
        return psycopg.connect(embedded.superuser_conninfo(database_name(url)), autocommit=True,
                               row_factory=dict_row, **kw)
    except Exception as exc:  # noqa: BLE001 - reported with the way out
        pytest.fail(f"this test needs the embedded cluster's superuser ({exc}); run it with `make test`")
