"""The applied catalogue in stable order, committed as db/schema.snapshot so every schema change
shows in review (tests/test_schema_snapshot.py fails when apply produces something else).

    python -m scripts.schema_snapshot            # print the catalogue of a freshly applied scratch database
    python -m scripts.schema_snapshot --write    # regenerate db/schema.snapshot (`make schema`)

Covered: tables and their columns, constraints, indexes, functions' and procedures' signatures,
views' columns, triggers, in the schemas public and pgqueuer (not extensions' objects, yoyo's
bookkeeping or neonize's whatsmeow_* tables).
"""
import os
import sys

from common.config import ROOT, require_database_url, run_command
from common.db import connect

SNAPSHOT = ROOT / "db" / "schema.snapshot"
SCRATCH = f"wa_schema_{os.getpid()}"

_OURS = """n.nspname IN ('public', 'pgqueuer')
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = {oid} AND d.deptype = 'e')"""
_OUR_RELATION = _OURS.format(oid="c.oid") + """
           AND c.relname NOT LIKE '\\_yoyo%' AND c.relname <> 'yoyo_lock' AND c.relname NOT LIKE 'whatsmeow\\_%'"""

# Partitions of a RANGE-partitioned table (message_history's weeks) come and go with the calendar:
# left out. Other partitions (message_queue, message_history) are part of the design: listed.
_NOT_TIME_PARTITION = """NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_partitioned_table pt ON pt.partrelid = i.inhparent
                                WHERE i.inhrelid = c.oid AND pt.partstrat = 'r')"""

SECTIONS = {
    "tables": f"""
        SELECT format('%s.%s (%s%s)', n.nspname, c.relname, CASE c.relkind WHEN 'p' THEN 'partitioned' ELSE 'table' END,
                      CASE WHEN c.relispartition THEN ', partition ' || pg_get_expr(c.relpartbound, c.oid) ELSE '' END)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND {_NOT_TIME_PARTITION} AND {_OUR_RELATION}""",
    "columns": f"""
        SELECT format('%s.%s.%s %s%s%s%s', n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                      CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END,
                      CASE WHEN a.attidentity <> '' THEN ' IDENTITY' ELSE '' END,
                      coalesce(CASE WHEN a.attgenerated = 's' THEN ' GENERATED ' ELSE ' DEFAULT ' END
                               || pg_get_expr(ad.adbin, ad.adrelid), ''))
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
         WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
           AND {_OUR_RELATION}""",
    "constraints": f"""
        SELECT format('%s.%s %s: %s', n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid))
          FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE {_NOT_TIME_PARTITION} AND k.conislocal AND k.conparentid = 0 AND {_OUR_RELATION}""",
    "indexes": f"""
        SELECT pg_get_indexdef(i.indexrelid)
          FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_class ic ON ic.oid = i.indexrelid
         WHERE {_NOT_TIME_PARTITION} AND NOT ic.relispartition AND {_OUR_RELATION}""",
    "functions": f"""
        SELECT format('%s %s(%s) -> %s %s %s', CASE p.prokind WHEN 'p' THEN 'procedure' ELSE 'function' END,
                      p.oid::regproc, pg_get_function_arguments(p.oid),
                      coalesce(pg_get_function_result(p.oid), 'void'), l.lanname,
                      CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END)
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
         WHERE {_OURS.format(oid="p.oid")}""",
    "views": f"""
        SELECT format('%s.%s (%s)', n.nspname, c.relname,
                      string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum))
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
         WHERE c.relkind IN ('v', 'm') AND {_OUR_RELATION}
         GROUP BY n.nspname, c.relname""",
    "triggers": f"""
        SELECT pg_get_triggerdef(t.oid)
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT t.tgisinternal AND NOT c.relispartition AND {_OUR_RELATION}""",
}


def catalogue(url) -> str:
    """The catalogue of the database at url, one line per object, sections in a fixed order."""
    out = []
    with connect(url, application_name="wa-schema-snapshot") as c:
        for section, query in SECTIONS.items():
            lines = sorted(next(iter(r.values())) for r in c.execute(query))
            out.append(f"## {section} ({len(lines)})")
            out.extend(lines)
            out.append("")
    return "\n".join(out)


def fresh_catalogue() -> str:
    """The catalogue the apply path produces on an empty database (a scratch one, dropped after)."""
    from scripts.benchlib import create_scratch_database, drop_scratch_database

    base = require_database_url()
    url = create_scratch_database(base, SCRATCH)
    try:
        return catalogue(url)
    finally:
        drop_scratch_database(base, SCRATCH)


def main(*args):
    text = fresh_catalogue()
    if "--write" in args:
        SNAPSHOT.write_text(text)
        print(f"wrote {SNAPSHOT.relative_to(ROOT)}", file=sys.stderr)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    sys.exit(run_command(main, *sys.argv[1:]))
