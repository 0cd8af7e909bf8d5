"""The applied catalogue equals the committed db/schema.snapshot, so every schema change shows in
review. After an intended change: `make schema` regenerates the file; commit it with the change."""
import difflib

from scripts.schema_snapshot import SNAPSHOT, catalogue


def test_applied_schema_matches_the_committed_snapshot(module_db_url):
    got, want = catalogue(module_db_url), SNAPSHOT.read_text()
    diff = "\n".join(difflib.unified_diff(want.splitlines(), got.splitlines(), "db/schema.snapshot", "applied", lineterm=""))
    assert got == want, f"the applied schema differs from db/schema.snapshot (run `make schema` if intended):\n{diff}"
