#!/usr/bin/env bash
# Runs the whole byocd test suite against SQLite and against a throwaway PostgreSQL cluster that
# this script starts on 127.0.0.1 and stops again, whatever happens. Needs PostgreSQL's server
# binaries (initdb, pg_ctl); nothing needs to be running beforehand.
#
#   bash scripts/test.sh [extra cargo test arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

find_pg_bin() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return
    fi
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ]; then
        echo "$dir"
        return
    fi
    echo "scripts/test.sh: PostgreSQL server binaries (initdb, pg_ctl) not found;" \
         "install them (Debian: apt-get install postgresql) and run again" >&2
    exit 2
}

free_port() {
    local port
    for port in $(seq 55432 55532); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    echo "scripts/test.sh: no free port in 55432-55532" >&2
    exit 2
}

PG_BIN=$(find_pg_bin)
PG_DIR=$(mktemp -d /tmp/byocd-test-pg.XXXXXX)
PG_PORT=$(free_port)

# initdb refuses to run as root: run the cluster as the postgres user then.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}
if [ "$(id -u)" = 0 ]; then
    chown postgres "$PG_DIR"
fi

stop_pg() {
    if [ -f "$PG_DIR/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PG_DIR"
}
trap stop_pg EXIT

echo "scripts/test.sh: starting a throwaway PostgreSQL ($("$PG_BIN/postgres" --version)) on 127.0.0.1:$PG_PORT"
as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres -E UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
    || { cat "$PG_DIR/initdb.log" >&2; exit 2; }
as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null || { cat "$PG_DIR/server.log" >&2; exit 2; }

export BYOCD_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
cargo test --no-fail-fast "$@"
