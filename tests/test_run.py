"""`make run` end to end: the Procfile's processes start in the background against a database,
the dashboard answers with a login page, the printed demo login works, and stop leaves nothing."""
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import psycopg
import pytest
from psycopg.rows import dict_row

from common.config import ROOT
from scripts.run import alive


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def running(committed_db_url, tmp_path):
    env = dict(os.environ, DATABASE_URL=committed_db_url, WA_VAR=str(tmp_path), PORT=str(free_port()),
               SENDER_PROCESSES="1", WEB_CONCURRENCY="1", WEB_THREADS="4")
    run = lambda cmd: subprocess.run([sys.executable, "-m", "scripts.run", cmd], cwd=ROOT, env=env,
                                     capture_output=True, text=True, timeout=90)
    started = run("start")
    yield env, started, tmp_path
    stopped = run("stop")
    assert stopped.returncode == 0, stopped.stderr


def test_run_starts_everything_and_prints_the_login(running):
    env, started, var = running
    assert started.returncode == 0, started.stderr
    url = re.search(r"Dashboard: (http://\S+)", started.stdout).group(1)
    email, password = re.search(r"Demo login: (\S+) / (\S+)", started.stdout).groups()
    base = url.rsplit("/", 1)[0]
    with urllib.request.urlopen(base + "/login") as r:
        assert r.status == 200 and b'name="password"' in r.read()
    with urllib.request.urlopen(base + "/healthz") as r:
        assert r.status == 200
    pids = {p.stem: int(p.read_text()) for p in (var / "run").glob("*.pid")}
    assert set(pids) == {"web", "sender", "clock", "webhooks"}
    time.sleep(1)
    dead = [name for name, pid in pids.items() if not alive(pid)]
    assert dead == [], f"crashed at start: {dead}"
    with psycopg.connect(env["DATABASE_URL"], row_factory=dict_row) as c:
        demo = c.execute("""SELECT (SELECT count(*) FROM campaigns) AS campaigns,
                                   (SELECT count(*) FROM sequence_enrollments) AS enrolled,
                                   (SELECT count(*) FROM leads) AS leads""").fetchone()
        assert demo["campaigns"] == 1 and demo["enrolled"] >= 10 and demo["leads"] == 120
        # The paired demo phones come online through the simulated network and the sender.
        for _ in range(100):
            online = c.execute("SELECT count(*) AS n FROM user_devices WHERE status = 'online'").fetchone()["n"]
            if online == 2:
                break
            time.sleep(0.2)
        assert online == 2


def test_stop_leaves_no_process(running):
    env, started, var = running
    pids = [int(p.read_text()) for p in (var / "run").glob("*.pid")]
    subprocess.run([sys.executable, "-m", "scripts.run", "stop"], cwd=ROOT, env=env, check=True, timeout=60)
    assert [pid for pid in pids if alive(pid)] == []
