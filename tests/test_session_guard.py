"""The run always ends: a failing test that leaves an open websocket (server and client), a
non-daemon thread and a child process still exits with pytest's status soon after its summary."""
import os
import subprocess
import sys
import time

import pytest

from common.config import ROOT


@pytest.mark.parametrize("workers", [[], ["-n", "2", "--dist", "loadfile"]], ids=["one process", "xdist as make test"])
def test_a_leaky_failing_run_still_ends_with_its_status(workers):
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", *workers, "tests/guard_cases/leaky_failure.py"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    summary_at, lines = None, []
    try:
        for line in proc.stdout:              # ends when the process (and every child holding the pipe) is gone
            lines.append(line)
            if summary_at is None and " failed" in line and " in " in line:
                summary_at = time.monotonic()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines)
    assert summary_at is not None, out
    assert time.monotonic() - summary_at < 60, out
    assert proc.returncode == 1, out
    assert "leaked-non-daemon" in out and "leftover child process" in out, out
