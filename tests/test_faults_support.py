"""Helpers for the fault tests (no tests here): the operator's promise checked after every fault,
and a private PostgreSQL cluster for the tests that restart the server (the shared one is never
touched)."""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from common.config import ROOT
from tests.test_sender_support import received

SETTLED = {"sent", "failed", "skipped"}


def assert_accounted(c, ids, store):
    """Every message is sent, failed or skipped with a reason, or still waiting (pending); the
    simulated network received none twice; every `sent` row reached it; a message it received
    that is not `sent` was failed as stuck (its sender died between the send and the record),
    never sent again. Returns the count per status."""
    rows = {r["id"]: r for r in c.execute(
        "SELECT id, status, error_message FROM broadcast_messages WHERE id = ANY(%s)", [ids])}
    assert set(rows) == set(ids), "messages vanished from the queue"
    got = [r["message_id"] for r in received(store) if r["message_id"] in rows]
    dupes = [i for i, n in Counter(got).items() if n > 1]
    assert dupes == [], f"sent twice: {dupes[:10]}"
    for i, r in rows.items():
        assert r["status"] in SETTLED | {"pending"}, f"message {i} left {r['status']}"
        if r["status"] in ("failed", "skipped"):
            assert (r["error_message"] or "").strip(), f"message {i} {r['status']} without a reason"
    sent = {i for i, r in rows.items() if r["status"] == "sent"}
    assert sent <= set(got), f"marked sent but never received: {sorted(sent - set(got))[:10]}"
    for i in set(got) - sent:
        assert rows[i]["status"] == "failed" and rows[i]["error_message"].startswith("stuck"), rows[i]
    return Counter(r["status"] for r in rows.values())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateCluster:
    """An embedded cluster of its own (scripts/embedded.py with WA_VAR and EMBEDDED_PG_PORT) in a
    temporary folder the postgres OS user can traverse, on a free port."""

    def __init__(self):
        self.var = Path(tempfile.mkdtemp(prefix="wa-faults-", dir="/tmp"))
        self.var.chmod(0o755)
        self.env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DB_URI")}
        self.env.update(WA_VAR=str(self.var), EMBEDDED_PG_PORT=str(free_port()))
        self.url = self._embedded("up").stdout.strip().splitlines()[-1]

    def _embedded(self, command):
        r = subprocess.run([sys.executable, "-m", "scripts.embedded", command], cwd=ROOT, env=self.env,
                           capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        return r

    def crash(self):
        """Stop the server the way a crash would (immediate: no checkpoint, clients cut off)."""
        from scripts import embedded
        cmd = [str(embedded.bin_dir() / "pg_ctl"), "stop", "-m", "immediate", "-w", "-D", str(self.var / "pg" / "data")]
        if embedded.RUN_AS_ROOT:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    def start(self):
        self._embedded("up")

    def remove(self):
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            self._embedded("stop")
        shutil.rmtree(self.var, ignore_errors=True)
