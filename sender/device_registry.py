"""Which devices this sender runs, and how many of their messages are in flight.

Three threads read and change it (dispatch, leases, events), so it owns its lock and every
read and change goes through a method here.

- running: started on the transport (the lease keeper and device commands start and stop them);
- parked: leased but not to be run until the operator acts (stream replaced, client outdated):
  kept leased so no other sender fights for the session or repeats the failure;
- to release: devices the lease keeper must stop and give up (logged out, pairing expired,
  gave up connecting);
- in flight: claimed messages whose result is not yet written, per device (a device with
  messages in flight is not shed), each numbered in claim order, so a receipt can wait for the
  completions of every message claimed before it arrived (sender/events.py);
- deleted: devices whose delete this sender ran; never started again (a lease round that read
  the device before the delete must not resume a client whose session rows are gone — whatsmeow
  panics on a nil device and takes the process down).
"""
import itertools
import threading


class DeviceRegistry:
    def __init__(self):
        self._lock = threading.Lock()
        self._running = set()
        self._parked = set()
        self._to_release = set()
        self._deleted = set()
        self._in_flight = {}        # device id -> {message id: claim number}
        self._claims = itertools.count(1)
        self._last_claim = 0

    # Running ---------------------------------------------------------------------------------
    def claim_start(self, device_id) -> bool:
        """True when the device is neither running, parked nor deleted: it is now running (the caller starts it)."""
        with self._lock:
            if device_id in self._running or device_id in self._parked or device_id in self._deleted:
                return False
            self._running.add(device_id)
            return True

    def forget(self, device_id, deleted=False) -> bool:
        """Neither running nor parked any more (and, when deleted, never started again); True when it
        was running (the caller stops it)."""
        with self._lock:
            if deleted:
                self._deleted.add(device_id)
            was_running = device_id in self._running
            self._running.discard(device_id)
            self._parked.discard(device_id)
            return was_running

    def park(self, device_id):
        with self._lock:
            self._running.discard(device_id)
            self._parked.add(device_id)

    def any_running(self) -> bool:
        with self._lock:
            return bool(self._running)

    def running(self) -> set:
        with self._lock:
            return set(self._running)

    def take_running(self) -> list:
        """Every running device, now forgotten (shutdown stops them)."""
        with self._lock:
            running = list(self._running)
            self._running.clear()
            return running

    # Releases --------------------------------------------------------------------------------
    def release_later(self, device_id):
        with self._lock:
            self._to_release.add(device_id)

    def take_releases(self) -> set:
        with self._lock:
            release = set(self._to_release)
            self._to_release.clear()
            return release

    # Messages in flight ----------------------------------------------------------------------
    def claimed(self, device_id, message_ids):
        with self._lock:
            rows = self._in_flight.setdefault(device_id, {})
            for message_id in message_ids:
                self._last_claim = rows[message_id] = next(self._claims)

    def settled(self, device_id, message_id):
        """The message's result is written (committed)."""
        with self._lock:
            rows = self._in_flight.get(device_id, {})
            rows.pop(message_id, None)
            if not rows:
                self._in_flight.pop(device_id, None)

    def in_flight(self, device_id) -> int:
        with self._lock:
            return len(self._in_flight.get(device_id, ()))

    def claim_mark(self) -> int:
        """The number of the latest claimed message: what has been claimed so far."""
        with self._lock:
            return self._last_claim

    def written_through(self, device_id, mark) -> bool:
        """True when every message of the device claimed up to `mark` has its result written."""
        with self._lock:
            return all(n > mark for n in self._in_flight.get(device_id, {}).values())
