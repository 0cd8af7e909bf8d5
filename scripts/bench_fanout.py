"""Campaign fan-out benchmark: expanding a campaign against the machine's floor (the same rows by one
INSERT ... SELECT into a plain table), measured in the same run, while senders keep sending.

    flock /tmp/bench.lock .venv/bin/python -m scripts.bench_fanout [--quick]

On a database of its own (created, applied through scripts.apply, dropped at the end):
1. the campaign owner's LEADS leads on DEVICES devices (logged out, so no sender leases them and the
   queued rows stay put), and a sender pool (simulated transport, zero latency) draining a backlog
   on SENDER_DEVICES devices of another owner;
2. floor: one INSERT ... SELECT of the same rows (user, device, campaign, lead, phone, name, content,
   delays, schedule) from leads into the floor table (benchlib.create_floor_table: same columns,
   primary key and one partial index, no triggers);
3. fan-out: the campaign tick as the scheduled jobs run it (benchlib.campaign_tick: run_campaigns
   beside a helper per further fan-out lane, a connection each): trigger, chunked expansion with a
   commit per chunk, audience tokens, opt-outs, rendering, the one-message-per-phone guards;
4. sender throughput before (baseline) and while each of 2 and 3 runs.
Each timed phase starts from a CHECKPOINT (benchlib.checkpoint).
Prints its figures and, last, `ratio=<floor_s/fanout_s> ...` (1.0 = as fast as the machine's floor).
"""
import argparse
import shutil
import tempfile
import time

from common.config import require_database_url
from scripts.benchlib import (campaign_tick, checkpoint, connect, create_floor_table, create_scratch_database,
                              drop_scratch_database, log, stop_pool)
from scripts.bench_dispatch import pool_ready, setup_devices, start_pool, wait_for

BENCH_DB = "wa_bench_fanout"
CHUNK = 50_000
BASELINE_SECONDS = 5


def make_owner(c, email):
    return c.execute("SELECT create_user(%s, 'Bench', %s) AS id",
                     [email, "$argon2id$v=19$m=65536,t=3,p=4$bench$bench"]).fetchone()["id"]


def make_logged_out_devices(c, user_id, n):
    """The campaign owner's devices: logged out, so no sender leases them and their queue stays put."""
    return [r["id"] for r in c.execute("""
        INSERT INTO user_devices (user_id, device_name, phone, status)
        SELECT %s, 'fan' || g, '6018' || lpad(g::text, 8, '0'), 'logged_out'
          FROM generate_series(1, %s) g RETURNING id""", [user_id, n])]


def make_leads(c, user_id, device_ids, n):
    """n leads spread over the devices, a niche on every other one, and 1% of them opted out."""
    c.execute("""
        INSERT INTO leads (user_id, device_id, name, phone, niche, target_status)
        SELECT %s, d.ids[1 + g %% cardinality(d.ids)], 'Lead ' || g, (60120000000 + g)::text,
               CASE WHEN g %% 2 = 0 THEN 'fitness, gym' ELSE 'beauty' END,
               CASE WHEN g %% 3 = 0 THEN 'customer' ELSE 'prospect' END
          FROM generate_series(1, %s) g, (SELECT %s::bigint[] AS ids) d""", [user_id, n, device_ids])
    c.execute("INSERT INTO opt_outs (user_id, phone) SELECT %s, (60120000000 + g)::text "
              "FROM generate_series(100, %s, 100) g", [user_id, n])


def make_campaign(c, user_id, title, days_ahead):
    return c.execute("""SELECT create_campaign(%s, 'broadcast', %s, '', 'all', 'Hello {name}, our offer is on.', NULL,
                                               NULL, NULL, current_date + %s, '09:00', 30, 60) AS id""",
                     [user_id, title, days_ahead]).fetchone()["id"]


def queue_backlog(c, user_id, device_ids, n):
    c.execute("""
        INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content)
        SELECT %s, d.ids[1 + g %% cardinality(d.ids)], '6013' || lpad(g::text, 9, '0'), 'backlog ' || g
          FROM generate_series(1, %s) g, (SELECT %s::bigint[] AS ids) d""", [user_id, n, device_ids])


def sent_count(c, user_id):
    return c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE user_id = %s AND status = 'sent'",
                     [user_id]).fetchone()["n"]


def timed(monitor, sender_owner, fn):
    """Runs fn; returns (seconds, sender messages per second meanwhile)."""
    before = sent_count(monitor, sender_owner)
    t0 = time.perf_counter()
    fn()
    elapsed = time.perf_counter() - t0
    return elapsed, (sent_count(monitor, sender_owner) - before) / elapsed


def floor_insert(c, table, user_id, campaign_id):
    # The same rows the fan-out writes, without its logic, into the plain floor table.
    c.execute(f"""
        INSERT INTO {table} (user_id, device_id, campaign_id, lead_id, recipient_phone, recipient_name,
                                        content, min_delay_seconds, max_delay_seconds, scheduled_at)
        SELECT l.user_id, l.device_id, %s, l.id, l.phone, l.name, 'Hello ' || l.name || ', our offer is on.',
               30, 60, now()
          FROM leads l WHERE l.user_id = %s""", [campaign_id, user_id])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, under 60 s")
    args = parser.parse_args()
    leads, devices, sender_devices, backlog = ((150_000, 300, 50, 300_000) if args.quick
                                               else (1_000_000, 3000, 100, 600_000))
    started = time.perf_counter()
    base = require_database_url()
    url = create_scratch_database(base, BENCH_DB)
    log(started, "database created")
    store_dir = tempfile.mkdtemp(prefix="bench-fanout-simnet-")
    pool = None
    try:
        with connect(url) as c, connect(url) as monitor:
            owner = make_owner(c, "fanout@example.com")
            sender_owner = make_owner(c, "senders@example.com")
            owner_devices = make_logged_out_devices(c, owner, devices)
            busy_devices = setup_devices(c, sender_owner, sender_devices, "busy")   # paired (jid), no caps
            make_leads(c, owner, owner_devices, leads)
            c.execute("VACUUM ANALYZE")
            log(started, f"{leads:,} leads on {devices} devices")

            pool = start_pool(url, store_dir)
            wait_for(lambda: pool_ready(monitor, sender_devices), 120, "the sender pool to lease its devices")
            queue_backlog(c, sender_owner, busy_devices, backlog)
            time.sleep(1)
            _, baseline = timed(monitor, sender_owner, lambda: time.sleep(BASELINE_SECONDS))
            log(started, "senders at speed")

            # Enough backlog that the senders cannot run dry during a phase (inserts run >= 15k rows/s).
            per_phase = int(baseline * max(10, leads / 15_000))
            queue_backlog(c, sender_owner, busy_devices, per_phase)
            floor = create_floor_table(c)
            floor_campaign = make_campaign(c, owner, "floor", 365)   # never due: only a campaign_id for its rows
            checkpoint(url)
            floor_s, floor_rate = timed(monitor, sender_owner, lambda: floor_insert(c, floor, owner, floor_campaign))
            c.execute(f"DROP TABLE {floor}")
            log(started, "floor measured")

            queue_backlog(c, sender_owner, busy_devices, per_phase)
            campaign = make_campaign(c, owner, "fan-out", -1)
            lanes = int(c.execute("SELECT setting('campaign_fanout_lanes') AS n").fetchone()["n"])
            checkpoint(url)
            fan_s, fan_rate = timed(monitor, sender_owner, lambda: campaign_tick(url, CHUNK))
            log(started, "fan-out measured")
            state = c.execute("SELECT status, expanded_at IS NOT NULL AS expanded FROM campaigns WHERE id = %s",
                              [campaign]).fetchone()
            queued = c.execute("""SELECT count(*) AS n, count(DISTINCT recipient_phone) AS phones
                                    FROM broadcast_messages WHERE campaign_id = %s""", [campaign]).fetchone()
            expected = leads - leads // 100
            left = c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE user_id = %s AND status = 'pending'",
                             [sender_owner]).fetchone()["n"]

        print(f"floor (plain table, INSERT ... SELECT): {leads:,} rows in {floor_s:.2f} s ({leads / floor_s:,.0f} rows/s)")
        print(f"fan-out (the campaign tick and its helpers: {lanes} lanes side by side, chunks of {CHUNK:,}): "
              f"{queued['n']:,} messages in {fan_s:.2f} s "
              f"({queued['n'] / fan_s:,.0f} rows/s); status {state['status']}, expanded={state['expanded']}, "
              f"distinct phones {queued['phones']:,}, expected {expected:,} (1% opted out)")
        print(f"senders ({sender_devices} devices, simulated, zero latency): baseline {baseline:,.0f} msgs/s; "
              f"during floor insert {floor_rate:,.0f} msgs/s ({floor_rate / baseline:.0%}); "
              f"during fan-out {fan_rate:,.0f} msgs/s ({fan_rate / baseline:.0%}); backlog left {left:,}")
        if left == 0:
            print("warning: the sender backlog ran dry; throughput during the runs is understated")
        if queued["n"] != expected or queued["phones"] != expected:
            raise SystemExit(f"bench: fan-out queued {queued['n']} rows for {queued['phones']} phones, expected {expected}")
        print(f"ratio={floor_s / fan_s:.2f} fanout_s={fan_s:.2f} floor_s={floor_s:.2f} rows={queued['n']} "
              f"devices={devices} lanes={lanes} senders_during_fanout={fan_rate / baseline:.2f} sender_baseline_per_s={baseline:.0f}")
    finally:
        stop_pool(pool)
        shutil.rmtree(store_dir, ignore_errors=True)
        drop_scratch_database(base, BENCH_DB)


if __name__ == "__main__":
    main()
