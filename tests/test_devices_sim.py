"""Devices end to end with the simulated transport (WhatsApp's rules on, its clock scaled): a real
sender worker (leases, event sink, device commands) against the test database, the dashboard's
commands going through device_commands. Pair by QR and the dashboard's "simulate scan", a reply
stopping a lead's sequence, and an opt-out respected by a later campaign. The other lifecycle
events are the transport contract's (test_transport_contract.py), run on both transports."""
import json
import threading
import time

import pytest
from psycopg.rows import dict_row

from sender.settings import SenderSettings
from sender.transport.sim import SimConfig, SimTransport
from sender.worker import Worker
from tests.factories import drain_notifies, make_user
from tests.test_sender_support import wait_until


@pytest.fixture(scope="module")
def sim_sender(module_db_url, tmp_path_factory):
    """One sender worker on the simulated network for the module; yields (worker, sim transport)."""
    holder = {}

    def factory(on_event):
        holder["sim"] = SimTransport(on_event, SimConfig(store_dir=tmp_path_factory.mktemp("simnet"), time_scale=0.05))
        return holder["sim"]

    settings = SenderSettings(heartbeat_seconds=0.2, lease_seconds=10, poll_seconds=0.2)
    worker = Worker(module_db_url, settings, transport_factory=factory, sender_id="sim-sender")
    worker.commands.poll_seconds = 0.2
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    yield worker, holder["sim"]
    worker.stop()
    thread.join(15)


@pytest.fixture
def conn(connect_committed):
    return connect_committed()


def device(conn, device_id):
    return conn.execute("SELECT * FROM user_devices WHERE id = %s", [device_id]).fetchone()


def status_is(conn, device_id, *statuses):
    return lambda: device(conn, device_id)["status"] in statuses


def command(conn, uid, device_id, cmd):
    return conn.execute("SELECT request_device_command(%s, %s, %s) AS id", [uid, device_id, cmd]).fetchone()["id"]


def command_done(conn, command_id):
    row = conn.execute("SELECT status, error FROM device_commands WHERE id = %s", [command_id]).fetchone()
    return row and row["status"] in ("done", "failed") and row


def run_command(conn, uid, device_id, cmd):
    """Asks for a command the way the dashboard does and waits for the sender's outcome."""
    command_id = command(conn, uid, device_id, cmd)
    return wait_until(lambda: command_done(conn, command_id), what=f"the {cmd} command")


def paired_device(conn, sim_sender, uid, name="phone"):
    """A new device paired through the dashboard path: QR shown, 'simulate scan' pressed."""
    dev = conn.execute("SELECT create_device(%s, %s, 0, 0) AS id", [uid, name]).fetchone()["id"]
    conn.execute("LISTEN wa_events")
    wait_until(lambda: sim_sender[1].showing_code(dev), what="the QR code on screen")
    done = run_command(conn, uid, dev, "simulate_scan")
    assert done["status"] == "done", done
    wait_until(status_is(conn, dev, "online"), what="online after the scan")
    return dev


def test_pair_by_qr_and_simulated_scan(conn, sim_sender):
    uid = make_user(conn)
    conn.execute("LISTEN wa_events")
    dev = paired_device(conn, sim_sender, uid)
    row = device(conn, dev)
    assert row["jid"] and row["phone"] and row["status"] == "online"
    mine = [e for e in map(json.loads, (n.payload for n in drain_notifies(conn))) if e["user_id"] == uid]
    assert any(e["type"] == "device_pairing" and e["data"]["kind"] == "qr" for e in mine)
    assert any(e["type"] == "device_paired" for e in mine)
    assert any(e["type"] == "device_status" and e["data"]["status"] == "online" for e in mine)


def test_inbound_reply_stops_the_leads_sequence(conn, sim_sender):
    worker, sim = sim_sender
    uid = make_user(conn)
    dev = paired_device(conn, sim_sender, uid)
    seq = conn.execute("""INSERT INTO sequences (user_id, name, trigger, status) VALUES (%s, 'drip', 'promo', 'active')
                          RETURNING id""", [uid]).fetchone()["id"]
    conn.execute("""INSERT INTO sequence_steps (sequence_id, day_number, trigger, content, is_entry_point, trigger_delay_hours)
                    VALUES (%s, 1, 'promo', 'day 1', true, 1), (%s, 2, 'promo2', 'day 2', false, 24)""", [seq, seq])
    conn.execute("INSERT INTO leads (user_id, device_id, name, phone, trigger) VALUES (%s, %s, 'Ali', '60131234567', 'promo')",
                 [uid, dev])
    enrollment = lambda: conn.execute("SELECT status, stop_reason FROM sequence_enrollments WHERE sequence_id = %s",
                                      [seq]).fetchone()
    assert enrollment()["status"] == "active"
    sim.reply(dev, "60131234567", "Interested, tell me more")
    wait_until(lambda: enrollment()["status"] == "stopped", what="the sequence to stop")
    assert enrollment()["stop_reason"] == "reply"
    lead = conn.execute("SELECT replied_at FROM leads WHERE user_id = %s", [uid]).fetchone()
    chat = conn.execute("SELECT * FROM chat_search(%s, %s)", [uid, dev]).fetchone()
    assert lead["replied_at"] is not None and chat["last_message_preview"] == "Interested, tell me more"


def test_opt_out_is_respected_by_a_later_campaign(conn, sim_sender):
    worker, sim = sim_sender
    uid = make_user(conn)
    dev = paired_device(conn, sim_sender, uid)
    conn.execute("""INSERT INTO leads (user_id, device_id, name, phone) VALUES (%s, %s, 'A', '60141111111'),
                                                                           (%s, %s, 'B', '60142222222')""",
                 [uid, dev, uid, dev])
    sim.reply(dev, "60141111111", "BERHENTI")
    wait_until(lambda: conn.execute("SELECT _is_opted_out(%s, '60141111111') AS o", [uid]).fetchone()["o"],
               what="the opt-out")
    conn.row_factory = dict_row
    campaign = conn.execute("""
        SELECT create_campaign(%s, 'broadcast', 'later', '', 'all', 'Hello {name}', NULL, NULL, NULL,
                               (now() AT TIME ZONE 'Asia/Kuala_Lumpur')::date,
                               ((now() + interval '1 minute') AT TIME ZONE 'Asia/Kuala_Lumpur')::time, 0, 0) AS id""",
                            [uid]).fetchone()["id"]
    conn.execute("UPDATE campaigns SET scheduled_at = now() - interval '1 second' WHERE id = %s", [campaign])
    conn.execute("SELECT _trigger_due_campaigns()")
    conn.execute("SELECT expand_campaign_chunk(%s)", [campaign])
    phones = [r["recipient_phone"] for r in conn.execute(
        "SELECT recipient_phone FROM broadcast_messages WHERE campaign_id = %s", [campaign])]
    assert phones == ["60142222222"]
