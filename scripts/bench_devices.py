"""How many devices one sender process holds: memory per simulated device and per idle
(unconnected) neonize client, each measured in a fresh process (RSS from /proc).

    flock /tmp/bench.lock .venv/bin/python -m scripts.bench_devices [--sim 5000] [--neonize 400]

No network here, so neonize clients are created but not connected (a connected whatsmeow session
costs more: two OS threads, a websocket and a database pool each; peers publish ~50 MB per session).
Prints the figures and, last, ratio=<neonize idle client memory / simulated device memory>.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def child_sim(n):
    from sender.transport.base import DeviceSession
    from sender.transport.sim import SimConfig, SimTransport
    events = []
    t = SimTransport(events.append, SimConfig(store_dir=tempfile.mkdtemp(prefix="bench-sim-")))
    base = rss_kb()
    for i in range(n):
        t.start(DeviceSession(i + 1, jid=f"601{i:08d}:1@s.whatsapp.net", phone=f"601{i:08d}"))
    deadline = time.monotonic() + 60
    while sum(1 for e in events if type(e).__name__ == "Connected") < n and time.monotonic() < deadline:
        time.sleep(0.05)
    connected = sum(1 for e in events if type(e).__name__ == "Connected")
    after = rss_kb()
    t.close()
    return {"base_kb": base, "after_kb": after, "devices": n, "connected": connected}


def child_neonize(n, url):
    os.environ.setdefault("NEONIZE_BOT_TAG", "off")
    before_import = rss_kb()
    from neonize.client import NewClient

    from sender.transport.neonize_transport import neonize_store_address
    base = rss_kb()
    store = neonize_store_address(url)
    clients = [NewClient(store, uuid=f"bench-{i}", new_device=True) for i in range(n)]   # kept referenced
    after = rss_kb()
    return {"before_import_kb": before_import, "base_kb": base, "after_kb": after, "devices": len(clients),
            "threads": len(os.listdir("/proc/self/task"))}


def run_child(kind, n, url=None):
    out = subprocess.run([sys.executable, "-m", "scripts.bench_devices", "--child", kind, "--n", str(n)]
                         + (["--url", url] if url else []),
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sim", type=int, default=5000)
    ap.add_argument("--neonize", type=int, default=400)
    ap.add_argument("--budget", type=int, default=int(os.environ.get("NEONIZE_CONNECTION_BUDGET", "200")))
    ap.add_argument("--child")
    ap.add_argument("--n", type=int)
    ap.add_argument("--url")
    args = ap.parse_args()
    if args.child:
        result = child_sim(args.n) if args.child == "sim" else child_neonize(args.n, args.url)
        print(json.dumps(result))
        return

    from common.config import require_database_url
    sim = run_child("sim", args.sim)
    neo = run_child("neonize", args.neonize, require_database_url())
    sim_kb = (sim["after_kb"] - sim["base_kb"]) / sim["devices"]
    neo_kb = (neo["after_kb"] - neo["base_kb"]) / neo["devices"]
    neo_base_mb = neo["base_kb"] / 1024
    print(f"simulated: {sim['devices']} devices ({sim['connected']} connected) in one process: "
          f"{sim_kb:.1f} kB per device, process {sim['after_kb'] / 1024:.0f} MB")
    print(f"neonize: process with neonize loaded {neo_base_mb:.0f} MB (python alone {neo['before_import_kb'] / 1024:.0f} MB); "
          f"{neo['devices']} idle unconnected clients: {neo_kb:.1f} kB per client, {neo['threads']} threads")
    budget_mb = neo_base_mb + args.budget * neo_kb / 1024
    print(f"one sender process holds: {sim['devices']} simulated devices (SENDER_CAPACITY default) in "
          f"{sim['after_kb'] / 1024:.0f} MB; up to {args.budget} neonize devices (NEONIZE_CONNECTION_BUDGET: "
          f"every connect holds >= 1 PostgreSQL connection) at >= {budget_mb:.0f} MB idle, "
          f"plus 2 OS threads and a websocket per connected session")
    print(f"ratio={neo_kb / sim_kb:.1f} (neonize idle client memory / simulated device memory)")


if __name__ == "__main__":
    main()
