#!/usr/bin/env bash
# Fuzzes byocd's webhook parsers with cargo-fuzz (libFuzzer), one target after the other.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# SECONDS is how long each target runs (default 60). TARGETs default to every target in
# fuzz/fuzz_targets/ (webhook_8x8, webhook_kaleyra). cargo-fuzz is installed from crates.io
# when it is missing. Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets it accept the -Z
# flags cargo-fuzz passes (sanitizers need them).
#
# Environment:
#   FUZZ_SANITIZER  address (default) or none (faster, finds panics only)
#   FUZZ_ARGS       extra libFuzzer flags, e.g. "-max_len=65536" or "-fork=2"
#
# Each target starts from fuzz/corpus/<target>/ (the committed seeds are the test fixtures;
# new inputs libFuzzer finds are written there too, and git ignores them) plus the committed
# crash reproducers in fuzz/regressions/<target>/, with the dictionary fuzz/dicts/<target>.dict
# (the JSON keys and values the parser looks for). A crash stops that target's run, leaves the
# input in fuzz/artifacts/<target>/ and makes this script exit non-zero (after the other
# targets have run). See docs/fuzzing.md.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_dir="$root/fuzz"
seconds="${1:-60}"
shift || true
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]  (SECONDS: a whole number > 0)" >&2
    exit 2
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in "$fuzz_dir"/fuzz_targets/*.rs; do
        targets+=("$(basename "$f" .rs)")
    done
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "==> installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

# The stable toolchain accepts the nightly-only flags cargo-fuzz passes with this set; on a
# nightly toolchain it changes nothing.
export RUSTC_BOOTSTRAP=1
sanitizer="${FUZZ_SANITIZER:-address}"
# shellcheck disable=SC2206
extra=(${FUZZ_ARGS:-})

cd "$fuzz_dir"
echo "==> building ${targets[*]} (sanitizer: $sanitizer)"
for target in "${targets[@]}"; do
    cargo fuzz build --sanitizer "$sanitizer" "$target"
done

status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "regressions/$target" "artifacts/$target"
    echo "==> fuzzing $target for ${seconds}s"
    log="artifacts/$target/last-run.log"
    dict=()
    if [ -f "dicts/$target.dict" ]; then
        dict=("-dict=dicts/$target.dict")
    fi
    # libFuzzer writes new inputs to the first corpus directory only; the regressions are read.
    if cargo fuzz run --sanitizer "$sanitizer" "$target" \
        "corpus/$target" "regressions/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}" "${extra[@]}" 2>&1 | tee "$log"; then
        echo "==> $target: no crash in ${seconds}s"
    else
        status=1
        if grep -qE '^(==[0-9]+== ?ERROR: libFuzzer|SUMMARY: libFuzzer|artifact_prefix=.*Test unit written to)' "$log"; then
            echo "==> $target: CRASH (log: fuzz/$log; input under fuzz/artifacts/$target/)" >&2
            grep -E 'panicked at|Test unit written to' "$log" | sed "s/^/==> $target: /" >&2 || true
        else
            echo "==> $target: FAILED before fuzzing (build or start-up error; log: fuzz/$log)" >&2
        fi
    fi
    # One summary line: the last status line libFuzzer printed.
    grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 \
        | sed "s/^/==> $target final: /" || true
done
exit "$status"
