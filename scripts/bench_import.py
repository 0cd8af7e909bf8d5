"""CSV import benchmark: a lead file through the real import path against the machine's floor (COPY
of the same file into a plain table), measured in the same run.

    flock /tmp/bench.lock .venv/bin/python -m scripts.bench_import [--quick]

On a database of its own (created, applied through scripts.apply, dropped at the end):
1. a CSV of ROWS leads (name, phone in local format, niche, target status; 1 line in 1,000 has a bad
   phone) is written to a temporary file;
2. floor: one COPY of that file into a plain table with leads' columns, a primary key and one index
   (owner, phone), no triggers, no checks;
3. import: what POST /api/leads/import does with it (start_lead_import, web.lead_import.stage: COPY
   into lead_import_lines; web.lead_import.validate_in_background: lead_import_step chunks in the
   import's lanes side by side, a connection each from a pool sized as the web's), with the peak
   RSS of this Python process before and after (the upload must stream: memory stays flat).
Prints its figures and, last, `ratio=<floor_s/import_s> ...` (1.0 = as fast as the bare COPY).
"""
import argparse
import os
import resource
import tempfile
import time

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from common.config import require_database_url, web_db_pool
from scripts.benchlib import connect, create_scratch_database, drop_scratch_database, log
from tests.factories import make_device, make_user, set_quota
from web import lead_import

BENCH_DB = "wa_bench_import"
FLOOR = "bench_floor_leads"
BAD_EVERY = 1000
COPY_BLOCK = 1 << 20


def write_csv(path, rows):
    """rows leads, local Malaysian numbers (the owner's zone gives the country code)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("name,phone,niche,target_status,trigger,device_id\n")
        for i in range(1, rows + 1):
            phone = "12ab" if i % BAD_EVERY == 0 else f"011-{i:08d}"
            status = "customer" if i % 3 == 0 else "prospect"
            f.write(f'Lead {i},{phone},"fitness, gym",{status},,\n')


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def copy_floor(c, owner, path):
    """The machine's floor: the file by one COPY into a plain table with leads' columns."""
    c.execute(f"DROP TABLE IF EXISTS {FLOOR}")
    c.execute(f"CREATE TABLE {FLOOR} (LIKE leads INCLUDING DEFAULTS INCLUDING IDENTITY)")
    c.execute(f"ALTER TABLE {FLOOR} ADD PRIMARY KEY (id)")
    c.execute(f"ALTER TABLE {FLOOR} ALTER user_id SET DEFAULT {int(owner)}")
    c.execute(f"CREATE INDEX {FLOOR}_user_phone ON {FLOOR} (user_id, phone)")
    t0 = time.perf_counter()
    with c.cursor() as cur, open(path, "rb") as f:
        with cur.copy(f"COPY {FLOOR} (name, phone, niche, target_status, trigger, device_id) "
                      "FROM STDIN (FORMAT csv, HEADER true)") as copy:
            while block := f.read(COPY_BLOCK):
                copy.write(block)
    elapsed = time.perf_counter() - t0
    n = c.execute(f"SELECT count(*) AS n FROM {FLOOR}").fetchone()["n"]
    c.execute(f"DROP TABLE {FLOOR}")
    return elapsed, n


def run_import(c, progress, pool, owner, device, path):
    """The upload's path; returns (stage seconds, validate seconds, the import's status row)."""
    import_id = c.execute("SELECT start_lead_import(%s, %s, 'bench.csv', %s) AS id",
                          [owner, device, os.path.getsize(path)]).fetchone()["id"]
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        lead_import.stage(c, progress, import_id, f)
    t1 = time.perf_counter()
    lead_import.validate_in_background(pool, import_id).join()
    t2 = time.perf_counter()
    status = c.execute("SELECT * FROM lead_import_status(%s, %s)", [owner, import_id]).fetchone()
    return t1 - t0, t2 - t1, status


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows instead of 1M")
    args = parser.parse_args()
    rows = 100_000 if args.quick else 1_000_000
    started = time.perf_counter()
    base = require_database_url()
    url = create_scratch_database(base, BENCH_DB)
    log(started, "database created")
    fd, path = tempfile.mkstemp(prefix="bench-import-", suffix=".csv")
    os.close(fd)
    try:
        write_csv(path, rows)
        size_mb = os.path.getsize(path) / 1e6
        log(started, f"{rows:,} rows written ({size_mb:.0f} MB)")
        with connect(url) as c, connect(url) as progress:
            owner = make_user(c, "import@example.com")
            set_quota(c, owner, "leads", 2 * rows)
            device = make_device(c, owner)
            c.execute("VACUUM ANALYZE")

            floor_s, floor_n = copy_floor(c, owner, path)
            c.execute("VACUUM ANALYZE")
            log(started, "floor measured")

            rss_before = peak_rss_mb()
            with ConnectionPool(url, min_size=1, max_size=web_db_pool(),
                                kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
                stage_s, validate_s, status = run_import(c, progress, pool, owner, device, path)
            rss_after = peak_rss_mb()
            log(started, "import measured")
            leads = c.execute("SELECT count(*) AS n FROM leads WHERE user_id = %s", [owner]).fetchone()["n"]

        import_s = stage_s + validate_s
        bad = rows // BAD_EVERY
        print(f"file: {rows:,} rows, {size_mb:.0f} MB, 1 in {BAD_EVERY:,} with a bad phone")
        print(f"floor (COPY into a plain table): {floor_n:,} rows in {floor_s:.2f} s ({floor_n / floor_s:,.0f} rows/s)")
        print(f"import: {import_s:.2f} s ({rows / import_s:,.0f} rows/s): staging {stage_s:.2f} s, "
              f"validation and merge {validate_s:.2f} s; status {status['status']}, inserted {status['rows_inserted']:,}, "
              f"merged {status['rows_merged']:,}, bad {status['rows_bad']:,}")
        print(f"memory: Python peak RSS {rss_after:.0f} MB ({rss_before:.0f} MB before the import)")
        if (status["status"], status["rows_inserted"], status["rows_bad"], leads) != ("finished", rows - bad, bad, rows - bad):
            raise SystemExit(f"bench: import ended {status['status']} with {status['rows_inserted']} inserted, "
                             f"{status['rows_bad']} bad, {leads} leads; expected {rows - bad} good and {bad} bad")
        print(f"ratio={floor_s / import_s:.2f} import_s={import_s:.2f} floor_s={floor_s:.2f} stage_s={stage_s:.2f} "
              f"validate_s={validate_s:.2f} rows={rows} peak_rss_mb={rss_after:.0f} rss_growth_mb={rss_after - rss_before:.0f}")
    finally:
        os.unlink(path)
        drop_scratch_database(base, BENCH_DB)


if __name__ == "__main__":
    main()
