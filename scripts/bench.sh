#!/usr/bin/env bash
# Compare redis-benchmark throughput against a Redis directly and through nearcache.
#
# Starts a throwaway redis-server and a nearcache in front of it (both on free ports,
# both stopped on exit), fills the key space, then runs GET and SET with and without
# pipelining against each, alternating direct and nearcache runs, and prints
# requests/sec and the ratio nearcache/direct.
#
# Environment:
#   BENCH_N        requests per run for every test (default: 200000 for -P 1, 1000000 for -P 16)
#   BENCH_ROUNDS   times each test is run against each target; the mean is reported (default 1)
#   BENCH_TIMEOUT  upper bound in seconds for one redis-benchmark run (default 120)
#   NEARCACHE_BIN  use this binary instead of building target/release/nearcache
# Arguments are passed to nearcache, e.g. `scripts/bench.sh --l1-ttl 0` to measure pure forwarding.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

BENCH_ROUNDS=${BENCH_ROUNDS:-1}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-120}
CLIENTS=50
KEYSPACE=10000
VALUE_BYTES=64

scripts/ensure-redis.sh

if [ -n "${NEARCACHE_BIN:-}" ]; then
    bin=$NEARCACHE_BIN
else
    cargo build --release
    bin=target/release/nearcache
fi
[ -x "$bin" ] || { echo "bench: $bin is not an executable" >&2; exit 1; }

tmp=$(mktemp -d /tmp/nearcache-bench.XXXXXX)
redis_pid=
nc_pid=

# Stop a child: SIGTERM, up to $2 seconds, then SIGKILL.
# shellcheck source=scripts/stop.sh
. scripts/stop.sh

cleanup() {
    stop "$nc_pid" 6
    stop "$redis_pid" 5
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A TCP port on 127.0.0.1 that was free a moment ago.
free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 30000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null &&
            [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
            echo "$p"
            return
        fi
    done
    echo "bench: no free port found" >&2
    return 1
}

fail() {
    echo "bench: $*" >&2
    for f in "$tmp"/*.log "$tmp"/*.err; do
        [ -s "$f" ] || continue
        echo "--- last lines of $(basename "$f"):" >&2
        tail -n 20 "$f" >&2
    done
    exit 1
}

# --- upstream redis -------------------------------------------------------------------------
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$tmp" --logfile "$tmp/redis.log" &
redis_pid=$!
for _ in $(seq 50); do
    [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = "PONG" ] && break
    kill -0 "$redis_pid" 2>/dev/null || fail "redis-server exited at start-up"
    sleep 0.1
done
[ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = "PONG" ] ||
    fail "redis-server on port $redis_port did not answer PING within 5 s"

# --- nearcache ------------------------------------------------------------------------------
"$bin" --listen 127.0.0.1:0 --upstream "redis://127.0.0.1:$redis_port" "$@" \
    >"$tmp/nearcache.out" 2>"$tmp/nearcache.err" &
nc_pid=$!
nc_port=
for _ in $(seq 100); do
    nc_port=$(sed -n 's/^nearcache listening on .*:\([0-9][0-9]*\)[[:space:]]*$/\1/p' "$tmp/nearcache.out" | head -n 1)
    [ -n "$nc_port" ] && break
    kill -0 "$nc_pid" 2>/dev/null || fail "nearcache exited at start-up"
    sleep 0.1
done
[ -n "$nc_port" ] || fail "nearcache did not print 'nearcache listening on ...' within 10 s"

echo "bench: $(redis-server --version | awk '{print $1, $2, $3}') on 127.0.0.1:$redis_port," \
    "nearcache on 127.0.0.1:$nc_port${*:+ (flags: $*)}"
echo "bench: -c $CLIENTS -r $KEYSPACE -d $VALUE_BYTES, rounds $BENCH_ROUNDS"

# --- runs -----------------------------------------------------------------------------------
# run_benchmark PORT TEST PIPELINE N -> requests/sec on stdout
run_benchmark() {
    local port=$1 test=$2 pipeline=$3 n=$4 out rps
    if ! out=$(timeout "$BENCH_TIMEOUT" redis-benchmark -h 127.0.0.1 -p "$port" \
        -t "$test" -c "$CLIENTS" -r "$KEYSPACE" -d "$VALUE_BYTES" -n "$n" -P "$pipeline" \
        --csv -q 2>"$tmp/benchmark.err"); then
        echo "$out" >&2
        fail "redis-benchmark -t $test -P $pipeline against port $port failed or took over ${BENCH_TIMEOUT}s"
    fi
    rps=$(printf '%s\n' "$out" | awk -F'"' -v t="${test^^}" '$2 == t { print $4; exit }')
    [ -n "$rps" ] || fail "could not read requests/sec from redis-benchmark output: $out"
    echo "$rps"
}

echo "bench: filling the key space (SET, $KEYSPACE keys)"
run_benchmark "$redis_port" set 1 20000 >/dev/null

tests=("get 1" "get 16" "set 1" "set 16")
declare -A direct_sum=() nc_sum=()
for ((round = 0; round < BENCH_ROUNDS; round++)); do
    for i in "${!tests[@]}"; do
        read -r t p <<<"${tests[$i]}"
        if [ -n "${BENCH_N:-}" ]; then
            n=$BENCH_N
        elif [ "$p" -eq 1 ]; then
            n=200000
        else
            n=1000000
        fi
        # Alternate which target goes first, so drift (thermal, page cache, neighbours) is shared.
        if (((round + i) % 2 == 0)); then order=(direct nearcache); else order=(nearcache direct); fi
        for target in "${order[@]}"; do
            if [ "$target" = direct ]; then
                r=$(run_benchmark "$redis_port" "$t" "$p" "$n")
                direct_sum[$i]=$(awk -v a="${direct_sum[$i]:-0}" -v b="$r" 'BEGIN { print a + b }')
            else
                r=$(run_benchmark "$nc_port" "$t" "$p" "$n")
                nc_sum[$i]=$(awk -v a="${nc_sum[$i]:-0}" -v b="$r" 'BEGIN { print a + b }')
            fi
            echo "bench: ${t^^} -P $p -n $n $target: $r rps" >&2
        done
    done
done

echo
printf '%-10s %15s %15s %7s\n' test "direct rps" "nearcache rps" ratio
for i in "${!tests[@]}"; do
    read -r t p <<<"${tests[$i]}"
    awk -v name="${t^^} -P $p" -v d="${direct_sum[$i]}" -v c="${nc_sum[$i]}" -v k="$BENCH_ROUNDS" 'BEGIN {
        d /= k; c /= k
        printf "%-10s %15.0f %15.0f %7s\n", name, d, c, (d > 0 ? sprintf("%.2f", c / d) : "n/a")
    }'
done

echo
echo "nearcache INFO nearcache:"
timeout 5 redis-cli -h 127.0.0.1 -p "$nc_port" INFO nearcache 2>/dev/null | tr -d '\r' |
    grep -E '^l1_(hits|misses|hit_rate):' || echo "  (no l1_hits/l1_misses in INFO nearcache)"
