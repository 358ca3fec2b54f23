# Shell functions shared by scripts/test.sh and scripts/bench.sh: a throwaway PostgreSQL cluster
# on 127.0.0.1, started on a free port and stopped again. Source it after setting
#   PG_WHO      the script's name, for messages (e.g. scripts/test.sh)
#   PG_TAG      a word for the cluster's temporary directory (/tmp/byocd-<tag>-pg.XXXXXX)
# then call `pg_start "<extra server options>"`: it sets PG_BIN, PG_DIR, PG_PORT and PG_URL and
# installs `trap pg_stop EXIT` (a caller that needs more on exit replaces the trap and calls
# pg_stop itself). Needs PostgreSQL's server binaries (initdb, pg_ctl).

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
    echo "$PG_WHO: PostgreSQL server binaries (initdb, pg_ctl) not found;" \
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
    echo "$PG_WHO: no free port in 55432-55532" >&2
    exit 2
}

# initdb refuses to run as root: run the cluster as the postgres user then.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_stop() {
    if [ -n "${PG_DIR:-}" ] && [ -f "$PG_DIR/data/postmaster.pid" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [ -n "${PG_DIR:-}" ]; then
        rm -rf "$PG_DIR"
    fi
}

# pg_start "<extra server options>"
pg_start() {
    PG_BIN=$(find_pg_bin)
    PG_DIR=$(mktemp -d "/tmp/byocd-$PG_TAG-pg.XXXXXX")
    PG_PORT=$(free_port)
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$PG_DIR"
    fi
    trap pg_stop EXIT

    echo "$PG_WHO: starting a throwaway PostgreSQL ($("$PG_BIN/postgres" --version)) on 127.0.0.1:$PG_PORT"
    as_pg "$PG_BIN/initdb" -D "$PG_DIR/data" -A trust -U postgres -E UTF8 --no-sync >"$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; exit 2; }
    as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 $1" \
        start >/dev/null || { cat "$PG_DIR/server.log" >&2; exit 2; }
    PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
}
