"""The sender pool: supervises the worker processes (`python -m sender.worker`), restarts one
that dies, and on SIGTERM/SIGINT asks each to drain (finish in-flight sends, release leases)
before exiting, killing only those that outlive the drain time.

How many workers: SENDER_PROCESSES when given; otherwise as many as the devices to run need at the
transport's measured devices per process (sender/transport/__init__.py), looked at again every
RESIZE_SECONDS so a growing fleet gets more workers. Each worker is told that capacity, and a
neonize worker's connection budget follows from it: capacity, budget and process count agree by
construction.

    python -m sender
"""
import logging
import math
import os
import signal
import subprocess
import sys
import time

from common.config import log_level, require_database_url, sender_processes
from common.db import connect
from sender.settings import SenderSettings

log = logging.getLogger("sender.pool")
RESTART_BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0
RESIZE_SECONDS = 30.0


def processes_needed(url, capacity):
    """Workers for the devices to run (not logged out, not held), at least one."""
    with connect(url, application_name="wa-sender-pool") as conn:
        devices = conn.execute("SELECT runnable_device_count() AS n").fetchone()["n"]
    return max(1, math.ceil(devices / capacity))


class Pool:
    def __init__(self, processes, drain_seconds, capacity, url=None):
        """processes: a fixed count, or None to size from the devices to run (needs url)."""
        self.fixed, self.url, self.capacity = processes, url, capacity
        self.drain_seconds = drain_seconds
        self.children = {}       # slot -> Popen
        self.backoff = {}        # slot -> seconds to wait before the next restart
        self.started_at = {}     # slot -> when its current worker started
        self.stopping = False

    def spawn(self, slot):
        env = dict(os.environ, SENDER_SLOT=str(slot), SENDER_CAPACITY=str(self.capacity))
        self.children[slot] = subprocess.Popen([sys.executable, "-m", "sender.worker"], env=env)
        self.started_at[slot] = time.monotonic()
        log.info("worker %s started (pid %s)", slot, self.children[slot].pid)

    def stop(self, *_):
        self.stopping = True

    def wanted(self):
        if self.fixed:
            return self.fixed
        try:
            return processes_needed(self.url, self.capacity)
        except Exception as exc:  # noqa: BLE001 - the database may be restarting: keep what runs
            log.warning("could not count the devices to run (%s); keeping %s workers", exc, len(self.children))
            return max(1, len(self.children))

    def grow(self):
        want = self.wanted()
        for slot in range(len(self.children), want):
            log.info("%s workers for the devices to run (%s per worker)", want, self.capacity)
            self.spawn(slot)

    def run(self):
        self.grow()
        restart_at = {}
        resize_at = time.monotonic() + RESIZE_SECONDS
        while not self.stopping:
            time.sleep(0.2)
            if time.monotonic() >= resize_at:
                self.grow()
                resize_at = time.monotonic() + RESIZE_SECONDS
            for slot, child in list(self.children.items()):
                if slot in restart_at:
                    if time.monotonic() >= restart_at[slot]:
                        del restart_at[slot]
                        self.spawn(slot)
                    continue
                code = child.poll()
                if code is None:
                    continue
                if time.monotonic() - self.started_at[slot] > STABLE_AFTER:
                    self.backoff[slot] = 0.5   # it had been running fine: restart at once
                wait = self.backoff.get(slot, 0.5)
                log.warning("worker %s (pid %s) exited with %s; restarting in %.1fs", slot, child.pid, code, wait)
                self.backoff[slot] = min(wait * 2, RESTART_BACKOFF_MAX)
                restart_at[slot] = time.monotonic() + wait
        self.drain()

    def drain(self):
        live = [c for c in self.children.values() if c.poll() is None]
        for child in live:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.drain_seconds
        for child in live:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker pid %s did not drain in %ss; killing it", child.pid, self.drain_seconds)
                child.kill()
                child.wait()
        log.info("sender pool stopped")


def main():
    logging.basicConfig(level=log_level(),
                        format=f"%(asctime)s sender-pool[{os.getpid()}] %(levelname)s %(message)s")
    settings = SenderSettings.from_env()
    fixed = sender_processes()
    pool = Pool(fixed, settings.drain_seconds + 5, settings.capacity, None if fixed else require_database_url())
    signal.signal(signal.SIGTERM, pool.stop)
    signal.signal(signal.SIGINT, pool.stop)
    pool.run()
