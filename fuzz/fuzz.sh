#!/bin/bash
# Coverage-guided fuzzing with libFuzzer on the project's pinned stable
# toolchain: libfuzzer-sys (a crates.io package that builds libFuzzer from
# its bundled C++ source) and rustc's stable SanitizerCoverage flags. No
# nightly, no cargo-fuzz, no sanitizer runtime.
#   fuzz/fuzz.sh build                 build every target
#   fuzz/fuzz.sh run SECONDS [T...]    run each target (all by default) for
#                                      SECONDS, one process; fails on a crash
#   fuzz/fuzz.sh repro TARGET FILE     replay one input (a crash artifact)
# Inputs that find new coverage go to fuzz/corpus/TARGET (kept between
# runs); fuzz/seeds/TARGET is read as a seed corpus; crashes are written to
# fuzz/artifacts/TARGET/. Set FUZZ_EXECS=N to stop each target after N runs.
set -euo pipefail
cd "$(dirname "$0")"

TARGETS=(xenstore_replies netback_tx_ring netback_rx_ring netback_ctrl_ring netback_one_copy xenbus_backend switch_ingress mgmt_filter)
HOST=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/$HOST/release
say() { echo "fuzz: $*"; }

# What cargo-fuzz passes for `--sanitizer none`, all of it stable: inline
# 8-bit counters and a PC table for libFuzzer's coverage, comparison
# tracing so it can solve magic values, debug assertions and overflow
# checks so that arithmetic bugs crash. Not `--cfg fuzzing`: smoltcp then
# accepts every checksum, and checking checksums is what the management
# filter does.
RUSTFLAGS_FUZZ="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks"

build() {
    say "building ${#TARGETS[@]} targets ($(rustc --version), $HOST)"
    # --target keeps the flags off build scripts and proc macros.
    RUSTFLAGS="$RUSTFLAGS_FUZZ" cargo build --release --target "$HOST" --bins
    say "libFuzzer from the crate libfuzzer-sys $(sed -n '/^name = "libfuzzer-sys"/{n;s/version = //p}' Cargo.lock | tr -d '"')"
}

# Per-target input size limit: a whole TX ring (4 KiB) fits.
max_len() {
    case $1 in
        netback_tx_ring) echo 3200 ;;
        switch_ingress | mgmt_filter | netback_rx_ring) echo 4096 ;;
        *) echo 2048 ;;
    esac
}

run() {
    local secs=$1 failed=() t log rc runs rate
    shift
    local list=("$@")
    [ ${#list[@]} -gt 0 ] || list=("${TARGETS[@]}")
    for t in "${list[@]}"; do
        [ -x "$BIN/$t" ] || { say "no target $t (build first)"; exit 2; }
    done
    local summary=()
    for t in "${list[@]}"; do
        mkdir -p "corpus/$t" "artifacts/$t" "seeds/$t"
        log=artifacts/$t/last-run.log
        say "$t: ${secs}s"
        rc=0
        "$BIN/$t" "corpus/$t" "seeds/$t" -max_total_time="$secs" ${FUZZ_EXECS:+-runs=$FUZZ_EXECS} \
            -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
            -artifact_prefix="artifacts/$t/" >"$log" 2>&1 || rc=$?
        runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        if [ $rc != 0 ]; then
            failed+=("$t")
            say "$t: FAILED (exit $rc); the end of $log:"
            grep -v '^INFO:\|^#[0-9]' "$log" | tail -40
            ls -1 "artifacts/$t" | grep -v last-run.log | sed "s|^|fuzz:   artifact fuzz/artifacts/$t/|"
            summary+=("$t: FAILED")
        else
            summary+=("$t: ${runs:-?} runs, ${rate:-?} exec/s, corpus $(ls "corpus/$t" | wc -l)")
        fi
    done
    printf 'fuzz: %s\n' "${summary[@]}"
    if [ ${#failed[@]} -gt 0 ]; then
        say "crashes in: ${failed[*]} (replay: fuzz/fuzz.sh repro TARGET FILE)"
        exit 1
    fi
}

case ${1:-} in
    build) build ;;
    run) shift; run "$@" ;;
    repro) RUST_BACKTRACE=1 "$BIN/$2" "$3" ;;
    *) echo "usage: $0 build | run SECONDS [TARGET...] | repro TARGET FILE" >&2; exit 2 ;;
esac
