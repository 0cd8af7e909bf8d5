"""`make db`: start (creating if needed) the embedded database unless DATABASE_URL/DB_URI is
given, apply migrations, functions, views and jobs, and print the DATABASE_URL as the last line."""
import os
import sys

from common.config import ConfigError
from scripts import apply, embedded


def main():
    try:
        given = os.environ.get("DATABASE_URL") or os.environ.get("DB_URI")
        url = given or embedded.up()
        apply.apply(url)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc.strerror or exc} ({exc.filename or ''}); check the folder's permissions or set WA_VAR",
              file=sys.stderr)
        return 1
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
