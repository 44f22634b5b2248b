#!/usr/bin/env bash
# Runs every test (unit tests in src/, black-box tests in proto-tests/) and ends with one
# summary line: "tests: N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/ensure-redis.sh
scripts/ensure-clients.sh
scripts/ensure-prometheus.sh
scripts/ensure-k8s-tools.sh
# The black-box tests run target/debug/nearcache: build it before they start.
cargo build --workspace
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$log" || status=$?
awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed/) p += $i
            if ($(i+1) ~ /^failed/) f += $i
            if ($(i+1) ~ /^ignored/) s += $i
        }
     }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
