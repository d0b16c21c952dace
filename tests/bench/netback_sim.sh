#!/usr/bin/env bash
# Host simulator benchmark: packets/s and Gb/s at 64 B and 1500 B through
# netfront TX -> vif -> switch -> vif -> netfront RX with the fake
# hypervisor's grant copy (a memcpy), next to a plain memcpy in the same run.
# Builds in release mode in its own target dir (not the main build's).
#
#     bash tests/bench/netback_sim.sh [runs]     (default 1 run, ~2.5 s each)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs="${1:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/tmp/bench-target}"
cmd=(cargo test --release --test netback_bench -- --ignored --nocapture)
cargo test --release --test netback_bench --no-run -q
for i in $(seq 1 "$runs"); do
    echo "== run $i/$runs: CARGO_TARGET_DIR=$CARGO_TARGET_DIR ${cmd[*]}"
    "${cmd[@]}" 2>&1 | sed -e 's/^test tx_switch_rx_throughput \.\.\. //' |
        grep -v -e '^running 1 test' -e '^test result:' -e '^$' -e '^ok$' -e 'Finished' -e 'Running'
done
