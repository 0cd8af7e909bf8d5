"""pgqueuer's own tables, in their own schema `pgqueuer` so they stay apart from ours.
They carry background jobs (imports, media fetching, large fan-outs) and the clock's schedule;
never a message's state."""
from yoyo import step

from common.jobqueue import pgqueuer_settings

__depends__ = {"0001_schema"}


def _install(conn):
    from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment

    cur = conn.cursor()
    cur.execute(QueryBuilderEnvironment(pgqueuer_settings()).build_install_query(create_schema=True))


def _uninstall(conn):
    conn.cursor().execute("DROP SCHEMA IF EXISTS pgqueuer CASCADE")


steps = [step(_install, _uninstall)]
