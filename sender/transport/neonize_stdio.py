"""Keeping the Go core's output out of the logs' way.

neonize's Go core prints to file descriptor 1 directly; Python's logging and print() are only a
layer above it. Pointing fd 1 at a sink (NEONIZE_STDOUT, default /dev/null) and giving Python a
duplicate of the original stdout keeps our own output where it was and drops the Go noise.
Go panics go to fd 2 and stay visible.
"""
import io
import os
import sys
import threading

from common.config import env

_lock = threading.Lock()
_diverted = False


def divert_native_stdout(sink=None):
    """Idempotent: the first call in a process moves fd 1 to the sink; later calls do nothing."""
    global _diverted
    with _lock:
        if _diverted:
            return
        sink = sink or env("NEONIZE_STDOUT") or os.devnull
        sys.stdout.flush()
        original = os.dup(1)
        target = os.open(sink, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(target, 1)
        os.close(target)
        sys.stdout = io.TextIOWrapper(os.fdopen(original, "wb", buffering=0), encoding="utf-8",
                                      line_buffering=True, write_through=True)
        _diverted = True
