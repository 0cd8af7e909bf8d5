"""Database access for request handlers: a pooled connection per call, errors mapped to 4xx."""
from contextlib import contextmanager

import psycopg
from flask import abort, current_app, g

from common.config import engine_settings

# SQLSTATE classes raised by our functions and constraints for bad input -> 400/409, not 500.
_BAD_INPUT = {"22", "23"}
_STATE_CONFLICT = {"P0001"}
# A quota reached (require_quota) and an administrators-only function: refused, 403.
_REFUSED = {"WAQ01", "WAA01"}


def _message(exc):
    diag = exc.diag
    return diag.message_primary or str(exc).splitlines()[0]


@contextmanager
def conn():
    with current_app.extensions["db_pool"].connection() as c:
        try:
            yield c
        except psycopg.Error as exc:
            state = exc.sqlstate or ""
            if isinstance(exc, psycopg.DataError) and not state:   # refused by the driver: a NUL in text
                abort(400, description=f"bad value: {exc}")
            if state[:2] in _BAD_INPUT:
                abort(409 if state == "23505" else 400, description=_message(exc))
            if state in _STATE_CONFLICT:
                abort(409, description=_message(exc))
            if state in _REFUSED:
                abort(403, description=_message(exc))
            raise


def one(sql, params=()):
    with conn() as c:
        return c.execute(sql, params).fetchone()


def all_rows(sql, params=(), prepare=None):
    """prepare=False: planned for each call's values, never a plan kept for the statement."""
    with conn() as c:
        return c.execute(sql, params, prepare=prepare).fetchall()


def setting(name):
    """One of the database's settings (the settings table, as SQL reads it), fetched once per
    request: whole numbers as int. Templates call it too ({{ setting('default_hourly_limit') }})."""
    if "engine_settings" not in g:
        with conn() as c:
            g.engine_settings = {k: int(v) if v == int(v) else float(v) for k, v in engine_settings(c).items()}
    return g.engine_settings[name]
