"""`make run` / `make stop`: the Procfile's processes (web, sender, clock, webhooks) started in the
background with the simulated WhatsApp and demo data, logs under var/log, pids under var/run.

    python -m scripts.run start | stop
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from common.config import (ROOT, VAR, ConfigError, env, port, private_dir, require_database_url, run_command,
                           transport_name)
from scripts import demo

PROCESSES = ("web", "sender", "clock", "webhooks")
DEMO_REPLY_RATE = "0.3"   # share of sent messages a simulated contact answers in the demo
RUN, LOGS = VAR / "run", VAR / "log"


def procfile():
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if ":" in line and not line.startswith("#"):
            name, cmd = line.split(":", 1)
            entries[name.strip()] = cmd.strip()
    return entries


def alive(pid):
    """Running, not a zombie (a container's PID 1 may never reap our orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _pid(name):
    f = RUN / f"{name}.pid"
    if f.exists():
        pid = int(f.read_text())
        if alive(pid):
            return pid
        f.unlink()
    return None


def _port_free(p):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", p))
            return True
        except OSError:
            return False


def _wait_healthy(url, seconds=40):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    return False


def start():
    url = require_database_url()
    private_dir(RUN)
    private_dir(LOGS)
    web_port = port()
    if _pid("web") is None and not _port_free(web_port):
        raise ConfigError(f"port {web_port} is in use by another program; stop it or set PORT")
    login = demo.ensure_demo(url)
    child_env = dict(os.environ, DATABASE_URL=url, PORT=str(web_port), WA_TRANSPORT=transport_name(),
               PATH=f"{ROOT / '.venv' / 'bin'}:{env('PATH', '')}")
    # The demo's simulated contacts answer some messages (text, now and then a photo), so its chats are alive.
    child_env.setdefault("WA_SIM_REPLY_RATE", DEMO_REPLY_RATE)
    commands = procfile()
    for name in PROCESSES:
        if _pid(name):
            continue
        with open(os.open(LOGS / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
            proc = subprocess.Popen(["bash", "-c", f"exec {commands[name]}"], cwd=ROOT, env=child_env,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        (RUN / f"{name}.pid").write_text(str(proc.pid))
    if not _wait_healthy(f"http://127.0.0.1:{web_port}/healthz"):
        raise ConfigError(f"the web process did not answer /healthz; see {LOGS / 'web.log'}")
    kind = "simulated WhatsApp" if child_env["WA_TRANSPORT"] == "sim" else "real WhatsApp"
    print(f"WA Broadcast is running ({kind}: WA_TRANSPORT={child_env['WA_TRANSPORT']}).")
    print(f"Logs: {LOGS}/   Stop: make stop")
    print(f"Demo login: {login[0]} / {login[1]}")
    print(f"Dashboard: http://localhost:{web_port}/dashboard")


def stop():
    for name in PROCESSES:
        pid = _pid(name)
        if pid is None:
            continue
        try:
            os.killpg(pid, signal.SIGTERM)   # senders finish in-flight sends and release leases
        except ProcessLookupError:
            pass
        for _ in range(150):
            if not alive(pid):
                break
            time.sleep(0.1)
        else:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        (RUN / f"{name}.pid").unlink(missing_ok=True)


def main(cmd="start"):
    commands = {"start": start, "stop": stop}
    if cmd not in commands:
        raise ConfigError(f"unknown command {cmd!r}: use start or stop")
    commands[cmd]()


if __name__ == "__main__":
    sys.exit(run_command(main, *sys.argv[1:2]))
