"""pgqueuer, configured to live in its own schema (`pgqueuer`) of the application database."""
import os

SCHEMA = "pgqueuer"
os.environ.setdefault("PGQUEUER_SCHEMA", SCHEMA)


def pgqueuer_settings():
    from pgqueuer.domain.settings import DBSettings

    return DBSettings(db_schema=SCHEMA)
