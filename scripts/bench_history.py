"""History benchmark: the queue's speed does not depend on how much history broadcast_messages holds.

    flock /tmp/bench.lock .venv/bin/python -m scripts.bench_history [--quick]

On two databases of its own, side by side on the server (created, applied through scripts.apply,
dropped at the end), the same owners, devices and leads in each:
1. one of them takes HISTORY settled messages (9 in 10 sent, the rest failed) over the last WEEKS
   weeks, each week in its own partition, with the rollups their completions would have added; the
   other keeps an empty history (but for what its own rounds settle);
2. in ROUNDS alternated rounds (empty then loaded, loaded then empty, ...), on each database:
   claim-and-complete throughput (claim_messages + complete_messages in a loop, one process,
   MESSAGES messages on DEVICES devices with no delays), then a campaign fan-out of LEADS leads
   (the campaign tick's chunks), each timed phase from a CHECKPOINT (benchlib.checkpoint). The
   machine's speed drifts over minutes: measured in one phase each, 26 minutes apart, the same
   code's claim ratio moved 0.77-1.27 between full runs;
3. the overview and report queries (dashboard_today, dashboard_hourly, campaign report counts and
   one page of its leads) p50/p99 on the loaded database, on a new connection prepared as the web's
   pool prepares each one, its first calls counted;
4. bytes stored per settled message: history heap + indexes + the outcome rollup, divided by rows.
The floor (the claim-and-mark loop on a plain table, benchlib) is printed beside the empty claim.
Prints its figures and, last, `ratio=<the worse of claim and fan-out, loaded / empty, medians of the
rounds> ...` (target >= 0.9; report p99 <= 50 ms).
"""
import argparse
import statistics
import time

from common.config import require_database_url
from scripts.bench_dispatch import queue_messages
from scripts.bench_fanout import make_campaign, make_leads, make_logged_out_devices, make_owner, start_sending
from scripts.benchlib import (campaign_tick, checkpoint, connect, count_settled_rows, create_floor_table,
                              create_scratch_database, drop_scratch_database, log)
from web import prepare_connection

BENCH_DB = "wa_bench_history"
EMPTY_DB = "wa_bench_history_empty"
ROUNDS = 5
SENDER = "bench-history"
FULL = {"history": 50_000_000, "messages": 200_000, "leads": 200_000, "devices": 300, "weeks": 26, "runs": 200}
QUICK = {"history": 1_000_000, "messages": 50_000, "leads": 50_000, "devices": 100, "weeks": 26, "runs": 60}
BATCH = 1_000_000


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def online_devices(c, user_id, n):
    """n online devices with no delays and no binding caps, leased to SENDER for the whole run."""
    ids = [r["id"] for r in c.execute("""
        INSERT INTO user_devices (user_id, device_name, phone, jid, status, min_delay_seconds, max_delay_seconds,
                                  hourly_limit, daily_limit)
        SELECT %s, 'hist' || g, '6017' || lpad(g::text, 8, '0'), 'bench-hist-' || g, 'online', 0, 0, 1000000, 1000000
          FROM generate_series(1, %s) g RETURNING id""", [user_id, n])]
    c.execute("SELECT register_sender(%s, 'bench', 1, 100000)", [SENDER])
    c.execute("""INSERT INTO device_leases (device_id, sender_id, acquired_at, expires_at)
                 SELECT d, %s, now(), now() + interval '1 day' FROM unnest(%s::bigint[]) d""", [SENDER, ids])
    return ids


def claim_loop(c, user_id, device_ids, total, first=1):
    """Messages per second through claim_messages + complete_messages until the queue is empty (its
    messages to numbers counted from `first`: a round's sends open chats as a broadcast's do)."""
    queue_messages(c, user_id, device_ids, total, first=first)
    c.execute("UPDATE device_pacing SET next_send_at = now() - interval '1 second'")
    done, t0 = 0, time.perf_counter()
    while rows := c.execute("SELECT id FROM claim_messages(%s, 1000, 100)", [SENDER]).fetchall():
        ids = [r["id"] for r in rows]
        done += c.execute("SELECT complete_messages(%s, %s, %s) AS n",
                          [SENDER, ids, [f"w{i}" for i in ids]]).fetchone()["n"]
    elapsed = time.perf_counter() - t0
    assert done == total, f"claim loop sent {done} of {total}"
    return total / elapsed


def floor_loop(c, user_id, device_ids, total):
    """The same claim-and-mark as raw SQL on the plain floor table (one process, batch 1000)."""
    floor = create_floor_table(c)
    queue_messages(c, user_id, device_ids, total, floor)
    c.execute(f"ANALYZE {floor}")
    t0 = time.perf_counter()
    while ids := [r["id"] for r in c.execute(f"""
            UPDATE {floor} SET status = 'queued', claimed_at = now(), claimed_by = 'raw'
             WHERE id IN (SELECT id FROM {floor} WHERE status = 'pending' AND NOT held AND scheduled_at <= now()
                          LIMIT 1000 FOR UPDATE SKIP LOCKED) RETURNING id""")]:
        c.execute(f"UPDATE {floor} SET status = 'sent', sent_at = now(), wa_message_id = 'w' || id "
                  f"WHERE id = ANY(%s) AND status = 'queued'", [ids])
    elapsed = time.perf_counter() - t0
    c.execute(f"DROP TABLE {floor}")
    return total / elapsed


def fan_out(c, url, owner, title):
    """Seconds to expand a due campaign over the owner's leads, sending from its start (start_sending);
    its messages are then removed."""
    campaign = make_campaign(c, owner, title, -1)
    start_sending(c, campaign)   # as a real fan-out is from its second chunk on
    t0 = time.perf_counter()
    campaign_tick(url)   # the campaign tick and its helpers: trigger, then every chunk
    elapsed = time.perf_counter() - t0
    c.execute("DELETE FROM broadcast_messages WHERE campaign_id = %s", [campaign])
    c.execute("VACUUM ANALYZE message_queue")   # the next round's claim meets none of its dead rows
    return elapsed


def load_history(c, user_id, device_ids, campaign, size):
    """size['history'] settled messages spread evenly over the last size['weeks'] weeks."""
    weeks = size["weeks"]
    for k in range(weeks, 0, -1):
        c.execute("SELECT maintain_message_history(now() - make_interval(weeks => %s), 0)", [k])
    left, n = size["history"], 0
    while left > 0:
        batch = min(BATCH, left)
        # Settled rows go straight into their weeks, then into the rollups a completion keeps.
        before = c.execute("SELECT coalesce(max(id), 0) AS id FROM message_history").fetchone()["id"]
        c.execute("""
            INSERT INTO broadcast_messages (user_id, device_id, campaign_id, recipient_phone, content, status,
                                            claimed_at, claimed_by, sent_at, failed_at, error_message, wa_message_id)
            SELECT %(u)s, d.ids[1 + g %% cardinality(d.ids)], %(c)s, (60130000000 + g)::text, 'Old news ' || g,
                   CASE WHEN g %% 10 = 0 THEN 'failed' ELSE 'sent' END, t.at, 'old',
                   CASE WHEN g %% 10 <> 0 THEN t.at END, CASE WHEN g %% 10 = 0 THEN t.at END,
                   CASE WHEN g %% 10 = 0 THEN 'old failure' END, CASE WHEN g %% 10 <> 0 THEN 'old' || g END
              FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g, (SELECT %(ids)s::bigint[] AS ids) d,
                   LATERAL (SELECT now() - (g::float8 / %(total)s) * make_interval(weeks => %(weeks)s)
                                   - interval '1 hour' AS at) t""",
                  {"u": user_id, "c": campaign, "ids": device_ids, "lo": n + 1, "hi": n + batch,
                   "total": size["history"], "weeks": weeks})
        count_settled_rows(c, before)
        left, n = left - batch, n + batch
    c.execute("VACUUM ANALYZE")


def time_queries(c, user_id, campaign, runs):
    """Milliseconds of each query over `runs` calls on a new connection prepared as the web's pool
    prepares each of its own (web.prepare_connection: it plans the report's pages, whose generic plan
    spans every week of the history), the first call counted too and also printed apart; and the
    milliseconds of that preparation, made before the connection serves a request."""
    t = time.perf_counter()
    prepare_connection(c)
    prepared_ms = (time.perf_counter() - t) * 1000
    out = {"dashboard_today": [], "dashboard_hourly": [], "campaign_report": [], "report_leads": []}
    queries = {
        "dashboard_today": ("SELECT * FROM dashboard_today(%s)", [user_id]),
        "dashboard_hourly": ("SELECT * FROM dashboard_hourly(%s, 24)", [user_id]),
        "campaign_report": ("SELECT * FROM campaign_report WHERE user_id = %s AND campaign_id = %s", [user_id, campaign]),
        "report_leads": ("SELECT * FROM campaign_report_leads(%s, %s, NULL, 'failed', 100, 0)", [user_id, campaign]),
    }
    for _ in range(runs):
        for name, (sql, args) in queries.items():
            t = time.perf_counter()
            c.execute(sql, args).fetchall()
            out[name].append((time.perf_counter() - t) * 1000)
    return out, prepared_ms


def history_bytes(c):
    return c.execute("""
        SELECT (SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i
                 WHERE i.inhparent = 'message_history'::regclass)
               + pg_total_relation_size('message_outcome_counts') AS bytes,
               (SELECT count(*) FROM message_history) AS rows""").fetchone()


def prepare(url, size):
    """The owners, devices and leads each database starts from: (claiming owner, its devices, fan-out owner)."""
    with connect(url) as c:
        sender_owner = make_owner(c, "history@example.com")
        devices = online_devices(c, sender_owner, size["devices"])
        fan_owner = make_owner(c, "fanout@example.com")
        make_leads(c, fan_owner, make_logged_out_devices(c, fan_owner, size["devices"]), size["leads"])
        c.execute("VACUUM ANALYZE")
    return sender_owner, devices, fan_owner


def measure_round(url, setup, size, r):
    """Round r (from 0) on one database: claim-and-complete msgs/s, then the fan-out's seconds."""
    sender_owner, devices, fan_owner = setup
    with connect(url) as c:
        checkpoint(url)
        rate = claim_loop(c, sender_owner, devices, size["messages"], first=r * size["messages"] + 1)
        checkpoint(url)
        seconds = fan_out(c, url, fan_owner, f"round {r + 1}")
    return rate, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, a few minutes")
    size = QUICK if parser.parse_args().quick else FULL
    started = time.perf_counter()
    base = require_database_url()
    urls = {"empty": create_scratch_database(base, EMPTY_DB), "loaded": create_scratch_database(base, BENCH_DB)}
    log(started, "databases created")
    try:
        setups = {name: prepare(url, size) for name, url in urls.items()}
        with connect(urls["empty"]) as c:
            checkpoint(urls["empty"])
            floor_rate = floor_loop(c, *setups["empty"][:2], size["messages"])
        with connect(urls["loaded"]) as c:
            old_campaign = make_campaign(c, setups["loaded"][0], "history", 365)   # never due: a report to read
            t = time.perf_counter()
            load_history(c, setups["loaded"][0], setups["loaded"][1], old_campaign, size)
            load_s = time.perf_counter() - t
        log(started, f"{size['history']:,} history rows loaded")

        claims, fans = {"empty": [], "loaded": []}, {"empty": [], "loaded": []}
        for r in range(ROUNDS):
            for name in (("empty", "loaded") if r % 2 == 0 else ("loaded", "empty")):
                rate, seconds = measure_round(urls[name], setups[name], size, r)
                claims[name].append(rate)
                fans[name].append(seconds)
                print(f"round {r + 1}, {name} history: claim + complete {rate:,.0f} msgs/s, "
                      f"fan-out of {size['leads']:,} leads {seconds:.2f} s", flush=True)
            log(started, f"round {r + 1} measured")

        with connect(urls["loaded"]) as c:
            q, prepared_ms = time_queries(c, setups["loaded"][0], old_campaign, size["runs"])
            stored = history_bytes(c)
        with connect(urls["empty"]) as c:
            empty_rows = history_bytes(c)["rows"]

        empty_rate, hist_rate = statistics.median(claims["empty"]), statistics.median(claims["loaded"])
        empty_fan, hist_fan = statistics.median(fans["empty"]), statistics.median(fans["loaded"])
        print(f"floor (raw claim-and-mark loop on a plain table, 1 process): {floor_rate:,.0f} msgs/s")
        print(f"claim + complete, empty history (median of {ROUNDS} rounds; it holds only what they settled, "
              f"{empty_rows:,} rows at the end): {empty_rate:,.0f} msgs/s ({empty_rate / floor_rate:.2f} of the floor)")
        print(f"claim + complete, {stored['rows']:,} rows of history: {hist_rate:,.0f} msgs/s "
              f"({hist_rate / empty_rate:.2f} of empty)")
        print(f"fan-out of {size['leads']:,} leads: {empty_fan:.2f} s with empty history, {hist_fan:.2f} s with it "
              f"({empty_fan / hist_fan:.2f})")
        print(f"history loaded in {load_s:.1f} s ({size['history'] / load_s:,.0f} rows/s, their rollups added)")
        print(f"a new connection prepared as the web's pool prepares it (before it serves): {prepared_ms:.1f} ms")
        for name, ms in q.items():
            print(f"{name}: p50 {pct(ms, 50):.1f} ms p99 {pct(ms, 99):.1f} ms over {size['runs']} runs "
                  f"(the first on the connection counted: {ms[0]:.1f} ms)")
        per = stored["bytes"] / max(stored["rows"], 1)
        print(f"stored per settled message: {per:,.0f} bytes (history heap + indexes + outcome rollup, "
              f"{stored['bytes'] / 2**20:,.0f} MB for {stored['rows']:,} rows)")
        worst_p99 = max(pct(ms, 99) for ms in q.values())
        ratio = min(hist_rate / empty_rate, empty_fan / hist_fan)
        print(f"ratio={ratio:.2f} claim_ratio={hist_rate / empty_rate:.2f} fanout_ratio={empty_fan / hist_fan:.2f} "
              f"history_rows={stored['rows']} claim_per_s={hist_rate:.0f} floor_per_s={floor_rate:.0f} "
              f"report_p99_ms={worst_p99:.1f} bytes_per_message={per:.0f}")
    finally:
        for name in (EMPTY_DB, BENCH_DB):
            drop_scratch_database(base, name)


if __name__ == "__main__":
    main()
