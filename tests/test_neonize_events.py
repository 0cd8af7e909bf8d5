"""neonize's own event classes (built from its protobuf types) -> transport events -> the database:
messages into chats (with @lid senders), receipts, opt-outs, pairing."""
from datetime import datetime, timezone

from neonize.events import ConnectFailureEv, MessageEv, PairStatusEv, ReceiptEv
from neonize.proto.Neonize_pb2 import JID, MessageInfo, MessageSource
from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ExtendedTextMessage, ImageMessage, Message

from sender.events import EventSink
from sender.transport import neonize_events as m
from sender.transport.base import ConnectFailed, Paired
from tests.factories import make_device, make_user

T = 1767225600  # 2026-01-01T00:00:00Z


def jid(user, server="s.whatsapp.net", device=0):
    return JID(User=user, Server=server, Device=device, RawAgent=0, Integrator=0, IsEmpty=False)


def message_ev(text=None, sender=None, chat=None, sender_alt=None, from_me=False, group=False, msg=None, mid="ABC1"):
    src = MessageSource(Chat=chat or sender, Sender=sender, IsFromMe=from_me, IsGroup=group)
    if sender_alt is not None:
        src.SenderAlt.CopyFrom(sender_alt)
    return MessageEv(Info=MessageInfo(MessageSource=src, ID=mid, Timestamp=T, Pushname="Ali"),
                     Message=msg or Message(conversation=text))


def test_plain_extended_and_image_texts():
    assert m.incoming_message(1, message_ev("hi", jid("60123456789"))).text == "hi"
    ext = message_ev(sender=jid("60123456789"), msg=Message(extendedTextMessage=ExtendedTextMessage(text="see link")))
    assert m.incoming_message(1, ext).text == "see link"
    img = m.incoming_message(1, message_ev(sender=jid("60123456789"), msg=Message(imageMessage=ImageMessage(caption="pic"))))
    assert (img.text, img.message_type, img.thumbnail) == ("pic", "image", None)
    thumb = Message(imageMessage=ImageMessage(caption="", JPEGThumbnail=b"\xff\xd8tiny"))
    assert m.incoming_message(1, message_ev(sender=jid("60123456789"), msg=thumb)).thumbnail == b"\xff\xd8tiny"


def test_message_fields_and_time():
    ev = m.incoming_message(7, message_ev("hello", jid("60123456789")))
    assert (ev.device_id, ev.wa_message_id, ev.chat_jid, ev.sender_phone, ev.from_me) == (
        7, "ABC1", "60123456789@s.whatsapp.net", "60123456789", False)
    assert ev.timestamp == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_lid_sender_uses_sender_alt_or_leaves_the_phone_to_sql():
    lid = jid("123456789012345", "lid")
    with_alt = m.incoming_message(1, message_ev("hi", lid, sender_alt=jid("60199998888")))
    assert (with_alt.chat_jid, with_alt.sender_phone) == ("123456789012345@lid", "60199998888")
    assert m.incoming_message(1, message_ev("hi", lid)).sender_phone is None


def test_status_broadcasts_and_empty_protocol_messages_are_ignored():
    assert m.incoming_message(1, message_ev("story", jid("60123456789"), chat=jid("status", "broadcast"))) is None
    assert m.incoming_message(1, message_ev(sender=jid("60123456789"), msg=Message())) is None


def test_group_message_has_no_phone():
    ev = m.incoming_message(1, message_ev("hi all", jid("60123456789"), chat=jid("1203630", "g.us"), group=True))
    assert ev.sender_phone is None and ev.chat_jid == "1203630@g.us"


def test_receipts_delivered_read_unset_and_others():
    ids = ["A", "B"]
    assert m.receipt(1, ReceiptEv(MessageIDs=ids, Timestamp=T, Type=ReceiptEv.READ)).kind == "read"
    delivered = m.receipt(1, ReceiptEv(MessageIDs=ids, Timestamp=T, Type=ReceiptEv.DELIVERED))
    assert (delivered.kind, delivered.wa_message_ids) == ("delivered", ("A", "B"))
    # neonize leaves the type unset only for server-error and unknown receipts: not a delivery.
    assert m.receipt(1, ReceiptEv(MessageIDs=ids, Timestamp=T)) is None
    assert m.receipt(1, ReceiptEv(MessageIDs=ids, Timestamp=T, Type=ReceiptEv.RETRY)) is None


def test_pairing_and_connect_failure():
    ok = m.paired(3, PairStatusEv(ID=jid("60123456789", device=12), Status=PairStatusEv.SUCCESS))
    assert ok == Paired(3, "60123456789:12@s.whatsapp.net", "60123456789")
    bad = m.paired(3, PairStatusEv(Status=PairStatusEv.ERROR, Error="timeout"))
    assert bad == ConnectFailed(3, "pairing failed: timeout")
    assert "boom" in m.connect_failure(3, ConnectFailureEv(Message="boom")).error


def test_jid_string_round_trip():
    for s in ("60123456789@s.whatsapp.net", "60123456789:12@s.whatsapp.net", "123@lid"):
        assert m.jid_to_string(m.jid_from_string(s)) == s


def test_mapped_events_land_in_the_database(connect_committed):
    """neonize events -> mapping -> the sender's event sink -> chats, opt-outs, receipts."""
    conn = connect_committed()
    uid = make_user(conn)
    dev = make_device(conn, uid)
    conn.execute("INSERT INTO leads (user_id, device_id, phone) VALUES (%s, %s, '60111222333')", [uid, dev])
    conn.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, status, claimed_at,
                                                    claimed_by, sent_at, wa_message_id)
                    VALUES (%s, %s, '60111222333', 'offer', 'sent', now(), 's', now(), 'OUT1')""", [uid, dev])
    sink = EventSink(conn.info.dsn)   # apply() runs on the given connection
    photo = Message(imageMessage=ImageMessage(caption="my receipt", JPEGThumbnail=b"\xff\xd8tiny"))
    events = [m.incoming_message(dev, message_ev("Stop!", jid("60111222333"), mid="IN1")),
              m.incoming_message(dev, message_ev("Stop!", jid("60111222333"), mid="IN1")),   # delivered twice
              m.incoming_message(dev, message_ev(sender=jid("60111222333"), msg=photo, mid="IN2")),
              m.receipt(dev, ReceiptEv(MessageIDs=["OUT1"], Timestamp=T, Type=ReceiptEv.READ))]
    sink.apply(conn, events)
    # The chat holds each received message once, and the queue's send to that number.
    rows = conn.execute("SELECT source, message_id, message_text, is_sent FROM whatsapp_messages WHERE device_id = %s"
                        " ORDER BY source, message_id", [dev]).fetchall()
    assert [tuple(r.values()) for r in rows] == [("chat", "IN1", "Stop!", False), ("chat", "IN2", "my receipt", False),
                                                 ("queue", "OUT1", "offer", True)]
    assert conn.execute("SELECT thumbnail FROM chat_inbound WHERE wa_message_id = 'IN2'").fetchone()["thumbnail"] == b"\xff\xd8tiny"
    assert conn.execute("SELECT _is_opted_out(%s, '60111222333') AS o", [uid]).fetchone()["o"]
    assert conn.execute("SELECT replied_at IS NOT NULL AS r FROM leads WHERE user_id = %s", [uid]).fetchone()["r"]
    sent = conn.execute("SELECT delivered_at, read_at FROM broadcast_messages WHERE wa_message_id = 'OUT1'").fetchone()
    assert sent["delivered_at"] is not None and sent["read_at"] is not None
