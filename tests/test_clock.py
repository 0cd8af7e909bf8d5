"""The clock process: runs app_jobs() through pgqueuer's scheduler where pg_cron is absent."""
import asyncio

import psycopg

from scripts import clock


def test_clock_loads_the_same_jobs_pg_cron_gets(committed_db_url):
    has_cron, jobs = clock.load_jobs(committed_db_url)
    assert has_cron is False            # test databases have no pg_cron: the clock is in charge
    assert {"purge-history"} <= {j["name"] for j in jobs}


def test_clock_runs_a_job_on_its_schedule(committed_db_url, connect_committed):
    c = connect_committed()
    c.execute("CREATE TABLE clock_probe (at timestamptz DEFAULT now())")
    job = {"name": "probe", "schedule": "* * * * * *",   # every second (croniter's 6th field)
           "command": "INSERT INTO clock_probe DEFAULT VALUES"}

    async def run_briefly():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(4.5, stop.set)
        await clock.run_schedule(committed_db_url, [job], stop)

    asyncio.run(run_briefly())
    runs = c.execute("SELECT count(*) AS n FROM clock_probe").fetchone()["n"]
    assert 1 <= runs <= 5                  # it ran, and did not burst


def test_clock_stops_on_signal_and_survives_a_missing_database(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")

    async def run_then_stop():
        task = asyncio.create_task(clock.main())
        await asyncio.sleep(1.5)
        assert not task.done()           # retrying, not crashed
        import os, signal
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 5)

    asyncio.run(run_then_stop())


def test_every_app_job_runs_through_the_clock_runner(committed_db_url):
    """Each job's SQL (procedures that COMMIT per chunk included) runs as the clock runs it."""
    _, jobs = clock.load_jobs(committed_db_url)

    async def run_all():
        for job in jobs:
            await clock._runner(committed_db_url, job)(None)

    asyncio.run(run_all())
