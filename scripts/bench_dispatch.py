"""Dispatch benchmark: the sender pool against the machine's floor, measured in the same run.

    flock /tmp/bench.lock .venv/bin/python -m scripts.bench_dispatch [--quick]

On a database of its own (created, applied through scripts.apply, dropped at the end):
1. floor: the same claim-and-mark as a raw SQL loop (claim 100 pending rows with SKIP LOCKED through
   the table's index, then mark them sent: two transactions), in as many processes as the pool has
   workers, on the floor table (benchlib.create_floor_table: same columns, primary key and one
   partial index, no triggers); the same loop on broadcast_messages is printed beside it; the floor is measured
   again after the pool's run (its rows vacuumed first) and the ratio taken against the mean of
   the two; each timed phase starts from a CHECKPOINT; with MESSAGES waiting on broadcast_messages
   (before its loop), the overview's and the monitoring page's queue figures are timed (p50, p99);
2. dispatch: `python -m sender` (SENDER_PROCESSES workers, simulated transport with zero latency,
   no receipts) on DEVICES devices with caps that do not bind, MESSAGES messages of a running campaign
   (running_campaign) due now;
   every delivery is counted in the simulated network's store: 0 duplicates, 0 lost;
3. caps binding: devices with hourly_limit CAP that already sent part of it 30 minutes ago;
   reports the highest count any device sent in any rolling 60 minutes;
4. idle NOTIFY-to-send latency: single inserts into an idle pool, commit to the network's record
   (the pool's first sends after its start, which compile and plan its functions, reported apart);
5. memory: peak RSS of each worker process.
Prints its figures and, last, `ratio=<dispatch/floor> msgs_per_s=<dispatch> ...`.
"""
import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from collections import defaultdict

import psycopg

from common.config import ROOT, require_database_url
from scripts.benchlib import checkpoint, connect, create_floor_table, create_scratch_database, drop_scratch_database, log, stop_pool
from sender.transport.sim import SimNetwork
from tests.factories import record_sends

BENCH_DB = "wa_bench_dispatch"
WORKERS = 2
CAP = 20
WARM_UP_PROBES = 10


def setup_devices(c, user_id, n, label, hourly_limit=1_000_000, daily_limit=1_000_000):
    return [r["id"] for r in c.execute("""
        INSERT INTO user_devices (user_id, device_name, phone, jid, status, min_delay_seconds, max_delay_seconds,
                                  hourly_limit, daily_limit)
        SELECT %s, %s || g, '6019' || lpad(g::text, 8, '0'), %s || g, 'offline', 0, 0, %s, %s
          FROM generate_series(1, %s) g RETURNING id""",
                                       [user_id, label, f"bench-{label}-", hourly_limit, daily_limit, n])]


def running_campaign(c, user_id):
    """The owner's running broadcast the benchmark's messages belong to. A fleet sends campaign and
    sequence messages: their live rows carry the one-per-phone (or per-step) guard's unique index, which
    every claim rewrites, and their completions keep the campaign's counts -- a fifth fewer messages a
    second than messages of no campaign (6 December: 10.3-10.7k against 13.1-13.6k msgs/s)."""
    row = c.execute("SELECT id FROM campaigns WHERE user_id = %s AND title = 'bench: running'", [user_id]).fetchone()
    if row:
        return row["id"]
    campaign = c.execute("""SELECT create_campaign(%s, 'broadcast', 'bench: running', '', 'all', 'Hello', NULL, NULL,
                                                   NULL, current_date + 365, '09:00', 0, 0) AS id""",
                         [user_id]).fetchone()["id"]
    # Its rows are written here rather than by a fan-out of leads: marked triggered and expanded.
    c.execute("""UPDATE campaigns SET status = 'processing', triggered_at = now(), expanded_at = now()
                  WHERE id = %s""", [campaign])
    return campaign


def queue_messages(c, user_id, device_ids, total, table="broadcast_messages", first=1):
    """`total` messages of the owner's running campaign due now, to numbers counted from `first`, spread
    evenly over the devices, in one statement (one NOTIFY), the queue's statistics refreshed before the
    commit as _enqueue_messages does for every batch."""
    campaign = running_campaign(c, user_id)
    with c.transaction():
        c.execute(f"""
            INSERT INTO {table} (user_id, device_id, campaign_id, recipient_phone, content)
            SELECT %s, d.ids[1 + g %% cardinality(d.ids)], %s, '6012' || lpad(g::text, 9, '0'), 'Hello lead ' || g
              FROM generate_series(%s::int, %s::int) g, (SELECT %s::bigint[] AS ids) d""",
                  [user_id, campaign, first, first + total - 1, device_ids])
        c.execute("SELECT refresh_queue_stats(%s)", [total])


def raw_worker(url, done, table):
    with psycopg.connect(url, autocommit=True) as c:
        # The floor is the plain table at its best: its claim reads its one index. Left to the
        # planner, each claim scanned the heap from its start, over every row already sent, and the
        # loop collapsed as the table grew (1M rows: 7,600 rows/s against 40,500-43,100 by the index;
        # 100k: the same either way), which made any ratio against it meaningless.
        c.execute("SET enable_seqscan = off")
        while True:
            try:
                ids = [r[0] for r in c.execute(f"""
                    UPDATE {table} SET status = 'queued', claimed_at = now(), claimed_by = 'raw'
                     WHERE id IN (SELECT id FROM {table}
                                   WHERE status = 'pending' AND NOT held AND scheduled_at <= now()
                                   LIMIT 100 FOR UPDATE SKIP LOCKED)
                    RETURNING id""")]
            except psycopg.errors.SerializationFailure:
                continue   # a row the other worker just settled moved partitions under the lock
            if not ids:
                break
            c.execute(f"UPDATE {table} SET status = 'sent', sent_at = now(), wa_message_id = 'raw' "
                      "WHERE id = ANY(%s) AND status = 'queued'", [ids])
            done.value += len(ids)


def measure_raw(url, user_id, device_ids, total, floor=False, probe=None):
    """Rows per second of the raw loop, on the floor table or (floor=False) on broadcast_messages;
    probe(c), if given, runs once the rows wait, before the loop."""
    checkpoint(url)
    with connect(url) as c:
        table = create_floor_table(c) if floor else "broadcast_messages"
        queue_messages(c, user_id, device_ids, total, table)
        c.execute(f"VACUUM ANALYZE {table}")
        if probe:
            probe(c)
    done = multiprocessing.Value("q", 0, lock=False)
    procs = [multiprocessing.Process(target=raw_worker, args=(url, done, table)) for _ in range(WORKERS)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    with connect(url) as c:
        sent = c.execute(f"SELECT count(*) AS n FROM {table} WHERE status = 'sent'").fetchone()["n"]
        c.execute(f"DROP TABLE {table}" if floor else "TRUNCATE broadcast_messages CASCADE")
        c.execute("SELECT recount_device_queue()")   # the truncated rows out of it
    assert sent == total, f"raw loop sent {sent} of {total}"
    return total / elapsed


def print_queue_figures_ms(c, user_id, waiting, runs=20):
    """The overview's and the monitoring page's queue figures for an owner with `waiting` messages
    waiting (each page refetches them on a campaign's events, every 1.5 and 2 s): p50 and p99 ms.
    The rows are written straight in (queue_messages), around the writer that counts them: counted
    into the pages' rollup (device_queue_counts) first, as an apply does."""
    c.execute("SELECT recount_device_queue()")
    for name, sql in (("overview (dashboard_today)", "SELECT * FROM dashboard_today(%s)"),
                      ("monitoring, per device (monitor_queue_depth)", "SELECT * FROM monitor_queue_depth(%s)")):
        ms = []
        for _ in range(runs):
            t = time.perf_counter()
            c.execute(sql, [user_id]).fetchall()
            ms.append((time.perf_counter() - t) * 1000)
        ms.sort()
        print(f"  queue figures with {waiting:,} waiting, {name}: p50 {ms[runs // 2]:.1f} ms, "
              f"p99 {ms[min(runs - 1, int(runs * 0.99))]:.1f} ms ({runs} calls)")


def start_pool(url, store_dir):
    """The sender pool on the simulated network, its WhatsApp rules off: this measures the queue at
    zero latency and unbounded pace, which real WhatsApp would answer with timelocks and bans
    (the soak runs with the rules on)."""
    # The senders' own heartbeat (5 s): each one renews every lease its sender holds (1,550 here), and
    # at 1 s, as this ran before, the renewals sat beside the idle wake-ups it measures.
    env = dict(os.environ, DATABASE_URL=url, WA_TRANSPORT="sim", WA_SIM_DIR=str(store_dir), WA_SIM_RECEIPTS="0",
               WA_SIM_LATENCY_MS="0", WA_SIM_RULES="off", SENDER_PROCESSES=str(WORKERS),
               LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "sender"], env=env, cwd=ROOT)


def wait_for(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.2)


def pool_ready(c, n_devices):
    leases = c.execute("SELECT sender_id, count(*) AS n FROM device_leases GROUP BY 1").fetchall()
    online = c.execute("SELECT count(*) AS n FROM user_devices WHERE status = 'online'").fetchone()["n"]
    return (len(leases) == WORKERS and sum(r["n"] for r in leases) == n_devices
            and max(r["n"] for r in leases) - min(r["n"] for r in leases) <= 1 and online == n_devices)


def queue_drained(c):
    return c.execute("""SELECT NOT EXISTS (SELECT 1 FROM broadcast_messages WHERE status = 'pending' AND NOT held)
                           AND NOT EXISTS (SELECT 1 FROM broadcast_messages WHERE status = 'queued') AS done""").fetchone()["done"]


def measure_dispatch(c, url, user_id, device_ids, total, store_dir):
    c.execute("ANALYZE")
    before = c.execute("SELECT coalesce(max(id), 0) AS id FROM broadcast_messages").fetchone()["id"]
    checkpoint(url)
    t0 = time.perf_counter()
    queue_messages(c, user_id, device_ids, total)
    t_committed = time.perf_counter()
    while not queue_drained(c):
        time.sleep(0.25)
    elapsed = time.perf_counter() - t_committed
    statuses = {r["status"]: r["n"] for r in c.execute(
        "SELECT status, count(*) AS n FROM broadcast_messages WHERE id > %s GROUP BY 1", [before])}
    got = [r["message_id"] for r in SimNetwork.received(store_dir) if r["message_id"] > before]
    duplicates = len(got) - len(set(got))
    lost = total - statuses.get("sent", 0)
    return total / elapsed, elapsed, t_committed - t0, statuses, duplicates, lost, len(set(got))


def max_rolling_hour(times):
    """Highest number of sends inside any 60-minute window of a sorted list of epoch seconds."""
    best = 0
    for i, t in enumerate(times):
        best = max(best, i + 1 - bisect_left(times, t - 3600 + 1e-9, 0, i + 1))
    return best


def measure_caps(c, user_id, device_ids, per_device):
    """Each device already sent CAP-5 messages 30 minutes ago (recorded as a claim would);
    then per_device more are due now. No device may exceed CAP in any rolling hour."""
    earlier = CAP - 5
    c.execute("""
        WITH past AS (SELECT d, now() - interval '30 minutes' AS at FROM unnest(%s::bigint[]) d)
        INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, status, claimed_at,
                                        claimed_by, sent_at, scheduled_at)
        SELECT %s, past.d, '6013' || lpad((past.d * 100 + g)::text, 9, '0'), 'earlier', 'sent', past.at,
               'earlier', past.at, past.at
          FROM past, generate_series(1, %s) g""", [device_ids, user_id, earlier])
    for device in device_ids:
        record_sends(c, device, earlier, 30)
    queue_messages(c, user_id, device_ids, per_device * len(device_ids))
    expected = len(device_ids) * 5
    sent_now = lambda: c.execute("""SELECT count(*) AS n FROM broadcast_messages
                                     WHERE device_id = ANY(%s) AND status = 'sent' AND claimed_by <> 'earlier'""",
                                 [device_ids]).fetchone()["n"]
    wait_for(lambda: sent_now() >= expected, 60, "capped devices to fill their hour")
    time.sleep(3)   # more claim rounds: the caps must keep holding
    times = defaultdict(list)
    for r in c.execute("""SELECT device_id, extract(epoch FROM claimed_at)::float8 AS t FROM broadcast_messages
                           WHERE device_id = ANY(%s) AND claimed_at IS NOT NULL ORDER BY 2""", [device_ids]):
        times[r["device_id"]].append(r["t"])
    return max(max_rolling_hour(ts) for ts in times.values()), sent_now()


def measure_notify_latency(c, user_id, device_id, samples, store_dir):
    """Commit-to-network latency of single inserts into the idle pool, in ms (p50, p99)."""
    committed = {}
    campaign = running_campaign(c, user_id)
    for i in range(samples):
        mid = c.execute("""INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content)
                           VALUES (%s, %s, %s, '6014' || lpad(%s::text, 7, '0'), 'ping') RETURNING id""",
                        [user_id, device_id, campaign, i]).fetchone()["id"]
        committed[mid] = time.time()
        time.sleep(0.05)
    wait_for(lambda: c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE id = ANY(%s) AND status = 'sent'",
                               [list(committed)]).fetchone()["n"] == samples, 30, "latency probes sent")
    at = {r["message_id"]: r["at"] for r in SimNetwork.received(store_dir) if r["message_id"] in committed}
    lat = sorted((at[m] - committed[m]) * 1000 for m in committed)
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]


def worker_rss_mb(c):
    peaks = []
    for r in c.execute("SELECT pid FROM senders"):
        try:
            with open(f"/proc/{r['pid']}/status") as f:
                fields = dict(line.split(":", 1) for line in f)
            peaks.append(int(fields["VmHWM"].split()[0]) / 1024)
        except OSError:
            pass
    return peaks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, under 60 s")
    args = parser.parse_args()
    devices, messages = (300, 100_000) if args.quick else (3000, 1_000_000)
    capped_devices, latency_samples = (20, 200) if args.quick else (100, 400)

    started = time.perf_counter()
    base = require_database_url()
    url = create_scratch_database(base, BENCH_DB)
    log(started, "database created")
    store_dir = tempfile.mkdtemp(prefix="bench-simnet-")
    pool = None
    try:
        with connect(url) as c:
            user_id = c.execute("SELECT create_user('bench@example.com', 'Bench', %s) AS id",
                                ["$argon2id$v=19$m=65536,t=3,p=4$bench$bench"]).fetchone()["id"]
            device_ids = setup_devices(c, user_id, devices, "fast")
            capped_ids = setup_devices(c, user_id, capped_devices, "capped", hourly_limit=CAP)

        raw = measure_raw(url, user_id, device_ids, messages, floor=True)
        print(f"floor (raw SQL loop on a plain table): {raw:,.0f} rows/s ({WORKERS} processes, batch 100, "
              f"two transactions, {messages:,} rows)")
        ours = measure_raw(url, user_id, device_ids, messages,
                           probe=lambda c: print_queue_figures_ms(c, user_id, messages))
        print(f"  (the same loop on broadcast_messages: {ours:,.0f} rows/s, {ours / raw:.2f} of the floor)")
        log(started, "floor measured")

        pool = start_pool(url, store_dir)
        with connect(url) as c:
            wait_for(lambda: pool_ready(c, devices + capped_devices), 120, "the pool to lease and connect every device")
            log(started, "pool ready")
            # Idle first: the pool holds every device and nothing is queued (after the 1M burst the
            # server is still writing it back, which measures the disk, not the wake-up path).
            # A worker's first sends compile its PL/pgSQL functions and plan their statements (once
            # per process): reported apart, so the p99 is the idle wake-up, not a process start.
            _, cold = measure_notify_latency(c, user_id, device_ids[0], WARM_UP_PROBES, store_dir)
            p50, p99 = measure_notify_latency(c, user_id, device_ids[0], latency_samples, store_dir)
            print(f"idle NOTIFY-to-send latency: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({latency_samples} samples; "
                  f"the pool's first {WARM_UP_PROBES} sends after its start: worst {cold:.2f} ms)")
            log(started, "latency measured")
            rate, elapsed, insert_s, statuses, duplicates, lost, delivered = measure_dispatch(
                c, url, user_id, device_ids, messages, store_dir)
            print(f"dispatch: {rate:,.0f} msgs/s ({messages:,} messages on {devices} devices in {elapsed:.1f} s; "
                  f"queued in {insert_s:.1f} s; statuses {statuses})")
            print(f"network received {delivered:,} distinct messages; duplicates={duplicates} lost={lost}")

            log(started, "dispatch measured")
            worst, capped_sent = measure_caps(c, user_id, capped_ids, per_device=50)
            print(f"caps binding: {capped_devices} devices, hourly_limit {CAP} with {CAP - 5} sent 30 min earlier: "
                  f"{capped_sent} sent now; highest count in any rolling hour = {worst}")

            log(started, "caps measured")
            rss = worker_rss_mb(c)
            print(f"memory: peak RSS per worker process {', '.join(f'{m:.0f} MB' for m in rss)} "
                  f"({(devices + capped_devices) // WORKERS} devices each)")
        stop_pool(pool)
        pool = None
        # The machine's speed drifts over minutes (a shared disk): the floor is measured on both
        # sides of the pool's run and the ratio taken against their mean. The pool left its rows
        # to vacuum (1M in the history, as many dead in the queue): done first, or autovacuum does
        # it beside the second floor (3-5x slower than the first in two full runs).
        with connect(url) as c:
            c.execute("VACUUM")
        raw_after = measure_raw(url, user_id, device_ids, messages, floor=True)
        print(f"floor again after the pool: {raw_after:,.0f} rows/s (before: {raw:,.0f}); "
              f"the pool ran at {rate / raw:.2f} and {rate / raw_after:.2f} of them")
        raw = (raw + raw_after) / 2
        ratio = rate / raw
        print(f"ratio={ratio:.2f} msgs_per_s={rate:.0f} floor_per_s={raw:.0f} duplicates={duplicates} lost={lost} "
              f"max_rolling_hour={worst} cap={CAP} notify_p50_ms={p50:.2f} notify_p99_ms={p99:.2f} "
              f"rss_mb={max(rss):.0f}")
    finally:
        stop_pool(pool)
        shutil.rmtree(store_dir, ignore_errors=True)
        drop_scratch_database(base, BENCH_DB)


if __name__ == "__main__":
    main()
