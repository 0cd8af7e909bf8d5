"""The Procfile's web process (gunicorn, gthread workers, web.wsgi:app) serves /ws: a signed-in
browser's websocket gets its own notify_user events and nobody else's."""
import os
import shlex
import socket
import subprocess
import sys
import time

import psycopg
import pytest
import requests
from psycopg.rows import dict_row

from common.config import ROOT
from tests.factories import PASSWORD, make_user
from tests.liveserver import LiveClient
from tests.webutil import _CSRF


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def procfile_web_command(port):
    """The Procfile's web line, run by this interpreter, bound to loopback."""
    line = next(l for l in (ROOT / "Procfile").read_text().splitlines() if l.startswith("web:"))
    expanded = os.path.expandvars(line.split(":", 1)[1].replace("${PORT:-3000}", str(port))
                                  .replace("${WEB_CONCURRENCY:-2}", "1").replace("${WEB_THREADS:-32}", "8"))
    argv = shlex.split(expanded)
    assert argv[0] == "gunicorn" and "gthread" in argv
    return [sys.executable, "-m", "gunicorn"] + [a.replace("0.0.0.0", "127.0.0.1") for a in argv[1:]]


def start_gunicorn(db_url):
    """The Procfile's web process on a free loopback port, once it answers; returns (proc, host)."""
    port = free_port()
    env = dict(os.environ, DATABASE_URL=db_url, SECRET_KEY="gunicorn-test-key", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(procfile_web_command(port), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            if requests.get(f"http://{host}/healthz", timeout=10).status_code in (200, 503):
                break
        except requests.RequestException:   # not listening yet, or still importing the app
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("gunicorn did not start: " + proc.stderr.read().decode()[-2000:])
        time.sleep(0.2)
    return proc, host


@pytest.fixture(scope="module")
def gunicorn(module_db_url):
    proc, host = start_gunicorn(module_db_url)
    yield host
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def signed_in_cookie(host, email):
    s = requests.Session()
    token = _CSRF.search(s.get(f"http://{host}/login").text).group(1)
    res = s.post(f"http://{host}/login", data={"email": email, "password": PASSWORD, "csrf_token": token},
                 allow_redirects=False)
    assert res.status_code == 302, res.text[:500]
    return s.cookies["session"]


def test_websocket_under_gunicorn_gets_own_events_only(gunicorn, module_db_url):
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        me, other = make_user(c), make_user(c)
        email = c.execute("SELECT email FROM users WHERE id = %s", [me]).fetchone()["email"]
        client = LiveClient(gunicorn, signed_in_cookie(gunicorn, email))
        try:
            # The worker's LISTEN thread starts with the first subscriber: repeat until it hears.
            received, deadline = [], time.monotonic() + 30
            while not received and time.monotonic() < deadline:
                c.execute("SELECT notify_user(%s, 'probe', '{\"n\": 1}')", [other])
                c.execute("SELECT notify_user(%s, 'probe', '{\"n\": 2}')", [me])
                received = [e for e in client.collect(0.5) if e["type"] == "probe"]
            assert received and all(e["data"] == {"n": 2} for e in received), received
            client.send({"type": "ping"})
            assert client.wait_for("pong")
        finally:
            client.close()


def test_websocket_refused_without_a_session(gunicorn):
    res = requests.get(f"http://{gunicorn}/ws", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                                                          "Sec-WebSocket-Version": "13",
                                                          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert res.status_code == 401


def test_sigterm_closes_open_websockets_and_stops_at_once(module_db_url):
    proc, host = start_gunicorn(module_db_url)
    try:
        with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
            uid = make_user(c)
            email = c.execute("SELECT email FROM users WHERE id = %s", [uid]).fetchone()["email"]
        client = LiveClient(host, signed_in_cookie(host, email))
        t0 = time.monotonic()
        proc.terminate()
        proc.wait(25)                        # without the close, gunicorn waits graceful_timeout (30 s)
        assert time.monotonic() - t0 < 15     # ~1 s idle; the margin is for a loaded machine
        assert client.ws.close_reason == 1001   # going away: the browser reconnects elsewhere
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
