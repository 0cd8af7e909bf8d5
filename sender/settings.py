"""Sender settings. Per-process tuning comes from the environment (SENDER_<FIELD>, read through
common/config.py; defaults suit one machine running the simulated network). The numbers the engine
shares (lease length, stuck timeout) come from the database's settings table, like SQL's own, in
resolve()."""
from dataclasses import dataclass, fields

from common.config import engine_settings, env


@dataclass
class SenderSettings:
    capacity: int = 0               # SENDER_CAPACITY: most devices one worker runs (0: the transport's measured figure)
    in_flight: int = 4000           # SENDER_IN_FLIGHT: claimed but not yet completed, per worker
    claim_batch: int = 1000         # SENDER_CLAIM_BATCH: most rows per claim
    per_device: int = 100           # SENDER_PER_DEVICE: most rows of one device per claim
    send_threads: int = 64          # SENDER_SEND_THREADS: concurrent sends (transport latency)
    poll_seconds: float = 1.0       # SENDER_POLL_SECONDS: longest sleep without a NOTIFY
    heartbeat_seconds: float = 5.0  # SENDER_HEARTBEAT_SECONDS
    lease_seconds: float = 0.0      # SENDER_LEASE_SECONDS: 0 = the database's lease_seconds (tests shorten it)
    drain_seconds: float = 60.0     # SENDER_DRAIN_SECONDS: how long SIGTERM waits for in-flight sends
    logout_wait_seconds: float = 10.0  # SENDER_LOGOUT_WAIT_SECONDS: how long a logout waits for a dropped connection
    not_sent_hold_seconds: float = 5.0  # SENDER_NOT_SENT_HOLD_SECONDS: a device pauses this long after a send
                                        # that never left (its status may lag its connection)
    stuck_seconds: float = 0.0      # the database's stuck_timeout_seconds, always (recover_stuck runs in SQL)

    def __post_init__(self):
        if not self.capacity:
            from sender.transport import devices_per_process
            self.capacity = devices_per_process()

    @classmethod
    def from_env(cls):
        values = {}
        for f in fields(cls):
            raw = env("SENDER_" + f.name.upper()) if f.name != "stuck_seconds" else None
            if raw is not None:
                values[f.name] = type(f.default)(raw)
        return cls(**values)

    def resolve(self, conn):
        """Takes the shared numbers from the database's settings: the lease length unless this
        process overrides it, and the stuck timeout. Returns self."""
        shared = engine_settings(conn)
        if not self.lease_seconds:
            self.lease_seconds = float(shared["lease_seconds"])
        self.stuck_seconds = float(shared["stuck_timeout_seconds"])
        return self
