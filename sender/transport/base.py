"""The Transport protocol every WhatsApp connection layer implements, and the events it reports.

A sender owns one Transport per process. The transport holds the connections of the devices the
sender leases; it reports what happens through the `on_event` callback given at construction.
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
    code: str                       # the string to render as a QR; rotates every ~20 s


@dataclass(frozen=True)
class PairCode(Event):
    code: str                       # the 8-character code typed on the phone


@dataclass(frozen=True)
class Paired(Event):
    jid: str
    phone: str


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
class ConnectFailed(Event):
    error: str


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
    """A send that did not happen. `permanent` errors (not on WhatsApp, bad media) fail the
    message; transient ones fail it too (at most once), but say the device may be unwell."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class NotSent(SendError):
    """The message certainly did not leave (the device was not connected when asked to send):
    the sender puts it back in the queue instead of failing it, so a brief disconnect only delays."""


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
        """Connect a device: resume its stored session, or begin pairing (QRCode events)."""

    def stop(self, device_id: int) -> None:
        """Disconnect without logging out; the stored session stays."""

    def pair_phone(self, device_id: int, phone: str) -> str:
        """Pair by phone number instead of QR; returns the code to type on the phone."""

    def logout(self, device_id: int) -> None:
        """Remove the device from the phone's Linked Devices and forget its session."""

    def send(self, message: OutgoingMessage) -> SendResult:
        """Send one message; raises SendError when it did not go out."""

    def close(self) -> None:
        """Stop every device of this transport."""
