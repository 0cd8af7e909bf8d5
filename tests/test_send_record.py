"""A device's send record: the claim counts each send by the minute and by the hour
(device_send_minutes, device_send_hours); _device_sends counts any window from them exactly as the
minutes alone would; and what reads a day or two of it (device_load for the engine and the
monitoring page, the overview's health bands) reads a bounded number of rows a device, where the
minutes alone were up to 2,880 (3,000 devices that sent every minute for two days: health bands
7.5-13 s a refresh, the owner's device load 1.8-2.0 s)."""
import pytest

from tests.factories import make_device, make_user, record_minutely_sends, record_sends
from tests.superuser import superuser
from tests.test_dispatch_sql import claim, lease, queue
from tests.test_plan_guards import Plans, rows_read, violations


def test_the_claim_counts_each_send_by_the_minute_and_by_the_hour(db):
    db.execute("SET TimeZone = 'Asia/Kolkata'")      # hours are UTC's whatever the session's zone
    uid = make_user(db)
    a, b = make_device(db, uid), make_device(db, uid)
    lease(db, [a, b])
    queue(db, uid, a, 5)
    queue(db, uid, b, 3)
    assert len(claim(db, per_device=4)) == 7
    assert len(claim(db, per_device=4)) == 1
    by_minute = db.execute("""SELECT device_id, date_trunc('hour', minute, 'UTC') AS hour, sum(sends) AS sends
                                FROM device_send_minutes GROUP BY 1, 2 ORDER BY 1, 2""").fetchall()
    by_hour = db.execute("SELECT device_id, hour, sends FROM device_send_hours ORDER BY 1, 2").fetchall()
    assert by_hour == by_minute and [r["sends"] for r in by_hour] == [5, 3]
    db.execute("RESET TimeZone")


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])   # the session's: hours of its own begin at :30 UTC
def test_any_window_counts_what_its_minutes_count(db, zone):
    uid = make_user(db)
    dev = make_device(db, uid)
    for minutes_ago in range(0, 73 * 60, 7):                    # three days, a bucket every 7 minutes
        record_sends(db, dev, 1 + minutes_ago % 5, minutes_ago)
    starts = ["now()", "now() - interval '30 seconds'", "date_trunc('minute', now() - interval '1 hour')",
              "date_trunc('hour', now())", "date_trunc('hour', now()) + interval '10 minutes'",
              "date_trunc('hour', now()) + interval '40 minutes'",      # perhaps still to come: nothing
              "date_trunc('hour', now()) - interval '5 hours'",
              "date_trunc('hour', now()) - interval '5 hours' + interval '29 minutes'",
              "date_trunc('hour', now()) - interval '5 hours' + interval '30 minutes'",
              "now() - interval '48 hours'", "now() - interval '47 hours 59 minutes 30 seconds'"]
    starts += [f"date_trunc('day', now() AT TIME ZONE '{owner}') AT TIME ZONE '{owner}'"   # owners' midnights
               for owner in ("UTC", "Asia/Kuala_Lumpur", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns")]
    db.execute(f"SET TimeZone = '{zone}'")
    for start in starts:
        row = db.execute(f"""SELECT (SELECT t.sends FROM _device_sends(%s, {start}) t) AS counted,
                                    (SELECT coalesce(sum(s.sends), 0)::int FROM device_send_minutes s
                                      WHERE s.device_id = %s AND s.minute >= {start}) AS minutes""",
                         [dev, dev]).fetchone()
        assert row["counted"] == row["minutes"], start
    db.execute("RESET TimeZone")


def test_a_day_or_two_of_sends_is_read_in_a_bounded_number_of_rows(module_db_url):
    devices_n = 20
    with superuser(module_db_url) as c, c.transaction(force_rollback=True):   # auto_explain: superuser
        uid = make_user(c, timezone="Asia/Kathmandu")           # a midnight at a quarter past the hour
        devices = [make_device(c, uid) for _ in range(devices_n)]
        record_minutely_sends(c, devices, "now() - interval '49 hours'", 49 * 60)
        c.execute("ANALYZE device_send_minutes; ANALYZE device_send_hours")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as plans:
            load = c.execute("SELECT * FROM device_load(ARRAY[%s]::bigint[])", [uid]).fetchall()
            bands = c.execute("SELECT * FROM device_health_distribution(%s)", [uid]).fetchall()
        assert len(load) == devices_n and sum(b["devices"] for b in bands) == devices_n
        today = c.execute("""SELECT count(*) AS n FROM device_send_minutes WHERE device_id = %s
                                AND minute >= date_trunc('day', now() AT TIME ZONE 'Asia/Kathmandu')
                                              AT TIME ZONE 'Asia/Kathmandu'""", [devices[0]]).fetchone()["n"]
        assert {(r["messages_hour"], r["messages_today"]) for r in load} == {(61, today)}
        # per device: the trailing hour (<= 30 minutes + 2 hours), the day (<= 30 + 25), the last
        # minute (1), two days (<= 30 + 49); 2,880 + 1,440 + 61 from the minutes alone
        read = rows_read(plans, ("device_send_minutes", "device_send_hours"))
        assert read <= devices_n * 170, f"{read:,.0f} rows of the send record read for {devices_n} devices"
        assert violations(plans) == []        # each read a range of its device's key
