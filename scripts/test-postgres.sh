#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on 127.0.0.1 for the token store tests and prints its URL.
# Idempotent: a second run reuses the running cluster. Installs `postgresql` via apt when it is missing.
#
#   export MIOCTX_TEST_POSTGRES_URL="$(scripts/test-postgres.sh)"
#   scripts/test-postgres.sh stop     # stops the cluster and deletes its data
#
# Environment: MIOCTX_TEST_PG_PORT (default 55432), MIOCTX_TEST_PG_DIR (default /tmp/mioctx-test-postgres).
# Only the URL goes to stdout; progress goes to stderr.
set -euo pipefail

PORT="${MIOCTX_TEST_PG_PORT:-55432}"
BASE="${MIOCTX_TEST_PG_DIR:-/tmp/mioctx-test-postgres}"
DATA="$BASE/data"
DB_USER="mioctx_test"
DB_PASSWORD="mioctx_test_pw"
DB_NAME="mioctx_test"
URL="postgres://$DB_USER:$DB_PASSWORD@127.0.0.1:$PORT/$DB_NAME?sslmode=disable"

log() { echo "test-postgres: $*" >&2; }

find_bindir() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then echo "$dir"; return 0; fi
    done
    return 1
}

BINDIR="$(find_bindir || true)"
if [ -z "$BINDIR" ]; then
    log "PostgreSQL server not found: installing it with apt"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
    BINDIR="$(find_bindir)"
fi

# initdb and postgres refuse to run as root: run them as the postgres user when we are root.
if [ "$(id -u)" = "0" ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    as_pg() { runuser -u postgres -- "$@"; }
    mkdir -p "$BASE"
    chown postgres:postgres "$BASE"
else
    as_pg() { "$@"; }
    mkdir -p "$BASE"
fi

if [ "${1:-}" = "stop" ]; then
    if [ -f "$DATA/PG_VERSION" ]; then as_pg "$BINDIR/pg_ctl" -D "$DATA" -m fast stop >&2 || true; fi
    rm -rf "$BASE"
    log "stopped and removed $BASE"
    exit 0
fi

if [ ! -f "$DATA/PG_VERSION" ]; then
    log "creating a cluster in $DATA"
    as_pg "$BINDIR/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --no-locale >&2
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $PORT"
        echo "unix_socket_directories = '$BASE'"
        echo "max_connections = 200"
        echo "fsync = off"
        echo "synchronous_commit = off"
    } | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
fi

if ! as_pg "$BINDIR/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
    log "starting the cluster on 127.0.0.1:$PORT"
    as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$BASE/postgres.log" -w -t 60 start >&2
fi

psql_admin() { as_pg "$BINDIR/psql" -h "$BASE" -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -qAt "$@"; }

if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" != "1" ]; then
    psql_admin -c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASSWORD'" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != "1" ]; then
    psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" >&2
fi

echo "$URL"
