"""Settings, read only from the environment (CONTRACT.md lists them)."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Runtime state (database cluster, logs, pids): git-ignored; WA_VAR moves it (tests use that).
VAR = Path(os.environ.get("WA_VAR") or ROOT / "var")


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


def database_url():
    """DATABASE_URL / DB_URI when given, else the embedded cluster's URL (None if not created)."""
    url = os.environ.get("DATABASE_URL") or os.environ.get("DB_URI")
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

    given = os.environ.get("NEONIZE_STORE_URL")
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
    return int(os.environ.get("PORT", "3000"))


def default_timezone():
    return os.environ.get("TZ") or "Asia/Kuala_Lumpur"


def metrics_token():
    """METRICS_TOKEN: the bearer token GET /metrics asks for; unset, /metrics is off."""
    return os.environ.get("METRICS_TOKEN") or None


def transport_name():
    return os.environ.get("WA_TRANSPORT", "sim")


def sender_processes():
    """SENDER_PROCESSES when given; None lets the pool size itself from the devices to run."""
    value = os.environ.get("SENDER_PROCESSES")
    return int(value) if value else None


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
