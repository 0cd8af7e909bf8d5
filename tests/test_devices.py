"""Device lifecycle SQL: delete (what becomes of leads and messages), commands from the web to
the sender holding the device, the health tick and the device_health view."""
import psycopg
import pytest

from tests.factories import make_device, make_user


def lease(db, device_id, sender="s1", ttl="30 seconds"):
    db.execute("SELECT register_sender(%s, 'host', 1, 100)", [sender])
    db.execute("""INSERT INTO device_leases (device_id, sender_id, expires_at) VALUES (%s, %s, now() + %s::interval)
                  ON CONFLICT (device_id) DO UPDATE SET sender_id = excluded.sender_id, expires_at = excluded.expires_at""",
               [device_id, sender, ttl])


def add_lead(db, user_id, device_id, phone, replied=False, trigger=None):
    return db.execute("""INSERT INTO leads (user_id, device_id, phone, trigger, replied_at)
                         VALUES (%s, %s, %s, %s, CASE WHEN %s THEN now() END) RETURNING id""",
                      [user_id, device_id, phone, trigger, replied]).fetchone()["id"]


def command(db, uid, dev, cmd, phone=None):
    return db.execute("SELECT request_device_command(%s, %s, %s, %s) AS id", [uid, dev, cmd, phone]).fetchone()["id"]


@pytest.fixture
def owner(db):
    uid = make_user(db)
    return uid, make_device(db, uid)


def test_delete_sends_leads_to_the_pool_and_merges_pool_duplicates(db, owner):
    uid, dev = owner
    only_here = add_lead(db, uid, dev, "60120000001")
    dup_here = add_lead(db, uid, dev, "60120000002", replied=True, trigger="promo")
    pool_twin = add_lead(db, uid, None, "60120000002")
    msg = db.execute("""INSERT INTO broadcast_messages (user_id, device_id, lead_id, recipient_phone, content)
                        VALUES (%s, %s, %s, '60120000002', 'hi') RETURNING id""", [uid, dev, dup_here]).fetchone()["id"]
    db.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, status, claimed_at, claimed_by)
                  VALUES (%s, %s, '60120000003', 'in flight', 'queued', now(), 's1')""", [uid, dev])
    result = db.execute("SELECT _delete_device(%s, %s) AS r", [uid, dev]).fetchone()["r"]
    assert result == {"deleted": True, "pending": False, "command_id": None, "leads_to_pool": 1,
                      "leads_merged_into_pool": 1, "messages_skipped": 1,
                      "messages_in_flight": 1, "session_removed": False}
    leads = {r["id"]: r for r in db.execute("SELECT * FROM leads WHERE user_id = %s", [uid])}
    assert set(leads) == {only_here, pool_twin}
    assert leads[only_here]["device_id"] is None
    assert leads[pool_twin]["replied_at"] is not None and leads[pool_twin]["trigger"] == "promo"
    row = db.execute("SELECT status, error_message, lead_id FROM broadcast_messages WHERE id = %s", [msg]).fetchone()
    assert row == {"status": "skipped", "error_message": "skipped: device deleted", "lead_id": pool_twin}
    assert db.execute("SELECT count(*) FROM user_devices WHERE id = %s", [dev]).fetchone()["count"] == 0


def test_delete_removes_the_whatsmeow_session(db, owner):
    uid, dev = owner
    db.execute("CREATE TABLE whatsmeow_device (jid text PRIMARY KEY)")
    db.execute("CREATE TABLE whatsmeow_sessions (our_jid text REFERENCES whatsmeow_device ON DELETE CASCADE)")
    db.execute("INSERT INTO whatsmeow_device VALUES ('60123000000:3@s.whatsapp.net')")
    db.execute("INSERT INTO whatsmeow_sessions VALUES ('60123000000:3@s.whatsapp.net')")
    db.execute("UPDATE user_devices SET jid = '60123000000:3@s.whatsapp.net' WHERE id = %s", [dev])
    assert db.execute("SELECT _delete_device(%s, %s) AS r", [uid, dev]).fetchone()["r"]["session_removed"]
    assert db.execute("SELECT count(*) FROM whatsmeow_sessions").fetchone()["count"] == 0


def test_delete_refuses_another_owners_device(db, owner):
    stranger = make_user(db)
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="no such device"), db.transaction():
        db.execute("SELECT _delete_device(%s, %s)", [stranger, owner[1]])
    assert db.execute("SELECT count(*) FROM user_devices WHERE id = %s", [owner[1]]).fetchone()["count"] == 1


def test_request_delete_of_a_running_online_device_goes_through_its_sender(db, owner):
    uid, dev = owner
    db.execute("UPDATE user_devices SET jid = 'x@s.whatsapp.net' WHERE id = %s", [dev])
    lease(db, dev)
    result = db.execute("SELECT request_device_delete(%s, %s) AS r", [uid, dev]).fetchone()["r"]
    assert result["pending"] and not result["deleted"]
    taken = db.execute("SELECT * FROM take_device_commands('s1')").fetchall()
    assert [(t["id"], t["command"], t["jid"]) for t in taken] == [(result["command_id"], "delete", "x@s.whatsapp.net")]


def test_request_delete_of_an_offline_device_deletes_now(db):
    uid = make_user(db)
    dev = make_device(db, uid, status="offline")
    assert db.execute("SELECT request_device_delete(%s, %s) AS r", [uid, dev]).fetchone()["r"]["deleted"]


def test_commands_are_taken_only_by_the_sender_leasing_the_device(db, owner):
    uid, dev = owner
    db.execute("UPDATE user_devices SET status = 'offline' WHERE id = %s", [dev])
    cid = command(db, uid, dev, "pair")
    assert command(db, uid, dev, "pair") == cid        # a double click is one command
    lease(db, dev, "s1")
    db.execute("SELECT register_sender('s2', 'host', 2, 100)")
    assert db.execute("SELECT * FROM take_device_commands('s2')").fetchall() == []
    assert [t["id"] for t in db.execute("SELECT * FROM take_device_commands('s1')")] == [cid]
    assert db.execute("SELECT * FROM take_device_commands('s1')").fetchall() == []   # taken once
    assert db.execute("SELECT finish_device_command(%s, NULL, 'qr shown') AS f", [cid]).fetchone()["f"]
    assert not db.execute("SELECT finish_device_command(%s, 'late') AS f", [cid]).fetchone()["f"]
    row = db.execute("SELECT status, result, done_at IS NOT NULL AS done FROM device_commands WHERE id = %s", [cid]).fetchone()
    assert row == {"status": "done", "result": "qr shown", "done": True}


def test_pairing_a_logged_out_device_makes_it_runnable_again(db, owner):
    uid, dev = owner
    db.execute("SELECT set_device_status(%s, 'logged_out', 'phone removed it')", [dev])
    command(db, uid, dev, "pair")
    assert db.execute("SELECT status FROM user_devices WHERE id = %s", [dev]).fetchone()["status"] == "connecting"
    db.execute("SELECT register_sender('s9', 'host', 9, 100)")
    assert dev in [r["device_id"] for r in db.execute("SELECT * FROM acquire_leases('s9', 100)")]


@pytest.mark.parametrize("cmd,status,jid,err", [
    ("pair", "online", "j@s.whatsapp.net", psycopg.errors.RaiseException),
    ("logout", "offline", None, psycopg.errors.RaiseException),
    ("reconnect", "offline", None, psycopg.errors.RaiseException),
    ("reboot", "online", None, psycopg.errors.InvalidParameterValue),
])
def test_commands_that_make_no_sense_are_refused(db, owner, cmd, status, jid, err):
    uid, dev = owner
    db.execute("UPDATE user_devices SET status = %s, jid = %s WHERE id = %s", [status, jid, dev])
    with pytest.raises(err):
        command(db, uid, dev, cmd)


def test_pair_phone_needs_a_number_and_another_owner_gets_nothing(db, owner):
    uid, dev = owner
    db.execute("UPDATE user_devices SET status = 'offline' WHERE id = %s", [dev])
    stranger = make_user(db)
    with pytest.raises(psycopg.errors.InvalidParameterValue), db.transaction():
        command(db, uid, dev, "pair_phone", "012")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="no such device"), db.transaction():
        command(db, stranger, dev, "pair")
    assert command(db, uid, dev, "pair_phone", "60123456789")


def test_health_tick_marks_silent_devices_and_refreshes_running_ones(db):
    uid = make_user(db)
    running, silent, fresh = (make_device(db, uid) for _ in range(3))
    db.execute("UPDATE user_devices SET status_changed_at = now() - interval '10 minutes', last_seen = now() - interval '10 minutes'")
    db.execute("UPDATE user_devices SET status_changed_at = now() WHERE id = %s", [fresh])
    lease(db, running)
    assert db.execute("SELECT device_health_tick() AS n").fetchone()["n"] == 1
    rows = {r["id"]: r for r in db.execute("SELECT id, status, status_reason, last_seen > now() - interval '1 second' AS seen FROM user_devices WHERE user_id = %s", [uid])}
    assert rows[running]["status"] == "online" and rows[running]["seen"]
    assert rows[silent]["status"] == "offline" and rows[silent]["status_reason"].startswith("silent")
    assert rows[fresh]["status"] == "online"   # just came online: not silent yet


def test_health_tick_expires_commands_and_still_deletes(db):
    uid = make_user(db)
    a, b = make_device(db, uid, status="offline"), make_device(db, uid, status="offline")
    stale = command(db, uid, a, "pair")
    db.execute("INSERT INTO device_commands (user_id, device_id, command) VALUES (%s, %s, 'delete')", [uid, b])
    db.execute("UPDATE device_commands SET created_at = now() - interval '5 minutes'")
    db.execute("SELECT device_health_tick()")
    row = db.execute("SELECT status, error FROM device_commands WHERE id = %s", [stale]).fetchone()
    assert row["status"] == "failed" and "no sender" in row["error"]
    assert db.execute("SELECT count(*) FROM user_devices WHERE id = %s", [b]).fetchone()["count"] == 0


def test_a_ban_reported_again_while_it_lasts_is_the_same_ban(db, owner):
    """WhatsApp reports a temporary ban on every connect while it lasts (in the next sender process
    after a restart too, and a second early, its time left being whole seconds): one ban for the
    health score, logged again as still_banned; a ban a minute after the last one ended is another."""
    _, dev = owner
    for status, until in (("banned", "1 hour"), ("offline", None), ("connecting", None), ("banned", "59 minutes")):
        db.execute("SELECT set_device_status(%s, %s, 'SEND_TO_TOO_MANY_PEOPLE', now() + %s::interval)",
                   [dev, status, until])
    events = [r["event"] for r in db.execute("SELECT event FROM device_events WHERE device_id = %s ORDER BY id", [dev])]
    assert events == ["banned", "offline", "connecting", "still_banned"]
    assert db.execute("SELECT bans_total, banned_until > now() AS banned FROM device_health WHERE device_id = %s",
                      [dev]).fetchone() == {"bans_total": 1, "banned": True}
    db.execute("UPDATE user_devices SET last_ban_until = now() - interval '61 seconds' WHERE id = %s", [dev])  # it ended
    db.execute("SELECT set_device_status(%s, 'banned', 'BLOCKED_BY_USERS', now() + interval '1 day')", [dev])
    assert db.execute("SELECT bans_total FROM device_health WHERE device_id = %s", [dev]).fetchone()["bans_total"] == 2


def test_device_health_view_counts(db, owner):
    uid, dev = owner
    for status in ("online", "offline", "online", "offline", "online", "banned"):
        db.execute("SELECT set_device_status(%s, %s, 'test')", [dev, status])
    db.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, status, claimed_at,
                                                  claimed_by, failed_at, error_message)
                  VALUES (%s, %s, '60120000009', 'x', 'failed', now(), 's', now(), 'boom')""", [uid, dev])
    row = db.execute("SELECT * FROM device_health WHERE device_id = %s", [dev]).fetchone()
    assert (row["disconnects_24h"], row["reconnects_24h"], row["bans_total"], row["send_failures_24h"]) == (2, 2, 1, 1)
    assert row["status"] == "banned" and not row["running"] and not row["silent"]
