"""Plan guards: the hot statements keep their index plans on a queue of realistic size.

A module database is filled with 300 online devices, 200k messages of history, 35k leads of a due
broadcast and 20k due sequence steps, then analyzed. The claim, the campaign fan-out chunks and step
activation run as they do in production while auto_explain hands every plan they execute (nested
statements of the functions included) back to this connection. A plan fails the guard when it:
- scans a partition of broadcast_messages sequentially (the queue's cost would grow with the queue
  and the history's with the history), or
- reads an index by a condition that leaves its first column free: a walk of the whole index for
  every probe (a device looked up by the id at the end of its (user_id, name, id) index), or
- joins two CTEs by a nested loop (the planner cannot know their sizes: quadratic at scale), or
- filters a nested loop's join by re-reading, for every outer row, a function's rows (an unnested
  id array) or a scan of a message table instead of probing it by the join key: quadratic, or
- scans the live queue sequentially inside a nested loop: free while the statistics say it is
  empty, quadratic once it is not (the queue grows within the very statement that queues), or
- re-reads a trigger's transition table for every row (a nested loop's inner side or a correlated
  subplan): quadratic in the statement's rows.
The last two are also checked on a module of their own (tests/test_plan_guards_fresh.py).
"""
import json
import re
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories import make_user
from tests.superuser import superuser

HISTORY, LEADS, DUE_STEPS, DEVICES = 200_000, 35_000, 20_000, 300
SENDER = "plan-guard-sender"
MESSAGE_TABLES = ("broadcast_messages", "message_queue", "message_history")
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def c(module_db_url):
    with superuser(module_db_url) as conn:
        yield conn


@pytest.fixture(scope="module")
def world(c):
    """The data, built once: small parts through the functions, bulk rows straight in (triggers
    and foreign keys off for those: they are not what these plans are about)."""
    uid = make_user(c)
    c.execute("""INSERT INTO user_devices (user_id, device_name, phone, jid, status, min_delay_seconds, max_delay_seconds)
                 SELECT %s, 'plan ' || g, '6017' || lpad(g::text, 8, '0'), 'plan-' || g || '@s.whatsapp.net',
                        'online', 0, 0
                   FROM generate_series(1, %s) g""", [uid, DEVICES])
    c.execute("SELECT register_sender(%s, 'test', 1, 10000)", [SENDER])
    c.execute("SELECT count(*) FROM acquire_leases(%s, 10000, '1 hour')", [SENDER])
    seq = c.execute("""SELECT save_sequence(%s, NULL, %s::jsonb) AS id""", [uid, json.dumps({
        "name": "plan guard", "trigger": "planguard", "steps": [
            {"day_number": d, "content": f"day {d}", "trigger_delay_hours": 24, "is_entry_point": d == 1}
            for d in (1, 2, 3)]})]).fetchone()["id"]
    c.execute("SELECT set_sequence_status(%s, %s, 'active')", [uid, seq])
    now = datetime.now(timezone.utc)
    c.execute("SET session_replication_role = replica")
    try:
        c.execute("""
            INSERT INTO leads (user_id, device_id, name, phone, niche, target_status)
            SELECT %s, d.id, 'Lead ' || g, '6013' || lpad(g::text, 8, '0'), 'plan', 'prospect'
              FROM generate_series(1, %s) g JOIN user_devices d ON d.user_id = %s AND d.device_name = 'plan ' || (1 + g %% %s)
        """, [uid, LEADS, uid, DEVICES])
        c.execute("""
            INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, scheduled_at, status,
                                            claimed_at, claimed_by, sent_at, wa_message_id, created_at)
            SELECT %s, d.id, '6014' || lpad(g::text, 8, '0'), 'old news', t, 'sent', t, 'gone', t, 'H' || g, t
              FROM generate_series(1, %s) g
              JOIN user_devices d ON d.user_id = %s AND d.device_name = 'plan ' || (1 + g %% %s)
             CROSS JOIN LATERAL (SELECT %s::timestamptz - make_interval(mins => g %% 40000)) AS at(t)
        """, [uid, HISTORY, uid, DEVICES, now])
        c.execute("""
            INSERT INTO broadcast_messages (user_id, device_id, recipient_phone, content, scheduled_at)
            SELECT %s, d.id, '6015' || lpad(g::text, 8, '0'), 'due now', %s::timestamptz - interval '1 minute'
              FROM generate_series(1, 3000) g JOIN user_devices d ON d.user_id = %s AND d.device_name = 'plan ' || (1 + g %% %s)
        """, [uid, now, uid, DEVICES])
        c.execute("""
            INSERT INTO sequence_enrollments (sequence_id, user_id, device_id, contact_phone, contact_name,
                                              next_step_id, next_due_at)
            SELECT %s, %s, d.id, '6016' || lpad(g::text, 8, '0'), 'Contact ' || g,
                   (SELECT id FROM sequence_steps WHERE sequence_id = %s AND day_number = 1), %s::timestamptz - interval '1 hour'
              FROM generate_series(1, %s) g JOIN user_devices d ON d.user_id = %s AND d.device_name = 'plan ' || (1 + g %% %s)
        """, [seq, uid, seq, now, DUE_STEPS, uid, DEVICES])
    finally:
        c.execute("SET session_replication_role = origin")
    campaign = c.execute("""SELECT create_campaign(%s, 'broadcast', 'plan guard', 'plan', 'all', 'hi {name}', NULL,
                                                   NULL, NULL, current_date - 1, '00:00', 0, 0) AS id""",
                         [uid]).fetchone()["id"]
    c.execute("SELECT _trigger_due_campaigns()")
    c.execute("ANALYZE")
    # The statistics the tests describe are this ANALYZE's and the writer's (refresh_queue_stats),
    # not whatever autovacuum takes at a moment that depends on the machine's load: with 40k rows
    # queued it made a completion's scan of the queue look cheaper than 500 key probes.
    c.execute("ALTER TABLE message_queue SET (autovacuum_enabled = false)")
    return {"user": uid, "campaign": campaign, "sequence": seq}


class Plans:
    """Every plan executed on the connection while capturing, from auto_explain's notices."""

    def __init__(self, c, analyze=False):
        self.c, self.plans, self.analyze = c, [], analyze

    def __enter__(self):
        self.c.add_notice_handler(self._notice)
        for setting, value in (("auto_explain.log_min_duration", "0"), ("auto_explain.log_nested_statements", "on"),
                               ("auto_explain.log_format", "json"), ("auto_explain.log_level", "notice"),
                               ("auto_explain.log_analyze", "on" if self.analyze else "off")):
            self.c.execute(f"SET {setting} = {value}")
        return self

    def __exit__(self, *exc):
        self.c.execute("SET auto_explain.log_min_duration = -1; SET auto_explain.log_analyze = off")
        self.c.remove_notice_handler(self._notice)

    def big_message_tables(self):
        """The partitions of broadcast_messages holding 1,000 rows or more (a sequential scan of an
        empty weekly partition ahead is free), read after capturing so the notices are done."""
        self.c.execute("SET auto_explain.log_min_duration = -1")
        return {r["relname"] for r in self.c.execute(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND reltuples >= 1000 AND relname LIKE ANY (%s)",
            [[t + "%" for t in MESSAGE_TABLES]])}

    def _notice(self, diag):
        text = diag.message_primary or ""
        if text.startswith("duration:") and "plan:" in text:
            doc = json.loads(text.split("plan:", 1)[1])
            self.plans.append((doc.get("Query Text", ""), doc["Plan"]))


def _nodes(node):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def rows_read(plans, table, where=lambda query: True):
    """How many rows (or index entries) of `table` (a name or a tuple of name prefixes) the captured
    plans whose query text passes `where` examined: each scan's rows returned and removed by its
    filter; for a bitmap scan, its index side's entries (a bitmap cannot stop at the first) and the
    heap side's rows removed. Writes are not reads."""
    read = 0
    for query, plan in plans.plans:
        if not where(query):
            continue
        for node in _nodes(plan):
            kind, loops = node["Node Type"], node.get("Actual Loops", 1)
            if kind == "Bitmap Index Scan":
                read += node.get("Actual Rows", 0) * loops if node.get("Index Name", "").startswith(table) else 0
            elif kind != "ModifyTable" and node.get("Relation Name", "").startswith(table):
                returned = 0 if kind == "Bitmap Heap Scan" else node.get("Actual Rows", 0)
                removed = node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
                read += (returned + removed) * loops
    return read


PASS_THROUGH = {"Materialize", "Sort", "Incremental Sort", "Hash", "Memoize", "Limit", "Subquery Scan", "Unique"}


def _leaf(node):
    """The node a join input reads from, looking through nodes that only pass rows on."""
    while node["Node Type"] in PASS_THROUGH and len(node.get("Plans", [])) == 1:
        node = node["Plans"][0]
    return node


def _leaf_function(node):
    return _leaf(node)["Node Type"] == "Function Scan"


def _scans_messages(node):
    """A scan of a broadcast_messages partition (a bitmap scan's heap side included)."""
    return _leaf(node).get("Relation Name", "").startswith(MESSAGE_TABLES)


MATERIALIZING = {"Materialize", "Sort", "Incremental Sort", "Hash", "Memoize"}


def _rereads_tuplestore(node):
    """Whether a rescan of this join input reads a transition table again (nothing on the way keeps
    its rows: a Materialize, Sort or Hash would read it once)."""
    while node["Node Type"] not in MATERIALIZING and len(node.get("Plans", [])) == 1:
        node = node["Plans"][0]
    return node["Node Type"] == "Named Tuplestore Scan"


def _leaf_cte(node):
    """The CTE a join input reads, looking through nodes that only pass rows on; else None."""
    node = _leaf(node)
    return node.get("CTE Name") if node["Node Type"] == "CTE Scan" else None


def _first_key(c, index):
    """The first key of an index (a column's name, or an expression's text)."""
    return c.execute("SELECT pg_get_indexdef(oid, 1, true) AS k FROM pg_class WHERE relname = %s AND relkind = 'i'",
                     [index]).fetchone()["k"]


def _walks_whole_index(c, node, first_keys):
    """An index scan whose condition does not name the index's first key: it reads every entry."""
    if node["Node Type"] not in ("Index Scan", "Index Only Scan") or "Index Cond" not in node:
        return False
    index = node["Index Name"]
    if index not in first_keys:
        first_keys[index] = _first_key(c, index)
    return re.search(rf"(?<![\w.]){re.escape(first_keys[index])}(?!\w)", node["Index Cond"]) is None


def violations(plans):
    found, big, first_keys = [], plans.big_message_tables(), {}
    for query, plan in plans.plans:
        where = " ".join(query.split())[:400]
        for node in _nodes(plan):
            if node["Node Type"] == "Seq Scan" and node.get("Relation Name", "") in big:
                found.append(f"sequential scan of {node['Relation Name']} in: {where}")
            if _walks_whole_index(plans.c, node, first_keys):
                found.append(f"{node['Index Name']} walked whole by ({node['Index Cond']}) in: {where}")
            if node["Node Type"] == "Nested Loop":
                ctes = [_leaf_cte(child) for child in node.get("Plans", [])]
                if len(ctes) == 2 and all(ctes):
                    found.append(f"nested loop between CTEs {ctes[0]} and {ctes[1]} in: {where}")
                inner = node.get("Plans", [None, None])[1]
                if "Join Filter" in node and inner and (_leaf_function(inner) or _scans_messages(inner)):
                    found.append(f"nested loop re-reading a function scan or message table per row in: {where}")
                if inner and _leaf(inner)["Node Type"] == "Seq Scan" and _leaf(inner).get("Relation Name") == "message_queue":
                    found.append(f"nested loop scanning message_queue sequentially per row in: {where}")
                if inner and _rereads_tuplestore(inner):
                    found.append(f"nested loop re-reading a transition table per row in: {where}")
            for sub in node.get("Plans", []):
                if (sub.get("Parent Relationship") == "SubPlan" and not sub.get("Subplan Name", "").startswith("hashed")
                        and _rereads_tuplestore(sub)):
                    found.append(f"subplan re-reading a transition table per row in: {where}")
    return found


@pytest.fixture
def plans(c, world):
    c.execute("LOAD 'auto_explain'")
    with Plans(c) as p:
        yield p


def test_claim_keeps_its_index_plan(c, plans):
    claimed = sum(len(c.execute("SELECT * FROM claim_messages(%s, 1000, 100)", [SENDER]).fetchall())
                  for _ in range(7))   # past the first calls, PL/pgSQL may switch to its generic plan
    assert claimed > 0
    assert len(plans.plans) >= 7
    assert violations(plans) == []


def test_completion_keeps_its_plan_when_statistics_saw_nothing_in_flight(c, plans):
    """The world was analyzed with no row claimed, as a queue analyzed while idle is: statistics say
    no row is queued. Completing batches of claimed rows must not turn that into a nested loop over
    the batch (it did: 10x slower completions in the dispatch benchmark)."""
    while c.execute("SELECT * FROM claim_messages(%s, 1000, 100)", [SENDER]).fetchall():
        pass
    ids = [r["id"] for r in c.execute("SELECT id FROM message_queue WHERE status = 'queued' AND claimed_by = %s "
                                      "ORDER BY id", [SENDER])]
    assert len(ids) >= 3000
    batches = [ids[i:i + 500] for i in range(0, len(ids), 500)]
    for batch in batches[:-1]:
        c.execute("SELECT complete_messages(%s, %s, %s)", [SENDER, batch, [f"W{i}" for i in batch]])
    c.execute("SELECT fail_messages(%s, %s, %s)", [SENDER, batches[-1], ["failed"] * len(batches[-1])])
    assert c.execute("SELECT count(*) AS n FROM broadcast_messages WHERE id = ANY(%s) AND status IN ('sent', 'failed')",
                     [ids]).fetchone()["n"] == len(ids)
    assert violations(plans) == []


def test_campaign_fan_out_chunks_keep_their_index_plans(c, world, plans):
    queued = 0
    while (n := c.execute("SELECT expand_campaign_chunk(%s, 5000) AS n", [world["campaign"]]).fetchone()["n"]) is not None:
        queued += n
    assert queued == LEADS
    # Autovacuum analyzes mid-run: now the campaign is a large share of the table, and its messages
    # are all pending while the history is sent (the planner assumes the two columns independent).
    c.execute("ANALYZE broadcast_messages")
    for _ in range(6):                    # the tick settles it each minute; past 5, the generic plan
        c.execute("SELECT settle_campaign(%s)", [world["campaign"]])
    assert violations(plans) == []


def test_step_activation_keeps_its_index_plans(c, plans):
    activated = sum(c.execute("SELECT activate_due_steps(5000) AS n").fetchone()["n"] for _ in range(3))
    assert activated == 15000
    assert violations(plans) == []


def test_the_queue_pages_read_the_queue_once_or_probe_a_device_by_key(c, world):
    """A probe per device (300 here, 3000 in a fleet) turned into 300 scans of the queue's pages
    whenever its statistics said "empty": the overview's queue figures come from one pass, and the
    monitoring page's only probe per device (its first waiting row) reads the device's due index by
    key, one row at most."""
    c.execute("ANALYZE message_queue")   # whatever it holds now: the plan must not depend on it
    c.execute("LOAD 'auto_explain'")
    with Plans(c, analyze=True) as p:
        c.execute("SELECT * FROM dashboard_today(%s)", [world["user"]]).fetchall()
        c.execute("SELECT * FROM monitor_queue_depth(%s)", [world["user"]]).fetchall()
    nodes = [node for _, plan in p.plans for node in _nodes(plan)
             if node.get("Relation Name", "").startswith(MESSAGE_TABLES)]
    probes = [node for node in nodes if node["Actual Loops"] > 1]
    assert nodes and len(probes) == 1, [(n["Node Type"], n["Actual Loops"]) for n in nodes]
    assert probes[0]["Node Type"].startswith("Index") and probes[0]["Index Name"] == "message_queue_due"
    assert "device_id = d.id" in probes[0]["Index Cond"] and probes[0]["Actual Rows"] <= 1


def test_the_report_lead_page_is_planned_once_per_session(c, world, plans):
    """Planning every weekly history partition (twice: the rows and their retries) cost more than
    the page: the page query is a generic plan, its status a parameter of the index condition."""
    for bucket in ("failed", "failed", "sent", "delivered"):
        c.execute("SELECT * FROM campaign_report_leads(%s, %s, NULL, %s, 100, 0)",
                  [world["user"], world["campaign"], bucket]).fetchall()
    pages = [plan for query, plan in plans.plans if "FROM _campaign_" in query and "LIMIT" in query]
    conds = {node["Index Cond"] for plan in pages for node in _nodes(plan)
             if node.get("Relation Name", "").startswith("message_history") and "status" in node.get("Index Cond", "")}
    assert len(pages) == 4 and conds
    assert all("status <= $" in cond and "'" not in cond for cond in conds), conds   # a range on (status, id)
    assert violations(plans) == []


def test_the_guard_sees_a_bad_plan(c, plans):
    """The checks above would notice: a forced sequential scan and a CTE-to-CTE nested loop."""
    c.execute("SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_hashjoin = off; "
              "SET enable_mergejoin = off")
    try:
        c.execute("""WITH a AS MATERIALIZED (SELECT id FROM broadcast_messages WHERE wa_message_id = 'H1'),
                          b AS MATERIALIZED (SELECT g AS id FROM generate_series(1, 10) g)
                     SELECT count(*) FROM a JOIN b ON a.id = b.id""")
        c.execute("""SELECT count(*) FROM unnest('{1,2,3}'::bigint[]) x(id)
                       JOIN message_queue m ON m.id = x.id + 0 AND m.status = 'pending'""")
    finally:
        c.execute("RESET enable_indexscan; RESET enable_bitmapscan; RESET enable_hashjoin; RESET enable_mergejoin")
    found = violations(plans)
    assert any("sequential scan of message_history" in v for v in found), found
    assert any("nested loop between CTEs" in v for v in found), found
    assert any("re-reading a function scan or message table" in v for v in found), found


def test_the_applications_sessions_never_jit_compile(module_db_url, world):
    """JIT is decided by a plan's estimated cost, and a generic plan over a large history estimates
    high: a report page of 100 leads over a 50M-row campaign spent 6.6 s per call compiling (migration
    2107). The application's role has JIT off, whatever the thresholds."""
    with psycopg.connect(module_db_url, row_factory=dict_row) as app:
        assert app.execute("SELECT current_setting('jit') AS jit").fetchone()["jit"] == "off"
        app.execute("SET jit_above_cost = 0; SET jit_inline_above_cost = 0; SET jit_optimize_above_cost = 0")
        plan = app.execute("""EXPLAIN (ANALYZE, FORMAT JSON)
                              SELECT * FROM _campaign_report_rows(%s, %s, NULL) r ORDER BY r.message_id LIMIT 100""",
                           [world["user"], world["campaign"]]).fetchone()["QUERY PLAN"][0]
        assert "JIT" not in plan, plan["JIT"]
