"""What devices cost a sender process, and whether 3000 real WhatsApp numbers fit (issue 12).

For N in 100, 500, 1000 and 3000 (--quick: 100 and 500) devices with stored sessions (rows shaped
like whatsmeow's in whatsmeow_device) in a scratch database, the sender pool runs exactly as
`make run` starts it with WA_TRANSPORT=neonize: it sizes its processes from the devices to run and
the measured devices per process, and every device gets a real neonize client whose connect fails
at the dial (no network here; the sessions, their stores, database pools and threads are real).
Once every device has been attempted: the PostgreSQL backends of the scratch database, PgBouncer's
client connections (the stores' pools), and per sender process its devices, OS threads (peak and
now), open files and RSS. Then memory per simulated device, in one process.

    flock /tmp/bench.lock .venv/bin/python -m scripts.bench_devices [--quick]

Prints the figures and, last, ratio=<backends at the largest N / 150> (goal: at most 1).
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time

import psycopg

from common.config import ROOT, neonize_store_url, require_database_url
from scripts.benchlib import (children, connect, create_scratch_database, drop_scratch_database, log, proc_status,
                              stop_pool)
from scripts.embedded import POOL_SIZE

SIZES, QUICK_SIZES = (100, 500, 1000, 3000), (100, 500)
BACKENDS_GOAL = 150


def create_session_tables(url):
    """neonize creates whatsmeow's tables on its first connect (which then fails at the dial)."""
    code = ("from neonize.client import NewClient; from neonize.exc import NeonizeError;"
            "from sender.transport.neonize_transport import neonize_store_address as a;"
            f"c = NewClient(a({url!r}), uuid='tables');\ntry: c.connect()\nexcept NeonizeError: pass")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)


def load(c, n):
    """One owner, n devices with stored sessions."""
    c.execute("DELETE FROM users")
    c.execute("DELETE FROM whatsmeow_device")
    from tests.factories import PASSWORD_HASH
    uid = c.execute("SELECT create_user('bench@example.com', 'Bench', %s) AS id", [PASSWORD_HASH]).fetchone()["id"]
    c.execute("""INSERT INTO user_devices (user_id, device_name, phone, jid)
                 SELECT %s, 'bench ' || g, (601000000000 + g)::text, (601000000000 + g)::text || ':1@s.whatsapp.net'
                   FROM generate_series(1, %s) g""", [uid, n])
    cols = c.execute("""SELECT column_name, data_type FROM information_schema.columns
                         WHERE table_name = 'whatsmeow_device' AND is_nullable = 'NO' AND column_name <> 'jid'""").fetchall()
    sig64 = {"signed_pre_key_sig", "adv_account_sig", "adv_device_sig"}
    values = [f"decode(repeat('01', {64 if r['column_name'] in sig64 else 32}), 'hex')" if r["data_type"] == "bytea"
              else ("'1'" if r["data_type"] == "text" else "1") for r in cols]
    c.execute(f"""INSERT INTO whatsmeow_device (jid, {', '.join(r['column_name'] for r in cols)})
                  SELECT jid, {', '.join(values)} FROM user_devices""")


def pooler_clients(url):
    """Client connections PgBouncer holds for this database (the stores' pools), from SHOW POOLS."""
    store = neonize_store_url(url)
    if store == url:
        return None
    from urllib.parse import parse_qs, urlsplit
    parts, query = urlsplit(store), parse_qs(urlsplit(store).query)
    with psycopg.connect(host=query["host"][0], port=query["port"][0], dbname="pgbouncer", user=parts.username,
                         password=parts.password, autocommit=True, cursor_factory=psycopg.ClientCursor) as admin:
        cur = admin.execute("SHOW POOLS")
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    dbname = urlsplit(url).path.lstrip("/")
    return sum(r["cl_active"] + r["cl_waiting"] for r in rows if r["database"] == dbname)


def run_size(url, dbname, n, t0):
    with connect(url) as c:
        load(c, n)
        env = dict(os.environ, DATABASE_URL=url, WA_TRANSPORT="neonize", LOG_LEVEL="WARNING", PYTHONPATH=str(ROOT),
                   NEONIZE_STDOUT=os.devnull)
        env.pop("SENDER_PROCESSES", None)
        pool = subprocess.Popen([sys.executable, "-m", "sender"], cwd=ROOT, env=env)
        peak, stop = {}, threading.Event()

        def sample():
            while not stop.wait(0.5):
                for pid in children(pool.pid):
                    peak[pid] = max(peak.get(pid, 0), proc_status(pid, "Threads"))
        threading.Thread(target=sample, daemon=True).start()
        try:
            deadline = time.monotonic() + 120 + n * 0.5
            while True:
                attempted = c.execute("""SELECT count(DISTINCT device_id) AS n FROM device_events
                                          WHERE event = 'offline'""").fetchone()["n"]
                if attempted >= n or time.monotonic() > deadline:
                    break
                time.sleep(2)
            log(t0, f"{n} devices: {attempted} attempted")
            backends = {r["app"]: r["n"] for r in c.execute(
                """SELECT coalesce(nullif(application_name, ''), backend_type) AS app, count(*) AS n
                     FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() GROUP BY 1""", [dbname])}
            budget = c.execute("SELECT count(*) AS n FROM user_devices WHERE status_reason LIKE %s",
                               ["%connects (each leaks%"]).fetchone()["n"]
            leases = [r["n"] for r in c.execute("SELECT count(*) AS n FROM device_leases GROUP BY sender_id ORDER BY 1")]
            workers = [{"pid": pid, "threads": proc_status(pid, "Threads"), "peak_threads": peak.get(pid, 0),
                        "rss_mb": proc_status(pid, "VmRSS") / 1024, "files": len(os.listdir(f"/proc/{pid}/fd"))}
                       for pid in children(pool.pid)]
            clients = pooler_clients(url)
        finally:
            stop.set()
            stop_pool(pool)
    return {"devices": n, "attempted": attempted, "budget_exhausted": budget, "backends": sum(backends.values()),
            "by_app": backends, "pooler_clients": clients, "leases": leases, "workers": workers}


def sim_memory(n=5000):
    """kB per simulated device in one process."""
    code = f"""
import json, tempfile, time
from sender.transport.base import DeviceSession
from sender.transport.sim import SimConfig, SimTransport
def rss():
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS:')).split()[1])
events = []
t = SimTransport(events.append, SimConfig(store_dir=tempfile.mkdtemp(prefix='bench-sim-')))
base = rss()
for i in range({n}):
    t.start(DeviceSession(i + 1, jid=f'601{{i:08d}}:1@s.whatsapp.net'))
deadline = time.monotonic() + 60
while sum(type(e).__name__ == 'Connected' for e in events) < {n} and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({{'kb': (rss() - base) / {n}, 'mb': rss() / 1024}}))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 and 500 devices only")
    args = ap.parse_args()
    t0 = time.perf_counter()
    base = require_database_url()
    name = f"wa_bench_devices_{os.getpid()}"
    url = create_scratch_database(base, name)
    results = []
    try:
        create_session_tables(url)
        store = neonize_store_url(url)
        print(f"session store: {'PgBouncer, transaction pooling' if store != url else 'the database itself'}; "
              f"store pool at most {POOL_SIZE} server connections per database")
        for n in (QUICK_SIZES if args.quick else SIZES):
            r = run_size(url, name, n, t0)
            results.append(r)
            w = r["workers"]
            print(f"{n} devices: attempted {r['attempted']}, budget exhausted {r['budget_exhausted']}; "
                  f"PostgreSQL backends {r['backends']} {r['by_app']}; PgBouncer clients {r['pooler_clients']}; "
                  f"{len(w)} sender processes, devices {r['leases']}, threads now "
                  f"{[x['threads'] for x in w]} peak {[x['peak_threads'] for x in w]}, open files "
                  f"{[x['files'] for x in w]}, RSS MB {[round(x['rss_mb']) for x in w]}", flush=True)
    finally:
        drop_scratch_database(base, name)
    sim = sim_memory()
    print(f"simulated: 5000 devices in one process, {sim['kb']:.1f} kB per device, process {sim['mb']:.0f} MB")
    largest = results[-1]
    print(f"ratio={largest['backends'] / BACKENDS_GOAL:.2f} (PostgreSQL backends at {largest['devices']} devices "
          f"/ {BACKENDS_GOAL})")


if __name__ == "__main__":
    main()
