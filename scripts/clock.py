"""Procfile `clock`: runs app_jobs() on their cron schedules where pg_cron is not installed.

pgqueuer's scheduler keeps the schedule in the database (schema `pgqueuer`), so several clock
processes never run a job twice, and a clock that was down simply runs each job at its next time
(missed ticks are not replayed as a burst; the tick functions catch up by themselves).
Where pg_cron runs the jobs, the clock idles and checks again now and then.

    python -m scripts.clock
"""
import asyncio
import logging
import signal

import psycopg

import common.jobqueue  # noqa: F401  (places pgqueuer in its schema before it is imported)
from common.config import ConfigError, require_database_url
from common.db import connect

log = logging.getLogger("clock")
RECHECK_SECONDS = 60


def load_jobs(url):
    with connect(url, application_name="wa-clock") as c:
        has_cron = c.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron')").fetchone()["exists"]
        jobs = c.execute("SELECT name, schedule, command FROM app_jobs()").fetchall()
    return has_cron, jobs


def _runner(url, job):
    async def run(_schedule):
        async with await psycopg.AsyncConnection.connect(url, autocommit=True,
                                                         application_name=f"wa-clock:{job['name']}") as c:
            await c.execute(job["command"])
    return run


async def run_schedule(url, jobs, stop):
    from pgqueuer.adapters.drivers.psycopg import PsycopgDriver
    from pgqueuer.queries import Queries
    from pgqueuer.sm import SchedulerManager

    async with await psycopg.AsyncConnection.connect(url, autocommit=True, application_name="wa-clock") as conn:
        sm = SchedulerManager(Queries(PsycopgDriver(conn)))
        for job in jobs:
            sm.schedule(job["name"], job["schedule"], clean_old=True)(_runner(url, job))
        stopper = asyncio.create_task(stop.wait())
        runner = asyncio.create_task(sm.run())
        done, _ = await asyncio.wait({stopper, runner}, return_when=asyncio.FIRST_COMPLETED)
        sm.shutdown.set()
        await runner
        if runner in done and not stop.is_set():
            runner.result()  # the scheduler ended by itself: surface why


async def main():
    logging.basicConfig(level=logging.INFO, format="%(asctime)s clock %(levelname)s %(message)s")
    url = require_database_url()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    backoff = 1
    while not stop.is_set():
        try:
            has_cron, jobs = load_jobs(url)
            if has_cron:
                log.info("pg_cron runs the %d jobs in this database; the clock idles", len(jobs))
                await asyncio.wait_for(stop.wait(), RECHECK_SECONDS)
                continue
            log.info("running %d jobs: %s", len(jobs), ", ".join(j["name"] for j in jobs))
            await run_schedule(url, jobs, stop)
            backoff = 1
        except (asyncio.TimeoutError, TimeoutError):
            continue
        except (psycopg.OperationalError, ConfigError, OSError) as exc:
            # The database restarted or is unreachable: keep trying, never exit for it.
            log.warning("database unavailable (%s); retrying in %ss", str(exc).splitlines()[0], backoff)
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except (asyncio.TimeoutError, TimeoutError):
                pass
            backoff = min(backoff * 2, 30)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}")
