"""What the benchmarks share: a scratch database made through the one apply path (never the main
one), connections, progress lines on stderr, and stopping a sender pool they started."""
import signal
import subprocess
import sys
import time

import psycopg
from psycopg.rows import dict_row

from common.db import with_database
from scripts import apply


def connect(url):
    return psycopg.connect(url, autocommit=True, row_factory=dict_row)


def create_scratch_database(base_url, name):
    """A fresh database `name` on the same server, applied like production; returns its URL."""
    drop_scratch_database(base_url, name)
    with psycopg.connect(base_url, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    url = with_database(base_url, name)
    apply.apply(url)
    return url


def drop_scratch_database(base_url, name):
    with psycopg.connect(base_url, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def log(t0, what):
    print(f"[{time.perf_counter() - t0:6.1f}s] {what}", file=sys.stderr, flush=True)


def stop_pool(pool, grace=60):
    """SIGTERM (the pool drains), then kill if it outlives the grace period."""
    if pool and pool.poll() is None:
        pool.send_signal(signal.SIGTERM)
        try:
            pool.wait(grace)
        except subprocess.TimeoutExpired:
            pool.kill()
