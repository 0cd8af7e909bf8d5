"""The sender pool: supervises SENDER_PROCESSES worker processes (`python -m sender.worker`),
restarts one that dies, and on SIGTERM/SIGINT asks each to drain (finish in-flight sends,
release leases) before exiting, killing only those that outlive the drain time.

    python -m sender
"""
import logging
import os
import signal
import subprocess
import sys
import time

from common.config import sender_processes
from sender.settings import SenderSettings

log = logging.getLogger("sender.pool")
RESTART_BACKOFF_MAX = 30.0
STABLE_AFTER = 60.0


class Pool:
    def __init__(self, processes, drain_seconds):
        self.processes = processes
        self.drain_seconds = drain_seconds
        self.children = {}       # slot -> Popen
        self.backoff = {}        # slot -> seconds to wait before the next restart
        self.started_at = {}     # slot -> when its current worker started
        self.stopping = False

    def spawn(self, slot):
        env = dict(os.environ, SENDER_SLOT=str(slot))
        self.children[slot] = subprocess.Popen([sys.executable, "-m", "sender.worker"], env=env)
        self.started_at[slot] = time.monotonic()
        log.info("worker %s started (pid %s)", slot, self.children[slot].pid)

    def stop(self, *_):
        self.stopping = True

    def run(self):
        for slot in range(self.processes):
            self.spawn(slot)
        restart_at = {}
        while not self.stopping:
            time.sleep(0.2)
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
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"),
                        format=f"%(asctime)s sender-pool[{os.getpid()}] %(levelname)s %(message)s")
    pool = Pool(sender_processes(), SenderSettings.from_env().drain_seconds + 5)
    signal.signal(signal.SIGTERM, pool.stop)
    signal.signal(signal.SIGINT, pool.stop)
    pool.run()
