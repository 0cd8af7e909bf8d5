"""neonize's protobuf events -> the transport events of sender/transport/base.py.

Pure functions, no client and no database: the neonize transport calls them on the client's event
thread, and tests build neonize's own event classes to check them.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional

from neonize.events import (ConnectFailureEv, LoggedOutEv, MessageEv, PairStatusEv, ReceiptEv,
                            TemporaryBanEv)
from neonize.proto.Neonize_pb2 import JID

from sender.transport.base import (ConnectFailed, IncomingMessage, LoggedOut, Paired, Receipt,
                                   TemporaryBan)

_RECEIPT_KINDS = {ReceiptEv.DELIVERED: "delivered", ReceiptEv.READ: "read", ReceiptEv.READ_SELF: "read"}


def jid_to_string(jid: JID) -> str:
    """whatsmeow's own string form (user[.agent][:device]@server), as stored in whatsmeow_device.jid."""
    user = jid.User
    if jid.RawAgent:
        user = f"{user}.{jid.RawAgent}"
    if jid.Device:
        user = f"{user}:{jid.Device}"
    return f"{user}@{jid.Server}"


def jid_from_string(value: str) -> JID:
    """The inverse of jid_to_string."""
    user_part, _, server = value.partition("@")
    user_agent, _, device = user_part.partition(":")
    user, _, agent = user_agent.partition(".")
    return JID(User=user, RawAgent=int(agent or 0), Device=int(device or 0), Integrator=0,
               Server=server or "s.whatsapp.net", IsEmpty=False)


def jid_phone(jid: JID) -> Optional[str]:
    """The phone number of a phone-number JID; None for @lid, groups and empty JIDs."""
    if jid.Server == "s.whatsapp.net" and jid.User.isdigit():
        return jid.User
    return None


def _enum_name(event_class, field: str, value: int) -> Optional[str]:
    found = event_class.DESCRIPTOR.fields_by_name[field].enum_type.values_by_number.get(value)
    return found.name if found else None


def _when(seconds_or_ms: int) -> datetime:
    # The Go core passes Unix time; accept milliseconds too rather than land in 1970 or 50000 AD.
    value = seconds_or_ms / 1000 if seconds_or_ms > 10**11 else seconds_or_ms
    return datetime.fromtimestamp(value, timezone.utc) if value > 0 else datetime.now(timezone.utc)


def message_text(ev: MessageEv) -> tuple[str, str]:
    """(text, message_type) of a received message: plain text, a link/quote text, or an image caption."""
    m = ev.Message
    if m.conversation:
        return m.conversation, "text"
    if m.HasField("extendedTextMessage"):
        return m.extendedTextMessage.text, "text"
    if m.HasField("imageMessage"):
        return m.imageMessage.caption, "image"
    return "", "other"


def incoming_message(device_id: int, ev: MessageEv) -> Optional[IncomingMessage]:
    """A chat message (one-to-one or group, received or sent from the phone); None for status
    broadcasts and protocol messages without content."""
    info, src = ev.Info, ev.Info.MessageSource
    if src.Chat.Server == "broadcast":
        return None
    text, kind = message_text(ev)
    if kind == "other" and not text:
        return None
    # Replies arrive more and more from @lid identities: the number is in SenderAlt when WhatsApp
    # sent it along, else in whatsmeow_lid_map (the SQL side looks there).
    phone = jid_phone(src.Sender) or (jid_phone(src.SenderAlt) if src.HasField("SenderAlt") else None)
    if src.IsFromMe or src.IsGroup:
        phone = None if src.IsGroup else jid_phone(src.Chat)
    # An image carries its own small JPEG preview: shown as the thumbnail, nothing to download.
    thumbnail = (ev.Message.imageMessage.JPEGThumbnail or None) if kind == "image" else None
    return IncomingMessage(device_id, wa_message_id=info.ID, chat_jid=jid_to_string(src.Chat),
                           sender_jid=jid_to_string(src.Sender), sender_phone=phone, text=text,
                           timestamp=_when(info.Timestamp), from_me=src.IsFromMe, message_type=kind,
                           thumbnail=thumbnail)


def receipt(device_id: int, ev: ReceiptEv) -> Optional[Receipt]:
    """Delivered / read receipts; None for the other kinds (retry, played, ...). neonize sets
    DELIVERED explicitly and leaves the type unset only for server-error and unknown receipts,
    so an unset type is not a delivery (and its proto2 default must not be read as one)."""
    kind = _RECEIPT_KINDS.get(ev.Type) if ev.HasField("Type") else None
    if kind is None or not ev.MessageIDs:
        return None
    return Receipt(device_id, tuple(ev.MessageIDs), kind, _when(ev.Timestamp))


def temporary_ban(device_id: int, ev: TemporaryBanEv, now: Optional[datetime] = None) -> TemporaryBan:
    code = (_enum_name(TemporaryBanEv, "Code", ev.Code) if ev.HasField("Code") else None) or "UNKNOWN"
    return TemporaryBan(device_id, code, (now or datetime.now(timezone.utc)) + timedelta(seconds=ev.Expire))


def logged_out(device_id: int, ev: LoggedOutEv) -> LoggedOut:
    where = "on connect" if ev.OnConnect else "while connected"
    return LoggedOut(device_id, f"{_enum_name(LoggedOutEv, 'Reason', ev.Reason) or 'LOGGED_OUT'} ({where})")


def paired(device_id: int, ev: PairStatusEv) -> Optional[Paired | ConnectFailed]:
    """A successful pairing gives the session's JID and number; a failed one is a connect failure."""
    if ev.Status == PairStatusEv.SUCCESS:
        return Paired(device_id, jid_to_string(ev.ID), ev.ID.User)
    return ConnectFailed(device_id, f"pairing failed: {ev.Error or 'unknown error'}")


def connect_failure(device_id: int, ev: ConnectFailureEv) -> ConnectFailed:
    text = " ".join(filter(None, [_enum_name(ConnectFailureEv, "Reason", ev.Reason), ev.Message]))
    return ConnectFailed(device_id, text or "connect failure")
