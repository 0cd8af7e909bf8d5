"""Static checks of every SQL function: plpgsql_check over each PL/pgSQL function (each trigger
function against its table and transition tables), and PostgreSQL's own validator over each
LANGUAGE sql body (apply creates them with check_function_bodies off, so nothing else would).

plpgsql_check is created only in this module's clone of the template, never in the application's
database. whatsmeow's tables, which some functions reach, are created by neonize itself, so those
functions are checked against the real session store."""
import re

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.fake_whatsmeow import create_whatsmeow_tables
from tests.superuser import superuser

# (function, message fragment) -> why this finding is accepted. Empty is the goal; each entry needs a reason.
WAIVED: dict[tuple[str, str], str] = {}

OURS = """n.nspname = 'public' AND NOT EXISTS (
            SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')"""


def _create_extension(url):
    with superuser(url) as c:
        try:
            c.execute("CREATE EXTENSION IF NOT EXISTS plpgsql_check")
        except psycopg.Error as exc:
            pytest.fail(f"plpgsql_check cannot be created ({exc.diag.message_primary}); scripts/bootstrap.sh "
                        "installs postgresql-<major>-plpgsql-check for the embedded cluster")


@pytest.fixture(scope="module")
def lint(module_db_url):
    _create_extension(module_db_url)
    create_whatsmeow_tables(module_db_url)
    with psycopg.connect(module_db_url, autocommit=True, row_factory=dict_row) as c:
        yield c


def _findings(rows):
    out = []
    for r in rows:
        key = next((k for k in WAIVED if k[0] == r["fn"] and k[1] in r["message"]), None)
        if key is None:
            out.append(f"{r['fn']} line {r['lineno']}: {r['level']}: {r['message']}"
                       + (f" ({r['detail']})" if r.get("detail") else ""))
    return out


def test_plpgsql_functions_are_clean(lint):
    rows = lint.execute(f"""
        SELECT p.oid::regprocedure::text AS fn, r.lineno, r.level, r.message, r.detail
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang,
               LATERAL plpgsql_check_function_tb(p.oid, fatal_errors => false, extra_warnings => false) r
         WHERE {OURS} AND l.lanname = 'plpgsql' AND p.prorettype <> 'trigger'::regtype
         ORDER BY 1, 2""").fetchall()
    assert _findings(rows) == []


def test_trigger_functions_are_clean_against_their_tables(lint):
    """Each trigger function once per table it serves, with every transition table its triggers
    there declare (a function branching on TG_OP reads new_rows in one branch, old_rows in another)."""
    rows = lint.execute(f"""
        WITH uses AS (
          SELECT t.tgfoid, t.tgrelid, max(t.tgnewtable) AS newtable, max(t.tgoldtable) AS oldtable
            FROM pg_trigger t WHERE NOT t.tgisinternal GROUP BY 1, 2)
        SELECT p.oid::regprocedure::text || ' on ' || u.tgrelid::regclass::text AS fn, r.lineno, r.level,
               r.message, r.detail
          FROM uses u JOIN pg_proc p ON p.oid = u.tgfoid JOIN pg_namespace n ON n.oid = p.pronamespace
          JOIN pg_language l ON l.oid = p.prolang,
               LATERAL plpgsql_check_function_tb(p.oid, u.tgrelid, fatal_errors => false, extra_warnings => false,
                                                 newtable => u.newtable, oldtable => u.oldtable) r
         WHERE {OURS} AND l.lanname = 'plpgsql'
         ORDER BY 1, 2""").fetchall()
    assert _findings(rows) == []
    triggers = lint.execute("SELECT count(*) AS n FROM pg_trigger WHERE NOT tgisinternal").fetchone()["n"]
    assert triggers > 0   # the query above saw the triggers it was meant to check


def test_every_trigger_function_serves_a_trigger(lint):
    orphans = lint.execute(f"""
        SELECT p.oid::regprocedure::text AS fn FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE {OURS} AND p.prorettype = 'trigger'::regtype
           AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgfoid = p.oid)""").fetchall()
    assert orphans == []   # such a function would escape the check above


def test_sql_function_bodies_are_valid(lint):
    functions = lint.execute(f"""
        SELECT p.oid, p.oid::regprocedure::text AS fn
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
         WHERE {OURS} AND l.lanname = 'sql' ORDER BY 2""").fetchall()
    assert functions
    broken = []
    with lint.transaction(force_rollback=True):
        lint.execute("SET LOCAL check_function_bodies = on")
        for f in functions:
            try:
                with lint.transaction():
                    lint.execute("SELECT fmgr_sql_validator(%s)", [f["oid"]])
            except psycopg.Error as exc:
                broken.append(f"{f['fn']}: {exc.diag.message_primary}")
    assert broken == []


def _one_expression(body):
    """Whether a LANGUAGE sql body is a single SELECT of expressions: one SELECT, and no FROM at the
    top level (a FROM inside parentheses is substring(x FROM y) and its kin); comments and string
    literals aside."""
    body = re.sub(r"--[^\n]*", " ", body)
    body = re.sub(r"'(?:[^']|'')*'", "''", body)
    if len(re.findall(r"\bselect\b", body, re.I)) != 1:
        return False
    depth = 0
    for token in re.findall(r"[()]|\bfrom\b", body, re.I):
        depth += {"(": 1, ")": -1}.get(token, 0)
        if token.lower() == "from" and depth == 0:
            return False
    return True


def test_one_expression_sql_functions_are_inlined(lint):
    """A LANGUAGE sql function of one expression is meant to be inlined into the statements that call
    it (per row, a call costs a function call; inlined, nothing). PostgreSQL refuses silently when the
    body is more volatile than the function says it is: media_path, IMMUTABLE, concatenated a bigint
    to text (text || bigint is only STABLE) and was called per queued row of every AI spread. Each
    candidate is planned with parameters for arguments, as a generic plan sees them."""
    functions = lint.execute(f"""
        SELECT p.proname, p.oid::regprocedure::text AS fn, p.prosrc,
               array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[]) t) AS types
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
         WHERE {OURS} AND l.lanname = 'sql' AND p.prokind = 'f' AND NOT p.proretset AND p.provolatile <> 'v'
           AND NOT p.prosecdef AND p.proconfig IS NULL
           AND p.prorettype NOT IN ('void'::regtype, 'record'::regtype, 'trigger'::regtype)
         ORDER BY 2""").fetchall()
    candidates = [f for f in functions if _one_expression(f["prosrc"])]
    assert len(candidates) >= 20, [f["fn"] for f in candidates]
    called = []
    with lint.transaction(force_rollback=True):
        lint.execute("SET LOCAL plan_cache_mode = force_generic_plan")
        for f in candidates:
            n = len(f["types"])
            types = f"({', '.join(f['types'])})" if n else ""
            args = ", ".join(f"${i}" for i in range(1, n + 1))
            lint.execute(f"PREPARE inline_probe {types} AS SELECT {f['proname']}({args})")
            plan = "\n".join(r["QUERY PLAN"] for r in lint.execute(
                "EXPLAIN VERBOSE EXECUTE inline_probe" + (f"({', '.join(['NULL'] * n)})" if n else "")))
            lint.execute("DEALLOCATE inline_probe")
            if re.search(rf"(?<![\w]){re.escape(f['proname'])}\(", plan):
                called.append(f["fn"])
    assert called == []


def _returns_inside_a_retried_block(body):
    """The RETURN QUERY / RETURN NEXT statements of a PL/pgSQL body that sit in a block with an
    EXCEPTION clause (between its BEGIN and that clause; comments and string literals aside)."""
    body = re.sub(r"--[^\n]*", " ", body)
    body = re.sub(r"'(?:[^']|'')*'", "''", body)
    found, opened = [], []   # the open BEGINs and CASEs (each closed by an END; IF and LOOP by END IF/LOOP)
    for token in re.finditer(r"\b(?:begin|case)\b|\bexception\s+when\b|\bend\b(?!\s+(?:if|loop)\b)", body, re.I):
        word = token.group(0).lower()
        if word in ("begin", "case"):
            opened.append((word, token.start()))
        elif word.startswith("exception"):
            begin = next((start for kind, start in reversed(opened) if kind == "begin"), None)
            if begin is not None and re.search(r"\breturn\s+(?:query|next)\b", body[begin:token.start()], re.I):
                found.append(body[begin:token.start()].strip()[:60])
        elif opened:
            opened.pop()
    return found


def test_no_rows_are_returned_from_a_block_that_may_be_taken_again(lint):
    """Rows a RETURN QUERY or RETURN NEXT produced stay in the function's result when its block then
    fails and the EXCEPTION clause runs it again: claim_messages returned the rows of a claim that
    failed midway (a serialization failure) as well as the retry's, and its sender sent them twice.
    Collect the rows inside the block and return them after it."""
    functions = lint.execute(f"""
        SELECT p.oid::regprocedure::text AS fn, p.prosrc
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
         WHERE {OURS} AND l.lanname = 'plpgsql' ORDER BY 1""").fetchall()
    assert _returns_inside_a_retried_block(
        "BEGIN LOOP BEGIN RETURN QUERY SELECT 1; EXIT; EXCEPTION WHEN serialization_failure THEN END; END LOOP; END")
    assert _returns_inside_a_retried_block(
        "BEGIN LOOP BEGIN RETURN QUERY SELECT CASE WHEN a THEN 1 END; EXCEPTION WHEN others THEN END; END LOOP; END")
    assert not _returns_inside_a_retried_block(
        "BEGIN LOOP BEGIN x := 1; EXIT; EXCEPTION WHEN unique_violation THEN END; END LOOP; RETURN QUERY SELECT x; END")
    assert [(f["fn"], r) for f in functions for r in _returns_inside_a_retried_block(f["prosrc"])] == []
