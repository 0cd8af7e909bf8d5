"""Campaign fan-out benchmark: expanding a campaign against the machine's floor (the same rows by one
INSERT ... SELECT into a plain table), measured in the same run, quiet and while senders keep sending.

    flock /tmp/bench.lock .venv/bin/python -m scripts.bench_fanout [--quick]

On a database of its own (created, applied through scripts.apply, dropped at the end):
1. the campaign owner's LEADS leads on DEVICES devices (logged out, so no sender leases them and the
   queued rows stay put);
2. floor: one INSERT ... SELECT of the same rows (user, device, campaign, lead, phone, name, content,
   delays, schedule) from leads into the floor table (benchlib.create_floor_table: same columns,
   primary key and one partial index, no triggers);
3. fan-out: the campaign tick as the scheduled jobs run it (benchlib.campaign_tick: run_campaigns
   beside a helper per further fan-out lane, a connection each): trigger, chunked expansion with a
   commit per chunk, audience tokens, opt-outs, rendering, the one-message-per-phone guards; the
   campaign already sending (start_sending: one of its messages sent before the first chunk, as a
   broadcast bigger than a chunk is from its second on); checked (one message per phone, expanded)
   and deleted;
4. 2 and 3 again beside a sender pool (simulated transport, zero latency) draining a backlog on
   SENDER_DEVICES devices of another owner flat out, and the senders' throughput before (baseline)
   and during each.
Each timed phase starts from a CHECKPOINT (benchlib.checkpoint).
Prints its figures and, last, `ratio=<floor_s/fanout_s> ...` of the quiet phases (1.0 = as fast as
the machine's floor; 2 and 3 alternate QUIET_ROUNDS times there, the ratio of their medians), then the
same beside the senders (ratio_with_senders).
"""
import argparse
import shutil
import statistics
import tempfile
import time

from common.config import require_database_url
from scripts.benchlib import (campaign_tick, checkpoint, connect, create_floor_table, create_scratch_database,
                              drop_scratch_database, log, stop_pool)
from scripts.bench_dispatch import pool_ready, setup_devices, start_pool, wait_for

BENCH_DB = "wa_bench_fanout"
CHUNK = 50_000
BASELINE_SECONDS = 5
QUIET_ROUNDS = 3
PHONE_STRIDE = 7919   # a prime: g * stride mod n visits every number below n once


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
    """n leads spread over the devices, a niche on every other one, and 1% of them opted out. Their
    phone numbers follow no order of their ids, as leads imported from many lists do (a permutation of
    n numbers): numbered in id order, a lane reading its leads by phone read the table in its
    physical order, which no fleet's table offers."""
    assert n % PHONE_STRIDE != 0, "n must not be a multiple of the (prime) stride, or phones repeat"
    c.execute("""
        INSERT INTO leads (user_id, device_id, name, phone, niche, target_status)
        SELECT %s, d.ids[1 + g %% cardinality(d.ids)], 'Lead ' || g,
               (60120000001 + g::bigint * %s %% %s)::text,
               CASE WHEN g %% 2 = 0 THEN 'fitness, gym' ELSE 'beauty' END,
               CASE WHEN g %% 3 = 0 THEN 'customer' ELSE 'prospect' END
          FROM generate_series(1, %s) g, (SELECT %s::bigint[] AS ids) d""", [user_id, PHONE_STRIDE, n, n, device_ids])
    c.execute("INSERT INTO opt_outs (user_id, phone) SELECT %s, (60120000000 + g)::text "
              "FROM generate_series(100, %s, 100) g", [user_id, n])


def make_campaign(c, user_id, title, days_ahead):
    return c.execute("""SELECT create_campaign(%s, 'broadcast', %s, '', 'all', 'Hello {name}, our offer is on.', NULL,
                                               NULL, NULL, current_date + %s, '09:00', 30, 60) AS id""",
                     [user_id, title, days_ahead]).fetchone()["id"]


def start_sending(c, campaign):
    """What a broadcast bigger than a chunk meets from its second chunk on: its first messages sent
    (their devices send while the rest is queued). Here one message of it settled in this week's
    history before the first chunk, to a number none of the owner's leads has (any more): the
    fan-out leaves it alone and queues every lead (a lane's chunks never meet a phone twice and
    probe no sent row, queue_enqueue.sql), while what reads the campaign's sent rows reads one."""
    c.execute("""INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content,
                                                 status, claimed_at, claimed_by, sent_at, wa_message_id)
                 SELECT l.user_id, l.device_id, k.id, '60999999999', 'sent first', 'sent', now(), 'bench', now(),
                        'bench-first-' || k.id
                   FROM campaigns k JOIN leads l ON l.user_id = k.user_id
                  WHERE k.id = %s ORDER BY l.id LIMIT 1""", [campaign])


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


def time_it(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def measure_floor(c, url, owner, timer):
    """The floor's INSERT ... SELECT into a fresh floor table, from a CHECKPOINT; timer(fn) -> (s, extra)."""
    floor = create_floor_table(c)
    campaign = make_campaign(c, owner, "floor", 365)   # never due: only a campaign_id for its rows
    checkpoint(url)
    result = timer(lambda: floor_insert(c, floor, owner, campaign))
    c.execute(f"DROP TABLE {floor}")
    c.execute("DELETE FROM campaigns WHERE id = %s", [campaign])
    return result


def measure_fanout(c, url, owner, expected, timer):
    """A due campaign over all of the owner's leads through the campaign tick, sending (start_sending), from a
    CHECKPOINT; checks that it has one message per phone and ended expanded, then deletes it (its messages
    with it)."""
    campaign = make_campaign(c, owner, "fan-out", -1)
    start_sending(c, campaign)
    checkpoint(url)
    result = timer(lambda: campaign_tick(url, CHUNK))
    state = c.execute("SELECT status, expanded_at IS NOT NULL AS expanded FROM campaigns WHERE id = %s",
                      [campaign]).fetchone()
    queued = c.execute("""SELECT count(*) AS n, count(DISTINCT recipient_phone) AS phones
                            FROM broadcast_messages WHERE campaign_id = %s AND claimed_by IS DISTINCT FROM 'bench'""",
                       [campaign]).fetchone()
    if queued["n"] != expected or queued["phones"] != expected or not state["expanded"]:
        raise SystemExit(f"bench: fan-out queued {queued['n']} rows for {queued['phones']} phones, expected {expected}; "
                         f"status {state['status']}, expanded={state['expanded']}")
    c.execute("DELETE FROM campaigns WHERE id = %s", [campaign])
    c.execute("VACUUM ANALYZE message_queue")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, under 60 s")
    parser.add_argument("--lanes", type=int, help="campaign_fanout_lanes for this run (default: the setting's)")
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

            # Quiet: the fan-out and its floor on a machine doing nothing else (as a fan-out mostly finds
            # it: real senders wait seconds between sends). The ratio.
            if args.lanes:
                c.execute("UPDATE settings SET value = %s WHERE name = 'campaign_fanout_lanes'", [args.lanes])
            lanes = int(c.execute("SELECT setting('campaign_fanout_lanes') AS n").fetchone()["n"])
            expected = leads - leads // 100
            # The machine's speed moves between seconds (the floor alone: 0.67-1.15 s for the same rows in
            # four runs of one hour): floor and fan-out alternate, and the ratio is of their medians.
            quiet = lambda fn: (time_it(fn), None)
            quiet_floors, quiet_fans = [], []
            for _ in range(QUIET_ROUNDS):
                quiet_floors.append(measure_floor(c, url, owner, quiet)[0])
                quiet_fans.append(measure_fanout(c, url, owner, expected, quiet)[0])
            log(started, f"floor and fan-out measured {QUIET_ROUNDS} times, quiet")
            quiet_floor_s, quiet_s = statistics.median(quiet_floors), statistics.median(quiet_fans)

            # Busy: the same beside a sender pool sending flat out (simulated, zero latency) on another
            # owner's devices, the machine's cores shared: what each costs the senders.
            pool = start_pool(url, store_dir)
            wait_for(lambda: pool_ready(monitor, sender_devices), 120, "the sender pool to lease its devices")
            queue_backlog(c, sender_owner, busy_devices, backlog)
            time.sleep(1)
            _, baseline = timed(monitor, sender_owner, lambda: time.sleep(BASELINE_SECONDS))
            log(started, "senders at speed")
            # Enough backlog that the senders cannot run dry during a phase (inserts run >= 15k rows/s).
            per_phase = int(baseline * max(10, leads / 15_000))
            with_senders = lambda fn: timed(monitor, sender_owner, fn)
            queue_backlog(c, sender_owner, busy_devices, per_phase)
            floor_s, floor_rate = measure_floor(c, url, owner, with_senders)
            log(started, "floor measured, senders beside")
            queue_backlog(c, sender_owner, busy_devices, per_phase)
            fan_s, fan_rate = measure_fanout(c, url, owner, expected, with_senders)
            log(started, "fan-out measured, senders beside")
            left = c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE user_id = %s AND status = 'pending'",
                             [sender_owner]).fetchone()["n"]

        print(f"quiet, medians of {QUIET_ROUNDS} alternated rounds: floor (plain table, INSERT ... SELECT) {leads:,} "
              f"rows in {quiet_floor_s:.2f} s ({leads / quiet_floor_s:,.0f} rows/s); fan-out (the campaign tick and its "
              f"helpers: {lanes} lanes side by side, chunks of {CHUNK:,}) {expected:,} messages in {quiet_s:.2f} s "
              f"({expected / quiet_s:,.0f} rows/s), one per phone (1% opted out; the campaign sending from before its "
              f"first chunk), expanded")
        print("quiet rounds (floor s / fan-out s = ratio): "
              + ", ".join(f"{f:.2f} / {x:.2f} = {f / x:.2f}" for f, x in zip(quiet_floors, quiet_fans)))
        print(f"senders beside ({sender_devices} devices, simulated, zero latency): floor {floor_s:.2f} s, "
              f"fan-out {fan_s:.2f} s ({floor_s / fan_s:.2f}); sender baseline {baseline:,.0f} msgs/s, "
              f"during the floor's insert {floor_rate:,.0f} ({floor_rate / baseline:.0%}), during the fan-out "
              f"{fan_rate:,.0f} ({fan_rate / baseline:.0%}); backlog left {left:,}")
        if left == 0:
            print("warning: the sender backlog ran dry; throughput during the runs is understated")
        print(f"ratio={quiet_floor_s / quiet_s:.2f} fanout_s={quiet_s:.2f} floor_s={quiet_floor_s:.2f} rows={expected} "
              f"devices={devices} lanes={lanes} ratio_with_senders={floor_s / fan_s:.2f} "
              f"senders_during_fanout={fan_rate / baseline:.2f} sender_baseline_per_s={baseline:.0f}")
    finally:
        stop_pool(pool)
        shutil.rmtree(store_dir, ignore_errors=True)
        drop_scratch_database(base, BENCH_DB)


if __name__ == "__main__":
    main()
