"""The embedded PostgreSQL cluster: a private cluster under var/pg, created on first use.

It listens on a unix socket inside its folder and on a loopback port, preloads pg_cron for the
application database, and runs as the invoking user (as the `postgres` OS user when invoked as
root, since PostgreSQL refuses to run as root).

Beside it runs PgBouncer (when installed), started and stopped with it, on a unix socket of its
own: neonize's session stores reach the database through it (each WhatsApp client opens a pool of
its own), so thousands of clients cost a few backends. It pools by transaction; its address
(var/pg/store_url) carries binary_parameters=yes, which lib/pq needs under transaction pooling.

    python -m scripts.embedded up      # create if needed, start if stopped; prints DATABASE_URL
    python -m scripts.embedded stop
    python -m scripts.embedded status
"""
import glob
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from common.config import ROOT, VAR, ConfigError, embedded_pg_port, run_command, write_private

PORT = embedded_pg_port()
DB_NAME = "wa"
APP_ROLE = "wa"
RUN_AS_ROOT = os.geteuid() == 0


def bin_dir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise ConfigError("no PostgreSQL server binaries under /usr/lib/postgresql; run `make db` "
                          "(it installs them) or set DATABASE_URL")
    return Path(found[-1]).parent


def _os_user():
    return "postgres" if RUN_AS_ROOT else pwd.getpwuid(os.geteuid()).pw_name


def _as_cluster_user(cmd, **kw):
    """Run a server command as the cluster's OS user."""
    if RUN_AS_ROOT:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, **kw)


def home():
    """var/pg, or a folder the postgres user can reach when the checkout is not traversable by it
    (a clone under /root, for example); var/pg then links there."""
    link = VAR / "pg"
    if link.is_symlink() or link.exists():
        return link.resolve()
    VAR.mkdir(parents=True, exist_ok=True)
    if RUN_AS_ROOT and _as_cluster_user(["test", "-x", str(VAR)]).returncode != 0:
        target = Path("/var/lib/wa-embedded") / hashlib.sha1(str(ROOT).encode()).hexdigest()[:12]
        target.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target)
        return target
    link.mkdir()
    return link


def paths():
    h = home()
    return {"home": h, "data": h / "data", "socket": h / "socket", "log": h / "server.log",
            "password": h / "password", "url": VAR / "pg" / "url", "pooler": h / "pgbouncer",
            "store_url": VAR / "pg" / "store_url"}


def _chown(path):
    if RUN_AS_ROOT:
        shutil.chown(path, "postgres", "postgres")


def is_running(p=None):
    p = p or paths()
    if not (p["data"] / "PG_VERSION").exists():
        return False
    r = _as_cluster_user([str(bin_dir() / "pg_ctl"), "status", "-D", str(p["data"])],
                         capture_output=True)
    return r.returncode == 0


def _port_in_use(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _has_pg_cron():
    return (bin_dir().parent / "lib" / "pg_cron.so").exists()


def init(p):
    p["home"].mkdir(parents=True, exist_ok=True)
    p["socket"].mkdir(exist_ok=True)
    os.chmod(p["home"], 0o700)
    os.chmod(p["socket"], 0o700)
    for d in (p["home"], p["socket"]):
        _chown(d)
    pwfile = p["home"] / "superuser-pw"
    write_private(pwfile, secrets.token_hex(16))
    _chown(pwfile)
    r = _as_cluster_user([str(bin_dir() / "initdb"), "-D", str(p["data"]), "-U", "postgres",
                          "-E", "UTF8", "--locale=C.UTF-8", "--auth-local=trust",
                          "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
                         capture_output=True, text=True)
    pwfile.unlink()
    if r.returncode != 0:
        raise ConfigError(f"initdb failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    conf = [
        "listen_addresses = '127.0.0.1'",
        f"unix_socket_directories = '{p['socket']}'",
        "max_connections = 400",
        "shared_buffers = '1GB'",
        "timezone = 'UTC'",
        "log_timezone = 'UTC'",
        "logging_collector = off",
        "fsync = on",
    ]
    if _has_pg_cron():
        conf += ["shared_preload_libraries = 'pg_cron'", f"cron.database_name = '{DB_NAME}'",
                 "cron.use_background_workers = on", "max_worker_processes = 32"]
    with open(p["data"] / "postgresql.auto.conf", "a") as f:
        f.write("\n".join(conf) + "\n")


def _port_taken(port):
    return ConfigError(f"port {port} on 127.0.0.1 is in use by another program (another cluster?): stop it, "
                       "or set EMBEDDED_PG_PORT to a free port")


def running_port(p):
    """The port the running server listens on (line 4 of postmaster.pid), or None."""
    try:
        return int((p["data"] / "postmaster.pid").read_text().splitlines()[3])
    except (OSError, IndexError, ValueError):
        return None


def _start_settings():
    return {
        "port": str(PORT),
        # Each message leaves two dead row versions in the queue (claimed, then moved to the history);
        # until a vacuum removes them every claim steps over their index entries. The default (a look
        # once a minute) let a minute of them pile up: claim-and-complete 16 % slower over a 200k drain.
        "autovacuum_naptime": "'10s'",
    }


def _configure(p):
    """The settings of _start_settings hold on every start, not only the first (EMBEDDED_PG_PORT may
    change, and a cluster made by an older checkout takes a newer setting): they are rewritten."""
    conf = p["data"] / "postgresql.auto.conf"
    settings = _start_settings()
    lines = [line for line in conf.read_text().splitlines() if line.split("=", 1)[0].strip() not in settings]
    conf.write_text("\n".join(lines + [f"{k} = {v}" for k, v in settings.items()]) + "\n")


def start(p):
    _configure(p)
    log = p["log"]
    log.touch()
    _chown(log)
    logged_before = log.stat().st_size
    r = _as_cluster_user([str(bin_dir() / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(p["data"]),
                          "-l", str(log)], capture_output=True, text=True)
    if r.returncode != 0:
        with open(log, errors="replace") as f:
            f.seek(logged_before)
            lines = f.read().strip().splitlines()
        if any("could not bind" in line or "Address already in use" in line for line in lines):
            raise _port_taken(PORT)   # taken between our check and the server's bind
        cause = next((line for line in lines if " FATAL: " in line), lines[-1] if lines else r.stderr.strip())
        raise ConfigError(f"the embedded PostgreSQL did not start: {cause} (see {log})")


def psql_super(sql, db="postgres"):
    p = paths()
    psql = bin_dir() / "psql"
    r = _as_cluster_user([str(psql) if psql.exists() else "psql",
                          "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(p["socket"]), "-p", str(PORT),
                          "-U", "postgres", "-d", db, "-tA", "-c", sql],
                         capture_output=True, text=True)
    if r.returncode != 0:
        raise ConfigError(f"embedded database set-up failed: {r.stderr.strip()}")
    return r.stdout.strip()


def superuser_conninfo(db):
    """libpq conninfo of the cluster's superuser over the unix socket (tests that must load
    extensions or settings the application role may not)."""
    p = paths()
    return f"host={p['socket']} port={PORT} user=postgres dbname={db}"


def ensure_app_database(p):
    """The application role (not a superuser: it must work like a managed database) and its DB."""
    if not p["password"].exists():
        write_private(p["password"], secrets.token_hex(16))
    pw = p["password"].read_text().strip()
    psql_super(f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
          CREATE ROLE {APP_ROLE} LOGIN CREATEDB PASSWORD '{pw}';
        END IF; END $$;
        -- Lets the tests' DROP DATABASE ... WITH (FORCE) end sessions of the database they made.
        GRANT pg_signal_backend TO {APP_ROLE};""")
    if psql_super(f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'") != "1":
        psql_super(f"CREATE DATABASE {DB_NAME} OWNER {APP_ROLE}")
    if _has_pg_cron():
        psql_super("CREATE EXTENSION IF NOT EXISTS pg_cron; GRANT USAGE ON SCHEMA cron TO wa;", db=DB_NAME)
    url = f"postgresql://{APP_ROLE}:{pw}@127.0.0.1:{PORT}/{DB_NAME}?sslmode=disable"
    write_private(p["url"], url + "\n")   # it holds the password
    return url


def up():
    """Create and start the cluster if needed; return the application's DATABASE_URL."""
    p = paths()
    running = is_running(p)
    if running and running_port(p) not in (None, PORT):
        raise ConfigError(f"the embedded cluster is running on port {running_port(p)}, not {PORT} "
                          "(EMBEDDED_PG_PORT): `make stop` it first to move it")
    if not running and _port_in_use(PORT):
        raise _port_taken(PORT)
    if not (p["data"] / "PG_VERSION").exists():
        init(p)
    if not running:
        start(p)
    for _ in range(50):
        if _as_cluster_user([str(bin_dir() / "pg_isready"), "-q", "-h", str(p["socket"]), "-p", str(PORT)]).returncode == 0:
            break
        time.sleep(0.1)
    url = ensure_app_database(p)
    start_pooler(p, p["password"].read_text().strip())
    return url


# PgBouncer for neonize's session stores -----------------------------------------------------
POOL_SIZE = 20          # server connections per database: the session stores' share of the backends


def _pooler_binary():
    found = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    return found if os.path.exists(found) else None


def _pooler_pid(p):
    try:
        pid = int((p["pooler"] / "pgbouncer.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start_pooler(p, password):
    """Starts PgBouncer unless it runs; returns neonize's store address through it (None when
    PgBouncer is not installed: the stores then connect straight to the database)."""
    binary = _pooler_binary()
    if binary is None:
        p["store_url"].unlink(missing_ok=True)
        return None
    d = p["pooler"]
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o700)
    _chown(d)
    # Each client's pool is a connection here that neonize never closes: as many as the cluster user's
    # file limit allows (PgBouncer raises its soft limit to it below; the usual soft 1024 would make
    # it refuse connections past a thousand numbers).
    files = int(_as_cluster_user(["bash", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout.strip() or 1024)
    max_clients = max(100, files - 200)
    (d / "userlist.txt").write_text(f'"{APP_ROLE}" "{password}"\n')
    (d / "pgbouncer.ini").write_text(f"""[databases]
* = host={p['socket']} port={PORT}

[pgbouncer]
listen_addr =
unix_socket_dir = {d}
listen_port = {PORT}
auth_type = scram-sha-256
auth_file = {d / 'userlist.txt'}
stats_users = {APP_ROLE}
pool_mode = transaction
default_pool_size = {POOL_SIZE}
max_client_conn = {max_clients}
ignore_startup_parameters = extra_float_digits
log_connections = 0
log_disconnections = 0
logfile = {d / 'pgbouncer.log'}
pidfile = {d / 'pgbouncer.pid'}
""")
    for f in ("userlist.txt", "pgbouncer.ini"):
        os.chmod(d / f, 0o600)
        _chown(d / f)
    if _pooler_pid(p) is None:
        r = _as_cluster_user(["bash", "-c", f'ulimit -n {files} && exec {binary} -d -q {d / "pgbouncer.ini"}'],
                             capture_output=True, text=True)
        for _ in range(50):
            if (d / f".s.PGSQL.{PORT}").exists():
                break
            time.sleep(0.1)
        else:
            raise ConfigError(f"PgBouncer did not start: {(r.stderr or r.stdout).strip()} (see {d / 'pgbouncer.log'})")
    # connect_timeout: a pooler that does not answer fails a connect instead of hanging it.
    url = (f"postgresql://{APP_ROLE}:{password}@/{DB_NAME}?host={d}&port={PORT}"
           "&sslmode=disable&binary_parameters=yes&connect_timeout=10")
    p["store_url"].write_text(url + "\n")
    return url


def stop_pooler(p):
    pid = _pooler_pid(p)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if _pooler_pid(p) is None:
                break
            time.sleep(0.1)


def stop():
    p = paths()
    stop_pooler(p)
    if is_running(p):
        _as_cluster_user([str(bin_dir() / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(p["data"])],
                         capture_output=True)


def main(cmd="up"):
    if cmd == "up":
        print(up())
    elif cmd == "stop":
        stop()
    elif cmd == "status":
        print("running" if is_running() else "stopped")
    else:
        raise ConfigError(f"unknown command {cmd!r}: use up, stop or status")


if __name__ == "__main__":
    sys.exit(run_command(main, *sys.argv[1:2]))
