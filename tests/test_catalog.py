"""The database's own catalogue: documented, not overloaded, every view selectable, the apply path
idempotent, and the public surface of CONTRACT.md present."""
import psycopg
import pytest
from psycopg.rows import dict_row

from scripts import apply

OURS = """n.nspname = 'public'
          AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"""

CONTRACT_TABLES = {
    "users": {"id", "email", "full_name", "password_hash", "timezone", "is_admin"},
    "user_devices": {"id", "user_id", "device_name", "phone", "jid", "status", "min_delay_seconds",
                     "max_delay_seconds", "hourly_limit", "daily_limit", "last_seen"},
    "leads": {"id", "user_id", "device_id", "name", "phone", "niche", "target_status", "trigger", "created_at"},
    "campaigns": {"id", "user_id", "title", "niche", "target_status", "message", "image_url", "campaign_date",
                  "time_schedule", "scheduled_at", "min_delay_seconds", "max_delay_seconds", "status"},
    "broadcast_messages": {"id", "user_id", "device_id", "campaign_id", "sequence_id", "sequence_stepid",
                           "recipient_phone", "recipient_name", "message_type", "content", "media_url",
                           "scheduled_at", "status", "error_message", "sent_at", "delivered_at", "read_at",
                           "created_at"},
    "sequences": {"id", "user_id", "name", "niche", "trigger", "status", "schedule_time",
                  "min_delay_seconds", "max_delay_seconds"},
    "sequence_steps": {"id", "sequence_id", "day_number", "trigger", "next_trigger", "trigger_delay_hours",
                       "is_entry_point", "content", "media_url"},
    "whatsapp_chats": {"device_id", "chat_jid", "chat_name", "last_message_text", "last_message_time", "unread_count"},
    "whatsapp_messages": {"device_id", "chat_jid", "message_id", "sender_jid", "message_text", "message_type",
                          "media_url", "is_sent", "is_read", "timestamp"},
}


def test_every_function_has_a_comment(db):
    missing = db.execute(f"""
        SELECT p.oid::regprocedure::text AS f FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE {OURS} AND obj_description(p.oid, 'pg_proc') IS NULL
           AND p.prorettype <> 'trigger'::regtype""").fetchall()
    assert [r["f"] for r in missing] == []


def test_no_function_is_overloaded(db):
    dupes = db.execute(f"""
        SELECT p.proname, count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE {OURS} GROUP BY p.proname HAVING count(*) > 1""").fetchall()
    assert dupes == []


def test_every_view_has_a_comment_and_can_be_selected(db):
    views = db.execute("""
        SELECT c.relname, obj_description(c.oid, 'pg_class') AS comment
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'v' AND n.nspname = 'public'""").fetchall()
    for v in views:
        assert v["comment"], f"view {v['relname']} has no COMMENT"
        db.execute(f'SELECT * FROM "{v["relname"]}" LIMIT 1').fetchall()


def test_every_table_has_a_comment(db):
    bare = db.execute("""
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname = 'public' AND c.relname NOT LIKE '\\_yoyo%' AND c.relname <> 'yoyo_lock'
           AND c.relname NOT LIKE 'whatsmeow\\_%' AND obj_description(c.oid, 'pg_class') IS NULL""").fetchall()
    assert bare == []


def test_view_files_list_their_columns():
    from scripts.apply import sql_files
    for f in sql_files("views"):
        text = f.read_text().lower()
        assert "select *" not in text and ".*" not in text.replace("'.*'", ""), f"{f.name} uses select *"


@pytest.mark.parametrize("table", sorted(CONTRACT_TABLES))
def test_contract_tables_have_their_columns(db, table):
    cols = {r["column_name"] for r in db.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s",
        [table])}
    assert cols, f"{table} is missing"
    assert CONTRACT_TABLES[table] <= cols, f"{table} lacks {CONTRACT_TABLES[table] - cols}"


def test_no_timestamp_without_time_zone(db):
    naive = db.execute("""
        SELECT table_name, column_name FROM information_schema.columns
         WHERE table_schema = 'public' AND data_type = 'timestamp without time zone'
               AND table_name NOT LIKE '%yoyo%'""").fetchall()  # yoyo's own bookkeeping is not ours
    assert naive == []


def snapshot(url):
    with psycopg.connect(url, row_factory=dict_row) as c:
        return {
            "functions": c.execute("""SELECT p.oid::regprocedure::text AS f, p.prosrc, obj_description(p.oid, 'pg_proc') AS d
                                        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                                       WHERE n.nspname = 'public' ORDER BY 1""").fetchall(),
            "views": c.execute("""SELECT viewname, definition FROM pg_views WHERE schemaname = 'public' ORDER BY 1""").fetchall(),
            "tables": c.execute("""SELECT table_name, column_name, data_type, column_default FROM information_schema.columns
                                    WHERE table_schema IN ('public', 'pgqueuer') ORDER BY 1, 2""").fetchall(),
            "migrations": c.execute("SELECT count(*) FROM _yoyo_migration").fetchone(),
        }


def test_apply_twice_changes_nothing(committed_db_url):
    before = snapshot(committed_db_url)
    assert apply.apply(committed_db_url) == "clock"   # pg_cron lives only in the main database
    assert snapshot(committed_db_url) == before


def test_main_database_schedules_jobs_with_pg_cron(base_url):
    """`make db` applied the main database: where pg_cron is installed, app_jobs() are its jobs."""
    with psycopg.connect(base_url, row_factory=dict_row) as c:
        if not c.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_cron'").fetchone():
            pytest.skip("pg_cron is not installed in this database (DATABASE_URL elsewhere): the clock runs jobs")
        assert apply.apply(base_url) == "pg_cron"
        jobs = {r["name"] for r in c.execute("SELECT name FROM app_jobs()")}
        scheduled = {r["jobname"] for r in c.execute("SELECT jobname FROM cron.job WHERE jobname LIKE 'wa:%'")}
        assert scheduled == {"wa:" + j for j in jobs}


def test_every_rule_over_several_columns_has_a_name(db):
    """PostgreSQL numbers an unnamed table CHECK (campaigns_check2): a rule tying columns together (a
    state and its timestamps) needs a name saying the rule, so its violation names what broke."""
    numbered = db.execute("""
        SELECT c.conrelid::regclass::text AS t, c.conname FROM pg_constraint c
         WHERE c.contype = 'c' AND c.connamespace = 'public'::regnamespace AND cardinality(c.conkey) > 1
           AND c.conname ~ '_check[0-9]*$'""").fetchall()
    assert numbered == []


def test_a_broken_state_rule_names_itself(db):
    from tests.factories import make_user
    user = make_user(db)
    campaign = db.execute("""INSERT INTO campaigns (user_id, title, message, campaign_date, time_schedule, scheduled_at)
                             VALUES (%s, 't', 'hi', current_date, '09:00', now()) RETURNING id""", [user]).fetchone()["id"]
    with pytest.raises(psycopg.errors.CheckViolation) as broken, db.transaction():
        db.execute("UPDATE campaigns SET status = 'finished', triggered_at = now() WHERE id = %s", [campaign])
    assert broken.value.diag.constraint_name == "campaigns_finished_iff_finished_at"
    assert "campaigns_finished_iff_finished_at" in str(broken.value)


def _python_sql_calls():
    """Names called like functions inside the string literals of the application's Python (its SQL)."""
    import io
    import re
    import tokenize

    from common.config import ROOT

    called = {}
    for folder in ("common", "sender", "web", "webhooks", "scripts"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
                if tok.type == tokenize.STRING:
                    for name in re.findall(r"\b([A-Za-z_][A-Za-z0-9_]*)\s*\(", tok.string):
                        called.setdefault(name.lower(), path.relative_to(ROOT).as_posix())
    return called


def test_python_calls_only_public_functions(db):
    """An underscore marks an internal helper of db/functions: only SQL calls it. Python calls the
    public functions (and reads the views)."""
    ours = {r["proname"] for r in db.execute(f"""
        SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {OURS}""")}
    internal = {name: where for name, where in _python_sql_calls().items() if name in ours and name.startswith("_")}
    assert internal == {}
    assert any(name in ours for name in _python_sql_calls()), "no SQL function calls found in the Python"


def test_no_function_reads_a_view(db):
    """Views only show what tables and functions hold; the engine never reads a view, so nothing
    loops back (a view calling a function that reads a view) and every view can be dropped and
    recreated on its own."""
    import re
    views = [r["relname"] for r in db.execute("""
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'v' AND n.nspname = 'public'""")]
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, views)) + r")\b")
    readers = {}
    for f in db.execute(f"""SELECT p.oid::regprocedure::text AS f, p.prosrc FROM pg_proc p
                              JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {OURS}"""):
        code = re.sub(r"--[^\n]*|'(?:[^']|'')*'", "", f["prosrc"])   # comments and string literals
        found = set(pattern.findall(code))
        if found:
            readers[f["f"]] = found
    assert readers == {}


def test_no_trigger_joins_its_transition_tables_in_a_plan_kept_for_the_session(db):
    """PL/pgSQL plans a trigger's statements once per session, sized by the transition tables of
    the session's first statement (tests/test_plan_guards_session.py shows what a join planned for
    one row did to later batches). So a transition table is scanned, summed or grouped, or its ids
    are probed by index as an array — never joined, joined to or semi-joined (IN), unless the
    statement runs through EXECUTE, which plans it for the rows at hand."""
    import re
    tt = r"(?:new_rows|old_rows)"
    joined = re.compile(
        rf"\bJOIN\s+{tt}\b"                                                      # ... JOIN old_rows
        rf"|\b{tt}(?:\s+(?:AS\s+)?(?!WHERE|GROUP|ORDER|LIMIT|UNION|EXCEPT|JOIN)\w+)?\s+"
        rf"(?:(?:LEFT|RIGHT|FULL|INNER|CROSS)\s+(?:OUTER\s+)?)?JOIN\b"            # new_rows n JOIN ...
        rf"|\bUSING\s+{tt}\b"                                                    # DELETE ... USING old_rows
        rf"|\bUPDATE\s[^;]*?\bSET\s[^;]*?\bFROM\s+{tt}\b"                       # UPDATE ... SET ... FROM old_rows
        rf"|\bIN\s*\(\s*SELECT\b[^;()]*?\bFROM\s+{tt}\b"                         # ... IN (SELECT ... FROM new_rows)
        rf"|\b{tt}(?:\s+(?:AS\s+)?\w+)?\s*,\s*{tt}\b",                           # FROM new_rows n, old_rows o
        re.IGNORECASE)
    found = {}
    for f in db.execute(f"""SELECT p.oid::regprocedure::text AS f, p.prosrc FROM pg_proc p
                              JOIN pg_namespace n ON n.oid = p.pronamespace
                             WHERE {OURS} AND p.prorettype = 'trigger'::regtype"""):
        code = re.sub(r"--[^\n]*|'(?:[^']|'')*'|\$sql\$.*?\$sql\$", "", f["prosrc"], flags=re.S)   # comments, literals, EXECUTE's
        hits = [" ".join(m.group(0).split()) for m in joined.finditer(code)]
        if hits:
            found[f["f"]] = hits
    assert found == {}


def test_the_senders_per_batch_functions_keep_their_plans_for_the_session(db):
    """Every claim, completion, failure and receipt batch runs these functions (an idle sender,
    next_dispatch_at), and the statement triggers its writes fire. PL/pgSQL keeps its plans for the
    session; a SQL function that is not inlined into its caller is parsed and planned again on every
    call: one that writes, holds more than one statement, sets options or is strict, a set-returning
    one that is volatile, and a scalar one that is more than an expression (a FROM, a subquery).
    Such helpers spent more on planning than on running (_add_message_outcomes: 210 us a call, 62
    as PL/pgSQL), 23 % of the database's time in the soak; the completion's own statement was
    planned per call by choice (plan_cache_mode = force_custom_plan: 0.55 ms of a 20-row
    completion's 2.5). Nor is PL/pgSQL enough alone: its plan cache re-plans a statement on every
    call while custom plans look cheaper than the generic one, as they do for a one-element array
    against the generic plan's guess (the rollups' upserts: 10,089 plans in 10,514 calls in the
    soak, _add_message_outcomes 135 us a call against 57). So each function here forces its generic
    plan, and its statements are written so that one plan is right at any size (enable_* settings
    say where a plan cached on a nearly empty queue could go wrong)."""
    import re
    funcs = {f["name"]: f for f in db.execute(f"""
        SELECT p.proname AS name, l.lanname AS lang, p.prosrc AS src, p.proretset AS srf, p.provolatile AS volatility,
               p.proisstrict AS strict, coalesce(p.proconfig, '{{}}') AS config
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
         WHERE {OURS}""")}
    roots = ["claim_messages", "complete_messages", "fail_messages", "record_receipts", "next_dispatch_at"] + [
        t["f"] for t in db.execute("""SELECT DISTINCT p.proname AS f FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                                        WHERE t.tgrelid = 'broadcast_messages'::regclass AND NOT t.tgisinternal""")]
    def code(f):
        return " ".join(re.sub(r"--[^\n]*|'(?:[^']|'')*'", "", f["src"]).split()).rstrip(";")
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in funcs and name not in seen:
            seen.add(name)
            todo += re.findall(r"\b(\w+)\s*\(", code(funcs[name]))
    planned_per_call = {}
    for name in sorted(seen - {"setting"}):   # a lookup by name, called per row: no SET clause's cost on each call
        f, body = funcs[name], code(funcs[name])
        if f["lang"] == "plpgsql" and "plan_cache_mode=force_generic_plan" not in f["config"]:
            planned_per_call[name] = "PL/pgSQL without plan_cache_mode = force_generic_plan"
        if f["lang"] != "sql":
            continue
        inlined = not f["config"] and not f["strict"] and ";" not in body and re.match(r"SELECT\b", body, re.I) and (
            f["volatility"] != "v" if f["srf"]
            # a FROM clause, not extract(field FROM value)
            else not re.search(r"\b(FROM|SELECT\b.*\bSELECT)\b", re.sub(r"\bextract\s*\(\s*\w+\s+FROM\b", "extract(", body, flags=re.I), re.I))
        if not inlined:
            planned_per_call[name] = body[:80]
    assert len(seen) > 10 and planned_per_call == {}
