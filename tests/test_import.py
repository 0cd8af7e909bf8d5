"""CSV lead import and export: bad rows reported by line with a reason while good rows land,
duplicates merged by (owner, device, phone), progress, the downloadable report, and an export that
imports back unchanged."""
import csv
import io
import threading
import time

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from tests.factories import drain_notifies, make_device, make_user, set_quota
from tests.superuser import superuser
from tests.test_plan_guards import Plans, _nodes
from tests.webutil import signed_in_user
from web import lead_import

TEN_MB = 10 * 1024 * 1024


def sample_csv(own_device, foreign_device):
    lines = [
        b"name,phone,niche,target_status,trigger,device_id",          # 1 header
        b"Ali,012-345 6789,fit,prospect,,",                            # 2 good, default device
        b"Bad,12ab,,,,",                                               # 3 bad phone
        b"Vee,0131111111,,vip,,",                                      # 4 unknown status
        b"only,0141111111",                                            # 5 wrong column count
        b"Caf\xe9,0151111111,,,,",                                     # 6 not UTF-8
        b"A" * TEN_MB + b",0161111111,,,,",                            # 7 a 10 MB line
        b"Ali Baba,+60 12 345 6789,gym,customer,,",                    # 8 duplicate of 2: merged
        b"",                                                           # 9 blank: no row
        b"Dee,0181111111,,customer,,%d" % own_device,                  # 10 good, explicit device
        b"Eve,0191111111,,,,%d" % foreign_device,                      # 11 another owner's device
        b"Fay,0101111111,,,,abc",                                      # 12 device not a number
        b'"Tan, Ah Kow",0171111111,"fit, gym",Customer,promo,\r',      # 13 good, quoted, CRLF
    ]
    return b"\n".join(lines) + b"\n"


EXPECTED_BAD = {
    3: "may only hold digits", 4: 'unknown target status "vip"', 5: "expected 6 columns, found 2",
    6: "not UTF-8", 7: "line too long", 11: "not one of your devices", 12: 'device_id "abc" is not a number',
}


def check_outcome(conn, uid, default_device, own_device, status, report):
    assert status["status"] == "finished", status
    assert (status["rows_inserted"], status["rows_merged"], status["rows_bad"]) == (3, 1, len(EXPECTED_BAD))
    assert {r["line_no"] for r in report} == set(EXPECTED_BAD)
    for r in report:
        assert EXPECTED_BAD[r["line_no"]] in r["reason"], r
    leads = conn.execute("SELECT name, phone, niche, target_status, trigger, device_id FROM leads WHERE user_id = %s "
                         "ORDER BY phone", [uid]).fetchall()
    assert leads == [
        {"name": "Ali Baba", "phone": "60123456789", "niche": "gym", "target_status": "customer", "trigger": None,
         "device_id": default_device},
        {"name": "Tan, Ah Kow", "phone": "60171111111", "niche": "fit, gym", "target_status": "customer",
         "trigger": "promo", "device_id": default_device},
        {"name": "Dee", "phone": "60181111111", "niche": "", "target_status": "customer", "trigger": None,
         "device_id": own_device},
    ]


def test_framing_keeps_memory_bounded_and_names_defects():
    data = io.BytesIO(b"a,b\n" + b"x" * (TEN_MB + 5) + b"\n\xff\xfe\nc,d")
    rows = list(lead_import.framed_lines(data, max_line=1024))
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (1, ["a", "b"], None),
        (2, None, f"line too long ({TEN_MB + 6} bytes; at most 1024)"),
        (3, None, "not UTF-8 text (byte 0xff at position 1)"),
        (4, ["c", "d"], None),
    ]


def test_a_line_the_csv_reader_refuses_is_reported_not_a_failed_upload():
    """A carriage return inside an unquoted field made csv.reader raise, which ended the whole upload."""
    rows = list(lead_import.framed_lines(io.BytesIO(b'a,b\nx\ry,z\n"q, r",s\n')))
    assert [(r[0], r[1]) for r in rows] == [(1, ["a", "b"]), (2, None), (3, ["q, r", "s"])]
    assert rows[1][2].startswith("not a CSV record (new-line character seen in unquoted field")


@pytest.mark.parametrize("line", ["a,b", "", ",", " a , b ,", "a\x0bb,\u2028", '"x,y",z', '"a', 'a"b,"c', '"q""r",s'])
def test_lines_split_as_csv_reader_splits_them(line):
    """Unquoted lines are split on commas (the fast path), quoted ones by one reused csv.reader:
    both as a reader of that line alone."""
    assert [r[1] for r in lead_import.framed_lines(io.BytesIO(line.encode() + b"\n"))] == [next(csv.reader((line,)), [])]


@pytest.mark.parametrize("fields", [["a", "b"], ["x"], ["", ""], ["a\x1fb", "c"], [""], []])
def test_a_record_is_staged_joined_only_when_it_splits_back_the_same(db, fields):
    staged = lead_import._record(fields)
    assert db.execute("SELECT _lead_import_fields(%s::text[], %s) AS f", list(staged)).fetchone()["f"] == fields
    assert (staged[1] is None) == (fields in (["a\x1fb", "c"], [""], []))   # the rest travel as text


def test_import_reports_bad_rows_and_keeps_good_ones(connect_committed):
    conn, progress = connect_committed(), connect_committed()
    uid = make_user(conn)
    default_device, own_device = make_device(conn, uid), make_device(conn, uid)
    foreign = make_device(conn, make_user(conn))
    import_id = conn.execute("SELECT start_lead_import(%s, %s, 'leads.csv', NULL) AS id",
                             [uid, default_device]).fetchone()["id"]
    with progress.cursor() as cur:
        cur.execute("LISTEN wa_events")
    assert lead_import.stage(conn, progress, import_id, io.BytesIO(sample_csv(own_device, foreign))) == 13
    lead_import.validate(conn, import_id)
    status = conn.execute("SELECT * FROM lead_import_status(%s, %s)", [uid, import_id]).fetchone()
    report = conn.execute("SELECT * FROM lead_import_report(%s, %s)", [uid, import_id]).fetchall()
    check_outcome(conn, uid, default_device, own_device, status, report)
    events = [n.payload for n in drain_notifies(progress)]
    assert any('"type": "lead_import"' in e and '"finished"' in e for e in events)
    assert conn.execute("SELECT count(*) AS n FROM lead_import_lines WHERE import_id = %s",
                        [import_id]).fetchone()["n"] == 0   # staging emptied
    # Another owner sees neither the import nor its report.
    other = make_user(conn)
    assert conn.execute("SELECT * FROM lead_import_status(%s, %s)", [other, import_id]).fetchall() == []
    assert conn.execute("SELECT * FROM lead_import_report(%s, %s)", [other, import_id]).fetchall() == []


def test_chunks_keep_bad_rows_out_repeats_last_wins_and_a_second_import_merges(connect_committed):
    """Several chunks (3 lines each): each with a bad row among good ones, a lead repeated across
    chunks (the later line wins), progress after every chunk (one connection takes the two lanes in
    turn: the slowest lane's line); the same file again merges every lead."""
    conn = connect_committed()
    uid = make_user(conn)
    device = make_device(conn, uid)
    lines = [b"name,phone,niche"] + [b"Lead %d,01%08d,gym" % (i, i) for i in range(1, 9)]
    lines[4] = b"Bad,12ab,gym"                        # line 5, in the second chunk
    lines[8] = b"Lead 1 again,01%08d,yoga" % 1        # line 9, third chunk: repeats line 2
    data = b"\n".join(lines) + b"\n"

    def run():
        import_id = conn.execute("SELECT start_lead_import(%s, %s, 'x.csv', NULL) AS id", [uid, device]).fetchone()["id"]
        lead_import.stage(conn, conn, import_id, io.BytesIO(data))
        progress = []
        while conn.execute("SELECT lead_import_step(%s, 3) AS more", [import_id]).fetchone()["more"]:
            progress.append(conn.execute("SELECT lines_processed FROM lead_import_status(%s, %s)",
                                         [uid, import_id]).fetchone()["lines_processed"])
        status = conn.execute("SELECT * FROM lead_import_status(%s, %s)", [uid, import_id]).fetchone()
        report = conn.execute("SELECT line_no, reason FROM lead_import_report(%s, %s)", [uid, import_id]).fetchall()
        return progress, status, report

    progress, status, report = run()
    assert progress == [0, 4, 4, 7, 7]
    assert (status["status"], status["rows_inserted"], status["rows_merged"], status["rows_bad"]) == ("finished", 6, 1, 1)
    assert report == [{"line_no": 5, "reason": 'phone number "12ab" may only hold digits, spaces, dashes, dots, brackets and a leading +'}]
    assert conn.execute("SELECT name, niche FROM leads WHERE user_id = %s AND phone = '60100000001'",
                        [uid]).fetchone() == {"name": "Lead 1 again", "niche": "yoga"}
    _, status, _ = run()
    assert (status["rows_inserted"], status["rows_merged"], status["rows_bad"]) == (0, 7, 1)
    assert conn.execute("SELECT count(*) AS n FROM leads WHERE user_id = %s", [uid]).fetchone()["n"] == 6


def test_a_file_without_a_proper_header_fails_with_the_reason(connect_committed):
    conn = connect_committed()
    uid = make_user(conn)
    import_id = conn.execute("SELECT start_lead_import(%s, NULL, 'x.csv', NULL) AS id", [uid]).fetchone()["id"]
    lead_import.stage(conn, conn, import_id, io.BytesIO(b"name,mobile\nA,0123456789\n"))
    lead_import.validate(conn, import_id)
    row = conn.execute("SELECT status, error FROM lead_import_status(%s, %s)", [uid, import_id]).fetchone()
    assert row["status"] == "failed" and 'unknown column "mobile"' in row["error"]


def wait_finished(client, import_id, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/leads/imports/{import_id}").get_json()
        if status["status"] in ("finished", "failed"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"import {import_id} did not finish: {status}")


def test_api_upload_report_and_export_round_trip(client, module_db_url):
    uid, token = signed_in_user(client, module_db_url)
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        default_device, own_device = make_device(c, uid), make_device(c, uid)
        foreign = make_device(c, make_user(c))
    r = client.post("/api/leads/import", headers={"X-CSRFToken": token},
                    data={"device_id": str(default_device),
                          "file": (io.BytesIO(sample_csv(own_device, foreign)), "leads.csv")},
                    content_type="multipart/form-data")
    assert r.status_code == 202, r.get_json()
    import_id = r.get_json()["id"]
    status = wait_finished(client, import_id)
    report_csv = client.get(f"/leads/imports/{import_id}/report.csv").get_data(as_text=True).splitlines()
    assert report_csv[0] == "line_no,reason,content"
    assert [int(line.split(",", 1)[0]) for line in report_csv[1:]] == sorted(EXPECTED_BAD)
    with psycopg.connect(module_db_url, row_factory=dict_row) as c:
        report = c.execute("SELECT * FROM lead_import_report(%s, %s)", [uid, import_id]).fetchall()
        check_outcome(c, uid, default_device, own_device, status, report)

    exported = client.get("/leads/export.csv").get_data()
    assert exported.splitlines()[0] == b"name,phone,niche,target_status,trigger,device_id"
    assert len(exported.splitlines()) == 4
    # The export imports back as it is: every row merges into its lead, nothing new, nothing bad.
    r = client.post("/api/leads/import?filename=again.csv", data=exported,
                    headers={"X-CSRFToken": token, "Content-Type": "text/csv"})
    assert r.status_code == 202, r.get_json()
    again = wait_finished(client, r.get_json()["id"])
    assert (again["rows_inserted"], again["rows_merged"], again["rows_bad"]) == (0, 3, 0)
    assert client.get("/leads").status_code == 200


def test_import_into_another_owners_device_is_refused(client, module_db_url):
    _, token = signed_in_user(client, module_db_url)
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        foreign = make_device(c, make_user(c))
    r = client.post(f"/api/leads/import?device_id={foreign}", data=b"phone\n0123456789\n",
                    headers={"X-CSRFToken": token, "Content-Type": "text/csv"})
    assert r.status_code == 400 and "not one of your devices" in r.get_json()["error"]
    assert client.get("/api/leads/imports/999999999").status_code == 404


def test_export_neutralises_spreadsheet_formulas_and_imports_back_unchanged(app, module_db_url):
    client = app.test_client()
    uid, token = signed_in_user(client, module_db_url)
    hostile = ["=HYPERLINK(\"http://evil.example\",\"x\")", "+1+2", "-3+4", "@SUM(A1)", "\t=1", "plain"]
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        for n, name in enumerate(hostile):
            c.execute("INSERT INTO leads (user_id, name, phone, niche, trigger) VALUES (%s, %s, %s, %s, %s)",
                      [uid, name, f"6017000000{n}", name, "=cmd" if n == 0 else None])
    exported = client.get("/leads/export.csv").get_data(as_text=True)
    cells = [cell for row in csv.reader(io.StringIO(exported)) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    assert "'=HYPERLINK(\"http://evil.example\",\"x\")" in cells and "plain" in cells and "'=cmd" in cells
    r = client.post("/api/leads/import?filename=again.csv", data=exported.encode(),
                    headers={"X-CSRFToken": token, "Content-Type": "text/csv"})
    again = wait_finished(client, r.get_json()["id"])
    assert (again["rows_inserted"], again["rows_merged"], again["rows_bad"]) == (0, len(hostile), 0)
    with psycopg.connect(module_db_url, row_factory=dict_row) as c:
        names = [r["name"] for r in c.execute("SELECT name FROM leads WHERE user_id = %s ORDER BY phone", [uid])]
    assert names == hostile                     # the apostrophes came off again


def test_a_chunk_stores_its_lines_once_on_their_way_to_the_merge(module_db_url):
    """Every row a chunk stores on its way costs a copy: 100k lines through each of two extra
    materialised steps cost ~0.5 s of a million-line import. The lines stream into one stored step
    (checked), and the merge reads its arrays through a projection, not a function scan's store."""
    with superuser(module_db_url) as su, su.transaction() as tx:
        uid = make_user(su)
        device = make_device(su, uid)
        import_id = su.execute("SELECT start_lead_import(%s, %s, 'x.csv', NULL) AS id", [uid, device]).fetchone()["id"]
        data = b"name,phone,niche\n" + b"".join(b"Lead %d,01%08d,gym\n" % (i, i) for i in range(1, 51))
        lead_import.stage(su, su, import_id, io.BytesIO(data))
        su.execute("LOAD 'auto_explain'")
        with Plans(su) as p:
            su.execute("SELECT lead_import_step(%s)", [import_id])
        chunk = next(plan for query, plan in p.plans if "lead_import_lines" in query and "_merge_leads" in query)
        merge = next(plan for query, plan in p.plans if "INSERT INTO leads" in query)
        assert sorted(n["Subplan Name"] for n in _nodes(chunk) if n.get("Subplan Name", "").startswith("CTE ")) == [
            "CTE bad", "CTE checked", "CTE good", "CTE merged"]
        assert [n for n in _nodes(merge) if n["Node Type"] == "Function Scan"] == []
        lead_import.validate(su, import_id)   # the other lane
        assert su.execute("SELECT count(*) AS n FROM leads WHERE user_id = %s", [uid]).fetchone()["n"] == 50
        raise psycopg.Rollback(tx)


def _lane_file(leads, repeats=0):
    """A header and `leads` leads, then `repeats` of them again with another name."""
    lines = [b"name,phone"] + [b"Lead %d,01%08d" % (i, i) for i in range(leads)]
    lines += [b"Again %d,01%08d" % (i, i) for i in range(repeats)]
    return b"\n".join(lines) + b"\n"


def _staged_import(conn, uid, device, data):
    import_id = conn.execute("SELECT start_lead_import(%s, %s, 'x.csv', NULL) AS id", [uid, device]).fetchone()["id"]
    lead_import.stage(conn, conn, import_id, io.BytesIO(data))
    return import_id


def _step_in_thread(conn, import_id, outcome):
    worker = threading.Thread(target=lambda: outcome.update(conn.execute(
        "SELECT lead_import_step(%s, 1000) AS more", [import_id]).fetchone()))
    worker.start()
    return worker


def _wait_until_blocked(conn, worker):
    """Until another session waits on a lock `conn` holds (or the worker ended without one)."""
    deadline = time.monotonic() + 30
    while worker.is_alive() and not conn.execute(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))) AS waits"
    ).fetchone()["waits"]:
        assert time.monotonic() < deadline, "the second session never reached the import's row"
        time.sleep(0.05)


def test_two_sessions_validate_an_import_side_by_side_in_lanes(connect_committed):
    """While one session holds a lane mid-chunk, a second works the other lane (with one lock per
    import it found nothing to do) and waits only to count its chunk in; every line of one lead
    meets in one lane, so the last line still wins, and the lanes' counts add up."""
    first, second = connect_committed(), connect_committed()
    uid = make_user(first)
    device = make_device(first, uid)
    import_id = _staged_import(first, uid, device, _lane_file(40, repeats=20))
    outcome = {}
    with first.transaction():
        assert first.execute("SELECT lead_import_step(%s, 1000) AS more", [import_id]).fetchone()["more"]
        worker = _step_in_thread(second, import_id, outcome)
        _wait_until_blocked(first, worker)
        assert worker.is_alive(), f"the second session did no chunk: {outcome}"
    worker.join(30)
    status = second.execute("SELECT * FROM lead_import_status(%s, %s)", [uid, import_id]).fetchone()
    assert (status["status"], status["rows_inserted"], status["rows_merged"], status["rows_bad"]) == ("finished", 40, 20, 0)
    names = {r["name"] for r in first.execute("SELECT name FROM leads WHERE user_id = %s", [uid])}
    assert names == {f"Again {i}" for i in range(20)} | {f"Lead {i}" for i in range(20, 40)}
    assert first.execute("SELECT count(*) AS n FROM lead_import_lanes WHERE import_id = %s",
                         [import_id]).fetchone()["n"] == 0     # gone with the staging once finished


def test_the_quota_counts_the_other_lanes_leads(connect_committed):
    """Two lanes' chunks that each fit the lead quota but not together: the lane ending second waits
    for the first's commit, counts its leads, is undone and fails the import with the reason."""
    first, second = connect_committed(), connect_committed()
    uid = make_user(first)
    device = make_device(first, uid)
    set_quota(first, uid, "leads", 30)
    import_id = _staged_import(first, uid, device, _lane_file(40))
    outcome = {}
    with first.transaction():
        assert first.execute("SELECT lead_import_step(%s, 1000) AS more", [import_id]).fetchone()["more"]
        worker = _step_in_thread(second, import_id, outcome)
        _wait_until_blocked(first, worker)
    worker.join(30)
    assert outcome == {"more": False}
    status = first.execute("SELECT * FROM lead_import_status(%s, %s)", [uid, import_id]).fetchone()
    assert status["status"] == "failed" and "quota" in status["error"]
    assert status["rows_inserted"] == 20
    assert first.execute("SELECT count(*) AS n FROM leads WHERE user_id = %s", [uid]).fetchone()["n"] == 20


def test_failing_an_import_never_waits_for_a_lane_mid_chunk(connect_committed):
    """A lane mid-chunk holds its lane's row and, at its chunk's end, waits for the import's row;
    failing the import (another lane's quota) holds the import's row, so it must not wait for the
    lane's: the two would deadlock."""
    lane, failing = connect_committed(), connect_committed()
    uid = make_user(lane)
    import_id = _staged_import(lane, uid, make_device(lane, uid), _lane_file(4))
    with lane.transaction():
        lane.execute("SELECT FROM lead_import_lanes WHERE import_id = %s AND lane = 1 FOR UPDATE", [import_id])
        failing.execute("SET lock_timeout = '5s'")
        failing.execute("SELECT fail_lead_import(%s, 'quota reached')", [import_id])
    status = failing.execute("SELECT * FROM lead_import_status(%s, %s)", [uid, import_id]).fetchone()
    assert (status["status"], status["error"]) == ("failed", "quota reached")


def test_the_recovery_job_finishes_an_abandoned_import_through_every_lane(connect_committed):
    """A web process died after one lane's chunk: the `lead-imports` job, one session, takes the
    lanes in turn from where each stopped and finishes the import with the lanes' counts added up."""
    conn = connect_committed()
    uid = make_user(conn)
    import_id = _staged_import(conn, uid, make_device(conn, uid), _lane_file(30, repeats=10) + b"Bad,12ab\n")
    assert conn.execute("SELECT lead_import_step(%s, 1000) AS more", [import_id]).fetchone()["more"]
    lanes = conn.execute("SELECT lines_processed FROM lead_import_lanes WHERE import_id = %s ORDER BY lane",
                         [import_id]).fetchall()
    assert [r["lines_processed"] for r in lanes] == [42, 0]          # lane 0 done, lane 1 untouched
    conn.execute("UPDATE lead_imports SET updated_at = now() - interval '3 minutes' WHERE id = %s", [import_id])
    conn.execute("CALL run_lead_imports(30)")
    status = conn.execute("SELECT * FROM lead_import_status(%s, %s)", [uid, import_id]).fetchone()
    assert (status["status"], status["rows_inserted"], status["rows_merged"], status["rows_bad"]) == ("finished", 30, 10, 1)
    assert conn.execute("SELECT count(*) AS n FROM leads WHERE user_id = %s", [uid]).fetchone()["n"] == 30


def test_one_import_at_a_time_per_account(client, module_db_url):
    """A running import holds a database connection per lane: a second one of the same account is
    refused with the reason (409) until the first has ended; another account's is not."""
    uid, token = signed_in_user(client, module_db_url)
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        running = c.execute("SELECT start_lead_import(%s, NULL, 'first.csv', NULL) AS id", [uid]).fetchone()["id"]
        other = make_user(c)
        assert c.execute("SELECT start_lead_import(%s, NULL, 'theirs.csv', NULL) AS id", [other]).fetchone()["id"]
    post = lambda: client.post("/api/leads/import?filename=second.csv", data=b"phone\n0123456789\n",
                               headers={"X-CSRFToken": token, "Content-Type": "text/csv"})
    r = post()
    assert r.status_code == 409 and "still running" in r.get_json()["error"]
    with psycopg.connect(module_db_url, autocommit=True) as c:
        c.execute("SELECT fail_lead_import(%s, 'the upload was interrupted')", [running])
    r = post()
    assert r.status_code == 202, r.get_json()
    assert wait_finished(client, r.get_json()["id"])["status"] == "finished"


def test_lanes_take_at_most_a_quarter_of_the_pool_whatever_the_imports(connect_committed, committed_db_url):
    """Two accounts import at once, two lanes each, through a pool of four: one lane slot. The lane
    holding it works (here: waits on a lock, holding its connection); the three others wait for the
    slot holding no connection, so requests still get the other three; all finish once it is free."""
    locker, watcher = connect_committed(), connect_committed()
    imports = []
    for _ in range(2):
        uid = make_user(locker)
        imports.append((uid, _staged_import(locker, uid, make_device(locker, uid), _lane_file(40))))
    ids = [i for _, i in imports]
    with ConnectionPool(committed_db_url, min_size=1, max_size=4,
                        kwargs={"autocommit": True, "row_factory": dict_row}) as pool:
        with locker.transaction():
            locker.execute("SELECT FROM lead_imports WHERE id = ANY(%s) FOR UPDATE", [ids])
            threads = [lead_import.validate_in_background(pool, i) for i in ids]
            # another session: pg_stat_activity is read once per transaction, and the locker is in one
            wait_blocked = lambda: watcher.execute("SELECT count(*) AS n FROM pg_stat_activity "
                                                   "WHERE %s = ANY(pg_blocking_pids(pid))",
                                                   [locker.info.backend_pid]).fetchone()["n"]
            deadline = time.monotonic() + 30
            while wait_blocked() < 1:
                assert time.monotonic() < deadline, "no lane reached the import's row"
                time.sleep(0.05)
            taken = [pool.getconn(timeout=10) for _ in range(3)]   # a request's connections
            assert wait_blocked() == 1
            for conn in taken:
                pool.putconn(conn)
        for t in threads:
            t.join(60)
            assert not t.is_alive()
    for uid, import_id in imports:
        status = locker.execute("SELECT * FROM lead_import_status(%s, %s)", [uid, import_id]).fetchone()
        assert (status["status"], status["rows_inserted"]) == ("finished", 40)
