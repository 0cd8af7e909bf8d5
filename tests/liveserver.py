"""A real HTTP server around the app (websockets and browsers need one): werkzeug, threaded,
on a free loopback port, in a daemon thread; and a websocket client of /ws for tests.

Waits here are generous deadlines on events, never fixed sleeps: a busy machine only makes them slower."""
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
        # Websocket handlers never end by themselves: close them, then the server.
        hub = app.extensions.pop("live_hub", None)   # the next server of this app gets a fresh one
        if hub is not None:
            hub.close()
        server.shutdown()
        server.server_close()
        thread.join(5)


def session_cookie(app, email):
    """A signed-in session cookie for `email`, made through the real login form."""
    client = app.test_client()
    assert login(client, email).status_code == 302
    return client.get_cookie("session").value


DEADLINE = 60.0   # seconds: what a loaded 2-core machine may need for one event (seen: over 20)


class LiveClient:
    """A websocket client of /ws that collects events. Use it as a context manager (or close()
    it): its reader thread is not a daemon."""

    def __init__(self, host, cookie):
        self.ws = simple_websocket.Client.connect(f"ws://{host}/ws", headers={"Cookie": f"session={cookie}"})
        try:
            hello = self.next_events(timeout=DEADLINE)
            assert hello and hello[0]["type"] == "live.hello", hello
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def next_events(self, timeout=DEADLINE):
        raw = self.ws.receive(timeout=timeout)
        return json.loads(raw)["events"] if raw is not None else None

    def next_frame(self, timeout=DEADLINE):
        """The events of the next frame that carries more than keep-alive pings."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            events = [e for e in self.next_events(timeout=left) or [] if e["type"] != "ping"]
            if events:
                return events
        raise AssertionError(f"no frame of events within {timeout}s")

    def collect(self, seconds):
        """Every non-ping event arriving within `seconds` (for "nothing arrives" checks only;
        to wait for events use until())."""
        deadline, events = time.monotonic() + seconds, []
        while (left := deadline - time.monotonic()) > 0:
            batch = self.next_events(timeout=left)
            if batch:
                events += [e for e in batch if e["type"] != "ping"]
        return events

    def until(self, type_, timeout=DEADLINE):
        """Every non-ping event up to and including the first of `type_` (a sentinel sent last)."""
        deadline, events = time.monotonic() + timeout, []
        while (left := deadline - time.monotonic()) > 0:
            for event in self.next_events(timeout=left) or []:
                if event["type"] == "ping":
                    continue
                events.append(event)
                if event["type"] == type_:
                    return events
        raise AssertionError(f"no {type_} event within {timeout}s; got {events}")

    def wait_for(self, type_, timeout=DEADLINE):
        return self.until(type_, timeout)[-1]

    def send(self, obj):
        self.ws.send(json.dumps(obj))

    def close(self):
        with contextlib.suppress(simple_websocket.ConnectionClosed):   # the server may have closed it
            self.ws.close()
