"""`make db`: start (creating if needed) the embedded database unless DATABASE_URL/DB_URI is
given, apply migrations, functions, views and jobs, and print the DATABASE_URL as the last line."""
import sys

from common.config import given_database_url, run_command
from scripts import apply, embedded


def up_and_apply():
    url = given_database_url() or embedded.up()
    apply.apply(url)
    print(url)


if __name__ == "__main__":
    sys.exit(run_command(up_and_apply))
