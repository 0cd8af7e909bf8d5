"""Inbound messages into chats, replies, opt-outs and the chat view's SQL (db/functions/chats.sql)."""
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from tests.factories import drain_notifies, make_device, make_user

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def inbound(db, device_id, wa_id, phone, text, at=T0, chat_jid=None, sender_jid=None, sender_phone="same",
            from_me=False, push_name="Ali"):
    chat_jid = chat_jid or f"{phone}@s.whatsapp.net"
    return db.execute(
        "SELECT record_inbound_message(%s, %s, %s, %s, %s, %s, %s, %s, 'text', %s) AS id",
        [device_id, wa_id, chat_jid, sender_jid or chat_jid, phone if sender_phone == "same" else sender_phone,
         text, at, from_me, push_name]).fetchone()["id"]


def add_lead(db, user_id, device_id, phone, name="Ali"):
    return db.execute("INSERT INTO leads (user_id, device_id, name, phone) VALUES (%s, %s, %s, %s) RETURNING id",
                      [user_id, device_id, name, phone]).fetchone()["id"]


def queue(db, user_id, device_id, phone, content="hello", campaign_id=None, status="pending"):
    return db.execute("""
        INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content)
        VALUES (%s, %s, %s, %s, %s) RETURNING id""", [user_id, device_id, campaign_id, phone, content]).fetchone()["id"]


def make_campaign(db, user_id):
    return db.execute("""
        INSERT INTO campaigns (user_id, title, message, campaign_date, time_schedule, scheduled_at)
        VALUES (%s, 'c', 'hi', current_date, '09:00', now()) RETURNING id""", [user_id]).fetchone()["id"]


@pytest.fixture
def owner(db):
    uid = make_user(db)
    return uid, make_device(db, uid)


def test_inbound_message_creates_chat_and_message_once(db, owner):
    uid, dev = owner
    first = inbound(db, dev, "WA1", "60123456789", "hi there")
    assert first is not None
    assert inbound(db, dev, "WA1", "60123456789", "hi there") is None   # delivered twice: stored once
    chat = db.execute("SELECT * FROM whatsapp_chats WHERE device_id = %s", [dev]).fetchone()
    assert (chat["phone"], chat["chat_jid"], chat["name"]) == ("60123456789", "60123456789@s.whatsapp.net", "Ali")
    assert (chat["unread_count"], chat["last_message_preview"], chat["last_message_at"]) == (1, "hi there", T0)
    assert db.execute("SELECT count(*) FROM whatsapp_messages WHERE device_id = %s", [dev]).fetchone()["count"] == 1


def test_same_message_id_on_another_device_is_another_message(db, owner):
    uid, dev = owner
    other = make_device(db, uid)
    assert inbound(db, dev, "WA1", "60123456789", "a") and inbound(db, other, "WA1", "60123456789", "a")


def test_older_message_does_not_replace_the_preview(db, owner):
    uid, dev = owner
    inbound(db, dev, "new", "60123456789", "newer", at=T0)
    inbound(db, dev, "old", "60123456789", "older", at=T0 - timedelta(hours=1))
    chat = db.execute("SELECT * FROM whatsapp_chats WHERE device_id = %s", [dev]).fetchone()
    assert (chat["last_message_preview"], chat["last_message_at"], chat["unread_count"]) == ("newer", T0, 2)


def test_lid_sender_is_mapped_to_the_phone_through_whatsmeow_lid_map(db, owner):
    uid, dev = owner
    lead = add_lead(db, uid, dev, "60199998888")
    # whatsmeow's own table (created by neonize at first connect): lid user -> phone user.
    db.execute("CREATE TABLE whatsmeow_lid_map (lid text PRIMARY KEY, pn text UNIQUE NOT NULL)")
    db.execute("INSERT INTO whatsmeow_lid_map VALUES ('123456789012345', '60199998888')")
    inbound(db, dev, "L1", None, "interested", chat_jid="123456789012345@lid", sender_phone=None)
    chat = db.execute("SELECT chat_jid, phone FROM whatsapp_chats WHERE device_id = %s", [dev]).fetchone()
    assert chat == {"chat_jid": "60199998888@s.whatsapp.net", "phone": "60199998888"}
    assert db.execute("SELECT replied_at FROM leads WHERE id = %s", [lead]).fetchone()["replied_at"] == T0


def test_unknown_lid_is_kept_as_its_own_chat_without_a_phone(db, owner):
    uid, dev = owner
    assert db.execute("SELECT jid_phone('5555@lid') AS p").fetchone()["p"] is None
    inbound(db, dev, "L2", None, "hello", chat_jid="5555@lid", sender_phone=None)
    chat = db.execute("SELECT chat_jid, phone FROM whatsapp_chats WHERE device_id = %s", [dev]).fetchone()
    assert chat == {"chat_jid": "5555@lid", "phone": None}


def test_jid_phone_reads_device_jids_and_refuses_groups(db):
    row = db.execute("""SELECT jid_phone('60123456789:12@s.whatsapp.net') AS dev, jid_phone('1203630@g.us') AS grp,
                               jid_phone('abc@s.whatsapp.net') AS junk""").fetchone()
    assert row == {"dev": "60123456789", "grp": None, "junk": None}


def test_reply_marks_every_lead_of_the_owner_with_that_phone(db, owner):
    uid, dev = owner
    other_dev = make_device(db, uid)
    a, b = add_lead(db, uid, dev, "60111111111"), add_lead(db, uid, other_dev, "60111111111")
    stranger = make_user(db)
    c = add_lead(db, stranger, make_device(db, stranger), "60111111111")
    inbound(db, dev, "R1", "60111111111", "ok")
    rows = {r["id"]: r["replied_at"] for r in db.execute("SELECT id, replied_at FROM leads WHERE id IN (%s, %s, %s)", [a, b, c])}
    assert rows == {a: T0, b: T0, c: None}


def test_message_from_me_is_stored_but_is_no_reply(db, owner):
    uid, dev = owner
    lead = add_lead(db, uid, dev, "60111111112")
    inbound(db, dev, "M1", "60111111112", "STOP", from_me=True)
    assert db.execute("SELECT replied_at FROM leads WHERE id = %s", [lead]).fetchone()["replied_at"] is None
    assert not db.execute("SELECT _is_opted_out(%s, '60111111112') AS o", [uid]).fetchone()["o"]
    assert db.execute("SELECT unread_count FROM whatsapp_chats WHERE device_id = %s", [dev]).fetchone()["unread_count"] == 0


@pytest.mark.parametrize("text,opt", [("STOP", True), (" stop. ", True), ("Unsubscribe!", True),
                                      ("berhenti", True), ("please stop sending", False), ("stopped", False)])
def test_opt_out_words(db, text, opt):
    assert db.execute("SELECT _is_opt_out_text(%s) AS o", [text]).fetchone()["o"] is opt


def test_stop_opts_out_and_skips_waiting_campaign_messages_only(db, owner):
    uid, dev = owner
    campaign = make_campaign(db, uid)
    waiting = queue(db, uid, dev, "60122222222", campaign_id=campaign)
    manual = queue(db, uid, dev, "60122222222")
    other = queue(db, uid, dev, "60133333333", campaign_id=campaign)
    inbound(db, dev, "S1", "60122222222", "STOP")
    opt = db.execute("SELECT reason FROM opt_outs WHERE user_id = %s AND phone = '60122222222'", [uid]).fetchone()
    assert opt["reason"] == "replied STOP"
    states = {r["id"]: (r["status"], r["error_message"]) for r in db.execute(
        "SELECT id, status, error_message FROM broadcast_messages WHERE id IN (%s, %s, %s)", [waiting, manual, other])}
    assert states == {waiting: ("skipped", "opted out"), manual: ("pending", None), other: ("pending", None)}


def test_opt_out_is_per_owner_and_reversible(db, owner):
    uid, dev = owner
    stranger = make_user(db)
    db.execute("SELECT opt_out_phone(%s, '60144444444', 'asked by phone')", [uid])
    db.execute("SELECT opt_out_phone(%s, '60144444444', 'again')", [uid])   # idempotent
    assert db.execute("SELECT _is_opted_out(%s, '60144444444') AS a, _is_opted_out(%s, '60144444444') AS b",
                      [uid, stranger]).fetchone() == {"a": True, "b": False}
    assert db.execute("SELECT remove_opt_out(%s, '60144444444') AS r", [uid]).fetchone()["r"] is True
    assert not db.execute("SELECT _is_opted_out(%s, '60144444444') AS a", [uid]).fetchone()["a"]


def test_opt_out_rejects_a_bad_number(db, owner):
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT opt_out_phone(%s, '+60 12', 'x')", [owner[0]])


def test_inbound_for_a_deleted_device_is_dropped(db):
    assert inbound(db, 987654321, "X", "60123456789", "hi") is None


def test_inbound_pushes_a_live_event_to_the_owner(connect_committed):
    conn = connect_committed()
    listener = connect_committed()
    listener.execute("LISTEN wa_events")
    uid = make_user(conn)
    dev = make_device(conn, uid)
    inbound(conn, dev, "N1", "60155555555", "hello")
    import json
    events = [json.loads(n.payload) for n in drain_notifies(listener)]
    message = next(e for e in events if e["type"] == "message")
    assert message["user_id"] == uid
    assert message["data"]["content"] == "hello" and message["data"]["unread_count"] == 1


# The chat view -------------------------------------------------------------------------------
def test_chat_list_is_newest_first_with_lead_name(db, owner):
    uid, dev = owner
    add_lead(db, uid, dev, "60166666666", name="Siti")
    inbound(db, dev, "a", "60166666666", "first", at=T0)
    inbound(db, dev, "b", "60177777777", "STOP", at=T0 + timedelta(minutes=1))
    rows = db.execute("SELECT * FROM chat_search(%s, %s, NULL, 365)", [uid, dev]).fetchall()
    assert [(r["phone"], r["lead_name"]) for r in rows] == [("60177777777", None), ("60166666666", "Siti")]
    assert db.execute("SELECT count(*) FROM chat_search(%s, %s, NULL, 365)", [make_user(db), dev]).fetchone()["count"] == 0


def test_received_messages_leave_a_chat_after_the_retention_and_the_chat_stays(db, owner):
    """The hourly purge drops received messages past message_retention_days by when they were sent,
    as retention drops the sent ones: a chat keeps one window of both sides, and its row (name,
    preview, the thread in the list) stays."""
    uid, dev = owner
    now = datetime.now(timezone.utc)
    for wa_id, days in (("old", 181), ("kept", 179)):
        inbound(db, dev, wa_id, "60177777777", f"{days} days ago", at=now - timedelta(days=days))
    db.execute("SELECT purge_history()")
    chat = db.execute("SELECT id, last_message_preview FROM whatsapp_chats WHERE device_id = %s", [dev]).fetchone()
    assert chat["last_message_preview"] == "179 days ago"
    assert [m["content"] for m in db.execute("SELECT * FROM chat_messages(%s, %s)", [uid, chat["id"]])] == ["179 days ago"]
    db.execute("UPDATE settings SET value = 30 WHERE name = 'message_retention_days'")
    db.execute("SELECT purge_history()")
    assert db.execute("SELECT count(*) AS n FROM chat_messages(%s, %s)", [uid, chat["id"]]).fetchone()["n"] == 0
    assert db.execute("SELECT count(*) AS n FROM whatsapp_chats WHERE id = %s", [chat["id"]]).fetchone()["n"] == 1


def test_chat_messages_merge_inbound_and_queue_and_page_backwards(db, owner):
    uid, dev = owner
    phone = "60188888888"
    for i in range(3):
        inbound(db, dev, f"in{i}", phone, f"in {i}", at=T0 + timedelta(minutes=2 * i))
    sent = queue(db, uid, dev, phone, content="our offer")
    db.execute("""UPDATE broadcast_messages SET status = 'sent', claimed_at = %s, claimed_by = 's', sent_at = %s,
                         delivered_at = %s WHERE id = %s""",
               [T0 + timedelta(minutes=1), T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), sent])
    queue(db, uid, make_device(db, uid), phone, content="from another device")  # not this chat
    chat = db.execute("SELECT id FROM whatsapp_chats WHERE device_id = %s", [dev]).fetchone()["id"]

    page1 = db.execute("SELECT * FROM chat_messages(%s, %s, 2)", [uid, chat]).fetchall()
    assert [m["content"] for m in page1] == ["in 2", "in 1"]
    last = page1[-1]
    page2 = db.execute("SELECT * FROM chat_messages(%s, %s, 10, %s, %s)", [uid, chat, last["at"], last["key"]]).fetchall()
    assert [(m["content"], m["source"], m["status"]) for m in page2] == [
        ("our offer", "queue", "sent"), ("in 0", "chat", "received")]
    assert page2[0]["delivered_at"] == T0 + timedelta(minutes=2) and page2[0]["from_me"]
    assert db.execute("SELECT count(*) FROM chat_messages(%s, %s)", [make_user(db), chat]).fetchone()["count"] == 0


def test_send_chat_message_queues_on_that_device_and_lifts_the_chat(db, owner):
    uid, dev = owner
    lead = add_lead(db, uid, dev, "60199990000")
    inbound(db, dev, "q", "60199990000", "price?")
    msg = db.execute("SELECT send_chat_message(%s, %s, '60199990000', 'RM 99') AS id", [uid, dev]).fetchone()["id"]
    row = db.execute("SELECT * FROM broadcast_messages WHERE id = %s", [msg]).fetchone()
    assert (row["device_id"], row["status"], row["content"], row["lead_id"], row["max_delay_seconds"]) == (
        dev, "pending", "RM 99", lead, 0)
    chat = db.execute("SELECT * FROM whatsapp_chats WHERE device_id = %s", [dev]).fetchone()
    assert (chat["last_message_preview"], chat["unread_count"]) == ("RM 99", 0)
    history = db.execute("SELECT content, status FROM chat_messages(%s, %s)", [uid, chat["id"]]).fetchall()
    assert history[0] == {"content": "RM 99", "status": "pending"}


@pytest.mark.parametrize("args", [("60199990000", ""), ("0123", "hi"), ("60199990000", "x" * 4097)])
def test_send_chat_message_refuses_bad_input(db, owner, args):
    uid, dev = owner
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.execute("SELECT send_chat_message(%s, %s, %s, %s)", [uid, dev, *args])


def test_send_chat_message_refuses_another_owners_device(db, owner):
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="no such device"):
        db.execute("SELECT send_chat_message(%s, %s, '60199990000', 'hi')", [make_user(db), owner[1]])


def test_mark_chat_read(db, owner):
    uid, dev = owner
    inbound(db, dev, "u", "60100000001", "hi")
    chat = db.execute("SELECT id FROM whatsapp_chats WHERE device_id = %s", [dev]).fetchone()["id"]
    assert not db.execute("SELECT mark_chat_read(%s, %s) AS r", [make_user(db), chat]).fetchone()["r"]
    assert db.execute("SELECT mark_chat_read(%s, %s) AS r", [uid, chat]).fetchone()["r"]
    assert db.execute("SELECT unread_count FROM whatsapp_chats WHERE id = %s", [chat]).fetchone()["unread_count"] == 0


def test_campaign_sends_open_their_chats_and_replies_land_in_the_same_thread(db, owner):
    uid, dev = owner
    campaign = make_campaign(db, uid)
    a = queue(db, uid, dev, "60170000001", content="Hi Ann, our promo", campaign_id=campaign)
    b = queue(db, uid, dev, "60170000002", content="Hi Ben, our promo", campaign_id=campaign)
    queue(db, uid, dev, "60170000003", content="not sent yet", campaign_id=campaign)
    db.execute("UPDATE broadcast_messages SET status = 'queued', claimed_at = now(), claimed_by = 's' "
               "WHERE id = ANY (%s)", [[a, b]])
    assert db.execute("SELECT complete_messages('s', %s, %s) AS n", [[a, b], ["W1", "W2"]]).fetchone()["n"] == 2
    chats = db.execute("SELECT phone, chat_jid, last_message_preview, unread_count FROM chats WHERE device_id = %s "
                       "ORDER BY phone", [dev]).fetchall()
    assert [(c["phone"], c["last_message_preview"], c["unread_count"]) for c in chats] == [
        ("60170000001", "Hi Ann, our promo", 0), ("60170000002", "Hi Ben, our promo", 0)]   # not the pending one
    assert db.execute("SELECT count(*) FROM chat_search(%s, %s)", [uid, dev]).fetchone()["count"] == 2
    # The reply is filed in the chat the send opened, after the send.
    inbound(db, dev, "R1", "60170000001", "How much?", at=datetime.now(timezone.utc) + timedelta(seconds=1))
    chat = db.execute("SELECT id, last_message_preview, unread_count FROM chats WHERE phone = '60170000001'").fetchone()
    assert (chat["last_message_preview"], chat["unread_count"]) == ("How much?", 1)
    thread = db.execute("SELECT source, content, status FROM chat_messages(%s, %s)", [uid, chat["id"]]).fetchall()
    assert [tuple(m.values()) for m in thread] == [("chat", "How much?", "received"),
                                                   ("queue", "Hi Ann, our promo", "sent")]
    assert db.execute("SELECT count(*) FROM chats WHERE phone = '60170000003'").fetchone()["count"] == 0


def test_an_older_send_does_not_replace_a_newer_preview(db, owner):
    uid, dev = owner
    inbound(db, dev, "N1", "60170000009", "newest words", at=datetime.now(timezone.utc) + timedelta(hours=1))
    m = queue(db, uid, dev, "60170000009", content="earlier send")
    db.execute("UPDATE broadcast_messages SET status = 'queued', claimed_at = now(), claimed_by = 's' WHERE id = %s", [m])
    db.execute("SELECT complete_messages('s', %s, %s)", [[m], ["W9"]])
    assert db.execute("SELECT last_message_preview FROM chats WHERE device_id = %s",
                      [dev]).fetchone()["last_message_preview"] == "newest words"


def test_the_replaced_systems_chat_columns(db, owner):
    """Operators' SQL on whatsapp_chats / whatsapp_messages keeps working, the queue's sends included."""
    uid, dev = owner
    db.execute("UPDATE user_devices SET jid = '60110000001.0:1@s.whatsapp.net' WHERE id = %s", [dev])
    inbound(db, dev, "IN1", "60170000005", "hello there", at=T0, push_name="Siti")
    m = queue(db, uid, dev, "60170000005", content="thanks Siti")
    db.execute("""UPDATE broadcast_messages SET status = 'sent', claimed_at = %s, claimed_by = 's', sent_at = %s,
                         wa_message_id = 'OUT1', delivered_at = %s, read_at = %s WHERE id = %s""",
               [T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), T0 + timedelta(minutes=3), m])
    queue(db, uid, dev, "60170000005", content="still pending")    # not history yet
    chat = db.execute("SELECT chat_jid, chat_name, last_message_text, last_message_time, unread_count "
                      "FROM whatsapp_chats WHERE device_id = %s", [dev]).fetchone()
    assert chat == {"chat_jid": "60170000005@s.whatsapp.net", "chat_name": "Siti", "last_message_text": "hello there",
                    "last_message_time": T0, "unread_count": 1}
    sql = """SELECT message_id, sender_jid, message_text, is_sent, is_read, "timestamp" FROM whatsapp_messages
              WHERE device_id = %s AND chat_jid = '60170000005@s.whatsapp.net'
                AND "timestamp" > EXTRACT(EPOCH FROM TIMESTAMPTZ '2026-02-01')::bigint ORDER BY "timestamp" """
    rows = db.execute(sql, [dev]).fetchall()
    assert [tuple(r.values()) for r in rows] == [
        ("IN1", "60170000005@s.whatsapp.net", "hello there", False, False, int(T0.timestamp())),
        ("OUT1", "60110000001.0:1@s.whatsapp.net", "thanks Siti", True, True, int(T0.timestamp()) + 60)]
    # Reading the chat marks what it received read.
    chat_id = db.execute("SELECT id FROM chats WHERE device_id = %s", [dev]).fetchone()["id"]
    db.execute("SELECT mark_chat_read(%s, %s)", [uid, chat_id])
    assert [r["is_read"] for r in db.execute(sql, [dev]).fetchall()] == [True, True]


def test_a_received_image_keeps_its_thumbnail_for_its_owner_only(db, owner):
    uid, dev = owner
    msg = db.execute("SELECT record_inbound_message(%s, 'P1', '60170000007@s.whatsapp.net', "
                     "'60170000007@s.whatsapp.net', '60170000007', '', now(), false, 'image', '', '\\xffd8aa'::bytea) AS id",
                     [dev]).fetchone()["id"]
    chat = db.execute("SELECT id, last_message_preview FROM chats WHERE device_id = %s", [dev]).fetchone()
    assert chat["last_message_preview"] == "📷 Photo"
    row = db.execute("SELECT message_type, has_thumbnail FROM chat_messages(%s, %s)", [uid, chat["id"]]).fetchone()
    assert row == {"message_type": "image", "has_thumbnail": True}
    assert bytes(db.execute("SELECT chat_thumbnail(%s, %s) AS t", [uid, msg]).fetchone()["t"]) == b"\xff\xd8\xaa"
    assert db.execute("SELECT chat_thumbnail(%s, %s) AS t", [make_user(db), msg]).fetchone()["t"] is None
    # A thumbnail past 64 KB is dropped; the message is kept.
    big = db.execute("SELECT record_inbound_message(%s, 'P2', '60170000007@s.whatsapp.net', "
                     "'60170000007@s.whatsapp.net', '60170000007', 'big', now(), false, 'image', '', %s) AS id",
                     [dev, b"\xff" * 70000]).fetchone()["id"]
    assert db.execute("SELECT thumbnail IS NULL AS gone FROM chat_inbound WHERE id = %s", [big]).fetchone()["gone"]


def test_the_replaced_systems_chat_tables_refuse_writes(db, owner):
    uid, dev = owner
    inbound(db, dev, "X1", "60170000011", "hi")
    for sql in ("INSERT INTO whatsapp_chats (user_id, device_id, chat_jid) VALUES (%s, %s, 'x@s.whatsapp.net')",
                "UPDATE whatsapp_chats SET unread_count = 0 WHERE user_id = %s AND device_id = %s",
                "DELETE FROM whatsapp_messages WHERE user_id = %s AND device_id = %s"):
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="read-only view"), db.transaction():
            db.execute(sql, [uid, dev])


def test_deleting_a_device_or_its_owner_deletes_its_chats_and_warm_contacts(db):
    """chats (which keep the warm contacts) have no foreign keys (checked row by row on every send):
    a statement trigger on user_devices deletes them, and a deleted user's devices go with it."""
    def rows(device_ids):
        return [db.execute(f"SELECT count(*) AS n FROM chats WHERE device_id = ANY(%s){warm}", [device_ids]).fetchone()["n"]
                for warm in ("", " AND talked_at IS NOT NULL")] + [db.execute(
            "SELECT count(*) AS n FROM chat_inbound i JOIN chats c ON c.id = i.chat_id WHERE c.device_id = ANY(%s)",
            [device_ids]).fetchone()["n"]]

    uid, other = make_user(db), make_user(db)
    kept, deleted, owners = make_device(db, other), make_device(db, uid), make_device(db, uid)
    for i, dev in enumerate((kept, deleted, owners)):
        inbound(db, dev, f"W{i}", f"6017000000{i}", "hi")
    assert rows([kept, deleted, owners]) == [3, 3, 3]
    db.execute("DELETE FROM user_devices WHERE id = %s", [deleted])
    assert rows([deleted]) == [0, 0, 0] and rows([kept, owners]) == [2, 2, 2]
    db.execute("DELETE FROM users WHERE id = %s", [uid])
    assert rows([owners]) == [0, 0, 0] and rows([kept]) == [1, 1, 1]
