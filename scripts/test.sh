#!/usr/bin/env bash
# Runs the whole byocd test suite against SQLite and against a throwaway PostgreSQL cluster that
# this script starts on 127.0.0.1 and stops again, whatever happens. Needs PostgreSQL's server
# binaries (initdb, pg_ctl) and promtool (the alert rules' unit tests); nothing needs to be running
# beforehand.
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

# The shipped alert rules (docs/monitoring/): valid, and their unit tests pass. promtool comes
# with Debian's `prometheus` package; .ci/run installs it where it is missing.
if ! command -v promtool >/dev/null 2>&1; then
    echo "scripts/test.sh: promtool not found (Debian: apt-get install prometheus); it checks docs/monitoring/byocd-alerts.yml" >&2
    exit 1
fi
promtool check rules docs/monitoring/byocd-alerts.yml
promtool test rules docs/monitoring/byocd-alerts.test.yml

export BYOCD_TEST_PG_URL="$PG_URL"
cargo test --no-fail-fast "$@"
