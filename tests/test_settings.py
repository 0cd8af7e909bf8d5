"""Each setting is defined once, in the database's settings table (migration 1201): the engine's SQL
and the Python processes read the same rows, and only common/config.py reads the environment."""
import re
from datetime import timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from common.config import ROOT, engine_settings
from sender.settings import SenderSettings
from tests.factories import make_user
from tests.webutil import signed_in_user

CHANGED = {"stuck_timeout_seconds": 420, "lease_seconds": 17, "sender_alive_seconds": 11,
           "preferred_device_hourly_sends": 9, "load_weight_sends_hour": 0.25, "load_weight_in_flight": 0.75,
           "default_min_delay_seconds": 7, "default_max_delay_seconds": 13, "default_hourly_limit": 55,
           "default_daily_limit": 555, "message_retention_days": 90,
           "default_window_tolerance_minutes": 25, "warmup_start_per_day": 5, "warmup_days": 3,
           "timelock_default_hours": 5, "self_pause_window_sends": 4, "self_pause_failure_share": 0.25,
           "cold_share_max": 0.2, "failover_offline_minutes": 3, "lead_import_lanes": 3,
           "campaign_fanout_lanes": 3, "webhook_retention_days": 2}


def change_settings(conn):
    for name, value in CHANGED.items():
        assert conn.execute("UPDATE settings SET value = %s WHERE name = %s", [value, name]).rowcount == 1


def test_every_setting_is_one_row_both_sides_read(db):
    python = engine_settings(db)
    assert set(python) == set(CHANGED)
    for name, value in python.items():
        assert db.execute("SELECT setting(%s) AS v", [name]).fetchone()["v"] == value


def test_sql_and_python_follow_a_changed_setting(db):
    """Change every value: the engine's defaults (functions, column defaults, views) and the sender's
    settings all move with it, so neither side holds a copy."""
    change_settings(db)
    python = engine_settings(db)
    assert {k: float(v) for k, v in python.items()} == {k: float(v) for k, v in CHANGED.items()}
    resolved = SenderSettings(capacity=10).resolve(db)
    assert (resolved.lease_seconds, resolved.stuck_seconds) == (17, 420)
    assert SenderSettings(capacity=10, lease_seconds=2).resolve(db).lease_seconds == 2   # a test's override

    user = make_user(db)
    device = db.execute("SELECT create_device(%s, 'd') AS id", [user]).fetchone()["id"]
    row = db.execute("SELECT min_delay_seconds, max_delay_seconds, hourly_limit, daily_limit FROM user_devices"
                     " WHERE id = %s", [device]).fetchone()
    assert row == {"min_delay_seconds": 7, "max_delay_seconds": 13, "hourly_limit": 55, "daily_limit": 555}

    db.execute("SELECT register_sender('s1', 'h', 1, 10)")
    db.execute("UPDATE user_devices SET status = 'online' WHERE id = %s", [device])
    db.execute("SELECT * FROM acquire_leases('s1', 10)")
    lease = db.execute("SELECT expires_at - acquired_at AS ttl FROM device_leases WHERE device_id = %s",
                       [device]).fetchone()
    assert lease["ttl"] == timedelta(seconds=17)
    db.execute("UPDATE senders SET heartbeat_at = now() - interval '12 seconds'")
    assert db.execute("SELECT alive FROM sender_heartbeat_monitor WHERE sender_id = 's1'").fetchone()["alive"] is False
    assert db.execute("SELECT senders_stale FROM system_health()").fetchone()["senders_stale"] == 1

    db.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, message_type, content,
                                                  status, claimed_at, claimed_by, scheduled_at)
                  VALUES (%s, %s, '60111111111', 'text', 'x', 'queued', now() - interval '6 minutes', 's1', now())""",
               [user, device])
    assert db.execute("SELECT recover_stuck() AS n").fetchone()["n"] == 0     # 6 minutes < 420 s
    db.execute("UPDATE broadcast_messages SET claimed_at = now() - interval '8 minutes' WHERE device_id = %s", [device])
    assert db.execute("SELECT recover_stuck() AS n").fetchone()["n"] == 1

    load = db.execute("SELECT messages_hour, processing_now, load_score FROM device_load(ARRAY[%s::bigint])",
                      [user]).fetchone()
    assert load["load_score"] == load["messages_hour"] * 0.25 + load["processing_now"] * 0.75

    db.execute("SELECT device_paired(%s, '60199999999.0:1@s.whatsapp.net', '60199999999')", [device])
    db.execute("SELECT device_timelocked(%s, NULL)", [device])
    h = db.execute("SELECT daily_cap, warmup_days, timelocked_until - now() AS lock FROM device_health "
                   "WHERE device_id = %s", [device]).fetchone()
    assert (h["daily_cap"], h["warmup_days"], h["lock"]) == (5, 3, timedelta(hours=5))
    assert db.execute("SELECT cold_cap FROM _device_send_limits(100, NULL, NULL, 'UTC')").fetchone()["cold_cap"] == 20

    import_id = db.execute("SELECT start_lead_import(%s, NULL, 'x.csv', NULL) AS id", [user]).fetchone()["id"]
    assert db.execute("SELECT array_agg(lane ORDER BY lane) AS lanes FROM lead_import_lanes WHERE import_id = %s",
                      [import_id]).fetchone()["lanes"] == [0, 1, 2]

    campaign = db.execute("""SELECT create_campaign(%s, 'broadcast', 'c', '', 'all', 'hi', NULL, NULL, NULL,
                                                    current_date - 1, '00:00', 0, 0) AS id""", [user]).fetchone()["id"]
    db.execute("SELECT _trigger_due_campaigns()")
    assert db.execute("SELECT array_agg(lane ORDER BY lane) AS lanes FROM campaign_fanout_lanes WHERE campaign_id = %s",
                      [campaign]).fetchone()["lanes"] == [0, 1, 2]
    assert db.execute("SELECT count(*) AS n FROM app_jobs() WHERE command = 'CALL expand_campaigns()'"
                      ).fetchone()["n"] == 2   # a runner per lane beside the tick

    endpoint = db.execute("SELECT create_webhook_endpoint(%s, 'https://hooks.example.com/s', %s, "
                          "ARRAY['device.status']) AS id", [user, "s" * 40]).fetchone()["id"]
    db.execute("""INSERT INTO webhook_deliveries (endpoint_id, user_id, event_id, event_type, payload, status,
                                                  delivered_at, attempts)
                  VALUES (%s, %s, gen_random_uuid(), 'device.status', '{}', 'delivered', now() - interval '3 days', 1)""",
               [endpoint, user])
    db.execute("SELECT purge_history()")   # kept 2 days now, 7 by default
    assert db.execute("SELECT count(*) AS n FROM webhook_deliveries WHERE endpoint_id = %s",
                      [endpoint]).fetchone()["n"] == 0


def test_a_value_the_engine_cannot_run_with_is_refused(db):
    """Each setting's range is defined with it, and an UPDATE outside it fails naming the range: a stuck
    timeout of 30 s made every sender fail every message it claimed (they stop sending a claimed
    message 30 s before the timeout), and a share above 1 or a cap of 0 means nothing the engine can do."""
    for name, value in (("stuck_timeout_seconds", 30), ("lease_seconds", 5), ("sender_alive_seconds", 2),
                        ("self_pause_failure_share", 0), ("cold_share_max", 1.5), ("default_hourly_limit", 0),
                        ("lead_import_lanes", 0), ("campaign_fanout_lanes", 17), ("message_retention_days", 0)):
        with pytest.raises(psycopg.errors.CheckViolation, match="settings_value_in_range"), db.transaction():
            db.execute("UPDATE settings SET value = %s WHERE name = %s", [value, name])
    for r in db.execute("SELECT name, lowest, highest FROM settings").fetchall():   # the bounds themselves are fine
        with db.transaction(force_rollback=True):
            for value in (r["lowest"], r["highest"]):
                if value is not None:
                    db.execute("UPDATE settings SET value = %s WHERE name = %s", [value, r["name"]])


def test_the_web_forms_and_api_default_to_the_settings(client, committed_db_url):
    with psycopg.connect(committed_db_url, autocommit=True, row_factory=dict_row) as c:
        change_settings(c)
    try:
        uid, token = signed_in_user(client, committed_db_url)
        page = client.get("/devices").get_data(as_text=True)
        assert 'name="hourly_limit" type="number" min="1" value="55"' in page
        res = client.post("/api/devices", json={"device_name": "x"}, headers={"X-CSRFToken": token})
        assert res.status_code == 201, res.get_json()
        with psycopg.connect(committed_db_url, row_factory=dict_row) as c:
            row = c.execute("SELECT min_delay_seconds, hourly_limit, daily_limit FROM user_devices WHERE id = %s",
                            [res.get_json()["device"]["device_id"]]).fetchone()
        assert row == {"min_delay_seconds": 7, "hourly_limit": 55, "daily_limit": 555}
        builder = client.get("/sequences/new").get_data(as_text=True)
        assert 'name="schedule_tolerance_minutes" min="0" max="720" value="25"' in builder
        res = client.post("/api/sequences", headers={"X-CSRFToken": token},
                          json={"name": "s", "trigger": "t", "steps": [{"day_number": 1, "content": "hi"}]})
        assert res.status_code in (200, 201), res.get_json()
        with psycopg.connect(committed_db_url, row_factory=dict_row) as c:
            saved = c.execute("SELECT schedule_tolerance_minutes FROM sequences WHERE user_id = %s", [uid]).fetchone()
        assert saved == {"schedule_tolerance_minutes": 25}
    finally:
        with psycopg.connect(committed_db_url, autocommit=True) as c:
            c.execute("""UPDATE settings s SET value = d.value FROM (VALUES ('stuck_timeout_seconds', 300),
                           ('lease_seconds', 30), ('sender_alive_seconds', 30), ('preferred_device_hourly_sends', 50),
                           ('load_weight_sends_hour', 0.7), ('load_weight_in_flight', 0.3),
                           ('default_min_delay_seconds', 30), ('default_max_delay_seconds', 60),
                           ('default_hourly_limit', 80), ('default_daily_limit', 800),
                           ('message_retention_days', 180), ('default_window_tolerance_minutes', 10)) d(name, value)
                         WHERE s.name = d.name""")


ENV_READ = re.compile(r"os\.environ\.get\(|os\.environ\[|os\.getenv\(|environ\.get\(")


def test_only_the_configuration_module_reads_the_environment():
    readers = []
    for folder in ("common", "sender", "web", "webhooks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.relative_to(ROOT).as_posix() != "common/config.py" and ENV_READ.search(path.read_text()):
                readers.append(path.relative_to(ROOT).as_posix())
    assert readers == []


def test_no_sql_file_spells_a_shared_number():
    """The numbers of the settings table, as the files once wrote them, are gone from the functions and views."""
    spelled = re.compile(r"'5 minutes'|'30 seconds'|\* 0\.7\b|\* 0\.3\b|messages_hour < 50\b|DEFAULT 80\b|DEFAULT 800\b")
    found = [f"{p.name}: {m.group(0)}" for folder in ("functions", "views")
             for p in sorted((ROOT / "db" / folder).glob("*.sql")) for m in spelled.finditer(p.read_text())]
    assert found == []
