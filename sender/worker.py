"""One sender worker process: leases devices, runs them on a transport, and moves their messages
through the queue. Its named parts:

- Dispatcher (sender/dispatcher.py), on the thread that calls run(): claim -> send -> complete.
- LeaseKeeper (sender/lease_keeper.py), thread `leases`: heartbeat, shed, take leases, start/stop devices.
- DeviceRegistry (sender/device_registry.py): which devices run, are parked or to release, and
  their messages in flight; shared by the threads above and the event reactions below.
- listener thread: LISTEN wa_dispatch (new work) and wa_devices (devices to lease), wakes the two.
- EventSink (sender/events.py), thread `event-sink`: transport events -> SQL, then `_on_event`;
  receipts wait there for the completions the dispatcher has not written yet.
- DeviceCommands (sender/device_commands.py): the dashboard's commands for these devices.

    python -m sender.worker        (normally started by `python -m sender`, the pool)
"""
import logging
import os
import signal
import socket
import threading
import time
import uuid

from common.config import log_level, require_database_url, sender_slot
from common.db import connect
from sender.device_commands import DeviceCommands
from sender.device_registry import DeviceRegistry
from sender.dispatcher import Dispatcher
from sender.events import EventSink
from sender.lease_keeper import LeaseKeeper
from sender.media import use_database
from sender.reconnecting import reconnecting
from sender.settings import SenderSettings
from sender.transport import make_transport
from sender.transport.base import ClientOutdated, ConnectFailed, LoggedOut, PairingExpired, StreamReplaced

log = logging.getLogger("sender.worker")

DISPATCH_CHANNEL = "wa_dispatch"
DEVICES_CHANNEL = "wa_devices"


class Worker:
    def __init__(self, url=None, settings=None, transport_factory=None, sender_id=None):
        self.url = url or require_database_url()
        use_database(self.url)   # the stored images messages send
        self.sender_id = sender_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stopping = threading.Event()
        # The lease length and stuck timeout are the database's (the settings table), as SQL's are.
        self.settings = settings or SenderSettings.from_env()
        reconnecting(self.url, "wa-sender-settings", self.settings.resolve, self._stopping)
        self.registry = DeviceRegistry()
        self.events = EventSink(self.url, listeners=[self._on_event], claims=self.registry)
        self.transport = (transport_factory or self._default_transport)(self.events.put)
        self.dispatcher = Dispatcher(self.sender_id, self.settings, self.transport, self.registry, self._stopping)
        self.leases = LeaseKeeper(self.url, self.sender_id, self.settings, self.transport, self.registry,
                                  self._stopping, self.dispatcher.wake, on_orphaned=self.stop)
        self.commands = DeviceCommands(self.url, self.sender_id, self.transport, stop_device=self.leases.stop_device,
                                       start_device=self.leases.start_device,
                                       poll_seconds=min(self.settings.poll_seconds, 1.0),
                                       logout_wait_s=self.settings.logout_wait_seconds)
        self._threads = []

    def _default_transport(self, on_event):
        return make_transport(on_event, capacity=self.settings.capacity)

    @property
    def parent_pid(self):
        return self.leases.parent_pid

    @parent_pid.setter
    def parent_pid(self, pid):
        """Set when run by the pool: the worker stops if the pool is gone."""
        self.leases.parent_pid = pid

    # Lifecycle -------------------------------------------------------------------------------
    def stop(self):
        """Begin a graceful stop: no new claims, in-flight sends finish, leases are released."""
        self.dispatcher.stop_requested_at = self.dispatcher.stop_requested_at or time.monotonic()
        self._stopping.set()
        self.dispatcher.wake.set()
        self.leases.wake.set()

    def run(self):
        with connect(self.url, application_name="wa-sender") as conn:
            conn.execute("SELECT register_sender(%s, %s, %s, %s)",
                         [self.sender_id, socket.gethostname(), os.getpid(), self.settings.capacity])
        log.info("sender %s started", self.sender_id)
        self.events.start()
        self.commands.start()
        for target, name in ((self._listen, "listen_loop"), (self.leases.run, "lease_loop")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        try:
            # The dispatcher drains after stop(): only a drain past its time ends it early.
            reconnecting(self.url, "wa-sender", self.dispatcher.run, threading.Event(),
                         give_up=lambda: self._stopping.is_set() and self.dispatcher.drain_overdue())
        finally:
            self._shutdown()

    def _shutdown(self):
        self.commands.stop()
        for t in self._threads:
            t.join(timeout=5)
        for device_id in self.registry.take_running():
            self.transport.stop(device_id)
        released = reconnecting(self.url, "wa-sender", lambda c: c.execute(
            "SELECT retire_sender(%s) AS n", [self.sender_id]).fetchone()["n"], threading.Event(), attempts=5)
        self.dispatcher.close()
        self.transport.close()
        self.events.stop()
        log.info("sender %s stopped; released %s leases", self.sender_id, released)

    def _on_event(self, event):
        """After the event's SQL. A device with nothing left to run here is released: logged out,
        its pairing expired, or given up on by the transport. One that must not be retried is
        parked, kept leased so no other sender fights for the session or repeats the failure:
        stream replaced (another client runs it), client outdated (WhatsApp refuses this version)."""
        if isinstance(event, (LoggedOut, PairingExpired)) or (isinstance(event, ConnectFailed) and event.resume_at):
            self.registry.release_later(event.device_id)
            self.leases.wake.set()
        elif isinstance(event, (StreamReplaced, ClientOutdated)):
            self.registry.park(event.device_id)

    # Wake-ups --------------------------------------------------------------------------------
    def _listen(self):
        reconnecting(self.url, "wa-sender-listen", self._listen_on, self._stopping)

    def _listen_on(self, conn):
        conn.execute(f"LISTEN {DISPATCH_CHANNEL}")
        conn.execute(f"LISTEN {DEVICES_CHANNEL}")
        self.dispatcher.wake.set()  # anything that arrived while not listening
        while not self._stopping.is_set():
            for note in conn.notifies(timeout=0.5):
                (self.dispatcher.wake if note.channel == DISPATCH_CHANNEL else self.leases.wake).set()


def main():
    logging.basicConfig(level=log_level(),
                        format=f"%(asctime)s sender[{os.getpid()}] %(levelname)s %(message)s")
    worker = Worker()
    if sender_slot() is not None:   # started by the pool
        worker.parent_pid = os.getppid()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stop())
    worker.run()


if __name__ == "__main__":
    main()
