"""The lease keeper: this sender's claim on its devices (db/functions/leases.sql).

Every heartbeat it renews the sender and its leases, stops devices it lost, releases the ones it
was told to give up and those above its fair share (unless messages are in flight on them),
takes free or expired leases up to its share, and starts every leased device that is not running.
"""
import logging
import os
import socket
import threading
from datetime import timedelta

import psycopg

from sender.reconnecting import first_line, reconnecting
from sender.transport.base import DeviceSession

log = logging.getLogger("sender.lease_keeper")


class LeaseKeeper:
    def __init__(self, url, sender_id, settings, transport, registry, stopping: threading.Event,
                 dispatch_wake: threading.Event, on_orphaned):
        self.url, self.sender_id, self.settings = url, sender_id, settings
        self.transport, self.registry, self.stopping = transport, registry, stopping
        self.dispatch_wake = dispatch_wake    # set when a device starts: it may have work
        self.on_orphaned = on_orphaned        # stops the worker: the pool that started us is gone, or we were given up
        self.wake = threading.Event()         # devices may be available
        self.parent_pid = None                # set when run by the pool

    def run(self):
        reconnecting(self.url, "wa-sender-leases", self._rounds, self.stopping)

    def _rounds(self, conn):
        while not self.stopping.is_set():
            if self.parent_pid and os.getppid() != self.parent_pid:
                log.error("the sender pool (pid %s) is gone; stopping", self.parent_pid)
                self.on_orphaned()
                return
            try:
                self.round(conn)
            except psycopg.OperationalError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep heartbeating whatever one round did
                log.exception("lease round failed (%s)", first_line(exc))
            self.wake.wait(self.settings.heartbeat_seconds)
            self.wake.clear()

    def round(self, conn):
        s = self.settings
        ttl = timedelta(seconds=s.lease_seconds)
        try:
            held = conn.execute("SELECT * FROM sender_heartbeat(%s, %s, %s)",
                                [self.sender_id, s.capacity, ttl]).fetchall()
        except psycopg.errors.InvalidParameterValue:
            # Our senders row is gone (removed by hand, say) while we still run: register again --
            # unless we were given up, silent past our lease, and the queue took back our claims.
            log.warning("sender %s was not registered; registering again", self.sender_id)
            try:
                conn.execute("SELECT register_sender(%s, %s, %s, %s)",
                             [self.sender_id, socket.gethostname(), os.getpid(), s.capacity])
            except psycopg.errors.ObjectNotInPrerequisiteState as exc:
                log.error("%s; stopping", first_line(exc))
                self.on_orphaned()
            return
        held_ids = {r["device_id"] for r in held}
        lost = self.registry.running() - held_ids
        release = self.registry.take_releases()
        shed = {r["device_id"] for r in held if r["shed"] and not self.registry.in_flight(r["device_id"])}
        for device_id in lost | release | shed:
            self.stop_device(device_id)
        if release | shed:
            conn.execute("SELECT release_leases(%s, %s)", [self.sender_id, list(release | shed)])
        for r in held:
            if r["device_id"] not in release | shed:
                self.start_device(r["device_id"], r["jid"], r["phone"])
        for r in conn.execute("SELECT * FROM acquire_leases(%s, %s, %s)", [self.sender_id, s.capacity, ttl]):
            self.start_device(r["device_id"], r["jid"], r["phone"])

    def start_device(self, device_id, jid, phone):
        """Starts a leased device on the transport unless it runs already or is parked."""
        if self.registry.claim_start(device_id):
            self.transport.start(DeviceSession(device_id, jid=jid, phone=phone))
            self.dispatch_wake.set()

    def stop_device(self, device_id, deleted=False):
        if self.registry.forget(device_id, deleted):
            self.transport.stop(device_id)
