#!/usr/bin/env bash
# Invalidation lag and the cost of server-assisted tracking.
#
# 1. Starts a throwaway redis-server and two nearcache sidecars A and B (release build, free
#    ports, all stopped on exit) and runs bench/examples/lag.rs: B caches a key, then
#    LAG_N times a new value is written (through A, then separately straight to Redis), the
#    acknowledgment timestamped, and GET through B polled until it serves the new value;
#    p50/p99/max of that lag are printed. Then LAG_KEYS keys are cached through B and the
#    upstream's tracking_total_keys is printed (the Redis memory tracking costs).
# 2. Runs bench/scripts/bench.sh with tracking on (the default) and with `--tracking off`, and
#    prints the GET and SET throughput ratios to direct Redis of both.
#
# Environment: LAG_N (default 1000), LAG_KEYS (default 100000), BENCH_N and the rest of
# bench/scripts/bench.sh's variables (passed on), LAG_SKIP_BENCH=1 to skip step 2.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

LAG_N=${LAG_N:-1000}
LAG_KEYS=${LAG_KEYS:-100000}

scripts/ensure-redis.sh
cargo build --release
cargo build --release -p nearcache-bench --example lag
bin=target/release/nearcache

tmp=$(mktemp -d /tmp/nearcache-bench-lag.XXXXXX)
pids=()

# shellcheck source=bench/scripts/procs.sh
. bench/scripts/procs.sh

cleanup() {
    local pid
    for pid in "${pids[@]}"; do stop "$pid"; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "bench-lag: $*" >&2
    tail_logs "$tmp"/*.log "$tmp"/*.err
    exit 1
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$tmp" --logfile "$tmp/redis.log" &
pids+=($!)
for _ in $(seq 50); do
    [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = "PONG" ] && break
    sleep 0.1
done
[ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null)" = "PONG" ] ||
    fail "redis-server on port $redis_port did not answer PING within 5 s"

# start_sidecar NAME -> port on stdout
start_sidecar() {
    local name=$1 port=
    "$bin" --listen 127.0.0.1:0 --upstream "redis://127.0.0.1:$redis_port" --metrics-listen off \
        >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pids+=($!)
    for _ in $(seq 100); do
        port=$(sed -n 's/^nearcache listening on .*:\([0-9][0-9]*\)[[:space:]]*$/\1/p' "$tmp/$name.out" | head -n 1)
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || fail "sidecar $name did not print 'nearcache listening on ...' within 10 s"
    echo "$port"
}
# Not in $(...): the pid must be recorded in this shell.
start_sidecar a >"$tmp/a.port"
start_sidecar b >"$tmp/b.port"
a_port=$(cat "$tmp/a.port")
b_port=$(cat "$tmp/b.port")

echo "bench-lag: redis on $redis_port, sidecars A on $a_port and B on $b_port (tracking on)"
target/release/examples/lag "$redis_port" "$a_port" "$b_port" "$LAG_N" "$LAG_KEYS"

[ "${LAG_SKIP_BENCH:-}" = 1 ] && exit 0
for flags in "" "--tracking off"; do
    echo
    echo "bench-lag: bench/scripts/bench.sh ${flags:-(tracking on)}"
    # shellcheck disable=SC2086 # flags are words
    NEARCACHE_BIN=$bin bench/scripts/bench.sh $flags 2>/dev/null | grep -E '^(test|GET|SET) '
done
