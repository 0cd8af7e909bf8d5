"""Set-up commands: bad configuration ends with one clear line, never a traceback; make db is
idempotent and fast when the database is up."""
import os
import resource
import socket
import subprocess
import sys
import time

from common.config import ROOT


def run(module, *args, **env):
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DB_URI")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


def assert_one_clear_line(result, *words):
    assert result.returncode != 0
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_unreachable_database_url(tmp_path):
    r = run("scripts.dbup", DATABASE_URL="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
            WA_VAR=str(tmp_path))
    assert_one_clear_line(r, "cannot reach the database", "DATABASE_URL")


def test_port_in_use(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        r = run("scripts.embedded", "up", WA_VAR=str(tmp_path), EMBEDDED_PG_PORT=str(busy))
    assert_one_clear_line(r, f"port {busy}", "EMBEDDED_PG_PORT")


def test_unwritable_state_folder():
    r = run("scripts.embedded", "up", WA_VAR="/proc/wa-not-writable")
    assert_one_clear_line(r, "WA_VAR")


def test_make_db_again_is_fast_and_prints_the_url_last():
    # CPU seconds, not wall time: a loaded machine stretches the wall clock, not the work done.
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(["make", "-s", "db"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DB_URI")})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("postgresql://")
    assert cpu < 3, f"make db used {cpu:.1f} CPU seconds (nothing to create or apply: it should be well under 1)"


def test_embedded_settings_are_honoured_on_every_start():
    """A cluster made on one port starts on whatever EMBEDDED_PG_PORT says later; a port in use, or a
    running cluster asked to be elsewhere, is one line saying so and what to do. A cluster made before
    a setting of ours (the queue's vacuum every 10 s) takes it at its next start."""
    from tests.test_faults_support import PrivateCluster, free_port

    cluster, other = PrivateCluster(), str(free_port())
    try:
        first = cluster.env["EMBEDDED_PG_PORT"]
        assert f":{first}/" in cluster.url
        r = run("scripts.embedded", "up", **{**cluster.env, "EMBEDDED_PG_PORT": other})
        assert_one_clear_line(r, f"running on port {first}", "make stop")
        cluster._embedded("stop")
        with socket.socket() as s:            # the new port is taken: the error names it, not the old one
            s.bind(("127.0.0.1", 0))
            s.listen()
            busy = s.getsockname()[1]
            r = run("scripts.embedded", "up", **{**cluster.env, "EMBEDDED_PG_PORT": str(busy)})
        assert_one_clear_line(r, f"port {busy}", "EMBEDDED_PG_PORT")
        conf = cluster.var / "pg" / "data" / "postgresql.auto.conf"   # as an older checkout left it
        conf.write_text("".join(line for line in conf.read_text().splitlines(keepends=True)
                                if not line.startswith("autovacuum_naptime")))
        r = run("scripts.embedded", "up", **{**cluster.env, "EMBEDDED_PG_PORT": other})
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().splitlines()[-1].startswith(f"postgresql://wa:") and f":{other}/" in r.stdout
        import psycopg
        with psycopg.connect(r.stdout.strip().splitlines()[-1], connect_timeout=10) as c:
            assert c.execute("SHOW port").fetchone()[0] == other
            assert c.execute("SHOW autovacuum_naptime").fetchone()[0] == "10s"
        assert_pooler_serves_the_cluster(cluster, other)
        cluster._embedded("stop")
        assert not pooler_running(cluster)                  # stopped with the cluster
    finally:
        cluster.env["EMBEDDED_PG_PORT"] = other
        cluster.remove()


def test_secrets_under_var_are_private_from_their_first_byte(tmp_path, monkeypatch):
    from common import config
    from scripts import demo
    from web import _secret_key
    monkeypatch.setattr(config, "VAR", tmp_path)
    monkeypatch.setattr(demo, "VAR", tmp_path)
    monkeypatch.setattr("web.VAR", tmp_path)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    # Right at creation, not fixed afterwards: with chmod doing nothing and no umask to help, a
    # file written first and made private second would stay readable by everyone.
    monkeypatch.setattr("pathlib.Path.chmod", lambda *a, **k: None)
    old = os.umask(0)
    try:
        key = _secret_key()
        demo._demo_password()
        config.private_dir(tmp_path / "log")
    finally:
        os.umask(old)
    assert len(key) == 64
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"secret_key": 0o600, "demo_login": 0o600, "log": 0o700}


def pooler_running(cluster):
    pidfile = cluster.var / "pg" / "pgbouncer" / "pgbouncer.pid"
    try:
        os.kill(int(pidfile.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def assert_pooler_serves_the_cluster(cluster, port):
    """PgBouncer started with the cluster: neonize's store address goes through its socket, by
    transaction, with lib/pq's binary_parameters (libpq itself does not know that parameter)."""
    from urllib.parse import parse_qs, urlsplit

    import psycopg
    store = urlsplit((cluster.var / "pg" / "store_url").read_text().strip())
    query = parse_qs(store.query)
    assert query["binary_parameters"] == ["yes"] and pooler_running(cluster)
    with psycopg.connect(host=query["host"][0], port=query["port"][0], dbname=store.path.lstrip("/"),
                         user=store.username, password=store.password, connect_timeout=10) as c:
        assert c.execute("SHOW port").fetchone()[0] == port           # the cluster, behind the pooler
    # One connection per WhatsApp client's pool: the pooler may open as many files as it is allowed.
    pid = int((cluster.var / "pg" / "pgbouncer" / "pgbouncer.pid").read_text())
    limits = next(line for line in open(f"/proc/{pid}/limits") if line.startswith("Max open files")).split()
    assert limits[3] == limits[4], limits
