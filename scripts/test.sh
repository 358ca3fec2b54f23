#!/usr/bin/env bash
# Runs the whole byocd test suite against SQLite and against a throwaway PostgreSQL cluster that
# this script starts on 127.0.0.1 and stops again, whatever happens. Needs PostgreSQL's server
# binaries (initdb, pg_ctl); nothing needs to be running beforehand.
#
#   bash scripts/test.sh [extra cargo test arguments]
#   bash scripts/test.sh --test it store::     # one area of the integration tests (tests/it/)
set -euo pipefail
cd "$(dirname "$0")/.."

PG_WHO=scripts/test.sh
PG_TAG=test
# shellcheck source=scripts/pg.sh
. scripts/pg.sh
pg_start "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"

export BYOCD_TEST_PG_URL="$PG_URL"
cargo test --no-fail-fast "$@"
