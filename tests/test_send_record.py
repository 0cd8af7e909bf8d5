"""A device's send record: the claim counts each send in its minute (device_send_minutes) and on its
pacing row (its minute and hour rings, its day's count); the minute ring counts any window of the last
hour as the minutes do, the hour ring any window of whole hours of the last two days; device_load (the
engine's device choices, the monitoring page every 2 s) and the overview's health bands (two days of
sends a device) read no bucket at all, where the minutes alone were up to 2,880 a device (3,000
devices that sent every minute for two days: health bands 7.5-13 s a refresh, the owner's device load
1.8-2.0 s; with buckets by the hour, the monitoring page's device table 245 ms, the bands 225-244)."""
import random
from pathlib import Path

import pytest

from tests.factories import make_device, make_user, record_minutely_sends, record_sends
from tests.superuser import superuser
from tests.test_dispatch_sql import claim, lease, queue
from tests.test_plan_guards import Plans, rows_read, violations

MINUTES = "p.sends_total, p.sends_before, p.sends_minute"
HOURS = "p.sends_total, p.sends_before_hours, p.sends_hour"


def test_the_claim_counts_each_send_in_its_minute_and_in_both_rings(db):
    db.execute("SET TimeZone = 'Asia/Kolkata'")      # hours are UTC's whatever the session's zone
    uid = make_user(db)
    a, b = make_device(db, uid), make_device(db, uid)
    lease(db, [a, b])
    queue(db, uid, a, 5)
    queue(db, uid, b, 3)
    assert len(claim(db, per_device=4)) == 7
    assert len(claim(db, per_device=4)) == 1
    rows = db.execute(f"""
        SELECT p.device_id, p.sends_hour = date_trunc('hour', p.sends_minute, 'UTC') AS utc_hour,
               _send_ring_since({HOURS}, p.sends_hour, interval '1 hour') AS this_hour,
               _send_ring_since({MINUTES}, p.sends_minute, interval '1 minute') AS this_minute,
               (SELECT sum(s.sends)::int FROM device_send_minutes s WHERE s.device_id = p.device_id) AS minutes
          FROM device_pacing p WHERE p.device_id = ANY (%s) ORDER BY 1""", [[a, b]]).fetchall()
    # two claims within a minute (or across one: this minute then holds part of them, this hour all)
    assert [(r["utc_hour"], r["this_hour"], r["minutes"]) for r in rows] == [(True, 5, 5), (True, 3, 3)]
    assert all(0 < r["this_minute"] <= r["this_hour"] for r in rows)
    db.execute("RESET TimeZone")


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])   # the session's: hours of its own begin at :30 UTC
def test_the_hour_ring_counts_any_hour_of_two_days_as_the_minutes_do(db, zone):
    uid = make_user(db)
    dev = make_device(db, uid)
    rng = random.Random(11)
    # sends in no order of time: repeats of a minute, a bucket every 7 minutes over three days, gaps
    # longer than the ring, sends before its start
    sends = [(minutes_ago, 1 + minutes_ago % 5) for minutes_ago in range(0, 73 * 60, 7)]
    rng.shuffle(sends)
    for minutes_ago, k in sends + [(0, 2), (3000, 4), (61, 1)]:
        record_sends(db, dev, k, minutes_ago)
    db.execute(f"SET TimeZone = '{zone}'")
    for hours_ago in range(0, 49):
        start = f"date_trunc('hour', now(), 'UTC') - make_interval(hours => {hours_ago})"
        row = db.execute(f"""SELECT _send_ring_since({HOURS}, {start}, interval '1 hour') AS ring,
                                    (SELECT coalesce(sum(s.sends), 0)::int FROM device_send_minutes s
                                      WHERE s.device_id = p.device_id AND s.minute >= {start}) AS minutes
                               FROM device_pacing p WHERE p.device_id = %s""", [dev]).fetchone()
        assert row["ring"] == row["minutes"], hours_ago
    db.execute("RESET TimeZone")


def test_the_minute_ring_counts_any_window_of_the_last_hour_as_the_minutes_do(db):
    uid = make_user(db)
    dev = make_device(db, uid)
    rng = random.Random(7)
    # sends in no order of time: repeats of a minute, gaps longer than the ring, past the ring's start
    for minutes_ago in [0, 3, 3, 70, 200, 1, 59, 60, 61, 2, 45, 0, 130] + [rng.randrange(0, 90) for _ in range(40)]:
        record_sends(db, dev, rng.randrange(1, 6), minutes_ago)
    for offset in range(-60, 2):
        for seconds in (0, 30):
            start = f"date_trunc('minute', now()) + make_interval(mins => {offset}, secs => {seconds})"
            row = db.execute(f"""SELECT _send_ring_since({MINUTES}, {start}, interval '1 minute') AS ring,
                                        (SELECT coalesce(sum(s.sends), 0)::int FROM device_send_minutes s
                                          WHERE s.device_id = p.device_id AND s.minute >= {start}) AS minutes
                                   FROM device_pacing p WHERE p.device_id = %s""", [dev]).fetchone()
            assert row["ring"] == row["minutes"], (offset, seconds)


def test_the_rings_are_expressions_their_callers_inline(db):
    """The claim writes both rings for every device it claims from, device_load and the health score
    read them for every device: as function calls (declared immutable over a stable body, the planner
    keeps the call) each cost a call a row."""
    plan = "\n".join(r["QUERY PLAN"] for r in db.execute(f"""
        EXPLAIN VERBOSE SELECT _send_ring_add(p.sends_before, p.sends_minute, p.sends_total, now(), 1,
                                              interval '1 minute', 61),
                               _send_ring_add(p.sends_before_hours, p.sends_hour, p.sends_total, now(), 1,
                                              interval '1 hour', 49),
                               _send_ring_since({MINUTES}, now(), interval '1 minute'),
                               _send_ring_since({HOURS}, now(), interval '1 hour')
                          FROM device_pacing p""").fetchall())
    assert "_send_ring_add(" not in plan and "_send_ring_since(" not in plan, plan


def test_the_claim_moves_both_rings_with_the_sends_it_counts(db):
    uid = make_user(db)
    dev = make_device(db, uid, hourly_limit=1000)
    lease(db, [dev])
    record_sends(db, dev, 4, 30)
    record_sends(db, dev, 2, 61)                    # a minute before the trailing hour
    queue(db, uid, dev, 7)
    assert len(claim(db, per_device=5)) == 5
    assert len(claim(db, per_device=5)) == 2
    row = db.execute(f"""SELECT l.messages_hour, p.sends_total,
                                _send_ring_since({HOURS}, date_trunc('hour', now(), 'UTC') - interval '2 hours',
                                                 interval '1 hour') AS three_hours
                           FROM device_load(ARRAY[%s]::bigint[]) l JOIN device_pacing p USING (device_id)""",
                     [uid]).fetchone()
    assert (row["messages_hour"], row["sends_total"], row["three_hours"]) == (4 + 7, 2 + 4 + 7, 2 + 4 + 7)


def test_the_upgrade_fills_the_ring_from_the_minutes(db):
    """Migration 2138's backfill (its last statement, run again here) makes the ring the claim would have."""
    uid = make_user(db)
    devices = [make_device(db, uid) for _ in range(3)]
    # none at the hour's edge: the minute may turn between the record and the backfill
    for minutes_ago, sends in [(0, 2), (5, 1), (58, 3), (75, 9)]:
        record_sends(db, devices[0], sends, minutes_ago)
    record_sends(db, devices[1], 5, 20)
    minute = db.execute("SELECT date_trunc('minute', now()) AS m").fetchone()["m"]
    windows = """SELECT p.device_id, array_agg(_send_ring_since(p.sends_total, p.sends_before, p.sends_minute,
                                                             %s::timestamptz - make_interval(mins => k),
                                                             interval '1 minute') ORDER BY k) AS sends
                   FROM device_pacing p, generate_series(0, 59) k WHERE p.device_id = ANY (%s) GROUP BY 1 ORDER BY 1"""
    want = db.execute(windows, [minute, devices]).fetchall()
    db.execute("UPDATE device_pacing SET sends_total = 0, sends_minute = NULL, sends_before = '{}' WHERE device_id = ANY (%s)",
               [devices])
    migration = (Path(__file__).parents[1] / "db/migrations/2138_device_send_ring.sql").read_text()
    db.execute(migration[migration.rindex("UPDATE device_pacing"):])
    assert db.execute(windows, [minute, devices]).fetchall() == want
    assert [w["sends"][-1] for w in want] == [2 + 1 + 3, 5, 0]
    hour = "SELECT messages_hour FROM device_load(ARRAY[%s]::bigint[]) ORDER BY device_id"
    assert [r["messages_hour"] for r in db.execute(hour, [uid]).fetchall()] == [2 + 1 + 3, 5, 0]


def test_the_upgrade_fills_the_hour_ring_from_the_hour_buckets(db):
    """Migration 2139's backfill (run again here, over the hour buckets it read, summed from the minutes
    as migration 2136 made them) makes the hour ring the claims would have."""
    uid = make_user(db)
    devices = [make_device(db, uid) for _ in range(3)]
    for minutes_ago, sends in [(0, 2), (50, 1), (130, 3), (47 * 60, 9), (49 * 60 + 5, 4), (70 * 60, 6)]:
        record_sends(db, devices[0], sends, minutes_ago)
    record_sends(db, devices[1], 5, 20 * 60)
    hour = db.execute("SELECT date_trunc('hour', now(), 'UTC') AS h").fetchone()["h"]
    windows = """SELECT p.device_id, array_agg(_send_ring_since(p.sends_total, p.sends_before_hours, p.sends_hour,
                                                             %s::timestamptz - make_interval(hours => k),
                                                             interval '1 hour') ORDER BY k) AS sends
                   FROM device_pacing p, generate_series(0, 48) k WHERE p.device_id = ANY (%s) GROUP BY 1 ORDER BY 1"""
    want = db.execute(windows, [hour, devices]).fetchall()
    db.execute("""CREATE TEMP TABLE device_send_hours ON COMMIT DROP AS
                  SELECT device_id, date_trunc('hour', minute, 'UTC') AS hour, sum(sends)::int AS sends
                    FROM device_send_minutes GROUP BY 1, 2""")
    db.execute("UPDATE device_pacing SET sends_hour = NULL, sends_before_hours = '{}' WHERE device_id = ANY (%s)",
               [devices])
    migration = (Path(__file__).parents[1] / "db/migrations/2139_device_send_hour_ring.sql").read_text()
    db.execute(migration[migration.rindex("UPDATE device_pacing"):migration.rindex("DROP TABLE")])
    assert db.execute(windows, [hour, devices]).fetchall() == want
    assert [w["sends"][-1] for w in want] == [2 + 1 + 3 + 9, 5, 0]


def test_a_day_or_two_of_sends_is_read_in_a_bounded_number_of_rows(module_db_url):
    devices_n = 20
    with superuser(module_db_url) as c, c.transaction(force_rollback=True):   # auto_explain: superuser
        uid = make_user(c, timezone="Asia/Kathmandu")           # a midnight at a quarter past the hour
        devices = [make_device(c, uid) for _ in range(devices_n)]
        record_minutely_sends(c, devices, "now() - interval '49 hours'", 49 * 60)
        c.execute("ANALYZE device_send_minutes")
        c.execute("LOAD 'auto_explain'")
        with Plans(c, analyze=True) as load_plans:
            load = c.execute("SELECT * FROM device_load(ARRAY[%s]::bigint[])", [uid]).fetchall()
        with Plans(c, analyze=True) as band_plans:
            bands = c.execute("SELECT * FROM device_health_distribution(%s)", [uid]).fetchall()
        assert len(load) == devices_n and sum(b["devices"] for b in bands) == devices_n
        today = c.execute("""SELECT count(*) AS n FROM device_send_minutes WHERE device_id = %s
                                AND minute >= date_trunc('day', now() AT TIME ZONE 'Asia/Kathmandu')
                                              AT TIME ZONE 'Asia/Kathmandu'""", [devices[0]]).fetchone()["n"]
        assert {(r["messages_hour"], r["messages_today"]) for r in load} == {(61, today)}
        # device_load: the hour and the day from each device's pacing row, no bucket read
        read = rows_read(load_plans, "device_send_minutes")
        assert read == 0, f"device_load read {read:,.0f} rows of the send record for {devices_n} devices"
        # the bands' two days from each device's hour ring: no bucket read (up to 49 hour rows and 30
        # minute rows a device before it, 2,880 minute rows from the minutes alone)
        read = rows_read(band_plans, "device_send_minutes")
        assert read == 0, f"the health bands read {read:,.0f} rows of the send record for {devices_n} devices"
        assert violations(load_plans) == [] and violations(band_plans) == []   # each read a range of its device's key
