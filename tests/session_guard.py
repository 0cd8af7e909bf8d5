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

GRACE_SECONDS = 10
_status = {"code": None}


def pytest_sessionfinish(session, exitstatus):
    _status["code"] = int(exitstatus)


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


def pytest_unconfigure(config):
    if _status["code"] is None:
        return  # pytest ended before running a session (usage error, --help): nothing to guard
    killed = _kill_children()
    if killed:
        print(f"\nsession guard: killed {len(killed)} leftover child process(es):", file=sys.stderr)
        for pid, command in killed:
            print(f"  {pid}: {command[:200]}", file=sys.stderr)
    deadline = time.monotonic() + GRACE_SECONDS
    while _lingering() and time.monotonic() < deadline:
        time.sleep(0.1)
    threads = _lingering()
    if not threads:
        return
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
    os._exit(_status["code"])


def pytest_configure(config):
    # A hard hang outside any test (collection, a session fixture's teardown) still ends, with stacks.
    faulthandler.dump_traceback_later(float(os.environ.get("WA_TEST_SESSION_LIMIT", 60 * 60)), exit=True)
