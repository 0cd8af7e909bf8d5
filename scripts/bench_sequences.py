"""Sequence benchmark (issue 6).

1. Activation: N contacts enrolled in sequence A with their step due are activated in the chunks the
   scheduler's tick uses (activate_due_steps(5000), each chunk committed, as sequence_tick runs
   them); the same N contacts enrolled in sequence B are advanced by one floor statement that
   inserts their step messages into the floor table (benchlib.create_floor_table: same columns,
   primary key and one partial index, no triggers) and updates their enrollments. ratio = floor
   seconds / activation seconds (target >= 0.5); chunk p99 and the worst one-minute tick's work (target <= 15 s).
2. Reports: with N contacts and 10*N step messages, GET /api/sequences/summary and the detail
   page's per-flow query (date range) p50/p99 (target p99 <= 50 ms).
3. The cost of the counting trigger on the send path: single-row completions of sequence messages
   with and without it.

Run under `flock /tmp/bench.lock .venv/bin/python -m scripts.bench_sequences [--quick]`. A dedicated
database is created, applied through scripts.apply.apply, and dropped afterwards. The last line is
`ratio=<floor/activation> ...`."""
import argparse
import os
import sys
import time

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from common.config import require_database_url
from scripts.benchlib import create_floor_table, create_scratch_database, drop_scratch_database

FULL = {"contacts": 1_000_000, "messages_per_contact": 10, "devices": 50, "runs": 200, "completions": 5000}
QUICK = {"contacts": 20_000, "messages_per_contact": 10, "devices": 10, "runs": 60, "completions": 1000}
CHUNK = 5000          # what sequence_tick passes to activate_due_steps
TICK_BUDGET_S = 15    # sequence_tick's default budget: a minute's tick does at most this much
STEPS = 12


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def load(c, size):
    """One owner, its devices, two sequences of STEPS steps, and N leads carrying both triggers:
    the leads trigger enrolls each in A and in B, first steps due now."""
    from tests.factories import PASSWORD_HASH
    owner = c.execute("SELECT create_user('bench@example.com', 'Bench', %s) AS id", [PASSWORD_HASH]).fetchone()["id"]
    for n in range(size["devices"]):
        c.execute("SELECT create_device(%s, %s, 0, 0)", [owner, f"device {n}"])
    c.execute("UPDATE user_devices SET status = 'online', phone = (60110000000 + id)::text WHERE user_id = %s", [owner])
    d0 = c.execute("SELECT min(id) AS d FROM user_devices").fetchone()["d"]
    seqs = {}
    for name in ("a", "b"):
        steps = [{"day_number": d, "content": f"Hi {{name}}, {{day|today}} {d}",
                  "trigger_delay_hours": 24 if d < STEPS else 0} for d in range(1, STEPS + 1)]
        seqs[name] = c.execute("SELECT save_sequence(%s, NULL, %s::jsonb) AS id",
                               [owner, Jsonb({"name": f"bench {name}", "trigger": f"bench{name}",
                                                                 "min_delay_seconds": 0, "max_delay_seconds": 0,
                                                                 "steps": steps})]).fetchone()["id"]
        c.execute("SELECT set_sequence_status(%s, %s, 'active')", [owner, seqs[name]])
    t = time.perf_counter()
    c.execute("""INSERT INTO leads (user_id, device_id, name, phone, trigger)
                 SELECT %s, %s + g %% %s, 'Lead ' || g, (60120000000 + g)::text, 'bencha,benchb'
                   FROM generate_series(1, %s) g""", [owner, d0, size["devices"], size["contacts"]])
    enroll_s = time.perf_counter() - t
    # B's contacts are advanced by the floor statement only: its sequence is paused for the ticks.
    c.execute("SELECT set_sequence_status(%s, %s, 'inactive')", [owner, seqs["b"]])
    c.execute("VACUUM ANALYZE")
    return seqs, enroll_s


def activate_chunks(c):
    """What sequence_tick does, chunk by chunk; returns total seconds, chunk times, tick times."""
    chunks, ticks, tick = [], [], 0.0
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        n = c.execute("SELECT activate_due_steps(%s) AS n", [CHUNK]).fetchone()["n"]
        chunks.append(time.perf_counter() - t)
        tick += chunks[-1]
        # As sequence_tick: no chunk starts unless one more of the last one's length fits the budget.
        if n < CHUNK or tick + chunks[-1] > TICK_BUDGET_S:   # the tick ends; the next minute's goes on
            ticks.append(tick)
            tick = 0.0
        if n < CHUNK:
            return time.perf_counter() - start, chunks, ticks


MESSAGE_COLUMNS = ("user_id, device_id, sequence_id, sequence_stepid, enrollment_id, lead_id, recipient_phone, "
                   "recipient_name, content, scheduled_at")


def floor_advance(c, sequence_id):
    """The floor: one statement inserting every due step message into the plain floor table and
    advancing every enrollment. The rows are then copied into broadcast_messages (untimed) for
    the send-path measurement."""
    floor = create_floor_table(c)
    t = time.perf_counter()
    c.execute(f"""
        WITH due AS (
          SELECT e.id, e.user_id, e.device_id, e.lead_id, e.contact_phone, e.contact_name, e.sequence_id, e.next_step_id
            FROM sequence_enrollments e
           WHERE e.sequence_id = %(s)s AND e.status = 'active' AND e.next_due_at <= now()),
        ins AS (
          INSERT INTO {floor} ({MESSAGE_COLUMNS})
          SELECT d.user_id, d.device_id, d.sequence_id, d.next_step_id, d.id, d.lead_id, d.contact_phone,
                 d.contact_name, st.content, now()
            FROM due d JOIN sequence_steps st ON st.id = d.next_step_id
          RETURNING enrollment_id)
        UPDATE sequence_enrollments e
           SET next_step_id = (SELECT id FROM sequence_steps WHERE sequence_id = %(s)s AND day_number = 2),
               next_due_at = now() + interval '24 hours', steps_done = e.steps_done + 1
          FROM ins WHERE e.id = ins.enrollment_id""", {"s": sequence_id})
    elapsed = time.perf_counter() - t
    c.execute(f"INSERT INTO broadcast_messages ({MESSAGE_COLUMNS}) SELECT {MESSAGE_COLUMNS} FROM {floor}")
    c.execute(f"DROP TABLE {floor}")
    return elapsed


def add_history(c, seqs, size):
    """Steps 2..k of sequence A already processed for every contact, completed over 30 days, so the
    owner holds messages_per_contact * N step messages in all (A's step 1 and B's step 1 exist)."""
    extra = size["messages_per_contact"] - 2
    t = time.perf_counter()
    for day in range(2, 2 + extra):
        c.execute("""
            INSERT INTO broadcast_messages (user_id, device_id, sequence_id, sequence_stepid, enrollment_id, lead_id,
                                            recipient_phone, recipient_name, content, status, scheduled_at,
                                            claimed_at, claimed_by, sent_at, failed_at, error_message)
            SELECT e.user_id, e.device_id, e.sequence_id, st.id, e.id, e.lead_id, e.contact_phone, e.contact_name,
                   st.content, CASE WHEN e.id %% 10 = 0 THEN 'failed' ELSE 'sent' END, w.at, w.at, 'bench',
                   CASE WHEN e.id %% 10 <> 0 THEN w.at END, CASE WHEN e.id %% 10 = 0 THEN w.at END,
                   CASE WHEN e.id %% 10 = 0 THEN 'bench failure' END
              FROM sequence_enrollments e
              JOIN sequence_steps st ON st.sequence_id = e.sequence_id AND st.day_number = %(day)s
             CROSS JOIN LATERAL (SELECT now() - ((e.id %% 30) || ' days')::interval AS at) w
             WHERE e.sequence_id = %(a)s""", {"day": day, "a": seqs["a"]})
    c.execute("SELECT fold_sequence_counters()")
    c.execute("VACUUM ANALYZE")
    return time.perf_counter() - t


def time_reports(url, seqs, runs):
    from web import create_app
    from tests.webutil import login
    app = create_app(url)
    try:
        client = app.test_client()
        assert login(client, "bench@example.com").status_code == 302
        summary, flows = [], []
        for _ in range(runs):
            t = time.perf_counter()
            r = client.get("/api/sequences/summary")
            summary.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
            t = time.perf_counter()
            r = client.get(f"/api/sequences/{seqs['a']}/flows?from=2000-01-01&to=2100-01-01")
            flows.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200
        return summary, flows, r.get_json()
    finally:
        app.extensions["db_pool"].close()


def trigger_cost(c, seqs, n):
    """Single-row completions (the send path) of pending sequence messages, with and without the
    counting trigger; returns microseconds per completion for each."""
    ids = [r["id"] for r in c.execute("SELECT id FROM broadcast_messages WHERE sequence_id = %s AND status = 'pending' "
                                      "ORDER BY id LIMIT %s", [seqs["b"], 2 * n])]
    c.execute("UPDATE broadcast_messages SET status = 'queued', claimed_at = now(), claimed_by = 'bench' "
              "WHERE id = ANY(%s)", [ids])
    out = {}
    for label, batch in (("with", ids[:n]), ("without", ids[n:])):
        if label == "without":
            c.execute("ALTER TABLE broadcast_messages DISABLE TRIGGER broadcast_messages_2_sequence_upd")
        t = time.perf_counter()
        for i in batch:
            c.execute("SELECT complete_messages('bench', %s, %s)", [[i], ["w"]])
        out[label] = (time.perf_counter() - t) / len(batch) * 1e6
    c.execute("ALTER TABLE broadcast_messages ENABLE TRIGGER broadcast_messages_2_sequence_upd")
    return out


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    args = ap.parse_args(argv)
    size = QUICK if args.quick else FULL
    base = require_database_url()
    name = f"wa_bench_seq_{os.getpid()}"
    url = create_scratch_database(base, name)
    try:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as c:
            seqs, enroll_s = load(c, size)
            n = size["contacts"]
            print(f"contacts={n} enrolled in 2 sequences by the leads trigger in {enroll_s:.1f} s", flush=True)
            act_s, chunks, ticks = activate_chunks(c)
            done = c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE sequence_id = %s", [seqs["a"]]).fetchone()["n"]
            assert done == n, f"activated {done} of {n}"
            print(f"activation: {n} steps in {len(chunks)} chunks of {CHUNK}: {act_s:.2f} s "
                  f"({n / act_s:,.0f}/s); chunk p50 {pct(chunks, 50) * 1000:.0f} ms p99 {pct(chunks, 99) * 1000:.0f} ms; "
                  f"ticks {len(ticks)}, worst tick {max(ticks):.2f} s", flush=True)
            floor_s = floor_advance(c, seqs["b"])
            print(f"floor (plain table): {n} messages + enrollments in one statement: {floor_s:.2f} s", flush=True)
            cost = trigger_cost(c, seqs, size["completions"])
            print(f"send path: single-row completion {cost['with']:.0f} us with the counting trigger, "
                  f"{cost['without']:.0f} us without (+{cost['with'] - cost['without']:.0f} us)", flush=True)
            hist_s = add_history(c, seqs, size)
            total = c.execute("SELECT count(*) AS n FROM broadcast_messages").fetchone()["n"]
            print(f"history: {total} step messages in all (loaded in {hist_s:.1f} s)", flush=True)
        summary, flows, sample = time_reports(url, seqs, size["runs"])
        print(f"GET /api/sequences/summary: p50 {pct(summary, 50):.1f} ms p99 {pct(summary, 99):.1f} ms; "
              f"detail flows (date range): p50 {pct(flows, 50):.1f} ms p99 {pct(flows, 99):.1f} ms "
              f"over {size['runs']} runs", flush=True)
        ratio = floor_s / act_s
        print(f"ratio={ratio:.3f} activation_s={act_s:.2f} floor_s={floor_s:.2f} contacts={n} messages={total} "
              f"chunk_p99_ms={pct(chunks, 99) * 1000:.0f} worst_tick_s={max(ticks):.2f} "
              f"summary_p50_ms={pct(summary, 50):.1f} summary_p99_ms={pct(summary, 99):.1f} "
              f"flows_p99_ms={pct(flows, 99):.1f} trigger_us={cost['with'] - cost['without']:.0f}")
    finally:
        drop_scratch_database(base, name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
