"""Soak (issue 8): thousands of simulated devices sending campaigns and drip sequences together
with realistic pacing on a compressed clock, for a bounded time; then the operator's promise is
counted: duplicates (must be 0), losses (must be 0), the highest rolling-hour count per device
against its cap, warming devices over their warm-up day's cap (must be 0), new numbers banned for
reaching out too fast (must be 0), cold contacts messaged by a timelocked device (must be 0),
messages claimed for a device banned for spam reports (must be 0),
sequence contacts whose step says in flight with nothing left to settle it (must be 0), owners whose
overview queue figures and devices whose monitoring figures (a rollup) differ from counting the queue
(must be 0), devices whose load (device_load's hour and day, kept on the pacing row) counts fewer sends
than their messages claimed in them (must be 0), the senders' claims (how many a minute, rows and milliseconds each: what a paced
fleet's claims cost), and sender and database memory at start and end. A sixth into the run one
sender worker is killed (kill -9, mid-sends, no hand-over): the pool starts another, the dead one's devices are taken over when their
leases expire, what it had claimed and never begun goes back to the queue, what it may have begun
is failed as stuck (never sent twice); the soak reports how long its devices stayed silent and
counts its messages with the rest.

The compressed clock:
- pacing: real devices wait 30-60 s between sends; here 1-2 s (30x; delays are whole seconds);
- caps: SQL enforces the hourly cap over a real rolling hour, which a 1-10 minute run never leaves,
  so the cap is scaled down to what a device reaches within the run (quick 8, full 80) while the
  load offered per device is several times larger: the cap is what stops each device;
- sequences: steps 0.01 h (36 s, the column's smallest step) apart instead of days;
- the clock: the scheduled jobs (app_jobs(): campaigns, sequence ticks, stuck recovery, skip
  rules) run every 5 s instead of every minute; a claimed message is stuck after STUCK_SECONDS
  instead of 5 minutes (leases still run 30 s: the takeover is measured at its real pace), and when
  the run ends before the dead worker's claims are that old, the stuck recovery runs once more when
  they are, as the clock would;
- WhatsApp's rules (the simulator's default) run on the same 30x clock (WA_SIM_TIME_SCALE): each
  connection drops about once a minute and returns within a second, sends meanwhile are not sent;
  a device that messages 30 new contacts within 2 minutes is timelocked for new contacts (463);
  120 sends within 20 s earn a temporary ban, and so do 5 spam reports within a day (here 10 % of
  the messages to contacts a device never talked with are reported) and, for the numbers that
  joined WhatsApp at the start of the run (the warming devices'), more than 20 new contacts within
  their first day (48 minutes here); QR codes expire;
- and WhatsApp's realities: 5 % of numbers are not on WhatsApp (undeliverable), 0.5 % of sends fail
  (half of them after the recipient got the message: failed, received once, never sent again),
  receipts come fast, late, twice or never (receipts stranded while their message settled must be
  0), and some contacts reply from their @lid identity.

    flock /tmp/bench.lock .venv/bin/python -m scripts.soak [--quick] [--devices 3000]

A dedicated database is created, applied through scripts.apply.apply, and dropped afterwards.
The last line is `ratio=<sent per second / offered per second at the caps> ...`."""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from common.config import ROOT, require_database_url
from common.db import with_database
from scripts import apply
from scripts.benchlib import children, proc_status
from sender.transport.sim import SimNetwork

FULL = {"seconds": 600, "hourly_cap": 80, "leads_per_device": 40, "warmup_start": 20}
QUICK = {"seconds": 60, "hourly_cap": 8, "leads_per_device": 4, "warmup_start": 3}
WARMING_EVERY = 5           # every 5th device is a newly paired number on its first warm-up day: half of
                            # them paired now, half a minute before their owner's last midnight
DEVICES_PER_OWNER = 100
TICK_SECONDS = 5
MIN_DELAY, MAX_DELAY = 1, 2
TIME_SCALE = 1 / 30         # WhatsApp's durations on the compressed clock
# A hostile audience: one message in ten to a new contact reported as spam (the simulator's default
# is 2 %), so that spam-report bans strike hundreds of devices mid-run (~30 new contacts each before
# their timelock) and the soak sees what happens to their work.
REPORT_RATE = 0.1
STEPS = 3                   # sequence steps per lead, next to one campaign message per lead
STUCK_SECONDS = 60          # stuck_timeout_seconds on the compressed clock (default 300, lowest 60)
KILL_AT = 1 / 6             # a sender worker is killed this far into the run


def connect(url):
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def load(c, devices, size):
    """Owners of DEVICES_PER_OWNER devices each (stored sessions: they connect at once), their leads
    spread over the devices, one campaign due now and one active sequence per owner."""
    from tests.factories import PASSWORD_HASH
    owners = []
    for n in range(0, devices, DEVICES_PER_OWNER):
        uid = c.execute("SELECT create_user(%s, 'Soak', %s) AS id", [f"soak{n}@example.com", PASSWORD_HASH]).fetchone()["id"]
        owners.append(uid)
        c.execute("""INSERT INTO user_devices (user_id, device_name, phone, jid, status, min_delay_seconds,
                                               max_delay_seconds, hourly_limit, daily_limit)
                     SELECT %s, 'soak ' || g, (601100000000 + %s * 1000 + g)::text, 'sim-' || gen_random_uuid(),
                            'offline', %s, %s, %s, 100000
                       FROM generate_series(1, %s) g""",
                  [uid, n, MIN_DELAY, MAX_DELAY, size["hourly_cap"], min(DEVICES_PER_OWNER, devices - n)])
        seq = c.execute("SELECT save_sequence(%s, NULL, %s) AS id", [uid, Jsonb({
            "name": "soak drip", "trigger": "soak", "min_delay_seconds": MIN_DELAY, "max_delay_seconds": MAX_DELAY,
            "steps": [{"day_number": d, "content": f"{{Hi|Hello}} {{name}}, day {d}",
                       "trigger_delay_hours": 0.01 if d < STEPS else 0} for d in range(1, STEPS + 1)]})]).fetchone()["id"]
        c.execute("SELECT set_sequence_status(%s, %s, 'active')", [uid, seq])
        c.execute("""INSERT INTO leads (user_id, device_id, name, phone, niche, trigger)
                     SELECT %s, d.id, 'Lead ' || g, (62800000000 + d.id * 1000 + g)::text, 'soak', 'soak'
                       FROM user_devices d, generate_series(1, %s) g WHERE d.user_id = %s""",
                  [uid, size["leads_per_device"], uid])
        c.execute("""SELECT create_campaign(%s, 'broadcast', 'soak', 'soak', 'all', '{Promo|Offer} for {name}', NULL,
                                            NULL, NULL, current_date + 1, '09:00', %s, %s)""", [uid, MIN_DELAY, MAX_DELAY])
    c.execute("UPDATE campaigns SET scheduled_at = now()")   # due now (created for tomorrow, moved forward)
    # Warm-up's first day caps these below the hourly cap: the warm-up cap is what stops them.
    c.execute("UPDATE settings SET value = %s WHERE name = 'warmup_start_per_day'", [size["warmup_start"]])
    c.execute("UPDATE settings SET value = %s WHERE name = 'stuck_timeout_seconds'", [STUCK_SECONDS])
    c.execute("""UPDATE user_devices d
                    SET warmup_started_at = CASE WHEN d.id / %s %% 2 = 0 THEN now()
                         ELSE date_trunc('day', now() AT TIME ZONE u.timezone) AT TIME ZONE u.timezone - interval '1 minute' END
                   FROM users u WHERE u.id = d.user_id AND d.id %% %s = 0""", [WARMING_EVERY, WARMING_EVERY])
    c.execute("VACUUM ANALYZE")
    return owners


def compressed_clock(url, stop):
    """The scheduled jobs every TICK_SECONDS, as the clock would run them every minute."""
    with connect(url) as c:
        jobs = [j["command"] for j in c.execute("SELECT command FROM app_jobs() ORDER BY name")]
        while not stop.wait(TICK_SECONDS):
            for command in jobs:
                try:
                    c.execute(command)
                except psycopg.Error as exc:
                    print(f"tick {command!r} failed: {exc}", file=sys.stderr)


def pss_kb(pid):
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory(c, pool_pid, dbname):
    """Sender pool + workers resident MB; the soak database's backends' proportional share MB
    (shared buffers counted once across them) and its size on disk."""
    senders = proc_status(pool_pid, "VmRSS") + sum(proc_status(p, "VmRSS") for p in children(pool_pid))
    pids = [r["pid"] for r in c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", [dbname])]
    db = sum(pss_kb(p) for p in pids)
    size = c.execute("SELECT pg_database_size(%s) AS b", [dbname]).fetchone()["b"]
    return {"sender_mb": senders / 1024, "db_backends_mb": db / 1024, "db_backends": len(pids), "db_disk_mb": size / 2**20}


def kill_a_worker(c, pool_pid):
    """kill -9 of one sender worker mid-run: its sender id, its devices and when it died."""
    for pid in children(pool_pid):
        sender = c.execute("""SELECT s.id, array_agg(l.device_id) AS devices FROM senders s
                                JOIN device_leases l ON l.sender_id = s.id WHERE s.pid = %s GROUP BY s.id""",
                           [pid]).fetchone()
        if sender:
            os.kill(pid, signal.SIGKILL)
            at = c.execute("SELECT now() AS at").fetchone()["at"]
            time.sleep(0.5)   # a statement the dead process had already sent still finishes in its backend
            claimed = c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE claimed_by = %s AND status = 'queued'",
                                [sender["id"]]).fetchone()["n"]
            print(f"  killed sender worker {pid} ({sender['id']}, {len(sender['devices'])} devices, "
                  f"{claimed} claimed messages not completed)", flush=True)
            return {"sender": sender["id"], "devices": sender["devices"], "at": at, "claimed": claimed}
    raise SystemExit("soak: no sender worker with leases to kill")


def takeover(c, killed):
    """What became of the killed worker's devices and claims: how long until they sent again (the
    first and the median device's first claim after the kill), how many did, and its claims failed
    as stuck (those it may have begun sending; the others went back to the queue)."""
    return c.execute("""
        WITH again AS (SELECT m.device_id, min(m.claimed_at) - %(at)s AS after FROM broadcast_messages m
                        WHERE m.device_id = ANY (%(devices)s) AND m.claimed_at > %(at)s GROUP BY 1)
        SELECT (SELECT count(*) FROM again) AS devices_sending_again,
               (SELECT extract(epoch FROM min(after)) FROM again) AS first_s,
               (SELECT extract(epoch FROM percentile_disc(0.5) WITHIN GROUP (ORDER BY after)) FROM again) AS median_s,
               (SELECT count(*) FROM broadcast_messages m
                 WHERE m.claimed_by = %(sender)s AND m.error_message LIKE 'stuck%%') AS stuck""", killed).fetchone()


def keep_claim_totals(c, claims):
    """Each sender's running claim totals (claims, rows, seconds), as it last wrote them (every
    heartbeat): a killed or retired sender's row goes, its last report stays here."""
    for r in c.execute("SELECT id, claims, claim_rows, claim_seconds FROM senders"):
        claims[r["id"]] = (r["claims"], r["claim_rows"], float(r["claim_seconds"]))


def verdict(c, store):
    rows = {r["id"]: r for r in c.execute("SELECT id, status, error_message FROM broadcast_messages")}
    received = [r["message_id"] for r in SimNetwork.received(store)]
    counts = Counter(received)
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    status = Counter(r["status"] for r in rows.values())
    lost = [i for i, r in rows.items() if r["status"] == "sent" and i not in counts]              # marked sent, never arrived
    lost += [i for i in counts if i not in rows or rows[i]["status"] not in ("sent", "failed")]   # arrived, not recorded
    lost += [i for i, r in rows.items() if r["status"] == "queued"]                               # claimed and left
    lost += [i for i, r in rows.items() if r["status"] in ("failed", "skipped") and not r["error_message"]]
    cap = c.execute("""
        SELECT max(n) AS worst, max(hourly_limit) AS cap, count(*) FILTER (WHERE n > hourly_limit) AS over
          FROM (SELECT m.device_id, d.hourly_limit,
                       count(*) OVER (PARTITION BY m.device_id ORDER BY m.claimed_at
                                      RANGE BETWEEN interval '1 hour' PRECEDING AND CURRENT ROW) AS n
                  FROM broadcast_messages m JOIN user_devices d ON d.id = m.device_id
                 WHERE m.claimed_at IS NOT NULL) w""").fetchone()
    # Warm-up: sends claimed today by a warming device against its day's cap (_device_send_limits).
    warmup = c.execute("""
        SELECT count(*) AS warming, count(*) FILTER (WHERE n > h.daily_cap) AS over
          FROM device_health h
          CROSS JOIN LATERAL (SELECT count(*) AS n FROM broadcast_messages m
                               WHERE m.device_id = h.device_id AND m.claimed_at IS NOT NULL) sent
         WHERE h.warmup_day = 1""").fetchone()
    # Timelocks: a message to a contact that had not written to the device, claimed more than a second
    # after the device was timelocked (its lock outlasts the run), is a cold contact messaged by a
    # timelocked device. Within that second, as for the bans below: the lock's time is when its
    # transaction started (it may wait on the device's row), and a claim that starts before it commits
    # cannot see it -- counted apart (racing), and WhatsApp refuses those sends (463).
    timelocked = c.execute("""
        SELECT count(DISTINCT l.device_id) AS devices,
               count(m.id) FILTER (WHERE m.claimed_at > l.locked_at + interval '1 second') AS cold_after,
               count(m.id) FILTER (WHERE m.claimed_at <= l.locked_at + interval '1 second') AS cold_racing
          FROM (SELECT e.device_id, min(e.at) AS locked_at FROM device_events e
                 WHERE e.event = 'timelocked' GROUP BY 1) l
          LEFT JOIN broadcast_messages m
            ON m.device_id = l.device_id AND m.claimed_at > l.locked_at AND m.status IN ('sent', 'failed')
           AND NOT EXISTS (SELECT 1 FROM chats w
                            WHERE w.device_id = m.device_id AND w.phone = m.recipient_phone AND w.talked_at <= m.claimed_at)""").fetchone()
    # Bans: a device banned for its new contacts' spam reports (a day: longer than the run) is passed
    # by: a message claimed for it more than a second after the ban was recorded must be 0. A new
    # number (the warming devices') banned for messaging too many new contacts must be 0: the
    # warm-up's first day keeps it under WhatsApp's limit, whenever in the day it was paired.
    bans = c.execute("""
        SELECT count(DISTINCT e.device_id) AS devices,
               count(DISTINCT e.device_id) FILTER (WHERE e.detail LIKE '%%BLOCKED_BY_USERS%%') AS reported,
               count(DISTINCT e.device_id) FILTER (WHERE e.detail LIKE '%%SEND_TO_TOO_MANY_PEOPLE%%'
                                                     AND d.warmup_started_at IS NOT NULL) AS new_numbers,
               (SELECT count(*) FROM broadcast_messages m
                  JOIN (SELECT b.device_id, min(b.at) AS at FROM device_events b
                         WHERE b.event = 'banned' AND b.detail LIKE '%%BLOCKED_BY_USERS%%' GROUP BY 1) r
                    ON r.device_id = m.device_id AND m.claimed_at > r.at + interval '1 second') AS claimed_after
          FROM device_events e JOIN user_devices d ON d.id = e.device_id WHERE e.event = 'banned'""").fetchone()
    # A contact whose step says "in flight" with no live message and no settled record left for the
    # tick would never move on (sequence_engine.sql, _mark_settled_steps): must be 0.
    stuck = c.execute("""
        SELECT count(*) AS n FROM sequence_enrollments e
         WHERE e.step_in_flight
           AND NOT EXISTS (SELECT 1 FROM broadcast_messages b WHERE b.enrollment_id = e.id AND b.status IN ('pending', 'queued'))
           AND NOT EXISTS (SELECT 1 FROM enrollment_steps_settled s WHERE s.enrollment_id = e.id)""").fetchone()["n"]
    # The overview's and the monitoring page's queue figures come from a rollup (device_queue_counts):
    # after all of the run's paths (fan-outs, sequences, kills, takeovers, bans, skips, failovers)
    # they must still equal the queue.
    overview_off = c.execute("""
        SELECT count(*) AS n FROM users u CROSS JOIN LATERAL dashboard_today(u.id) t
         CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE m.status = 'pending' AND NOT m.held) AS pending,
                                    count(*) FILTER (WHERE m.status = 'queued') AS in_flight
                               FROM message_queue m WHERE m.user_id = u.id AND m.device_id IS NOT NULL) q
         WHERE (t.pending, t.in_flight) IS DISTINCT FROM (q.pending, q.in_flight)""").fetchone()["n"]
    monitoring_off = c.execute("""
        SELECT count(*) AS n FROM users u CROSS JOIN LATERAL monitor_queue_depth(u.id) t
         CROSS JOIN LATERAL (SELECT count(*) FILTER (WHERE m.status = 'pending' AND NOT m.held
                                                       AND m.scheduled_at <= now()) AS due_now,
                                    count(*) FILTER (WHERE m.status = 'pending' AND NOT m.held
                                                       AND m.scheduled_at > now()) AS later,
                                    count(*) FILTER (WHERE m.status = 'queued') AS in_flight
                               FROM message_queue m WHERE m.device_id = t.device_id) q
         WHERE (t.due_now, t.scheduled_later, t.in_flight) IS DISTINCT FROM (q.due_now, q.later, q.in_flight)""").fetchone()["n"]
    # Each device's load (device_load: the caps, the page's device table, the engine's device choices)
    # comes from the counts the claim keeps on its pacing row: never fewer than the messages claimed
    # in that hour and that day (more when a claimed message went back to the queue and was claimed again).
    load_off = c.execute("""
        SELECT count(*) AS n FROM device_load() l
          JOIN user_devices d ON d.id = l.device_id JOIN users u ON u.id = d.user_id
         CROSS JOIN LATERAL (
           SELECT count(*) FILTER (WHERE m.claimed_at >= date_trunc('minute', now() - interval '1 hour')) AS hour,
                  count(*) FILTER (WHERE m.claimed_at >= date_trunc('day', now() AT TIME ZONE u.timezone)
                                                          AT TIME ZONE u.timezone) AS today
             FROM broadcast_messages m WHERE m.device_id = l.device_id) b
         WHERE l.messages_hour < b.hour OR l.messages_today < b.today""").fetchone()["n"]
    # Receipts: the network loses ~2 % and sends some before the send returns; one kept as early
    # while its message has settled was missed by that message's completion (sender/events.py).
    receipts = c.execute("""
        SELECT (SELECT count(*) FROM broadcast_messages WHERE status = 'sent') AS sent,
               (SELECT count(*) FROM broadcast_messages WHERE status = 'sent' AND delivered_at IS NOT NULL) AS delivered,
               (SELECT count(*) FROM early_receipts) AS early,
               (SELECT count(*) FROM early_receipts e JOIN broadcast_messages m
                   ON m.device_id = e.device_id AND m.wa_message_id = e.wa_message_id) AS stranded""").fetchone()
    lifecycle = {r["event"]: r["n"] for r in c.execute("SELECT event, count(*) AS n FROM device_events GROUP BY 1")}
    lifecycle["timelock_refusals"] = sum(1 for r in rows.values()
                                         if (r["error_message"] or "").startswith("reach-out timelock"))
    lifecycle["undeliverable"] = sum(1 for r in rows.values() if (r["error_message"] or "").startswith("undeliverable: "))
    # a send failed by a timeout after the network had it: failed, received once, never sent again
    lifecycle["failed_yet_received"] = sum(1 for i, r in rows.items() if r["status"] == "failed" and i in counts)
    return {"status": dict(status), "received": len(received), "duplicates": duplicates, "losses": len(lost),
            "worst_hour": cap["worst"], "cap": cap["cap"], "devices_over_cap": cap["over"], "lifecycle": lifecycle,
            "warming": warmup["warming"], "over_warmup_cap": warmup["over"],
            "timelocked": timelocked["devices"], "cold_after_timelock": timelocked["cold_after"],
            "cold_racing_timelock": timelocked["cold_racing"],
            "steps_stuck_in_flight": stuck, "receipts": receipts, "bans": bans, "overview_off": overview_off,
            "monitoring_off": monitoring_off, "load_off": load_off}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 minute instead of 10")
    ap.add_argument("--devices", type=int, default=3000)
    ap.add_argument("--senders", type=int, default=2, help="sender worker processes")
    args = ap.parse_args(argv)
    size = QUICK if args.quick else FULL
    base = require_database_url()
    dbname = f"wa_soak_{os.getpid()}"
    with connect(base) as admin:
        admin.execute(f"CREATE DATABASE {dbname}")
    url = with_database(base, dbname)
    store = Path(tempfile.mkdtemp(prefix="wa-soak-"))
    pool, stop = None, threading.Event()
    try:
        apply.apply(url)
        with connect(url) as c:
            t = time.monotonic()
            owners = load(c, args.devices, size)
            SimNetwork.join(store, [r["phone"] for r in c.execute(
                "SELECT phone FROM user_devices WHERE warmup_started_at IS NOT NULL")])   # new numbers, joined now
            print(f"loaded {args.devices} devices, {len(owners)} owners, "
                  f"{args.devices * size['leads_per_device']} leads in {time.monotonic() - t:.1f}s", flush=True)
            env = dict(os.environ, DATABASE_URL=url, WA_TRANSPORT="sim", WA_SIM_DIR=str(store), WA_SIM_LATENCY_MS="50",
                       WA_SIM_REPLY_RATE="0.01", WA_SIM_FAILURE_RATE="0.005", WA_SIM_RULES="on", WA_SIM_TIME_SCALE=str(TIME_SCALE),
                       WA_SIM_REPORT_RATE=str(REPORT_RATE), SENDER_PROCESSES=str(args.senders), LOG_LEVEL="WARNING",
                       PYTHONPATH=str(ROOT))
            pool = subprocess.Popen([sys.executable, "-m", "sender"], cwd=ROOT, env=env)
            clock = threading.Thread(target=compressed_clock, args=(url, stop), daemon=True)
            clock.start()
            time.sleep(5)
            start_mem = memory(c, pool.pid, dbname)
            started = time.monotonic()
            killed, claims = None, {}
            while time.monotonic() - started < size["seconds"]:
                until = size["seconds"] if killed else size["seconds"] * KILL_AT
                time.sleep(max(0, min(30, until - (time.monotonic() - started))))
                if killed is None and time.monotonic() - started >= size["seconds"] * KILL_AT:
                    killed = kill_a_worker(c, pool.pid)
                    continue
                s = Counter({r["status"]: r["n"] for r in c.execute(
                    "SELECT status, count(*) AS n FROM broadcast_messages GROUP BY 1")})
                print(f"  {time.monotonic() - started:5.0f}s  {dict(s)}", flush=True)
                keep_claim_totals(c, claims)
            keep_claim_totals(c, claims)
            end_mem = memory(c, pool.pid, dbname)
            stop.set()
            pool.send_signal(signal.SIGTERM)
            pool.wait(120)
            clock.join(30)
            elapsed = time.monotonic() - started
            c.execute("SELECT pg_sleep(greatest(0, extract(epoch FROM %s + make_interval(secs => %s) - now())))",
                      [killed["at"], STUCK_SECONDS + 1])
            c.execute("SELECT recover_stuck()")
            v = verdict(c, store)
            t = takeover(c, killed)
    finally:
        stop.set()
        if pool and pool.poll() is None:
            pool.kill()
        with connect(base) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        shutil.rmtree(store, ignore_errors=True)
    sent = v["status"].get("sent", 0)
    offered = args.devices * min(v["cap"], elapsed / ((MIN_DELAY + MAX_DELAY) / 2)) / elapsed
    print(f"devices={args.devices} seconds={elapsed:.0f} messages={sum(v['status'].values())} "
          f"statuses={v['status']} received={v['received']}")
    print(f"whatsapp: device events {v['lifecycle']}")
    print(f"duplicates={v['duplicates']} losses={v['losses']} "
          f"worst_rolling_hour={v['worst_hour']} cap={v['cap']} devices_over_cap={v['devices_over_cap']}")
    print(f"warm-up: devices_warming={v['warming']} over_warmup_cap={v['over_warmup_cap']}; timelocks: "
          f"devices_timelocked={v['timelocked']} cold_contacts_after_timelock={v['cold_after_timelock']} "
          f"(racing the lock's commit, within 1 s: {v['cold_racing_timelock']})")
    b = v["bans"]
    print(f"bans: devices_banned={b['devices']} (for spam reports {b['reported']}); "
          f"claimed_after_a_report_ban={b['claimed_after']} new_numbers_banned={b['new_numbers']}")
    print(f"sequences: steps marked in flight with no message left to settle them: {v['steps_stuck_in_flight']}")
    print(f"overview: owners whose queue figures differ from counting the queue: {v['overview_off']}; "
          f"monitoring: devices whose figures differ: {v['monitoring_off']}, whose load (hour, today) counts fewer "
          f"sends than their messages claimed: {v['load_off']}")
    print(f"killed worker: {len(killed['devices'])} devices, {t['devices_sending_again']} sending again after it died "
          f"(the first after {t['first_s'] or 0:.1f} s, the median after {t['median_s'] or 0:.1f} s); "
          f"of its {killed['claimed']} claimed messages not completed, {killed['claimed'] - t['stuck']} went back to the "
          f"queue and {t['stuck']} (those it may have begun sending) failed as stuck")
    r = v["receipts"]
    print(f"receipts: {r['delivered']} of {r['sent']} sent messages delivered ({r['delivered'] / max(1, r['sent']):.1%}); "
          f"early receipts left {r['early']}, stranded (their message settled) {r['stranded']}")
    n, rows, seconds = (sum(totals[i] for totals in claims.values()) for i in range(3))
    print(f"claims: {n} in {elapsed:.0f} s ({n / elapsed * 60:.0f} a minute), {rows / max(1, n):.1f} rows and "
          f"{seconds / max(1, n) * 1000:.1f} ms each (the senders' totals as each last reported them)")
    print(f"memory start: {fmt(start_mem)}")
    print(f"memory end:   {fmt(end_mem)}")
    ok = (v["duplicates"] == 0 and v["losses"] == 0 and v["devices_over_cap"] == 0 and v["over_warmup_cap"] == 0
          and v["cold_after_timelock"] == 0 and v["steps_stuck_in_flight"] == 0 and v["receipts"]["stranded"] == 0
          and v["bans"]["claimed_after"] == 0 and v["bans"]["new_numbers"] == 0 and t["devices_sending_again"] > 0
          and v["overview_off"] == 0 and v["monitoring_off"] == 0 and v["load_off"] == 0)
    print(f"ratio={sent / elapsed / offered:.2f} sent_per_s={sent / elapsed:.0f} offered_per_s={offered:.0f} "
          f"duplicates={v['duplicates']} losses={v['losses']} caps_held={v['devices_over_cap'] == 0} "
          f"warmup_caps_held={v['over_warmup_cap'] == 0} timelocks_held={v['cold_after_timelock'] == 0} ok={ok}")
    return 0 if ok else 1


def fmt(m):
    return (f"senders {m['sender_mb']:.0f} MB, database backends {m['db_backends_mb']:.0f} MB "
            f"({m['db_backends']} connections), database on disk {m['db_disk_mb']:.0f} MB")


if __name__ == "__main__":
    sys.exit(main())
