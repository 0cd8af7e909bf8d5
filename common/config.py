"""Configuration, in one place. Two sources:

- the environment (CONTRACT.md and the README list the variables): where things are (database,
  ports, folders), secrets, and per-process tuning. This module is the only reader of os.environ
  (tests/test_settings.py checks it): env() and the named readers below.
- the database's `settings` table (migration 1201): every number the engine and Python share (stuck
  timeout, lease length, liveness window, default caps and delays, load-score weights), read with
  engine_settings().
"""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def env(name, default=None):
    """One environment variable (None or `default` when unset or empty)."""
    return os.environ.get(name) or default


def env_flag(name, default):
    """A yes/no variable: 0, off, false or no turn it off."""
    value = env(name)
    return default if value is None else value.strip().lower() not in ("0", "off", "false", "no")


# Runtime state (database cluster, logs, pids): git-ignored; WA_VAR moves it (tests use that).
VAR = Path(env("WA_VAR") or ROOT / "var")


class ConfigError(Exception):
    """Bad configuration: the message is one line saying what is wrong and what to do."""


def private_dir(path):
    """A folder only this OS user can read (runtime state: logs, pids)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path, text):
    """Writes a secret file that is never readable by others, not even for a moment: created
    0600 under a temporary name, then renamed over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def given_database_url():
    """DATABASE_URL or DB_URI when set: a database elsewhere replaces the embedded cluster."""
    return env("DATABASE_URL") or env("DB_URI")


def database_url():
    """DATABASE_URL / DB_URI when given, else the embedded cluster's URL (None if not created)."""
    url = given_database_url()
    if url:
        # Heroku-style postgres:// is accepted by libpq; nothing to rewrite.
        return url
    stored = VAR / "pg" / "url"
    return stored.read_text().strip() if stored.exists() else None


def neonize_store_url(database_url):
    """Where neonize keeps its sessions for the database at database_url: NEONIZE_STORE_URL when
    given (a pooler in front of that database), the embedded cluster's PgBouncer for the embedded
    cluster's databases (it serves every database of the cluster), or the database itself."""
    from urllib.parse import urlsplit, urlunsplit

    given = env("NEONIZE_STORE_URL")
    if given:
        return given
    pooler, embedded = VAR / "pg" / "store_url", VAR / "pg" / "url"
    if pooler.exists() and embedded.exists():
        ours, theirs = urlsplit(database_url), urlsplit(embedded.read_text().strip())
        if (ours.hostname, ours.port) == (theirs.hostname, theirs.port):
            return urlunsplit(urlsplit(pooler.read_text().strip())._replace(path=ours.path))
    return database_url


def require_database_url():
    url = database_url()
    if not url:
        raise ConfigError("no database: set DATABASE_URL, or run `make db` to create the embedded one")
    return url


def port():
    return int(env("PORT", "3000"))


def default_timezone():
    return env("TZ") or "Asia/Kuala_Lumpur"


def metrics_token():
    """METRICS_TOKEN: the bearer token GET /metrics asks for; unset, /metrics is off."""
    return env("METRICS_TOKEN")


def transport_name():
    return env("WA_TRANSPORT", "sim")


def sender_processes():
    """SENDER_PROCESSES when given; None lets the pool size itself from the devices to run."""
    value = env("SENDER_PROCESSES")
    return int(value) if value else None


def sender_slot():
    """SENDER_SLOT: set by the sender pool for the workers it starts (None: started by hand)."""
    return env("SENDER_SLOT")


def log_level():
    return env("LOG_LEVEL", "INFO")


def secret_key():
    """SECRET_KEY (a secret: only ever from the environment); None in development."""
    return env("SECRET_KEY")


def web_db_pool():
    """WEB_DB_POOL: database connections per web process."""
    return int(env("WEB_DB_POOL", "10"))


def web_proxies():
    """WEB_PROXIES: how many proxies stand in front of the web process (their X-Forwarded-* are trusted)."""
    return int(env("WEB_PROXIES", "0"))


def embedded_pg_port():
    """EMBEDDED_PG_PORT: the embedded cluster's loopback port."""
    return int(env("EMBEDDED_PG_PORT", "54329"))


def engine_settings(conn):
    """The database's settings (migration 1201), name -> value: the same rows SQL reads with
    setting(name). Names carry their unit (lease_seconds, default_hourly_limit)."""
    return {r["name"]: r["value"] for r in conn.execute("SELECT name, value FROM app_settings()")}


def run_command(body, *args):
    """Runs a command-line entry point: bad configuration ends with one line on stderr, exit 1."""
    import sys

    try:
        body(*args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"error: {exc.strerror or exc}{where}; check the folder's permissions or set WA_VAR", file=sys.stderr)
        return 1
    return 0
