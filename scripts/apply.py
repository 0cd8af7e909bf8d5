"""The one apply path: versioned migrations, then every function file, then every view file, then
the scheduled jobs. Used by `make db`, the Procfile `release` and the tests. Applying twice
changes nothing.

    python -m scripts.apply [DATABASE_URL]
"""
import sys

from yoyo import get_backend, read_migrations

from common.config import ROOT, require_database_url, run_command
from common.db import connect

DB = ROOT / "db"
JOB_PREFIX = "wa:"


def _yoyo_url(url):
    scheme, rest = url.split("://", 1)
    return "postgresql+psycopg://" + rest if scheme in ("postgres", "postgresql") else url


def migrate(url):
    backend = get_backend(_yoyo_url(url))
    migrations = read_migrations(str(DB / "migrations"))
    with backend.lock():
        backend.apply_migrations(backend.to_apply(migrations))


def sql_files(folder):
    return sorted((DB / folder).glob("*.sql"))


def apply_functions(conn):
    """Repeatable CREATE OR REPLACE files. Bodies are checked when called, not when created, so
    the files may refer to each other in any order."""
    with conn.transaction():
        conn.execute("SET LOCAL check_function_bodies = off")
        for f in sql_files("functions"):
            conn.execute(f.read_text())


def apply_views(conn):
    """Views are recreated from their files: drop ours (not extensions'), create all in order."""
    with conn.transaction():
        rows = conn.execute("""
            SELECT format('%I.%I', n.nspname, c.relname) AS name
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'v' AND n.nspname = 'public'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
        """).fetchall()
        for r in rows:
            conn.execute(f"DROP VIEW IF EXISTS {r['name']} CASCADE")
        for f in sql_files("views"):
            conn.execute(f.read_text())


def has_pg_cron(conn):
    return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')").fetchone()["exists"]


def apply_jobs(conn):
    """Schedule app_jobs() with pg_cron when it is installed in this database; otherwise the
    Procfile `clock` process runs the same jobs. Returns where the jobs run."""
    if not has_pg_cron(conn):
        return "clock"
    with conn.transaction():
        jobs = conn.execute("SELECT name, schedule, command FROM app_jobs()").fetchall()
        wanted = {JOB_PREFIX + j["name"] for j in jobs}
        existing = {r["jobname"]: r for r in conn.execute(
            "SELECT jobname, schedule, command FROM cron.job WHERE jobname LIKE %s", [JOB_PREFIX + "%"])}
        for name in set(existing) - wanted:
            conn.execute("SELECT cron.unschedule(%s)", [name])
        for j in jobs:
            name = JOB_PREFIX + j["name"]
            have = existing.get(name)
            if not have or have["schedule"] != j["schedule"] or have["command"] != j["command"]:
                conn.execute("SELECT cron.schedule(%s, %s, %s)", [name, j["schedule"], j["command"]])
    return "pg_cron"


def apply(url=None):
    url = url or require_database_url()
    with connect(url, application_name="wa-apply") as conn:
        pass  # fail early, with the clear message, when the database cannot be reached
    migrate(url)
    with connect(url, application_name="wa-apply") as conn:
        apply_functions(conn)
        apply_views(conn)
        return apply_jobs(conn)


def main(url=None):
    print(f"database applied; scheduled jobs run by {apply(url)}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(run_command(main, *sys.argv[1:2]))
