"""The one reconnecting loop of the sender's long-running threads.

Every thread that lives on a database connection (dispatch, leases, LISTEN, events, device
commands, the pool's sizing) survives a database restart the same way: run the body on a fresh
connection; when the database goes away (OperationalError), log one line, pause, and run the body
again on a new connection. The body keeps its own state between runs (what it still has to
write, for example), so a retry repeats nothing that already committed.
"""
import logging
import threading
from typing import Callable, Optional

import psycopg

from common.db import connect

log = logging.getLogger("sender.reconnecting")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def reconnecting(url: str, name: str, body: Callable, stopping: threading.Event, *,
                 give_up: Callable[[], bool] = lambda: False, pause: float = 1.0,
                 attempts: Optional[int] = None):
    """Runs body(conn) on a connection named `name` until it returns, and returns its result.

    On OperationalError (from connecting or from the body) it pauses and runs the body again on
    a new connection, unless `stopping` is set, `give_up()` is true, or `attempts` runs have
    failed; then it returns None."""
    failures = 0
    while True:
        try:
            with connect(url, application_name=name) as conn:
                return body(conn)
        except psycopg.OperationalError as exc:
            failures += 1
            log.warning("%s: database unavailable (%s); reconnecting", name, first_line(exc))
            if attempts is not None and failures >= attempts:
                return None
            if stopping.wait(pause) or give_up():
                return None
