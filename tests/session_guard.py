"""The test run always ends (loaded by pytest.ini as `-p tests.session_guard`).

After pytest's summary, child processes a test left running are killed, and threads that would keep
the interpreter alive (non-daemon threads of a leaked websocket client, a library's worker...) get
GRACE_SECONDS to finish. Any still alive are named with their stacks, and the process exits at once
with pytest's own status, so one failing test can never turn a CI run into a hang.
"""
import faulthandler
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest

GRACE_SECONDS = 10
_status = {"code": None}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    _status["code"] = int(exitstatus)
    if hasattr(session.config, "workerinput"):
        # A pytest-xdist worker is shut down by its controller without reaching pytest_unconfigure
        # for sure, and children it orphans escape the controller's guard: clean up here instead.
        _report_killed(_kill_children())
        _wait_for_threads()


def _children(pid):
    """Every live descendant of pid (zombies aside: they hold nothing), deepest first, from /proc."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state != "Z":
            parents.setdefault(int(ppid), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return list(reversed(found))


def _command(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def _kill_children():
    left = [(pid, _command(pid)) for pid in _children(os.getpid())]
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def _lingering():
    me = threading.current_thread()
    return [t for t in threading.enumerate() if t is not me and not t.daemon and t.is_alive()]


def _report_killed(killed):
    if killed:
        print(f"\nsession guard: killed {len(killed)} leftover child process(es):", file=sys.stderr)
        for pid, command in killed:
            print(f"  {pid}: {command[:200]}", file=sys.stderr)


def _wait_for_threads():
    """Lingering threads get GRACE_SECONDS; those still alive are named with their stacks (returned)."""
    deadline = time.monotonic() + GRACE_SECONDS
    while _lingering() and time.monotonic() < deadline:
        time.sleep(0.1)
    threads = _lingering()
    if threads:
        frames = sys._current_frames()
        print(f"\nsession guard: {len(threads)} thread(s) still alive after the tests; exiting anyway "
              f"with pytest's status {_status['code']}:", file=sys.stderr)
        for t in threads:
            print(f"--- thread {t.name!r} (ident {t.ident})", file=sys.stderr)
            frame = frames.get(t.ident)
            if frame is not None:
                print("".join(traceback.format_stack(frame)), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    return threads


def pytest_unconfigure(config):
    if _status["code"] is None or hasattr(config, "workerinput"):
        return  # no session ran (usage error, --help), or an xdist worker (guarded at its session's end)
    _report_killed(_kill_children())
    if _wait_for_threads():
        os._exit(_status["code"])


def pytest_configure(config):
    # A hard hang outside any test (collection, a session fixture's teardown) still ends, with stacks.
    faulthandler.dump_traceback_later(float(os.environ.get("WA_TEST_SESSION_LIMIT", 60 * 60)), exit=True)
