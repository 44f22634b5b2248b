#!/usr/bin/env bash
# Instructions per request (valgrind --tool=callgrind): what the sidecar's own threads execute
# for one request of each kind, repeatable on a shared machine where timings are not.
#
# Starts a throwaway redis-server and one release nearcache under callgrind, then for each
# workload: fills the keys it needs straight into
# Redis, warms L1 where the workload hits, zeroes the counts, sends INSTR_N requests with
# redis-benchmark (one client), dumps, and divides the instructions counted
# by the requests sent. The rows:
#   hit100   GET -P 1 of 1,000 keys of 100 bytes held in L1
#   hit1k    GET -P 1 of 1,000 keys of 1 KiB held in L1
#   hit100p  GET -P 16 of the 100-byte keys
#   miss     GET -P 1 over 50,000 keys of 100 bytes with --l1-max-bytes 1MiB (nearly every
#            GET fetches, fills and evicts; the hit share is printed)
#   set      SET -P 1 and SET -P 16 of 100-byte values over 50,000 keys
#   mget     MGET of 5 keys held in L1 and 5 never-set keys (nearcache-bench mget, one
#            client, for INSTR_SECONDS): the reply joins hits with one upstream MGET + PTTLs
#   forward  GET -P 1 over the 50,000 keys with --l1-ttl 0: the hop to Redis and back with
#            nothing cached, which a miss pays before its own work (PTTL, fill, eviction)
#   tw_*     GET -P 1, SET -P 1 and SET -P 16 through twemproxy (nutcracker, one server)
#            under callgrind: what the reference C forwarder executes for the same hop
# Writes the table to target/bench/instructions.md.
#
# Environment: INSTR_N (requests per row, default 20000), INSTR_SECONDS (the mget row's
# length, default 3).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

INSTR_N=${INSTR_N:-20000}
INSTR_SECONDS=${INSTR_SECONDS:-3}

scripts/ensure-redis.sh
scripts/ensure-nutcracker.sh >/dev/null
command -v valgrind >/dev/null || {
    [ "$(id -u)" = 0 ] || { echo "instructions: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
    apt-get install -y valgrind >/dev/null
}
cargo build --release -p nearcache -p nearcache-bench
bin=target/release/nearcache
tool=target/release/nearcache-bench
mkdir -p target/bench

tmp=$(mktemp -d /tmp/nearcache-instructions.XXXXXX)
pids=()

# shellcheck source=bench/scripts/procs.sh
. bench/scripts/procs.sh

cleanup() {
    local pid
    for pid in "${pids[@]}"; do stop "$pid"; done
    [ -n "${INSTR_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "instructions: $*" >&2
    tail_logs "$tmp"/*.log "$tmp"/*.err
    exit 1
}

wait_pong() {
    local port=$1 what=$2
    for _ in $(seq 300); do
        [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ] && return 0
        sleep 0.1
    done
    fail "$what on port $port did not answer PING within 30 s"
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$tmp" --logfile "$tmp/redis.log" &
pids+=($!)
wait_pong "$redis_port" redis-server

# start_sidecar NAME [FLAGS...]: nearcache under callgrind; sets $port and $pid.
start_sidecar() {
    local name=$1
    shift
    port=$(free_port)
    valgrind --tool=callgrind --callgrind-out-file="$tmp/$name.%p" \
        "$bin" --listen "127.0.0.1:$port" --upstream "redis://127.0.0.1:$redis_port" \
        --metrics-listen off "$@" >"$tmp/$name.log" 2>"$tmp/$name.err" &
    pid=$!
    pids+=("$pid")
    wait_pong "$port" "nearcache ($name) under callgrind"
}

# dumped PID ROW: dumps PID's counts as ROW and prints the instructions since the zeroing.
dumped() {
    local pid=$1 row=$2 dump total
    callgrind_control -d "$row" "$pid" >/dev/null
    # The newest dump of this process holds the counts since the zeroing.
    dump=$(ls -t "$tmp"/*."$pid".* 2>/dev/null | head -n 1)
    [ -n "$dump" ] || fail "no callgrind dump for $row"
    total=$(sed -n 's/^summary: \([0-9]*\).*/\1/p;s/^totals: \([0-9]*\).*/\1/p' "$dump" | head -n 1)
    [ -n "$total" ] || fail "no instruction total in $dump"
    echo "$total"
}

# measure PID ROW REQUESTS -- redis-benchmark args: instructions per request on stdout.
measure() {
    local pid=$1 row=$2 requests=$3 total
    shift 4
    callgrind_control -z "$pid" >/dev/null
    redis-benchmark -h 127.0.0.1 "$@" -c 1 -q --csv >/dev/null
    total=$(dumped "$pid" "$row")
    echo $((total / requests))
}

info_field() {
    redis-cli -h 127.0.0.1 -p "$1" info nearcache | tr -d '\r' | sed -n "s/^$2:\([0-9]*\).*/\1/p"
}

declare -A result
n=$INSTR_N

# Hits: the keys redis-benchmark names (key:000000000000 ...) filled straight into Redis.
start_sidecar hits
"$tool" fill --addr "127.0.0.1:$redis_port" --count 1000 --value-size 100 >/dev/null
redis-benchmark -h 127.0.0.1 -p "$port" -t get -n 20000 -r 1000 -c 4 -q --csv >/dev/null
result[hit100]=$(measure "$pid" hit100 "$n" -- -p "$port" -t get -n "$n" -r 1000 -P 1)
result[hit100p]=$(measure "$pid" hit100p "$n" -- -p "$port" -t get -n "$n" -r 1000 -P 16)
"$tool" fill --addr "127.0.0.1:$redis_port" --count 1000 --value-size 1024 >/dev/null
redis-benchmark -h 127.0.0.1 -p "$port" -t get -n 20000 -r 1000 -c 4 -q --csv >/dev/null
result[hit1k]=$(measure "$pid" hit1k "$n" -- -p "$port" -t get -n "$n" -r 1000 -P 1)

# MGET of 5 hits and 5 misses (the hits sidecar: key:0 .. key:9999 read into L1 first).
"$tool" fill --addr "127.0.0.1:$redis_port" --prefix key: --count 10000 --value-size 100 >/dev/null
"$tool" read --addr "127.0.0.1:$port" --prefix key: --count 10000 >/dev/null
callgrind_control -z "$pid" >/dev/null
out=$("$tool" mget --addr "127.0.0.1:$port" --clients 1 --hot 5 --cold 5 --hot-keys 10000 \
    --seconds "$INSTR_SECONDS" --warmup 0) || fail "nearcache-bench mget failed"
total=$(dumped "$pid" mget)
mget_requests=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out")
[ "${mget_requests:-0}" -gt 0 ] || fail "no MGET completed: $out"
result[mget]=$((total / mget_requests))

# Misses and writes: a small L1 over a larger key space.
start_sidecar misses --l1-max-bytes 1MiB
"$tool" fill --addr "127.0.0.1:$redis_port" --count 50000 --value-size 100 >/dev/null
hits0=$(info_field "$port" l1_hits)
misses0=$(info_field "$port" l1_misses)
result[miss]=$(measure "$pid" miss "$n" -- -p "$port" -t get -n "$n" -r 50000 -P 1)
hits1=$(info_field "$port" l1_hits)
misses1=$(info_field "$port" l1_misses)
result[set]=$(measure "$pid" set "$n" -- -p "$port" -t set -n "$n" -r 50000 -d 100 -P 1)
result[setp]=$(measure "$pid" setp "$n" -- -p "$port" -t set -n "$n" -r 50000 -d 100 -P 16)

# The hop alone: nothing cached.
start_sidecar forward --l1-ttl 0
result[forward]=$(measure "$pid" forward "$n" -- -p "$port" -t get -n "$n" -r 50000 -P 1)

# The reference forwarder: nutcracker with one server, under callgrind.
tw_port=$(free_port)
cat >"$tmp/nutcracker.yml" <<EOF
alpha:
  listen: 127.0.0.1:$tw_port
  hash: fnv1a_64
  distribution: ketama
  redis: true
  servers:
   - 127.0.0.1:$redis_port:1
EOF
valgrind --tool=callgrind --callgrind-out-file="$tmp/twemproxy.%p" \
    nutcracker -c "$tmp/nutcracker.yml" -o "$tmp/twemproxy.log" >"$tmp/twemproxy.err" 2>&1 &
pid=$!
pids+=("$pid")
wait_pong "$tw_port" "nutcracker under callgrind"
result[tw_get]=$(measure "$pid" tw_get "$n" -- -p "$tw_port" -t get -n "$n" -r 50000 -P 1)
result[tw_set]=$(measure "$pid" tw_set "$n" -- -p "$tw_port" -t set -n "$n" -r 50000 -d 100 -P 1)
result[tw_setp]=$(measure "$pid" tw_setp "$n" -- -p "$tw_port" -t set -n "$n" -r 50000 -d 100 -P 16)

miss_share=$(python3 -c "h=${hits1:-0}-${hits0:-0}; m=${misses1:-0}-${misses0:-0}; print(f'{m/max(h+m,1):.2f}')")
{
    echo "| request | instructions per request |"
    echo "|---|---|"
    echo "| GET hit, 100-byte value, -P 1 | ${result[hit100]} |"
    echo "| GET hit, 1 KiB value, -P 1 | ${result[hit1k]} |"
    echo "| GET hit, 100-byte value, -P 16 | ${result[hit100p]} |"
    echo "| GET miss (fetch, fill, evict), -P 1; share of misses ${miss_share} | ${result[miss]} |"
    echo "| MGET of 5 L1 hits and 5 never-set keys, -P 1 | ${result[mget]} |"
    echo "| SET, -P 1 | ${result[set]} |"
    echo "| SET, -P 16 | ${result[setp]} |"
    echo "| GET forwarded (--l1-ttl 0: the hop alone), -P 1 | ${result[forward]} |"
    echo "| twemproxy: GET, -P 1 | ${result[tw_get]} |"
    echo "| twemproxy: SET, -P 1 | ${result[tw_set]} |"
    echo "| twemproxy: SET, -P 16 | ${result[tw_setp]} |"
} | tee target/bench/instructions.md
