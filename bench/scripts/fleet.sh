#!/usr/bin/env bash
# Fleet scale: what hundreds of sidecars on one Redis cost that Redis, and the invalidation
# lag at the farthest sidecar (make bench-fleet).
#
# For every combination of FLEET x TRACKING x TABLE_MAX_KEYS: starts a throwaway
# redis-server and N nearcache sidecars on free ports (release build, each tiny: --threads 1,
# a small L1, a small upstream pool, metrics off), runs bench/examples/fleet.rs (every sidecar
# reads a shared key space so L1s and the tracking table fill; then a paced read load over
# every sidecar, a write load half direct and half through sidecars, and the lag probe at the
# farthest sidecar), and stops them all. Prints the table and writes it to
# target/bench/fleet.md. Every process started is stopped on exit.
#
# Environment (lists are space-separated; every combination is run):
#   FLEET            sidecar counts                 (default "100")
#   TRACKING         --tracking modes: default|off|bcast  (default "default")
#   TABLE_MAX_KEYS   CONFIG SET tracking-table-max-keys, 0 = unlimited  (default "0")
#   SIDECAR_FLAGS    more flags for every sidecar (e.g. bcast prefixes)
#   FLEET_L1         --l1-max-bytes of each sidecar (default 4MiB)
#   FLEET_POOL       --upstream-connections of each sidecar (default 1)
#   FLEET_KEYS, FLEET_SECONDS, FLEET_READS, FLEET_WRITES, FLEET_MGET: the load
#                    (defaults 5000 keys, 10 s, 1000 MGETs/s of 10 keys, 100 SETs/s)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# shellcheck source=bench/scripts/procs.sh
. bench/scripts/procs.sh

FLEET=${FLEET:-100}
TRACKING=${TRACKING:-default}
TABLE_MAX_KEYS=${TABLE_MAX_KEYS:-0}
SIDECAR_FLAGS=${SIDECAR_FLAGS:-}
FLEET_L1=${FLEET_L1:-4MiB}
FLEET_POOL=${FLEET_POOL:-1}
FLEET_KEYS=${FLEET_KEYS:-5000}
FLEET_SECONDS=${FLEET_SECONDS:-10}
FLEET_READS=${FLEET_READS:-1000}
FLEET_WRITES=${FLEET_WRITES:-100}
FLEET_MGET=${FLEET_MGET:-10}

scripts/ensure-redis.sh
cargo build --release -p nearcache
cargo build --release -p nearcache-bench --example fleet
bin=target/release/nearcache
probe=target/release/examples/fleet

tmp=$(mktemp -d /tmp/nearcache-fleet.XXXXXX)
pids=()

# Stops every process started: SIGTERM to all at once, up to 10 s for them to exit, then
# SIGKILL for what is left.
stop_all() {
    local pid i
    [ "${#pids[@]}" -gt 0 ] || return 0
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for ((i = 0; i < 100; i++)); do
        local alive=0
        for pid in "${pids[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1 && break; fi
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}
cleanup() {
    stop_all
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "bench-fleet: $*" >&2
    exit 1
}

# Shows the last lines of a sidecar's logs and fails.
fail_sidecar() {
    local i=$1 what=$2
    echo "bench-fleet: sidecar $i $what" >&2
    tail_logs "$tmp/s$i.out" "$tmp/s$i.err"
    exit 1
}

start_redis() {
    local port=$1
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$tmp" --logfile "$tmp/redis.log" --maxclients 10000 &
    pids+=($!)
    for _ in $(seq 50); do
        [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ] && return 0
        sleep 0.1
    done
    tail -n 20 "$tmp/redis.log" >&2 || true
    fail "redis-server on port $port did not answer PING within 5 s"
}

# start_fleet N MODE REDIS_PORT: starts N sidecars, writes their ports (in start order) to
# $tmp/ports; fails with the sidecar's log if one exits or prints no port within 30 s.
start_fleet() {
    local n=$1 mode=$2 redis_port=$3 i port
    for ((i = 0; i < n; i++)); do
        # shellcheck disable=SC2086 # SIDECAR_FLAGS are words
        "$bin" --listen 127.0.0.1:0 --upstream "redis://127.0.0.1:$redis_port" \
            --metrics-listen off --threads 1 --l1-max-bytes "$FLEET_L1" \
            --upstream-connections "$FLEET_POOL" --tracking "$mode" --log-level warn \
            $SIDECAR_FLAGS >"$tmp/s$i.out" 2>"$tmp/s$i.err" &
        pids+=($!)
    done
    : >"$tmp/ports"
    local first=$((${#pids[@]} - n))
    for ((i = 0; i < n; i++)); do
        port=
        for _ in $(seq 300); do
            port=$(sed -n 's/^nearcache listening on .*:\([0-9][0-9]*\)[[:space:]]*$/\1/p' "$tmp/s$i.out" | head -n 1)
            [ -n "$port" ] && break
            kill -0 "${pids[$((first + i))]}" 2>/dev/null || fail_sidecar "$i" "exited at start"
            sleep 0.1
        done
        [ -n "$port" ] || fail_sidecar "$i" "did not print 'nearcache listening on ...' within 30 s"
        echo "$port" >>"$tmp/ports"
    done
}

header='| sidecars | mode | tracking-table-max-keys | Redis used_memory MiB: seeded → filled → end | tracking keys / items | Redis CPU s/s | MGETs/s / SETs/s done | invalidation msgs per write | L1 hit ratio | L1 entries invalidated | lag p99 (p50) ms, write on Redis (n/a: off never hears it) | lag p99 (p50) ms, write via a sidecar | upstream conns: Redis clients (sidecars) |'
rule='|---|---|---|---|---|---|---|---|---|---|---|---|---|'
rows=()
for n in $FLEET; do
    for mode in $TRACKING; do
        for max_keys in $TABLE_MAX_KEYS; do
            redis_port=$(free_port)
            start_redis "$redis_port"
            if [ "$max_keys" != 0 ]; then
                redis-cli -p "$redis_port" config set tracking-table-max-keys "$max_keys" >/dev/null
            fi
            echo "bench-fleet: $n sidecars, --tracking $mode, tracking-table-max-keys ${max_keys/#0/unlimited}" >&2
            start_fleet "$n" "$mode" "$redis_port"
            row=$("$probe" --redis "$redis_port" --sidecars "$tmp/ports" --mode "$mode" \
                --table-max-keys "$max_keys" --keys "$FLEET_KEYS" --seconds "$FLEET_SECONDS" \
                --reads-per-sec "$FLEET_READS" --writes-per-sec "$FLEET_WRITES" \
                --mget "$FLEET_MGET") || fail "the fleet probe failed ($n sidecars, $mode)"
            rows+=("$row")
            echo "$row" >&2
            stop_all
            rm -f "$tmp"/s*.out "$tmp"/s*.err
        done
    done
done

mkdir -p target/bench
{
    echo "Fleet on one redis-server: $(nproc) cores; each sidecar --threads 1," \
        "--l1-max-bytes $FLEET_L1, --upstream-connections $FLEET_POOL; $FLEET_KEYS shared keys," \
        "$FLEET_SECONDS s of $FLEET_READS MGETs/s of $FLEET_MGET keys and $FLEET_WRITES SETs/s" \
        "(half direct) plus the lag probe's writes."
    echo
    echo "$header"
    echo "$rule"
    printf '%s\n' "${rows[@]}"
} | tee target/bench/fleet.md
