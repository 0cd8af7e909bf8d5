"""A deliberately failing test that leaks what used to keep the run alive (run only by
tests/test_session_guard.py: the file name does not match test_*.py, so it is never collected)."""
import subprocess
import sys
import threading

import psycopg
import simple_websocket
from psycopg.rows import dict_row

from tests.factories import make_user
from tests.liveserver import serving, session_cookie


def test_fails_leaving_a_socket_a_thread_and_a_process(app, module_db_url):
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        uid = make_user(c)
        email = c.execute("SELECT email FROM users WHERE id = %s", [uid]).fetchone()["email"]
    server = serving(app)
    host = server.__enter__()            # never left: the server and its websocket stay up
    simple_websocket.Client.connect(f"ws://{host}/ws", headers={"Cookie": f"session={session_cookie(app, email)}"})
    threading.Thread(target=threading.Event().wait, name="leaked-non-daemon").start()
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    assert False, "deliberate failure"
