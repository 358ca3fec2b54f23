#!/usr/bin/env bash
# The soak: every fault test of issue 20 at a larger scale than the suite's — PostgreSQL restarted
# under load, twenty SIGKILLs on SQLite and on two replicas sharing PostgreSQL, a six-hour
# Salesforce outage over a backlog of 100,000 messages (clocks moved, no real wait), Pub/Sub
# streams cut and a token revoked mid-stream, a replay id past the retention, a full SQLite
# disk — then rewrites the figures in docs/reliability.md (between the `soak:begin` and
# `soak:end` markers), with the date, the commit and the machine's load.
#
#   bash scripts/soak.sh                  # everything, bounded (20 minutes at most)
#   BYOCD_SOAK_BACKLOG=20000 bash scripts/soak.sh   # a smaller outage backlog
#   BYOCD_SOAK_RELEASE=1 bash scripts/soak.sh       # the daemon and the tests built --release
#                                                   # (the rates a production binary reaches;
#                                                   # a separate build of about 10 minutes)
#
# It starts its own throwaway PostgreSQL (scripts/pg.sh), like scripts/test.sh, and runs the
# same tests as the suite with BYOCD_SOAK=1 (tests/it/faults.rs, tests/it/crash.rs). The tests
# append one line of figures each to a file; nothing is written to the docs unless all passed.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_WHO=scripts/soak.sh
PG_TAG=soak
# shellcheck source=scripts/pg.sh
. scripts/pg.sh
pg_start "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"

FIGURES=$(mktemp /tmp/byocd-soak-figures.XXXXXX)
LOG=$(mktemp /tmp/byocd-soak-log.XXXXXX)
cleanup() {
    pg_stop
    rm -f "$FIGURES"
}
trap cleanup EXIT

export BYOCD_TEST_PG_URL="$PG_URL"
export BYOCD_SOAK=1
export BYOCD_SOAK_FIGURES="$FIGURES"
LOAD_BEFORE=$(uptime | sed 's/.*load average: //')
BEGAN=$(date +%s)
echo "scripts/soak.sh: load average before: $LOAD_BEFORE; test output in $LOG"
status=0
PROFILE=debug
CARGO_PROFILE=()
if [ "${BYOCD_SOAK_RELEASE:-0}" = 1 ]; then
    PROFILE=release
    CARGO_PROFILE=(--release)
    # The build first, outside the 20 minutes the run is allowed.
    cargo test "${CARGO_PROFILE[@]}" --test it --no-run >"$LOG" 2>&1
    BEGAN=$(date +%s)
    LOAD_BEFORE=$(uptime | sed 's/.*load average: //')
fi
timeout --signal=TERM 20m cargo test "${CARGO_PROFILE[@]}" --test it -- --nocapture --test-threads=2 \
    faults:: crash::sqlite::a_daemon_killed crash::postgres::a_daemon_killed \
    >"$LOG" 2>&1 || status=$?
TOOK=$(( $(date +%s) - BEGAN ))
LOAD_AFTER=$(uptime | sed 's/.*load average: //')
grep -E '^test |test result' "$LOG" || true
if [ "$status" != 0 ]; then
    echo "scripts/soak.sh: FAILED (exit $status) after ${TOOK}s; see $LOG" >&2
    grep -E 'panicked|FAILED' "$LOG" | head -20 >&2 || true
    exit 1
fi

# The figures, as a Markdown section between the markers.
SECTION=$(mktemp /tmp/byocd-soak-section.XXXXXX)
{
    echo "<!-- soak:begin (written by scripts/soak.sh; do not edit by hand) -->"
    echo "Last soak: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), ${TOOK}s in"
    echo "all, $PROFILE build; load average before ${LOAD_BEFORE}, after ${LOAD_AFTER} (a shared"
    echo "machine: rates are contended figures, not the pipeline's best). Outage backlog:"
    echo "${BYOCD_SOAK_BACKLOG:-100000} messages."
    echo
    sed -e 's/^/- /' "$FIGURES"
    echo "<!-- soak:end -->"
} >"$SECTION"
SECTION="$SECTION" perl -0777 -i -pe '
    BEGIN { local $/; open my $f, "<", $ENV{SECTION} or die; $new = <$f>; chomp $new }
    s/<!-- soak:begin.*?<!-- soak:end -->/$new/s or die "no soak markers in docs/reliability.md\n";
' docs/reliability.md
rm -f "$SECTION"
echo "scripts/soak.sh: PASS in ${TOOK}s; figures written to docs/reliability.md"
