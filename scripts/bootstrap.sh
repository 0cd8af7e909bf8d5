#!/usr/bin/env bash
# Installs what a fresh Debian/Ubuntu machine lacks: the virtualenv with the pinned requirements,
# and, when no DATABASE_URL/DB_URI is given, the PostgreSQL server and pg_cron from the OS packages.
# Idempotent and quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "error: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root to run: $*"; fi; }
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $* automatically (no apt-get); install it, or set DATABASE_URL"
  if [ ! -f var/.apt-updated ]; then as_root apt-get update -qq >/dev/null; mkdir -p var; touch var/.apt-updated; fi
  echo "installing OS packages: $*" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Python: a project-local virtualenv, reinstalled only when requirements.txt changes.
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || apt_install python3 python3-venv
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv 2>/dev/null || { apt_install python3-venv; rm -rf .venv; "$PYTHON" -m venv .venv; }
fi
stamp=.venv/.requirements.sha
want=$(sha1sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing Python requirements into .venv" >&2
  # (this machine's pip.conf warns about absent local indexes: keep that noise out)
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "^WARNING: Location" >&2 || true
  [ "${PIPESTATUS[0]}" = 0 ] || die "pip could not install requirements.txt"
  echo "$want" > "$stamp"
fi

# Database server: only for the embedded cluster.
if [ -z "${DATABASE_URL:-}${DB_URI:-}" ]; then
  major=$(ls -d /usr/lib/postgresql/*/bin/postgres 2>/dev/null | sed -E 's#.*/postgresql/([0-9]+)/.*#\1#' | sort -n | tail -1 || true)
  if [ -z "$major" ]; then
    apt_install postgresql
    major=$(ls -d /usr/lib/postgresql/*/bin/postgres | sed -E 's#.*/postgresql/([0-9]+)/.*#\1#' | sort -n | tail -1)
  fi
  if [ ! -f "/usr/lib/postgresql/$major/lib/pg_cron.so" ]; then
    apt_install "postgresql-$major-cron" || echo "warning: pg_cron unavailable; the clock process will run the ticks" >&2
  fi
  # PgBouncer pools neonize's session-store connections (one database pool per WhatsApp client).
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || apt_install pgbouncer
  # Static checks of the PL/pgSQL functions (tests only; never created in the application database).
  if [ ! -f "/usr/lib/postgresql/$major/lib/plpgsql_check.so" ]; then
    apt_install "postgresql-$major-plpgsql-check" || echo "warning: plpgsql_check unavailable; its test will fail" >&2
  fi
fi

# Browser libraries (Chart.js): node_modules from package-lock.json, reinstalled only when it changes.
command -v npm >/dev/null || apt_install npm
stamp=node_modules/.package-lock.sha
want=$(sha1sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing browser libraries into node_modules" >&2
  npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1 || die "npm ci failed"
  echo "$want" > "$stamp"
fi

# Browser tests drive Debian's Chromium (Playwright's own browser download is not used).
[ -x /usr/bin/chromium ] || apt_install chromium
