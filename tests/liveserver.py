"""A real HTTP server around the app (websockets and browsers need one): werkzeug, threaded,
on a free loopback port, in a daemon thread."""
import contextlib
import json
import threading
import time

import simple_websocket
from werkzeug.serving import make_server

from tests.webutil import login


@contextlib.contextmanager
def serving(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(5)


def session_cookie(app, email):
    """A signed-in session cookie for `email`, made through the real login form."""
    client = app.test_client()
    assert login(client, email).status_code == 302
    return client.get_cookie("session").value


class LiveClient:
    """A websocket client of /ws that collects events."""

    def __init__(self, host, cookie):
        self.ws = simple_websocket.Client.connect(f"ws://{host}/ws", headers={"Cookie": f"session={cookie}"})
        hello = self.next_events(timeout=5)
        assert hello and hello[0]["type"] == "live.hello", hello

    def next_events(self, timeout=2.0):
        raw = self.ws.receive(timeout=timeout)
        return json.loads(raw)["events"] if raw is not None else None

    def collect(self, seconds):
        """Every non-ping event arriving within `seconds`."""
        deadline, events = time.monotonic() + seconds, []
        while (left := deadline - time.monotonic()) > 0:
            batch = self.next_events(timeout=left)
            if batch:
                events += [e for e in batch if e["type"] != "ping"]
        return events

    def wait_for(self, type_, timeout=3.0):
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            for event in self.next_events(timeout=left) or []:
                if event["type"] == type_:
                    return event
        raise AssertionError(f"no {type_} event within {timeout}s")

    def send(self, obj):
        self.ws.send(json.dumps(obj))

    def close(self):
        self.ws.close()
