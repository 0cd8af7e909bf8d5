"""Monitoring benchmark: an owner's per-device figures at fleet scale against a plain table's read.

    flock /tmp/bench.lock .venv/bin/python -m scripts.bench_monitor [--quick]

On a database of its own (created through scripts.apply, dropped at the end): one owner with DEVICES
online devices (3,000 either way: the fleet-wide figures' cost follows the devices) that each sent a
message every minute for HOURS hours (48; quick: 2), recorded as the claim records them (on each pacing
row: its minute and hour rings, its day's count since the owner's midnight), and a few messages of
each device in flight (claimed, not completed). Then, RUNS calls each (p50, p99; the first call counted):
- the monitoring page's queries, refetched every 2 s of an open page while a campaign sends: its page
  of devices (device_search, as many as the page shows), their queue figures (monitor_queue_depth) and their device table
  (monitor_device_load);
- the same two for the whole fleet (an API client asking for every device, 500 a page, asks a sixth);
- device_load for all of them (the sequence tick's and AI campaigns' device choices);
- the overview's health bands (device_health_distribution: two days of sends a device).
The floor: the whole device table's rows, already computed, read from a plain table with its columns
and a primary key. The queries take turns call by call, so each is measured in the same moments as the
floor. Prints, last, `ratio=<floor p50 / monitor_device_load p50 (whole fleet)> ...`.
"""
import argparse
import time

from common.config import require_database_url
from scripts.bench_dispatch import setup_devices
from scripts.benchlib import connect, create_scratch_database, drop_scratch_database, log
from tests.factories import record_minutely_sends
from web.devices import PER_PAGE as PAGE   # the devices a page of the monitoring page shows

BENCH_DB = "wa_bench_monitor"
DEVICES = 3000
IN_FLIGHT = 2   # per device


def record_sends(c, user_id, hours):
    """A send a minute on every device of the owner for `hours` hours up to the last minute, recorded
    on the pacing rows as those claims would have left them."""
    devices = [r["id"] for r in c.execute("SELECT id FROM user_devices WHERE user_id = %s", [user_id])]
    record_minutely_sends(c, devices, f"now() - interval '{hours} hours'", hours * 60 - 1)
    c.execute("VACUUM ANALYZE device_pacing")


def put_in_flight(c, user_id, device_ids):
    """IN_FLIGHT messages of each device claimed by one sender and not completed. Written straight into
    the table, around the writer that counts them, then counted into the rollup the queue figures read
    as an apply does (before, the figures read an empty rollup: every device 2 messages short, and a
    refresh of all 3,000 ~3 ms cheaper in the database than on a real fleet)."""
    c.execute("SELECT register_sender('bench', 'bench', 1, %s)", [len(device_ids)])
    c.execute("""INSERT INTO device_leases (device_id, sender_id, acquired_at, expires_at)
                 SELECT d, 'bench', now(), now() + interval '1 day' FROM unnest(%s::bigint[]) d""", [device_ids])
    c.execute("""INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
                 SELECT %s, d, '6013' || lpad((d * 10 + g)::text, 9, '0'), 'hello'
                   FROM unnest(%s::bigint[]) d, generate_series(1, %s) g""", [user_id, device_ids, IN_FLIGHT])
    c.execute("SELECT recount_device_queue()")
    claimed = 0
    while n := len(c.execute("SELECT id FROM claim_messages('bench', 5000, 1)").fetchall()):
        claimed += n
    off = c.execute("""SELECT count(*) AS n FROM monitor_queue_depth(%s)
                        WHERE due_now <> 0 OR scheduled_later <> 0 OR in_flight <> %s""",
                    [user_id, IN_FLIGHT]).fetchone()["n"]
    if claimed != IN_FLIGHT * len(device_ids) or off:
        raise SystemExit(f"bench: {claimed:,} claimed, the queue figures of {off:,} devices off: not the state to measure")
    return claimed


def timed_together(c, queries, runs):
    """Each query (name: (sql, args, prepare), prepare as psycopg takes it) called `runs` times, the queries
    taking turns call by call (the machine's speed moves between seconds: the floor and the pages measured
    in the same moments); per query (p50, p99, first call) in ms."""
    ms = {name: [] for name in queries}
    for _ in range(runs):
        for name, (sql, args, prepare) in queries.items():
            t = time.perf_counter()
            c.execute(sql, args, prepare=prepare).fetchall()
            ms[name].append((time.perf_counter() - t) * 1000)
    figures = {}
    for name, calls in ms.items():
        first = calls[0]
        calls.sort()
        figures[name] = calls[runs // 2], calls[min(runs - 1, int(runs * 0.99))], first
    return figures


def floor_table(c, user_id):
    """The device table's rows, computed once, in a plain table with its columns and a primary key."""
    c.execute("DROP TABLE IF EXISTS bench_monitor_floor")
    c.execute("CREATE TABLE bench_monitor_floor AS SELECT * FROM monitor_device_load(%s)", [user_id])
    c.execute("ALTER TABLE bench_monitor_floor ADD PRIMARY KEY (device_id)")
    c.execute("VACUUM ANALYZE bench_monitor_floor")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two hours of sends, under 60 s")
    args = parser.parse_args()
    hours, runs = (2, 40) if args.quick else (48, 100)
    started = time.perf_counter()
    base = require_database_url()
    url = create_scratch_database(base, BENCH_DB)
    log(started, "database created")
    try:
        with connect(url) as c:
            user_id = c.execute("SELECT create_user('bench@example.com', 'Bench', %s) AS id",
                                ["$argon2id$v=19$m=65536,t=3,p=4$bench$bench"]).fetchone()["id"]
            device_ids = setup_devices(c, user_id, DEVICES, "fleet")
            c.execute("UPDATE user_devices SET status = 'online' WHERE user_id = %s", [user_id])
            record_sends(c, user_id, hours)
            log(started, f"{DEVICES:,} devices with {hours} h of a send a minute recorded")
            in_flight = put_in_flight(c, user_id, device_ids)
            log(started, f"{in_flight:,} messages in flight")
            floor_table(c, user_id)
            page = [r["device_id"] for r in c.execute(
                "SELECT device_id FROM device_search(%s, NULL, NULL, 'name', false, %s, 0)", [user_id, PAGE])]
            mine, on_page = [user_id], [user_id, page]
            figures = timed_together(c, {   # the page's two as web.pages runs them: planned for the page
                "page: device_search": (f"SELECT device_id, total FROM device_search(%s, NULL, NULL, 'name', false, {PAGE}, 0)",
                                        mine, None),
                "page: monitor_queue_depth": ("SELECT * FROM monitor_queue_depth(%s, %s::bigint[])", on_page, False),
                "page: monitor_device_load": ("SELECT * FROM monitor_device_load(%s, %s::bigint[])", on_page, False),
                "monitor_device_load": ("SELECT * FROM monitor_device_load(%s)", mine, None),
                "monitor_queue_depth": ("SELECT * FROM monitor_queue_depth(%s)", mine, None),
                "device_load": ("SELECT * FROM device_load(ARRAY[%s]::bigint[])", mine, None),
                "device_health_distribution": ("SELECT * FROM device_health_distribution(%s)", mine, None),
                "floor": ("SELECT * FROM bench_monitor_floor WHERE %s > 0 ORDER BY device_id", mine, None)}, runs)
            for name, (p50, p99, first) in figures.items():
                print(f"  {name}: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({runs} calls, the first {first:.1f} ms)")
            sample = c.execute("""SELECT min(messages_hour) AS lo, max(messages_hour) AS hi, max(messages_today) AS today,
                                         sum(processing_now) AS flying FROM device_load(ARRAY[%s]::bigint[])""",
                               [user_id]).fetchone()
            print(f"  (each device: {sample['lo']}-{sample['hi']} sends in the trailing hour, up to {sample['today']} "
                  f"today, {sample['flying']:,} in flight in all)")
        table = figures["monitor_device_load"]
        page_p99 = max(figures[name][1] for name in figures if name.startswith("page: "))
        print(f"ratio={figures['floor'][0] / table[0]:.2f} monitor_device_load_p50_ms={table[0]:.1f} "
              f"monitor_device_load_p99_ms={table[1]:.1f} page_worst_p99_ms={page_p99:.1f} "
              f"device_load_p99_ms={figures['device_load'][1]:.1f} "
              f"health_bands_p99_ms={figures['device_health_distribution'][1]:.1f} "
              f"floor_p50_ms={figures['floor'][0]:.2f} devices={DEVICES} hours={hours}")
    finally:
        drop_scratch_database(base, BENCH_DB)


if __name__ == "__main__":
    main()
