#!/usr/bin/env bash
# Runs byocd's benchmarks and rewrites docs/benchmarks.md with their figures: builds byocd and
# byocd-bench in release, starts a throwaway PostgreSQL on 127.0.0.1 with its default durability
# (fsync and synchronous_commit on; pg_stat_statements loaded to count statements), runs every
# measurement against the sandbox emulators on loopback, and stops PostgreSQL again, whatever
# happens. The cluster's data directory is passed on so the bench can count the CPU of its
# server processes (the postmaster named in postmaster.pid and its children). Bounded: the bench skips what no longer fits in its --budget (480 s by default), so
# build and run stay under ten minutes on a 2-core machine.
#
#   bash scripts/bench.sh [byocd-bench arguments, e.g. --only accept,sweep --out /tmp/b.md]
set -euo pipefail
cd "$(dirname "$0")/.."

echo "scripts/bench.sh: building byocd and byocd-bench in release"
cargo build --release --bin byocd --bin byocd-bench
BIN="${CARGO_TARGET_DIR:-target}/release"

PG_WHO=scripts/bench.sh
PG_TAG=bench
# shellcheck source=scripts/pg.sh
. scripts/pg.sh
# pg_stat_statements only counts (the report shows what PostgreSQL spent its time on); a larger
# max_wal_size keeps the bulk seeding of a million sessions from forcing checkpoints.
pg_start "-c shared_preload_libraries=pg_stat_statements -c max_wal_size=4GB"
WORK=$(mktemp -d /var/tmp/byocd-bench.XXXXXX)
trap 'pg_stop; rm -rf "$WORK"' EXIT

BYOCD_BENCH_RUSTC="$(rustc --version)" "$BIN/byocd-bench" \
    --work-dir "$WORK" \
    --pg-url "$PG_URL" \
    --pg-data "$PG_DIR/data" \
    --daemon-bin "$BIN/byocd" \
    "$@"
