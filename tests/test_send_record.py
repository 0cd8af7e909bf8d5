"""A device's send record is its pacing row: the claim moves its minute and hour rings and its day's
count with each send it counts; the minute ring gives any window of the last hour (the hourly cap,
device_load), the hour ring any window of whole hours of the last two days (the health score's reply
rate), without a read. Checked here against the sends themselves, recorded in no order of time.
Before the rings, the claim wrote minute and hour buckets as well, and their readers summed them: 3,000
devices that sent every minute for two days made the health bands 7.5-13 s a refresh from the minutes,
225-244 ms from the hours; the monitoring page's device table 245 ms."""
import random
from datetime import timedelta, timezone
from pathlib import Path

import pytest

from tests.factories import make_device, make_user, record_minutely_sends, record_sends
from tests.test_dispatch_sql import claim, lease, queue

MINUTES = "p.sends_total, p.sends_before, p.sends_minute"
HOURS = "p.sends_total, p.sends_before_hours, p.sends_hour"
MIGRATIONS = Path(__file__).parents[1] / "db/migrations"


def shuffled_sends(seed, spread_minutes, extra=()):
    """(minutes ago, sends) in no order of time: repeats of a minute, gaps longer than a ring, sends
    before its start."""
    rng = random.Random(seed)
    sends = [(ago, 1 + ago % 5) for ago in range(0, spread_minutes, 7)] + list(extra)
    rng.shuffle(sends)
    return sends


def since(sends, now, start):
    """What the sends (minutes ago from now, the transaction's) count from `start` on, by whole minutes."""
    whole = now.replace(second=0, microsecond=0)
    return sum(k for ago, k in sends if whole - timedelta(minutes=ago) >= start)


def test_the_claim_counts_each_send_in_both_rings(db):
    db.execute("SET TimeZone = 'Asia/Kolkata'")      # hours are UTC's whatever the session's zone
    uid = make_user(db)
    a, b = make_device(db, uid), make_device(db, uid)
    lease(db, [a, b])
    queue(db, uid, a, 5)
    queue(db, uid, b, 3)
    assert len(claim(db, per_device=4)) == 7
    assert len(claim(db, per_device=4)) == 1
    rows = db.execute(f"""
        SELECT p.sends_total, p.sends_hour = date_trunc('hour', p.sends_minute, 'UTC') AS utc_hour,
               _send_ring_since({HOURS}, p.sends_hour, interval '1 hour') AS this_hour,
               _sends_last_hour({MINUTES}) AS last_hour
          FROM device_pacing p WHERE p.device_id = ANY (%s) ORDER BY p.device_id""", [[a, b]]).fetchall()
    assert [tuple(r.values()) for r in rows] == [(5, True, 5, 5), (3, True, 3, 3)]
    db.execute("RESET TimeZone")


def test_the_minute_ring_counts_any_window_of_the_last_hour(db):
    uid = make_user(db)
    dev = make_device(db, uid)
    sends = shuffled_sends(7, 90, extra=[(0, 2), (3, 1), (3, 4), (70, 3), (200, 5), (59, 1), (60, 2), (61, 3)])
    for ago, k in sends:
        record_sends(db, dev, k, ago)
    now = db.execute("SELECT now() AS t").fetchone()["t"]
    for offset in range(-60, 2):
        for seconds in (0, 30):
            start = now.replace(second=0, microsecond=0) + timedelta(minutes=offset, seconds=seconds)
            ring = db.execute(f"""SELECT _send_ring_since({MINUTES}, %s, interval '1 minute') AS n
                                    FROM device_pacing p WHERE p.device_id = %s""", [start, dev]).fetchone()["n"]
            assert ring == since(sends, now, start), (offset, seconds)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])   # the session's: hours of its own begin at :30 UTC
def test_the_hour_ring_counts_any_hour_of_two_days(db, zone):
    uid = make_user(db)
    dev = make_device(db, uid)
    sends = shuffled_sends(11, 73 * 60, extra=[(0, 2), (3000, 4), (61, 1)])
    for ago, k in sends:
        record_sends(db, dev, k, ago)
    db.execute(f"SET TimeZone = '{zone}'")
    now = db.execute("SELECT now() AS t").fetchone()["t"].astimezone(timezone.utc)
    for hours_ago in range(0, 49):
        start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)
        ring = db.execute(f"""SELECT _send_ring_since({HOURS}, %s, interval '1 hour') AS n
                                FROM device_pacing p WHERE p.device_id = %s""", [start, dev]).fetchone()["n"]
        assert ring == since(sends, now, start), hours_ago
    db.execute("RESET TimeZone")


def test_the_rings_are_expressions_their_callers_inline(db):
    """The claim writes both rings for every device it claims from and checks its hourly cap against
    one; device_load and the health score read them for every device: as function calls (declared
    immutable over a stable body, the planner keeps the call) each cost a call a row."""
    plan = "\n".join(r["QUERY PLAN"] for r in db.execute(f"""
        EXPLAIN VERBOSE SELECT _send_ring_add(p.sends_before, p.sends_minute, p.sends_total, now(), 1,
                                              interval '1 minute', 61),
                               _send_ring_add(p.sends_before_hours, p.sends_hour, p.sends_total, now(), 1,
                                              interval '1 hour', 49),
                               _send_ring_since({MINUTES}, now(), interval '1 minute'),
                               _send_ring_since({HOURS}, now(), interval '1 hour'),
                               _sends_last_hour({MINUTES})
                          FROM device_pacing p""").fetchall())
    assert not any(f"{f}(" in plan for f in ("_send_ring_add", "_send_ring_since", "_sends_last_hour")), plan


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


def buckets(db, sends, devices, unit):
    """The send record by the minute or the hour as the upgrades read it (the tables are gone)."""
    table = {"minute": "device_send_minutes", "hour": "device_send_hours"}[unit]
    db.execute(f"CREATE TEMP TABLE {table} (device_id bigint, {unit} timestamptz, sends integer) ON COMMIT DROP")
    for device, (ago, k) in ((d, s) for d, ds in zip(devices, sends) for s in ds):
        db.execute(f"INSERT INTO {table} VALUES (%s, date_trunc('{unit}', now() - make_interval(mins => %s), 'UTC'), %s)",
                   [device, ago, k])


def upgrade_keeps_the_windows(db, migration, windows, reset, unit, sends_by_device, last):
    uid = make_user(db)
    devices = [make_device(db, uid) for _ in sends_by_device]
    for device, sends in zip(devices, sends_by_device):
        for ago, k in sends:
            record_sends(db, device, k, ago)
    want = db.execute(windows, [devices]).fetchall()
    buckets(db, sends_by_device, devices, unit)
    db.execute(f"UPDATE device_pacing SET {reset} WHERE device_id = ANY (%s)", [devices])
    text = (MIGRATIONS / migration).read_text()
    statement = text[text.rindex("UPDATE device_pacing"):]
    db.execute(statement[:statement.index("DROP TABLE")] if "DROP TABLE" in statement else statement)
    assert db.execute(windows, [devices]).fetchall() == want
    assert [w["sends"][-1] for w in want] == last


def test_the_upgrade_fills_the_minute_ring_from_the_minutes(db):
    """Migration 2138's backfill (its last statement, run again here over the minutes it read) makes
    the ring the claims would have."""
    # none at the hour's edge: the minute may turn between the record and the backfill
    upgrade_keeps_the_windows(
        db, "2138_device_send_ring.sql",
        f"""SELECT p.device_id, array_agg(_send_ring_since({MINUTES}, date_trunc('minute', now()) - make_interval(mins => k),
                                                        interval '1 minute') ORDER BY k) AS sends
              FROM device_pacing p, generate_series(0, 59) k WHERE p.device_id = ANY (%s) GROUP BY 1 ORDER BY 1""",
        "sends_total = 0, sends_minute = NULL, sends_before = '{}'", "minute",
        [[(0, 2), (5, 1), (58, 3), (75, 9)], [(20, 5)], []], [2 + 1 + 3, 5, 0])


def test_the_upgrade_fills_the_hour_ring_from_the_hour_buckets(db):
    """Migration 2139's backfill (run again here over the hour buckets it read) makes the hour ring the
    claims would have."""
    upgrade_keeps_the_windows(
        db, "2139_device_send_hour_ring.sql",
        f"""SELECT p.device_id, array_agg(_send_ring_since({HOURS}, date_trunc('hour', now(), 'UTC') - make_interval(hours => k),
                                                        interval '1 hour') ORDER BY k) AS sends
              FROM device_pacing p, generate_series(0, 48) k WHERE p.device_id = ANY (%s) GROUP BY 1 ORDER BY 1""",
        "sends_hour = NULL, sends_before_hours = '{}'", "hour",
        [[(0, 2), (50, 1), (130, 3), (47 * 60, 9), (49 * 60 + 5, 4), (70 * 60, 6)], [(20 * 60, 5)], []],
        [2 + 1 + 3 + 9, 5, 0])


def test_two_days_of_sends_count_in_the_load_and_the_health_bands(db):
    devices_n = 20
    uid = make_user(db, timezone="Asia/Kathmandu")           # a midnight at a quarter past the hour
    devices = [make_device(db, uid) for _ in range(devices_n)]
    record_minutely_sends(db, devices, "now() - interval '49 hours'", 49 * 60)
    load = db.execute("SELECT * FROM device_load(ARRAY[%s]::bigint[])", [uid]).fetchall()
    bands = db.execute("SELECT * FROM device_health_distribution(%s)", [uid]).fetchall()
    today = db.execute("""SELECT floor(extract(epoch FROM date_trunc('minute', now())
                                       - date_trunc('day', now() AT TIME ZONE 'Asia/Kathmandu') AT TIME ZONE 'Asia/Kathmandu')
                                 / 60)::int + 1 AS n""").fetchone()["n"]
    assert {(r["messages_hour"], r["messages_today"]) for r in load} == {(61, today)}
    # 2,881 sends in 48 h and nobody wrote back: 10 points off each (a new device, nothing else against it)
    assert {b["band"]: b["devices"] for b in bands} == {"0-24": 0, "25-49": 0, "50-74": 0, "75-100": devices_n}
    scores = db.execute("SELECT DISTINCT health_score FROM device_health WHERE user_id = %s", [uid]).fetchall()
    assert [r["health_score"] for r in scores] == [90]
