"""One timer thread for a transport's delayed work (retries, ban expiries, QR rotation, drops):
thousands of devices must not cost thousands of threading.Timer threads."""
from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time

log = logging.getLogger(__name__)


class Scheduled:
    """A call waiting in the scheduler; cancel() makes it do nothing."""
    __slots__ = ("fn", "args", "cancelled")

    def __init__(self, fn, args):
        self.fn, self.args, self.cancelled = fn, args, False

    def cancel(self):
        self.cancelled = True


class Scheduler:
    def __init__(self, name: str):
        self._heap: list = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay_s: float, fn, *args) -> Scheduled:
        """fn(*args) on the scheduler's thread after delay_s seconds (callbacks only hand work off)."""
        item = Scheduled(fn, args)
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay_s), next(self._seq), item))
            self._cond.notify()
        return item

    def close(self, timeout: float = 2.0):
        with self._cond:
            self._closed = True
            self._cond.notify()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _run(self):
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                if self._closed:
                    return
                item = heapq.heappop(self._heap)[2]
            if not item.cancelled:
                try:
                    item.fn(*item.args)
                except Exception:  # noqa: BLE001 - one failed callback must not stop every timer
                    log.exception("scheduled call %r failed", item.fn)
