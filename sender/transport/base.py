"""The transport contract: what every WhatsApp connection layer promises the sender.

Two transports implement it: the simulated network (sim.py) and real WhatsApp through neonize
(neonize_transport.py). The queue and the device rows behave the same whichever carries the
messages; tests/test_transport_contract.py runs one suite of scenarios against both.

Sending: `send(message)` ends in exactly one of three outcomes.
- returns SendResult(wa_message_id, timestamp): WhatsApp took it. The row becomes `sent`.
- raises NotSent: it certainly did not leave (the device is not connected at this moment:
  dropped and reconnecting, banned, stopped, still pairing). The row goes back to the queue
  untouched, so a network blip only delays a message.
- raises SendError(reason): it did not go, or may have gone without an answer. The row is failed
  with the reason and never sent again (at most once). A reach-out timelock is one: WhatsApp
  refuses messages to new contacts with error 463 while warm contacts still get theirs.

Lifecycle of a device the sender starts with `start(session)`; events reach `on_event`:
- With a stored session (session.jid): Connected, or ConnectFailed for each failed connect,
  retried on CONNECT_POLICY's back-off. After its last attempt the transport stops the device and
  reports ConnectFailed with `resume_at`: no sender should try it before then.
- Without one, pairing: QRCode events on WhatsApp's schedule (PAIRING_WINDOW), a PairCode after
  pair_phone(), Paired(jid, phone) when the phone has linked it, then Connected; the transport
  resumes the new session itself. When the last code expires unscanned: PairingExpired, and
  nothing of that pairing keeps running.
- While connected: Disconnected when the connection drops (the transport reconnects by itself
  and reports Connected when it is back), IncomingMessage, Receipt (delivered or read only).
- LoggedOut: the session is gone (removed on the phone, or logout()); the device is stopped.
- StreamReplaced: another client now runs this session; the device is stopped, never retried.
- TemporaryBan(code, expires_at): stopped until the expiry, then resumed by the transport.
- ClientOutdated: WhatsApp no longer accepts this client version; the device is stopped (every
  retry would fail the same way until the software is updated).
- ReachOutTimelock(ends_at): WhatsApp refuses this number's messages to new contacts (the send
  that met error 463 raises ReachOutRefused, and the event is reported before it); the device
  stays connected and the queue holds its cold contacts until the lock ends.

Callbacks may run on the transport's own threads: handlers only hand work off.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Optional, Protocol


# Events ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Event:
    device_id: int


@dataclass(frozen=True)
class QRCode(Event):
    code: str                       # the string to render as a QR; replaced by the next one


@dataclass(frozen=True)
class PairCode(Event):
    code: str                       # the 8-character code typed on the phone


@dataclass(frozen=True)
class Paired(Event):
    jid: str
    phone: str


@dataclass(frozen=True)
class PairingExpired(Event):
    """The pairing's last code expired unscanned: the device needs a new pairing."""


@dataclass(frozen=True)
class Connected(Event):
    pass


@dataclass(frozen=True)
class Disconnected(Event):
    reason: str = ""


@dataclass(frozen=True)
class LoggedOut(Event):
    reason: str = ""


@dataclass(frozen=True)
class StreamReplaced(Event):
    pass


@dataclass(frozen=True)
class TemporaryBan(Event):
    code: str
    expires_at: datetime


@dataclass(frozen=True)
class ClientOutdated(Event):
    """WhatsApp refused the connection with 405: this client version is no longer accepted."""


@dataclass(frozen=True)
class ReachOutTimelock(Event):
    """WhatsApp refuses messages from this number to contacts it has not talked with until
    ends_at (None: not said, as with error 463 alone); warm contacts still get theirs."""
    ends_at: Optional[datetime] = None


@dataclass(frozen=True)
class ConnectFailed(Event):
    error: str
    resume_at: Optional[datetime] = None   # set when the transport gave up and stopped the device


@dataclass(frozen=True)
class IncomingMessage(Event):
    wa_message_id: str
    chat_jid: str
    sender_jid: str
    sender_phone: Optional[str]     # None when only an @lid identity is known
    text: str
    timestamp: datetime
    from_me: bool = False
    message_type: str = "text"
    thumbnail: Optional[bytes] = None   # a received image's small JPEG preview, as WhatsApp sends it along


@dataclass(frozen=True)
class Receipt(Event):
    wa_message_ids: tuple
    kind: str                       # 'delivered' or 'read'
    timestamp: datetime


# WhatsApp's timings and the retry policy both transports follow ------------------------------
@dataclass(frozen=True)
class PairingWindow:
    """How long a new link may take: whatsmeow shows the first QR code for 60 s, then 5 more
    for 20 s each, then closes the login socket (its qrchan.go). A phone code lives as long."""
    first_s: float = 60.0
    next_s: float = 20.0
    codes: int = 6

    def shown_for(self, index: int) -> float:
        return self.first_s if index == 0 else self.next_s

    @property
    def total_s(self) -> float:
        return self.first_s + (self.codes - 1) * self.next_s

    def scaled(self, factor: float) -> PairingWindow:
        return PairingWindow(self.first_s * factor, self.next_s * factor, self.codes)


@dataclass(frozen=True)
class ConnectPolicy:
    """Failed connects of a stored session are retried with doubling waits; after `attempts`
    failures in a row the device is stopped and released for `hold_s` (Reconnect overrides)."""
    attempts: int = 5
    backoff_s: float = 5.0
    backoff_max_s: float = 300.0
    hold_s: float = 600.0

    def scaled(self, factor: float) -> ConnectPolicy:
        return ConnectPolicy(self.attempts, self.backoff_s * factor, self.backoff_max_s * factor, self.hold_s * factor)

    def retry_in(self, failures: int) -> Optional[float]:
        """Seconds to wait before the next attempt after `failures` in a row; None: give up."""
        if failures >= self.attempts:
            return None
        return min(self.backoff_max_s, self.backoff_s * 2 ** (failures - 1))


PAIRING_WINDOW = PairingWindow()
CONNECT_POLICY = ConnectPolicy()


# Sending -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutgoingMessage:
    message_id: int                 # broadcast_messages.id
    device_id: int
    to_phone: str                   # digits, country code first
    text: str
    image: Optional[bytes] = None   # JPEG, already normalised (sender/media.py)


@dataclass(frozen=True)
class SendResult:
    wa_message_id: str
    timestamp: datetime


class SendError(Exception):
    """A send that did not happen, or may have without an answer: the message is failed with
    this reason, which counts against the device's health (self-pause)."""


class Undeliverable(SendError):
    """The recipient cannot get this message (the number is not on WhatsApp, the media was
    refused): failed with this reason, which says nothing about the device and will not get better
    by retrying. Its text starts with "undeliverable: ", which is how the database tells it apart
    (db/functions/deliverability.sql, _record_send_outcomes)."""

    def __init__(self, detail: str):
        super().__init__(f"undeliverable: {detail}")


class NotSent(SendError):
    """The message certainly did not leave (the device was not connected when asked to send):
    the sender puts it back in the queue instead of failing it, so a brief disconnect only delays."""


class ReachOutRefused(SendError):
    """WhatsApp's error 463: this number sent to too many contacts it never talked with, and is
    refused new contacts for a while (days, on real numbers); warm contacts still get messages.
    The transport reports ReachOutTimelock before raising it."""

    def __init__(self, detail: str):
        super().__init__(f"reach-out timelock (error 463): WhatsApp refuses messages from this number to "
                         f"contacts it has not talked with yet; {detail}")


class NotConnected(RuntimeError):
    """An operation that needs a live connection (logout, pairing by code) found none."""


@dataclass
class DeviceSession:
    """What a transport needs to run a device."""
    device_id: int
    jid: Optional[str] = None       # stored session to resume; None means pair anew
    phone: Optional[str] = None
    extra: dict = field(default_factory=dict)


EventHandler = Callable[[Event], None]


class Transport(Protocol):
    def start(self, session: DeviceSession) -> None:
        """Run a device: resume its stored session, or begin pairing (QRCode events)."""

    def stop(self, device_id: int) -> None:
        """Disconnect without logging out; the stored session stays."""

    def pair_phone(self, device_id: int, phone: str) -> str:
        """Pair by phone number instead of QR; returns the code to type on the phone (and
        reports it as PairCode). Raises NotConnected when WhatsApp cannot be reached."""

    def logout(self, device_id: int, wait_s: float = 0.0) -> None:
        """Remove the device from the phone's Linked Devices and forget its session; reports
        LoggedOut. Needs a live connection: waits up to wait_s for a dropped one to come back,
        then raises NotConnected."""

    def send(self, message: OutgoingMessage) -> SendResult:
        """Send one message: SendResult, or raises NotSent / SendError (see above)."""

    def close(self) -> None:
        """Stop every device of this transport."""
