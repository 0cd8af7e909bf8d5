"""Dashboard commands for this sender's devices (device_commands rows, db/functions/devices.sql).

The web never reaches a WhatsApp connection: it inserts a command and NOTIFYs wa_device_commands;
this thread (one per sender process) wakes, takes the commands for devices this sender leases and
runs them on the transport, then records each outcome (pushed live to the owner). A command no
sender takes expires in device_health_tick.
"""
import logging
import threading

from sender.reconnecting import reconnecting

log = logging.getLogger("sender.device_commands")

CHANNEL = "wa_device_commands"


class DeviceCommands:
    def __init__(self, url, sender_id, transport, start_device, stop_device, poll_seconds=5.0, logout_wait_s=10.0):
        """start_device(device_id, jid, phone) and stop_device(device_id) are the worker's own, so
        its record of which devices run stays true. A logout waits up to logout_wait_s for a
        dropped connection to come back."""
        self.url, self.sender_id, self.transport = url, sender_id, transport
        self.start_device, self.stop_device = start_device, stop_device
        self.poll_seconds, self.logout_wait_s = poll_seconds, logout_wait_s
        self._stopping = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._loop, name="device-commands", daemon=True)
        self._thread.start()

    def stop(self, timeout=5.0):
        self._stopping.set()
        if self._thread:
            self._thread.join(timeout)

    def _loop(self):
        reconnecting(self.url, "wa-sender-commands", self._serve, self._stopping)

    def _serve(self, conn):
        conn.execute(f"LISTEN {CHANNEL}")
        while not self._stopping.is_set():
            self.run_pending(conn)
            for _ in conn.notifies(timeout=self.poll_seconds, stop_after=1):
                pass

    def run_pending(self, conn):
        """Takes and runs every pending command of this sender's devices; returns how many ran."""
        commands = conn.execute("SELECT * FROM take_device_commands(%s)", [self.sender_id]).fetchall()
        for cmd in commands:
            try:
                result = self.run(conn, cmd)
                error = None
            except Exception as exc:  # noqa: BLE001 - a failed command is reported, never fatal
                result, error = None, str(exc) or exc.__class__.__name__
                log.warning("device %s: %s failed: %s", cmd["device_id"], cmd["command"], error)
            if cmd["command"] != "delete" or error:
                conn.execute("SELECT finish_device_command(%s, %s, %s)", [cmd["id"], error, result])
        return len(commands)

    def run(self, conn, cmd):
        device_id, command = cmd["device_id"], cmd["command"]
        if command == "pair":
            self.stop_device(device_id)
            self.start_device(device_id, None, None)
            return "pairing: scan the QR code"
        if command == "pair_phone":
            self.transport.pair_phone(device_id, cmd["phone"])
            return "pairing: type the code on the phone"
        if command == "simulate_scan":
            scan = getattr(self.transport, "scan", None)
            if scan is None:
                raise RuntimeError("simulate scan works only with the simulated transport (WA_TRANSPORT=sim)")
            scan(device_id)
            return "scanned"
        if command == "logout":
            self.transport.logout(device_id, self.logout_wait_s)
            return "logged out"
        if command == "reconnect":
            self.stop_device(device_id)
            self.start_device(device_id, cmd["jid"], None)
            return "reconnecting with the stored session"
        if command == "delete":
            try:   # off the phone's Linked Devices when the connection allows
                self.transport.logout(device_id, self.logout_wait_s)
                unlinked = "logged out from the phone"
            except Exception as exc:  # noqa: BLE001 - the device goes anyway; its session rows are removed below
                log.info("device %s: logout before delete failed: %s", device_id, exc)
                unlinked = "not logged out (no connection): remove it under Linked Devices on the phone"
            # Before the rows go (a running client would write them again), and for good: a lease
            # round that read the device before the delete must not start it again.
            self.stop_device(device_id, deleted=True)
            conn.execute("SELECT finish_device_delete(%s)", [cmd["id"]])
            return f"deleted; {unlinked}"
        raise ValueError(f"unknown command {command!r}")
