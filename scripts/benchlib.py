"""What the benchmarks share: a scratch database made through the one apply path (never the main
one), the floor table every ratio is measured against, connections, progress lines on stderr, and
stopping a sender pool they started."""
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

from common.db import database_name, with_database
from scripts import apply, embedded


def connect(url):
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def create_scratch_database(base_url, name):
    """A fresh database `name` on the same server, applied like production; returns its URL."""
    drop_scratch_database(base_url, name)
    with psycopg.connect(base_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = with_database(base_url, name)
    apply.apply(url)
    return url


def drop_scratch_database(base_url, name):
    with psycopg.connect(base_url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


FLOOR = "bench_floor"


def create_floor_table(c):
    """The machine's floor: a plain table with broadcast_messages' columns, a primary key and one
    partial index (the claim's due index), no triggers, no foreign keys, no partitions. Every
    benchmark times the same work against it in the same run and prints ratio= floor/ours."""
    c.execute(f"DROP TABLE IF EXISTS {FLOOR}")
    c.execute(f"CREATE TABLE {FLOOR} (LIKE broadcast_messages INCLUDING DEFAULTS INCLUDING IDENTITY)")
    c.execute(f"ALTER TABLE {FLOOR} ADD PRIMARY KEY (id)")
    c.execute(f"CREATE INDEX {FLOOR}_due ON {FLOOR} (device_id, scheduled_at, id) WHERE status = 'pending' AND NOT held")
    return FLOOR


def count_settled_rows(c, after_id=0):
    """Adds the settled messages written straight into the history (ids above after_id) to the rollups
    their completions would have kept (the triggers count moves into sent and failed, not inserts):
    sent and failed per owner and quarter hour (message_outcome_counts), and each campaign's counts
    per device (campaign_counts). Without them the pages a benchmark times read empty rollups."""
    c.execute("""
        WITH settled AS (
          SELECT user_id, campaign_id, coalesce(device_id, 0) AS device_id, status, coalesce(sent_at, failed_at) AS at
            FROM message_history WHERE id > %s AND status IN ('sent', 'failed')
        ), outcomes AS (
          INSERT INTO message_outcome_counts AS o (user_id, bucket, shard, sent, failed)
          -- the quarter hour _message_outcome_bucket files them under (Python calls no internal function)
          SELECT user_id, date_bin('15 minutes', at, timestamptz '2000-01-01 00:00+00'), 0,
                 count(*) FILTER (WHERE status = 'sent'),
                 count(*) FILTER (WHERE status = 'failed')
            FROM settled GROUP BY 1, 2
          ON CONFLICT (user_id, bucket, shard) DO UPDATE SET sent = o.sent + excluded.sent,
                                                            failed = o.failed + excluded.failed
        )
        INSERT INTO campaign_counts AS k (campaign_id, device_id, shard, assigned, current, sent, failed, live_or_sent)
        SELECT campaign_id, device_id, 0, count(*), count(*), count(*) FILTER (WHERE status = 'sent'),
               count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'sent')
          FROM settled WHERE campaign_id IS NOT NULL GROUP BY 1, 2
        ON CONFLICT (campaign_id, device_id, shard) DO UPDATE
           SET assigned = k.assigned + excluded.assigned, current = k.current + excluded.current,
               sent = k.sent + excluded.sent, failed = k.failed + excluded.failed,
               live_or_sent = k.live_or_sent + excluded.live_or_sent""", [after_id])


def checkpoint(url):
    """Writes back what the phases before left dirty, so a timed phase does not pay for the one
    before it, and phases compared with each other start from the same state. CHECKPOINT needs the
    embedded cluster's superuser (the application role is deliberately not one); on another server
    the phase runs without it, said on stderr."""
    try:
        with psycopg.connect(embedded.superuser_conninfo(database_name(url)), autocommit=True) as c:
            c.execute("CHECKPOINT")
    except psycopg.Error as exc:
        print(f"(no CHECKPOINT before this phase: {str(exc).strip().splitlines()[0]})", file=sys.stderr, flush=True)


def campaign_tick(url, chunk=50_000, max_seconds=3600):
    """Runs the campaign tick as the scheduled jobs do (app_jobs): run_campaigns beside a helper
    (expand_campaigns) for each fan-out lane past the first, each on its own connection, until all
    have ended."""
    with connect(url) as c:
        lanes = int(c.execute("SELECT setting('campaign_fanout_lanes') AS n").fetchone()["n"])
    commands = ["CALL run_campaigns(%s, %s)"] + ["CALL expand_campaigns(%s, %s)"] * (lanes - 1)
    errors = []

    def run(command):
        try:
            with connect(url) as c:
                c.execute(command, [max_seconds, chunk])
        except Exception as exc:  # raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(command,)) for command in commands]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def log(t0, what):
    print(f"[{time.perf_counter() - t0:6.1f}s] {what}", file=sys.stderr, flush=True)


def stop_pool(pool, grace=60):
    """SIGTERM (the pool drains), then kill if it outlives the grace period."""
    if pool and pool.poll() is None:
        pool.send_signal(signal.SIGTERM)
        try:
            pool.wait(grace)
        except subprocess.TimeoutExpired:
            pool.kill()


def proc_status(pid, field):
    """A number field of /proc/<pid>/status (VmRSS in kB, Threads, ...); 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid):
    """The live child processes of pid, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out
