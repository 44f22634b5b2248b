#!/usr/bin/env bash
# `make bench-compare BASE=<git revision>`: the previous binary and this one, alternated in
# one run. Builds nearcache at BASE (a detached worktree, its own target directory) and at
# the working tree, then runs bench/scripts/bench.sh COMPARE_ROUNDS times for each binary,
# alternating which goes first, one round per run, so drift on a shared machine falls on
# both. Prints, for every row of the bench (workload, target, metric), the median of each
# binary, this one's ratio to the previous, and the run-to-run spread ((max - min) / median)
# of each; a row is marked WORSE when this binary is worse than the previous by more than the
# larger spread (and by more than COMPARE_FLOOR, 2% unless set: figures such as a hit ratio
# repeat exactly run to run, and a spread of zero would flag any difference). Writes the same to $BENCH_OUT/compare.md; each run's report stays in
# $BENCH_OUT/compare/<binary>-<n>/.
#
# Environment: BASE (required), COMPARE_ROUNDS (default 3), COMPARE_FLOOR (0.02),
# COMPARE_TABLE_ONLY=1 (make the table again from the runs in $BENCH_OUT/compare), and
# bench.sh's own (BENCH_QUICK, BENCH_SECONDS, BENCH_KEYS, BENCH_OUT, ...). Arguments are
# passed to every nearcache.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

: "${BASE:?set BASE to the git revision to compare with, e.g. BASE=HEAD~1}"
COMPARE_ROUNDS=${COMPARE_ROUNDS:-3}
COMPARE_FLOOR=${COMPARE_FLOOR:-0.02}
BENCH_OUT=${BENCH_OUT:-target/bench}
say() { echo "compare: $*" >&2; }

rev=$(git rev-parse --verify "$BASE^{commit}")
if [ "${COMPARE_TABLE_ONLY:-}" != 1 ]; then
    base_dir=$(mktemp -d /tmp/nearcache-base.XXXXXX)
    trap 'git worktree remove --force "$base_dir" >/dev/null 2>&1 || rm -rf "$base_dir"' EXIT
    git worktree add --detach "$base_dir" "$rev" >/dev/null
    say "building the previous binary (${rev:0:12}) and this one"
    cargo build --release -p nearcache --manifest-path "$base_dir/Cargo.toml" \
        --target-dir target/baseline >&2
    cargo build --release -p nearcache >&2
    cp target/baseline/release/nearcache "$BENCH_OUT/nearcache-previous" 2>/dev/null ||
        { mkdir -p "$BENCH_OUT" && cp target/baseline/release/nearcache "$BENCH_OUT/nearcache-previous"; }
    declare -A bin=([previous]="$BENCH_OUT/nearcache-previous" [this]=target/release/nearcache)

    rm -rf "$BENCH_OUT/compare"
    for ((n = 1; n <= COMPARE_ROUNDS; n++)); do
        order=(previous this)
        ((n % 2 == 0)) && order=(this previous)
        for which in "${order[@]}"; do
            say "run $n/$COMPARE_ROUNDS: $which"
            NEARCACHE_BIN=${bin[$which]} BENCH_ROUNDS=1 BENCH_OUT="$BENCH_OUT/compare/$which-$n" \
                bench/scripts/bench.sh "$@" >/dev/null
        done
    done
fi

# workload,target,round,metric,value rows of every run -> one comparison table.
for f in "$BENCH_OUT"/compare/*/raw.csv; do
    which=$(basename "$(dirname "$f")"); which=${which%-*}
    awk -F, -v w="$which" 'NR > 1 && $5 ~ /^[0-9.]+$/ &&
        ($4 == "ops_per_sec" || $4 == "p50_ms" || $4 == "p99_ms" || $4 == "hit_ratio") {
        print w "," $1 "," $2 "," $4 "," $5 }' "$f"
done | sort -t, -k2,2 -k3,3 -k4,4 -k1,1 | awk -F, -v floor="$COMPARE_FLOOR" '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function spread(list,   n, a, i, lo, hi, m) {
        n = split(list, a, " "); lo = hi = a[1]
        for (i = 2; i <= n; i++) { if (a[i] < lo) lo = a[i]; if (a[i] > hi) hi = a[i] }
        m = median(list); return m > 0 ? (hi - lo) / m : 0
    }
    { key = $2 " | " $3 " | " $4; vals[key, $1] = vals[key, $1] " " $5; keys[key] = $4 }
    END {
        print "| workload | target | metric | previous | this | this/previous | spread previous | spread this | |"
        print "|---|---|---|---|---|---|---|---|---|"
        for (key in keys) {
            p = vals[key, "previous"]; t = vals[key, "this"]
            if (p == "" || t == "") continue
            mp = median(p); mt = median(t); sp = spread(p); st = spread(t)
            ratio = mp > 0 ? mt / mp : 0
            worse_by = (keys[key] ~ /_ms$/) ? ratio - 1 : 1 - ratio
            bound = sp > st ? sp : st
            if (bound < floor) bound = floor
            mark = worse_by > bound ? "WORSE" : ""
            printf "| %s | %.4g | %.4g | %.3f | %.0f%% | %.0f%% | %s |\n", key, mp, mt, ratio, sp * 100, st * 100, mark
        }
    }' | { read -r head; read -r rule; echo "$head"; echo "$rule"; sort; } | tee "$BENCH_OUT/compare.md"
say "table in $BENCH_OUT/compare.md (previous = ${rev:0:12})"
