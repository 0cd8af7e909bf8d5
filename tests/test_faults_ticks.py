"""The clock (or pg_cron) missed its ticks for a while: campaigns fell due and sequence steps came
due with nobody to run them. When the ticks come back, twice over (a clock and pg_cron catching up
at once), each message is queued once, and dispatch still keeps every device's pacing and cap:
the backlog waits, it does not burst."""
import time
from collections import defaultdict
from datetime import date, timedelta

import pytest
from psycopg.types.json import Jsonb

from tests.test_faults_support import assert_accounted
from tests.test_sender_support import add_devices, conn, new_owner, reset, running_worker, statuses, wait_until

DEVICES, LEADS, CAP, DELAY = 3, 20, 4, 1


@pytest.fixture
def c(committed_db_url):
    with conn(committed_db_url) as c:
        reset(c)
        yield c


def missed_work(c):
    """An owner whose two campaigns fell due 20 and 10 minutes ago and whose sequence's first step
    is due for every lead; no tick has run."""
    uid = new_owner(c)
    devices = add_devices(c, uid, DEVICES, min_delay=DELAY, max_delay=DELAY, hourly_limit=CAP)
    c.execute("UPDATE user_devices SET status = 'online' WHERE id = ANY(%s)", [devices])   # only the clock is down
    seq = c.execute("SELECT save_sequence(%s, NULL, %s) AS id", [uid, Jsonb({
        "name": "missed", "trigger": "missedseq", "min_delay_seconds": DELAY, "max_delay_seconds": DELAY,
        "steps": [{"day_number": 1, "content": "Day one {name}", "trigger_delay_hours": 0}]})]).fetchone()["id"]
    c.execute("SELECT set_sequence_status(%s, %s, 'active')", [uid, seq])
    c.execute("""INSERT INTO leads (user_id, device_id, name, phone, niche, trigger)
                 SELECT %s, d, 'Lead ' || g, (60130000000 + d * 1000 + g)::text, 'missed', 'missedseq'
                   FROM unnest(%s::bigint[]) d, generate_series(1, %s) g""", [uid, devices, LEADS])
    campaigns = []
    for minutes_ago in (20, 10):
        cid = c.execute("SELECT create_campaign(%s, 'broadcast', %s, 'missed', 'all', 'Hello {name}', NULL, NULL, "
                        "NULL, %s, '10:00', %s, %s) AS id",
                        [uid, f"missed {minutes_ago}", date.today() + timedelta(days=2), DELAY, DELAY]).fetchone()["id"]
        c.execute("UPDATE campaigns SET scheduled_at = now() - make_interval(mins => %s) WHERE id = %s",
                  [minutes_ago, cid])
        campaigns.append(cid)
    return uid, devices, seq, campaigns


def run_ticks(c):
    for job in c.execute("SELECT name, command FROM app_jobs() ORDER BY name").fetchall():
        c.execute(job["command"])


def test_missed_ticks_catch_up_once_and_without_a_burst(c, committed_db_url, tmp_path):
    uid, devices, seq, campaigns = missed_work(c)
    assert statuses(c) == {}                               # nothing queued while the clock was away
    run_ticks(c)
    run_ticks(c)                                           # the catch-up runs twice: still once each
    per_source = {r["k"]: r["n"] for r in c.execute("""
        SELECT coalesce(campaign_id::text, 'seq' || sequence_id) AS k, count(*) AS n,
               count(DISTINCT recipient_phone) AS phones
          FROM broadcast_messages WHERE user_id = %s GROUP BY 1""", [uid])}
    want = DEVICES * LEADS
    assert per_source == {str(campaigns[0]): want, str(campaigns[1]): want, f"seq{seq}": want}
    ids = [r["id"] for r in c.execute("SELECT id FROM broadcast_messages WHERE user_id = %s", [uid])]
    assert statuses(c, ids) == {"pending": 3 * want}

    store = tmp_path / "simnet"
    with running_worker(committed_db_url, store):
        wait_until(lambda: statuses(c, ids).get("sent", 0) == DEVICES * CAP, timeout=20, what="each device at its cap")
        time.sleep(1.5)                                    # more claim rounds: the cap still holds
        assert statuses(c, ids) == {"sent": DEVICES * CAP, "pending": 3 * want - DEVICES * CAP}
    claims = defaultdict(list)
    for r in c.execute("SELECT device_id, claimed_at FROM broadcast_messages WHERE id = ANY(%s) AND status = 'sent' "
                       "ORDER BY claimed_at", [ids]):
        claims[r["device_id"]].append(r["claimed_at"])
    assert {d: len(t) for d, t in claims.items()} == {d: CAP for d in devices}
    gaps = [(b - a).total_seconds() for t in claims.values() for a, b in zip(t, t[1:])]
    assert min(gaps) >= DELAY, gaps                        # the backlog never made a device hurry
    first = c.execute("SELECT DISTINCT campaign_id FROM broadcast_messages WHERE id = ANY(%s) AND status = 'sent'",
                      [ids]).fetchall()
    assert [r["campaign_id"] for r in first] == [campaigns[0]]   # the oldest due work goes first
    assert_accounted(c, ids, store)
