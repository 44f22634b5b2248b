#!/usr/bin/env bash
# `make bench`: nearcache against Redis itself and against twemproxy, on one redis-server.
#
# Starts a throwaway redis-server, four nearcaches in front of it and a nutcracker (all on
# free ports, all stopped on exit):
#   direct     redis-server itself
#   hits       nearcache with default flags (L1 warmed before each run)
#   misses     nearcache with --l1-max-bytes 1MiB, read over BENCH_KEYS keys: nearly every GET
#              misses, fetches and fills
#   admit2     misses with --l1-admit-second-miss true (GET miss rows only): a first miss in the
#              crowded L1 is the plain GET
#   forward    nearcache with --l1-ttl 0 (pure forwarding)
#   twemproxy  nutcracker with one server (the reference forwarder)
#   ns20       hits with 20 namespaces configured, the hot keys' the last to match (hit-path
#              GET and MGET only: what matching a key to its namespace costs)
#   bcast      hits with --tracking bcast --tracking-prefixes key: (hit-path GET and MGET
#              only; not started when the arguments choose a --tracking mode themselves)
# plus, for the remote rows, a relay adding 0.5 ms each way between a fifth nearcache and
# Redis (and between the benchmark and Redis for the direct figure), and, for the TLS rows, a
# second redis-server listening for TLS only (certificates made with openssl in the temp
# directory, no client certificates asked for) with two nearcaches in front of it over
# rediss:// (--upstream-tls-ca): tlshits (default flags) and tlsmisses (--l1-max-bytes 1MiB).
# For the Cluster rows: three redis-servers joined by redis-cli --cluster create and two
# nearcaches over redis+cluster:// (clhits default flags, clmisses --l1-max-bytes 1MiB); the
# direct figure is redis-benchmark --cluster, which sends each key to its owner.
# The TLS rows' direct figure is redis-benchmark --tls to that server (what an application
# doing TLS itself pays); the nearcaches' figures are redis-benchmark in plain text on
# localhost to the sidecar, which does TLS upstream.
#
# Workloads: GET/SET/INCR at -P 1 and -P 16 (redis-benchmark), and GET hit, GET miss and SET
# at -P 1 and -P 16 over TLS; MGET of 10 hot keys and of
# 5 hot + 5 cold; Zipf 0.99 GET/SET mixes: 95/5 and 100/0 over 100k keys of 1 KiB, 95/5 over
# the large key space (100 bytes) and over 10k keys of 16 KiB; GET beside 2000 idle
# clients; GET latency and the mix through the relay (nearcache-bench, the bench/ crate).
# Each figure is the median of BENCH_ROUNDS rounds, the targets' order rotating every
# round and workload so drift is shared. Then memory: the resident cost of one L1 entry
# (BENCH_KEYS values read through a nearcache with --l1-max-bytes 1GiB) and the resident
# growth of a bounded L1 (--l1-max-bytes 64MiB, ten times more keys read than fit).
# Between the two: the hit ratio of the first 10 000 requests (Zipf GETs over the mix keys)
# of a newly started sidecar, cold, warmed from a pattern and warmed from a peer that has
# served the same skewed workload; then GET latency over a sidecar whose L1 holds BENCH_KEYS
# entries, quiet and while another client sends NEARCACHE INVALIDATE 'user:*' back to back
# (each a full pass over L1).
#
# Prints one table (a row per workload, a column per target, the ratio to direct in
# parentheses), the memory figures and the issue's targets with PASS/FAIL; writes the same
# as markdown to $BENCH_OUT/report.md and every raw figure to $BENCH_OUT/raw.csv. Progress
# goes to stderr.
#
# Environment:
#   BENCH_QUICK=1   one round, short runs, a smaller key space (checks the script end to end)
#   BENCH_ROUNDS    rounds (default 3; 1 with BENCH_QUICK)
#   BENCH_SECONDS   seconds per measurement (default 2; 0.5 with BENCH_QUICK)
#   BENCH_KEYS      the large key space, filled upstream (default 1000000; 200000 with BENCH_QUICK)
#   BENCH_TIMEOUT   upper bound in seconds for one measurement (default 120)
#   BENCH_OUT       where report.md and raw.csv go (default target/bench)
#   NEARCACHE_BIN   use this binary instead of building target/release/nearcache
# Arguments are passed to every nearcache, e.g. `bench/scripts/bench.sh --tracking off`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [ "${BENCH_QUICK:-}" = 1 ]; then
    BENCH_ROUNDS=${BENCH_ROUNDS:-1}
    BENCH_SECONDS=${BENCH_SECONDS:-0.5}
    BENCH_KEYS=${BENCH_KEYS:-200000}
    warmup=0.2
    bounded_bytes=$((16 << 20))
else
    BENCH_ROUNDS=${BENCH_ROUNDS:-3}
    BENCH_SECONDS=${BENCH_SECONDS:-2}
    BENCH_KEYS=${BENCH_KEYS:-1000000}
    warmup=0.3
    bounded_bytes=$((64 << 20))
fi
BENCH_TIMEOUT=${BENCH_TIMEOUT:-120}
BENCH_OUT=${BENCH_OUT:-target/bench}

CLIENTS=50
VALUE_BYTES=100
HOT_KEYS=10000      # GET/SET/INCR/MGET hot set: key:0 .. key:9999 (redis-benchmark -r)
MIX_KEYS=100000     # the mix: mix:0 .. mix:99999, 1 KiB each
MIX_VALUE_BYTES=1024
LARGE_KEYS=10000    # the 16 KiB mix: large:0 .. large:9999
LARGE_VALUE_BYTES=16384
REMOTE_KEYS=1000    # remote GET latency: key:0 .. key:999
REMOTE_CLIENTS=4
IDLE_CLIENTS=2000
RELAY_DELAY_US=500
MEMORY_BOUND=1GiB
KEY_BYTES=16        # key:000000001234

started=$(date +%s)
say() { echo "bench: $*" >&2; }

scripts/ensure-redis.sh >&2
have_twemproxy=1
if ! scripts/ensure-nutcracker.sh >&2; then
    have_twemproxy=0
    say "nutcracker is not available: the twemproxy column will say so"
fi

if [ -n "${NEARCACHE_BIN:-}" ]; then
    cargo build --release -p nearcache-bench >&2
    bin=$NEARCACHE_BIN
else
    cargo build --release -p nearcache -p nearcache-bench >&2
    bin=target/release/nearcache
fi
tool=target/release/nearcache-bench
[ -x "$bin" ] || { echo "bench: $bin is not an executable" >&2; exit 1; }

# The idle clients: 2000 connections in the load generator and as many in the server.
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 8192 ]; then
    ulimit -n 8192 2>/dev/null || say "could not raise the open file limit to 8192 ($(ulimit -n)): the idle rows may fail"
fi

mkdir -p "$BENCH_OUT"
raw=$BENCH_OUT/raw.csv
report=$BENCH_OUT/report.md
tmp=$(mktemp -d /tmp/nearcache-bench.XXXXXX)
declare -A port=() pid=()

# Stop a child: SIGTERM, up to $2 seconds, then SIGKILL.
# shellcheck source=bench/scripts/procs.sh
. bench/scripts/procs.sh

cleanup() {
    local name
    for name in "${!pid[@]}"; do stop "${pid[$name]}" 6; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "bench: $*" >&2
    tail_logs "$tmp"/*.log "$tmp"/*.err "$tmp"/*.out
    exit 1
}

# Every started process must still run; names the first one that does not.
check_alive() {
    local name
    for name in "${!pid[@]}"; do
        kill -0 "${pid[$name]}" 2>/dev/null || fail "$name (pid ${pid[$name]}) exited; it was on port ${port[$name]:-?}"
    done
}

# wait_listening NAME FILE PREFIX: the port a process printed as "PREFIX HOST:PORT".
wait_listening() {
    local name=$1 file=$2 prefix=$3 p=
    for _ in $(seq 100); do
        # The file may not exist yet: the background child opens it after the fork.
        p=$(sed -n "s/^$prefix .*:\([0-9][0-9]*\)[[:space:]]*\$/\1/p" "$file" 2>/dev/null | head -n 1 || true)
        [ -n "$p" ] && break
        kill -0 "${pid[$name]}" 2>/dev/null || fail "$name exited at start-up"
        sleep 0.1
    done
    [ -n "$p" ] || fail "$name did not print '$prefix ...' within 10 s"
    port[$name]=$p
}

# start_nearcache NAME UPSTREAM [FLAGS...]: sets port[NAME] and pid[NAME]. UPSTREAM is a
# port on 127.0.0.1 or a URL.
start_nearcache() {
    local name=$1 upstream=$2
    shift 2
    [[ $upstream == *://* ]] || upstream=redis://127.0.0.1:$upstream
    "$bin" --listen 127.0.0.1:0 --upstream "$upstream" --metrics-listen off "$@" \
        >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pid[$name]=$!
    wait_listening "$name" "$tmp/$name.out" "nearcache listening on"
}

# The first figure of nearcache-bench's `name=value` output line.
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2" | head -n 1; }

# One line of INFO nearcache from the sidecar on port $1.
info_field() {
    timeout 5 redis-cli -h 127.0.0.1 -p "$1" INFO nearcache 2>/dev/null | tr -d '\r' |
        sed -n "s/^$2:\(.*\)/\1/p" | head -n 1
}

rss_bytes() { awk -v f="$2:" '$1 == f { print $2 * 1024 }' "/proc/$1/status"; }

echo "workload,target,round,metric,value" >"$raw"
# record WORKLOAD TARGET ROUND METRIC VALUE
record() { printf '%s,%s,%s,%s,%s\n' "$1" "$2" "$3" "$4" "$5" >>"$raw"; }

# not_measured WORKLOAD TARGET ROUND WHY...: the table shows n/a and the reason.
not_measured() {
    local why="${*:4}"
    why=${why//$'\n'/ }
    record "$1" "$2" "$3" error "$why"
    say "$1 on $2 not measured: $why"
    check_alive
}

# --- upstream redis -------------------------------------------------------------------------
port[redis]=$(free_port)
# Redis tracks at most tracking-table-max-keys keys (1M by default) for all its clients
# together and, past that, invalidates tracked keys at random. The sidecars of one run read
# more keys than that (the misses target, the memory runs), which would turn the hits
# target's L1 hits into misses: the limit is lifted.
redis-server --port "${port[redis]}" --bind 127.0.0.1 --save '' --appendonly no \
    --tracking-table-max-keys 0 --dir "$tmp" --logfile "$tmp/redis.log" &
pid[redis]=$!
for _ in $(seq 50); do
    [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "${port[redis]}" ping 2>/dev/null)" = "PONG" ] && break
    kill -0 "${pid[redis]}" 2>/dev/null || fail "redis-server exited at start-up"
    sleep 0.1
done
[ "$(timeout 2 redis-cli -h 127.0.0.1 -p "${port[redis]}" ping 2>/dev/null)" = "PONG" ] ||
    fail "redis-server on port ${port[redis]} did not answer PING within 5 s"
port[direct]=${port[redis]}

say "filling $BENCH_KEYS keys of $VALUE_BYTES bytes and $MIX_KEYS of $MIX_VALUE_BYTES bytes upstream"
"$tool" fill --addr "127.0.0.1:${port[redis]}" --count "$BENCH_KEYS" --value-size "$VALUE_BYTES" \
    >/dev/null 2>"$tmp/fill.err" || fail "filling key:* failed"
"$tool" fill --addr "127.0.0.1:${port[redis]}" --prefix mix: --count "$MIX_KEYS" \
    --value-size "$MIX_VALUE_BYTES" >/dev/null 2>"$tmp/fill.err" || fail "filling mix:* failed"
"$tool" fill --addr "127.0.0.1:${port[redis]}" --prefix large: --count "$LARGE_KEYS" \
    --value-size "$LARGE_VALUE_BYTES" >/dev/null 2>"$tmp/fill.err" || fail "filling large:* failed"

# --- TLS upstream ---------------------------------------------------------------------------
# A CA and a server certificate for localhost and 127.0.0.1, made here; the server asks no
# client certificate (the rows measure the encryption, not mutual TLS).
# Without them (a nearcache binary older than rediss:// support, as `make bench-compare` may
# run, no openssl, a redis-server built without TLS) the TLS rows say why they are missing.
tls=$tmp/tls
have_tls=0
tls_why=
declare -A tls_port=()
start_tls_targets() {
    if ! "$bin" --help 2>/dev/null | grep -q -- --upstream-tls-ca; then
        tls_why="this nearcache has no TLS upstream (--upstream-tls-ca)"
        return 1
    fi
    command -v openssl >/dev/null || { tls_why="openssl is not installed"; return 1; }
    mkdir -p "$tls"
    if ! {
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=nearcache bench CA' \
            -keyout "$tls/ca.key" -out "$tls/ca.crt" &&
            openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' \
                -keyout "$tls/server.key" -out "$tls/server.csr" &&
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$tls/san.ext" &&
            openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" \
                -CAcreateserial -days 2 -extfile "$tls/san.ext" -out "$tls/server.crt"
    } >"$tmp/openssl.err" 2>&1; then
        tls_why="openssl could not make the certificates: $(tail -n 1 "$tmp/openssl.err")"
        return 1
    fi
    port[tlsredis]=$(free_port)
    redis-server --port 0 --tls-port "${port[tlsredis]}" --bind 127.0.0.1 --save '' --appendonly no \
        --tls-cert-file "$tls/server.crt" --tls-key-file "$tls/server.key" \
        --tls-ca-cert-file "$tls/ca.crt" --tls-auth-clients no \
        --tracking-table-max-keys 0 --dir "$tmp" --logfile "$tmp/tlsredis.log" &
    pid[tlsredis]=$!
    local pong=
    for _ in $(seq 50); do
        pong=$(timeout 2 redis-cli --tls --cacert "$tls/ca.crt" -h 127.0.0.1 -p "${port[tlsredis]}" ping 2>/dev/null || true)
        [ "$pong" = PONG ] && break
        kill -0 "${pid[tlsredis]}" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$pong" != PONG ]; then
        tls_why="the TLS redis-server did not answer PING (built without TLS?): $(tail -n 1 "$tmp/tlsredis.log" 2>/dev/null)"
        stop "${pid[tlsredis]}" 6
        unset "pid[tlsredis]"
        return 1
    fi
    local url=rediss://localhost:${port[tlsredis]}
    start_nearcache tlshits "$url" --upstream-tls-ca "$tls/ca.crt" "$@"
    start_nearcache tlsmisses "$url" --upstream-tls-ca "$tls/ca.crt" --l1-max-bytes 1MiB "$@"
    # The TLS rows' columns: direct is the TLS server itself, hits and misses the two sidecars.
    tls_port=([direct]=${port[tlsredis]} [hits]=${port[tlshits]} [misses]=${port[tlsmisses]})
    say "filling $BENCH_KEYS keys of $VALUE_BYTES bytes in the TLS redis-server (through tlsmisses)"
    "$tool" fill --addr "127.0.0.1:${port[tlsmisses]}" --count "$BENCH_KEYS" --value-size "$VALUE_BYTES" \
        >/dev/null 2>"$tmp/fill.err" || fail "filling key:* over TLS failed"
}
if start_tls_targets "$@"; then
    have_tls=1
else
    say "the TLS rows are not measured: $tls_why"
fi

# --- Redis Cluster upstream -----------------------------------------------------------------
# Three primaries joined by redis-cli --cluster create (no replicas: the rows measure routing,
# not replication), and two nearcaches over redis+cluster://: clhits (default flags) and
# clmisses (--l1-max-bytes 1MiB). The direct figure is redis-benchmark --cluster.
have_cluster=0
cluster_why=
declare -A cluster_port=()
# A port for a cluster node: its bus port (10000 higher) must exist and be free too.
cluster_node_port() {
    local p
    for _ in $(seq 100); do
        p=$(free_port)
        if [ "$p" -le 55535 ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    return 1
}
# Stops what start_cluster_targets started, when it could not finish.
stop_cluster_targets() {
    local name
    for name in cluster1 cluster2 cluster3 clhits clmisses; do
        [ -n "${pid[$name]:-}" ] || continue
        stop "${pid[$name]}" 6
        unset "pid[$name]"
    done
}
start_cluster_targets() {
    local ports=() p i
    for i in 1 2 3; do
        p=$(cluster_node_port) || { cluster_why="no free port pair for a cluster node"; return 1; }
        ports+=("$p")
        mkdir -p "$tmp/cluster$i"
        redis-server --port "$p" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
            --save '' --appendonly no --tracking-table-max-keys 0 --dir "$tmp/cluster$i" \
            --logfile "$tmp/cluster$i.log" &
        pid[cluster$i]=$!
        port[cluster$i]=$p
    done
    for p in "${ports[@]}"; do
        for _ in $(seq 50); do
            [ "$(timeout 2 redis-cli -p "$p" ping 2>/dev/null)" = PONG ] && break
            sleep 0.1
        done
    done
    if ! redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-yes >"$tmp/cluster-create.out" 2>&1; then
        cluster_why="redis-cli --cluster create failed: $(tail -n 1 "$tmp/cluster-create.out")"
        return 1
    fi
    for _ in $(seq 100); do
        local ok=0
        for p in "${ports[@]}"; do
            redis-cli -p "$p" cluster info 2>/dev/null | grep -q 'cluster_state:ok' && ok=$((ok + 1))
        done
        [ "$ok" = 3 ] && break
        sleep 0.1
    done
    local url=redis+cluster://127.0.0.1:${ports[0]},127.0.0.1:${ports[1]}
    if ! "$bin" --upstream "$url" --print-config >/dev/null 2>&1; then
        cluster_why="this nearcache has no Redis Cluster upstream (redis+cluster://)"
        return 1
    fi
    start_nearcache clhits "$url" "$@"
    start_nearcache clmisses "$url" --l1-max-bytes 1MiB "$@"
    cluster_port=([direct]=${ports[0]} [hits]=${port[clhits]} [misses]=${port[clmisses]})
    # The hot keys exist (warming reads them); the miss rows read the large key space, where
    # a nil is a miss as much as a value.
    say "filling $HOT_KEYS keys of $VALUE_BYTES bytes in the cluster (through clmisses)"
    "$tool" fill --addr "127.0.0.1:${port[clmisses]}" --count "$HOT_KEYS" --value-size "$VALUE_BYTES" \
        >/dev/null 2>"$tmp/fill.err" || { cluster_why="filling key:* in the cluster failed: $(tail -n 1 "$tmp/fill.err")"; return 1; }
}
if start_cluster_targets "$@"; then
    have_cluster=1
else
    stop_cluster_targets
    say "the Cluster rows are not measured: $cluster_why"
fi

# --- the targets ----------------------------------------------------------------------------
start_nearcache hits "${port[redis]}" "$@"
start_nearcache misses "${port[redis]}" --l1-max-bytes 1MiB "$@"
start_nearcache admit2 "${port[redis]}" --l1-max-bytes 1MiB --l1-admit-second-miss true "$@"
start_nearcache forward "${port[redis]}" --l1-ttl 0 "$@"

# 20 namespaces, every one a pattern a key:... name is tried against (the patterns are indexed
# by a key's first byte), the hot keys' own the last: the worst case of a realistic config.
{
    for i in $(seq -w 1 17); do
        printf '[[namespace]]\nname = "kv%s"\npattern = "kv%s:*"\nl1_ttl = "30s"\n\n' "$i" "$i"
    done
    printf '[[namespace]]\nname = "locks"\npattern = "k*:lock"\ncache = false\n\n'
    printf '[[namespace]]\nname = "tmp"\npattern = "key:*:tmp"\ncache_nil = false\n\n'
    printf '[[namespace]]\nname = "hot"\npattern = "key:*"\n'
} >"$tmp/ns20.toml"
start_nearcache ns20 "${port[redis]}" --config "$tmp/ns20.toml" "$@"
# Broadcast tracking of the hot keys' prefix (unless the arguments set a tracking mode).
bcast_target=bcast
case " $* " in *" --tracking "* | *" --tracking="*) bcast_target= ;; esac
if [ -n "$bcast_target" ]; then
    start_nearcache bcast "${port[redis]}" --tracking bcast --tracking-prefixes key: "$@"
fi

if [ "$have_twemproxy" = 1 ]; then
    port[twemproxy]=$(free_port)
    cat >"$tmp/nutcracker.yml" <<EOF
bench:
  listen: 127.0.0.1:${port[twemproxy]}
  redis: true
  hash: fnv1a_64
  distribution: ketama
  auto_eject_hosts: false
  timeout: 5000
  servers:
    - 127.0.0.1:${port[redis]}:1
EOF
    nutcracker -c "$tmp/nutcracker.yml" -o "$tmp/nutcracker.log" -p "$tmp/nutcracker.pid" \
        -s "$(free_port)" -a 127.0.0.1 &
    pid[twemproxy]=$!
    for _ in $(seq 50); do
        "$tool" ping --addr "127.0.0.1:${port[twemproxy]}" --count 1 >/dev/null 2>&1 && break
        kill -0 "${pid[twemproxy]}" 2>/dev/null || fail "nutcracker exited at start-up"
        sleep 0.1
    done
    "$tool" ping --addr "127.0.0.1:${port[twemproxy]}" --count 1 >/dev/null 2>"$tmp/twemproxy.err" ||
        fail "nutcracker on port ${port[twemproxy]} did not answer PING within 5 s"
fi

"$tool" relay --upstream "127.0.0.1:${port[redis]}" --delay-us "$RELAY_DELAY_US" \
    >"$tmp/relay.out" 2>"$tmp/relay.err" &
pid[relay]=$!
wait_listening relay "$tmp/relay.out" "relay listening on"
start_nearcache remote "${port[relay]}" "$@"

rtt_direct=$("$tool" ping --addr "127.0.0.1:${port[redis]}" --count 2000) || fail "PING timing failed"
rtt_relay=$("$tool" ping --addr "127.0.0.1:${port[relay]}" --count 1000) || fail "PING through the relay failed"
added=$(awk -v a="$(field p50_ms "$rtt_relay")" -v b="$(field p50_ms "$rtt_direct")" 'BEGIN { printf "%.3f", a - b }')
record relay direct 1 added_rtt_ms "$added"
say "relay: PING p50 $(field p50_ms "$rtt_relay") ms through it, $(field p50_ms "$rtt_direct") ms direct:" \
    "adds $added ms per round trip (asked: $((RELAY_DELAY_US * 2)) us)"

say "$(redis-server --version | awk '{print $1, $2, $3}') on ${port[redis]}; nearcache hits ${port[hits]}," \
    "misses ${port[misses]}, admit2 ${port[admit2]}, forward ${port[forward]}, ns20 ${port[ns20]}, remote ${port[remote]} via relay ${port[relay]};" \
    "twemproxy ${port[twemproxy]:-none}; TLS: redis-server ${port[tlsredis]:-none}, nearcache tlshits" \
    "${port[tlshits]:-none}, tlsmisses ${port[tlsmisses]:-none}${*:+; nearcache flags: $*}"
say "$BENCH_ROUNDS rounds of $BENCH_SECONDS s per measurement, $CLIENTS clients, $VALUE_BYTES-byte values"

# --- measurements ---------------------------------------------------------------------------
declare -A rate=()

# Reads the hot keys once through a nearcache so its runs are L1 hits.
warm() {
    local addr=$1 prefix=$2 count=$3
    "$tool" read --addr "$addr" --prefix "$prefix" --count "$count" >/dev/null 2>"$tmp/warm.err" ||
        fail "warming L1 through $addr failed: $(tail -n 1 "$tmp/warm.err")"
}

progress() { # WORKLOAD TARGET ROUND OPS [P99]
    say "round $3/$BENCH_ROUNDS $1 $2: $(printf '%.0f' "$4") ops/s${5:+, p99 $5 ms}"
}

# redis_benchmark WORKLOAD TARGET ROUND TEST PIPELINE KEYS: ops/s, p50 and p99 of one run,
# its request count aimed at BENCH_SECONDS from this target's last rate.
redis_benchmark() {
    local w=$1 t=$2 r=$3 test=$4 pipeline=$5 keys=$6 est n out line rps p50 p99 p=${port[$t]:-} tls_args=()
    est=${rate[$w/$t]:-$((pipeline == 1 ? 60000 : 400000))}
    n=$(awk -v e="$est" -v s="$BENCH_SECONDS" 'BEGIN { n = int(e * s); print (n < 2000 ? 2000 : n) }')
    if [[ $w == tls_* ]]; then
        p=${tls_port[$t]}
        [ "$t" = direct ] && tls_args=(--tls --cacert "$tls/ca.crt")
    fi
    if [[ $w == cluster_* ]]; then
        p=${cluster_port[$t]}
        [ "$t" = direct ] && tls_args=(--cluster)
    fi
    local status=0
    # A test name is redis-benchmark's -t; a command line (with spaces) is run as it is.
    local what=(-t "$test")
    [[ $test == *" "* ]] && read -r -a what <<<"$test"
    out=$(timeout "$BENCH_TIMEOUT" redis-benchmark "${tls_args[@]}" -h 127.0.0.1 -p "$p" \
        -c "$CLIENTS" -r "$keys" -d "$VALUE_BYTES" -n "$n" -P "$pipeline" --csv "${what[@]}" 2>"$tmp/rb.err") || status=$?
    if [ "$status" -eq 124 ]; then
        not_measured "$w" "$t" "$r" "redis-benchmark took over ${BENCH_TIMEOUT}s (BENCH_TIMEOUT)"
        return
    elif [ "$status" -ne 0 ]; then
        not_measured "$w" "$t" "$r" "redis-benchmark exited with status $status:" \
            "$( (grep -v 'Could not fetch server CONFIG' "$tmp/rb.err"; printf '%s\n' "$out") | grep . | tail -n 2 | tr '\n' ' ')"
        return
    fi
    if grep -q 'Error from server' "$tmp/rb.err"; then
        not_measured "$w" "$t" "$r" "$(grep -m 1 'Error from server' "$tmp/rb.err")"
        return
    fi
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",...
    if [[ $test == *" "* ]]; then
        line=$(awk -F'"' '$2 != "test" && NF > 14 { print $4, $10, $14; exit }' <<<"$out")
    else
        line=$(awk -F'"' -v t="${test^^}" '$2 == t { print $4, $10, $14; exit }' <<<"$out")
    fi
    read -r rps p50 p99 <<<"$line"
    [ -n "${p99:-}" ] || fail "could not read redis-benchmark's CSV: $out"
    record "$w" "$t" "$r" ops_per_sec "$rps"
    record "$w" "$t" "$r" p50_ms "$p50"
    record "$w" "$t" "$r" p99_ms "$p99"
    rate[$w/$t]=$rps
    progress "$w" "$t" "$r" "$rps"
}

# load WORKLOAD TARGET ROUND SUBCOMMAND ARGS...: one nearcache-bench run.
load() {
    local w=$1 t=$2 r=$3 out
    shift 3
    if ! out=$(timeout "$BENCH_TIMEOUT" "$tool" "$@" --seconds "$BENCH_SECONDS" --warmup "$warmup" \
        2>"$tmp/load.err"); then
        not_measured "$w" "$t" "$r" "$(tail -n 1 "$tmp/load.err" | sed 's/^nearcache-bench: //')"
        return
    fi
    local m
    for m in ops_per_sec p50_ms p99_ms; do record "$w" "$t" "$r" "$m" "$(field "$m" "$out")"; done
    progress "$w" "$t" "$r" "$(field ops_per_sec "$out")" "$(field p99_ms "$out")"
}

# measure WORKLOAD TARGET ROUND
measure() {
    local w=$1 t=$2 r=$3 addr
    if [ "$t" = twemproxy ] && [ "$have_twemproxy" = 0 ]; then
        not_measured "$w" "$t" "$r" "nutcracker is not installed"
        return
    fi
    if [[ $w == tls_* ]] && [ "$have_tls" = 0 ]; then
        not_measured "$w" "$t" "$r" "$tls_why"
        return
    fi
    if [[ $w == cluster_* ]] && [ "$have_cluster" = 0 ]; then
        not_measured "$w" "$t" "$r" "$cluster_why"
        return
    fi
    addr=127.0.0.1:${port[$t]}
    case $w in
        remote_*) if [ "$t" = direct ]; then addr=127.0.0.1:${port[relay]}; else addr=127.0.0.1:${port[remote]}; fi ;;
        tls_*) addr=127.0.0.1:${tls_port[$t]} ;;
        cluster_*) addr=127.0.0.1:${cluster_port[$t]} ;;
    esac
    if [ "$t" = hits ] || [ "$t" = ns20 ] || [ "$t" = bcast ]; then
        # A Cluster row's hits column is the clhits sidecar (warmed through its address).
        case $w in
            get_* | tls_get_* | mget_* | idle) warm "$addr" key: "$HOT_KEYS" ;;
            cluster_get_* | cluster_mget) warm "$addr" key: "$HOT_KEYS" ;;
            mix | mix_read | remote_mix) warm "$addr" mix: "$MIX_KEYS" ;;
            mix_small) warm "$addr" key: "$BENCH_KEYS" ;;
            mix_large) warm "$addr" large: "$LARGE_KEYS" ;;
            remote_get) warm "$addr" key: "$REMOTE_KEYS" ;;
        esac
    fi
    case $w in
        get_p1) redis_benchmark "$w" "$t" "$r" get 1 "$HOT_KEYS" ;;
        get_p16) redis_benchmark "$w" "$t" "$r" get 16 "$HOT_KEYS" ;;
        getmiss_p1) redis_benchmark "$w" "$t" "$r" get 1 "$BENCH_KEYS" ;;
        getmiss_p16) redis_benchmark "$w" "$t" "$r" get 16 "$BENCH_KEYS" ;;
        set_p1) redis_benchmark "$w" "$t" "$r" set 1 "$HOT_KEYS" ;;
        set_p16) redis_benchmark "$w" "$t" "$r" set 16 "$HOT_KEYS" ;;
        incr_p1) redis_benchmark "$w" "$t" "$r" incr 1 "$HOT_KEYS" ;;
        incr_p16) redis_benchmark "$w" "$t" "$r" incr 16 "$HOT_KEYS" ;;
        tls_get_p1) redis_benchmark "$w" "$t" "$r" get 1 "$HOT_KEYS" ;;
        tls_get_p16) redis_benchmark "$w" "$t" "$r" get 16 "$HOT_KEYS" ;;
        tls_getmiss_p1) redis_benchmark "$w" "$t" "$r" get 1 "$BENCH_KEYS" ;;
        tls_getmiss_p16) redis_benchmark "$w" "$t" "$r" get 16 "$BENCH_KEYS" ;;
        tls_set_p1) redis_benchmark "$w" "$t" "$r" set 1 "$HOT_KEYS" ;;
        tls_set_p16) redis_benchmark "$w" "$t" "$r" set 16 "$HOT_KEYS" ;;
        cluster_get_p1) redis_benchmark "$w" "$t" "$r" get 1 "$HOT_KEYS" ;;
        cluster_get_p16) redis_benchmark "$w" "$t" "$r" get 16 "$HOT_KEYS" ;;
        cluster_getmiss_p1) redis_benchmark "$w" "$t" "$r" get 1 "$BENCH_KEYS" ;;
        cluster_set_p1) redis_benchmark "$w" "$t" "$r" set 1 "$HOT_KEYS" ;;
        cluster_set_p16) redis_benchmark "$w" "$t" "$r" set 16 "$HOT_KEYS" ;;
        cluster_mget)
            # Through the sidecar: 10 random hot keys over the three primaries. Straight to the
            # cluster a command cannot span slots: redis-benchmark --cluster puts the 10 keys
            # in one slot of each node ({tag}), a cluster client's best case.
            local k=key:__rand_int__
            [ "$t" = direct ] && k='key{tag}:__rand_int__'
            redis_benchmark "$w" "$t" "$r" "MGET$(printf " $k%.0s" $(seq 10))" 1 "$HOT_KEYS"
            ;;
        mget_hits) load "$w" "$t" "$r" mget --addr "$addr" --clients "$CLIENTS" --hot 10 --hot-keys "$HOT_KEYS" ;;
        mget_half) load "$w" "$t" "$r" mget --addr "$addr" --clients "$CLIENTS" --hot 5 --cold 5 --hot-keys "$HOT_KEYS" ;;
        mix | remote_mix)
            load "$w" "$t" "$r" mix --addr "$addr" --clients "$CLIENTS" --keys "$MIX_KEYS" \
                --value-size "$MIX_VALUE_BYTES" --set-percent 5 --zipf 0.99
            ;;
        mix_read)
            load "$w" "$t" "$r" mix --addr "$addr" --clients "$CLIENTS" --keys "$MIX_KEYS" \
                --value-size "$MIX_VALUE_BYTES" --set-percent 0 --zipf 0.99
            ;;
        mix_small)
            load "$w" "$t" "$r" mix --addr "$addr" --clients "$CLIENTS" --prefix key: --keys "$BENCH_KEYS" \
                --value-size "$VALUE_BYTES" --set-percent 5 --zipf 0.99
            ;;
        mix_large)
            load "$w" "$t" "$r" mix --addr "$addr" --clients "$CLIENTS" --prefix large: --keys "$LARGE_KEYS" \
                --value-size "$LARGE_VALUE_BYTES" --set-percent 5 --zipf 0.99
            ;;
        idle) load "$w" "$t" "$r" idle --addr "$addr" --clients "$CLIENTS" --idle "$IDLE_CLIENTS" --keys "$HOT_KEYS" ;;
        remote_get) load "$w" "$t" "$r" get --addr "$addr" --clients "$REMOTE_CLIENTS" --keys "$REMOTE_KEYS" ;;
        *) fail "unknown workload $w" ;;
    esac
}

local_targets="direct hits forward twemproxy"
workloads=(cluster_get_p1 cluster_get_p16 cluster_getmiss_p1 cluster_set_p1 cluster_set_p16 cluster_mget
    get_p1 get_p16 getmiss_p1 getmiss_p16 set_p1 set_p16 incr_p1 incr_p16
    mget_hits mget_half mix mix_read mix_small mix_large idle remote_get remote_mix
    tls_get_p1 tls_get_p16 tls_getmiss_p1 tls_getmiss_p16 tls_set_p1 tls_set_p16)
declare -A targets_of=(
    [getmiss_p1]="direct misses admit2" [getmiss_p16]="direct misses admit2"
    [tls_get_p1]="direct hits" [tls_get_p16]="direct hits"
    [tls_getmiss_p1]="direct misses" [tls_getmiss_p16]="direct misses"
    [tls_set_p1]="direct hits" [tls_set_p16]="direct hits"
    [cluster_get_p1]="direct hits" [cluster_get_p16]="direct hits" [cluster_getmiss_p1]="direct misses"
    [cluster_set_p1]="direct hits" [cluster_set_p16]="direct hits" [cluster_mget]="direct hits"
    [remote_get]="direct hits" [remote_mix]="direct hits"
    [mix_read]="direct hits" [mix_small]="direct hits" [mix_large]="direct hits"
    [get_p1]="$local_targets ns20 $bcast_target" [get_p16]="$local_targets ns20 $bcast_target"
    [mget_hits]="$local_targets ns20 $bcast_target"
)

for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    for i in "${!workloads[@]}"; do
        w=${workloads[$i]}
        read -r -a targets <<<"${targets_of[$w]:-$local_targets}"
        # Rotate which target goes first, so drift (neighbours, thermal) is shared.
        k=$(((round + i) % ${#targets[@]}))
        for t in "${targets[@]:k}" "${targets[@]:0:k}"; do
            measure "$w" "$t" "$round"
        done
    done
done

# --- memory ---------------------------------------------------------------------------------
# memory_run NAME BOUND KEYS [FLAGS...]: reads KEYS keys once through a fresh nearcache with
# --l1-max-bytes BOUND and records its resident memory before and after and its L1 counts.
memory_run() {
    local name=$1 bound=$2 keys=$3 p before after hwm
    shift 3
    start_nearcache "$name" "${port[redis]}" "$@" --l1-max-bytes "$bound"
    p=${port[$name]}
    # Upstream connections opened and buffers in place before the first reading.
    "$tool" ping --addr "127.0.0.1:$p" --count 100 >/dev/null
    before=$(rss_bytes "${pid[$name]}" VmRSS)
    "$tool" read --addr "127.0.0.1:$p" --count "$keys" >/dev/null 2>"$tmp/$name-read.err" ||
        fail "reading $keys keys through the $name nearcache failed: $(tail -n 1 "$tmp/$name-read.err")"
    sleep 0.5
    after=$(rss_bytes "${pid[$name]}" VmRSS)
    hwm=$(rss_bytes "${pid[$name]}" VmHWM)
    record "$name" nearcache 1 keys "$keys"
    record "$name" nearcache 1 rss_before "$before"
    record "$name" nearcache 1 rss_after "$after"
    record "$name" nearcache 1 hwm_after "$hwm"
    local f v
    for f in l1_entries l1_used_bytes l1_evictions; do
        v=$(info_field "$p" "$f")
        if [ -n "$v" ]; then record "$name" nearcache 1 "$f" "$v"; fi
    done
    say "memory ($name, --l1-max-bytes $bound): $keys keys read, RSS $before -> $after bytes (peak $hwm);" \
        "INFO nearcache: l1_entries $(info_field "$p" l1_entries), l1_used_bytes $(info_field "$p" l1_used_bytes)," \
        "l1_evictions $(info_field "$p" l1_evictions)"
    stop "${pid[$name]}" 6
    unset "pid[$name]"
}

# The nearcaches of the throughput rows are done: stop them so the memory runs have the cores.
for name in hits misses admit2 forward ns20 bcast remote twemproxy relay tlshits tlsmisses tlsredis \
    clhits clmisses cluster1 cluster2 cluster3; do
    [ -n "${pid[$name]:-}" ] || continue
    stop "${pid[$name]}" 6
    unset "pid[$name]"
done

# --- the first requests of a new sidecar -----------------------------------------------------
FIRST_REQUESTS=10000
PEER_SECONDS=3

# wait_warmed NAME: until the sidecar's start-up warming has run (warm_runs >= 1, not running).
wait_warmed() {
    local p=${port[$1]} state runs
    for _ in $(seq 600); do
        state=$(info_field "$p" warm_state)
        runs=$(info_field "$p" warm_runs)
        if [ "${runs:-0}" -ge 1 ] && [ "$state" != running ]; then
            [ "$state" = done ] || fail "$1: warming ended in state '$state'"
            return
        fi
        sleep 0.1
    done
    fail "$1: warming did not end within 60 s (warm_state $(info_field "$p" warm_state))"
}

# first_requests SCENARIO NAME: the first FIRST_REQUESTS Zipf GETs through the started
# sidecar NAME; records its hit ratio over them and what its warming loaded, then stops it.
first_requests() {
    local scenario=$1 name=$2 p=${port[$2]} hits0 misses0 hits1 misses1 ratio
    hits0=$(info_field "$p" l1_hits)
    misses0=$(info_field "$p" l1_misses)
    "$tool" zipf-gets --addr "127.0.0.1:$p" --prefix mix: --keys "$MIX_KEYS" --zipf 0.99 \
        --count "$FIRST_REQUESTS" --seed 1 >/dev/null 2>"$tmp/first.err" ||
        fail "the first requests through $name failed: $(tail -n 1 "$tmp/first.err")"
    hits1=$(info_field "$p" l1_hits)
    misses1=$(info_field "$p" l1_misses)
    ratio=$(awk -v h=$((hits1 - hits0)) -v m=$((misses1 - misses0)) 'BEGIN { printf "%.4f", h / (h + m) }')
    record first "$scenario" 1 hit_ratio "$ratio"
    record first "$scenario" 1 requests $((hits1 - hits0 + misses1 - misses0))
    record first "$scenario" 1 keys_warmed "$(info_field "$p" warm_keys_loaded)"
    say "first $FIRST_REQUESTS requests, $scenario: hit ratio $ratio, $(info_field "$p" warm_keys_loaded) keys warmed"
    stop "${pid[$name]}" 6
    unset "pid[$name]"
}

# warm_config FILE LINES...: a config file of a [warm] table.
warm_config() {
    local file=$1
    shift
    printf '[warm]\n' >"$file"
    printf '%s\n' "$@" >>"$file"
}

warm_config "$tmp/cold.toml" "from_peers = false"
start_nearcache cold "${port[redis]}" --config "$tmp/cold.toml" "$@"
first_requests cold cold

warm_config "$tmp/pattern.toml" 'patterns = ["mix:*"]' "max_keys = $MIX_KEYS" "rate = 1000000" \
    "batch = 1000" "from_peers = false"
start_nearcache pattern "${port[redis]}" --config "$tmp/pattern.toml" "$@"
wait_warmed pattern
first_requests patterns pattern

# The peer has served the same skewed workload (GETs only, other draws) for a few seconds
# before the new sidecar starts.
# Peers answer hot-key asks on a keyed bus only: the two share a bus key.
printf 'bench-fleet-bus-key-0123456789abcdef\n' >"$tmp/bus.key"
warm_config "$tmp/peer.toml" "from_peers = false" "peer_keys = 4096"
start_nearcache peer "${port[redis]}" --config "$tmp/peer.toml" --bus-key-file "$tmp/bus.key" "$@"
out=$("$tool" mix --addr "127.0.0.1:${port[peer]}" --clients "$CLIENTS" --keys "$MIX_KEYS" \
    --set-percent 0 --zipf 0.99 --seconds "$PEER_SECONDS" --warmup 0 2>"$tmp/first.err") ||
    fail "the peer's workload failed: $(tail -n 1 "$tmp/first.err")"
record first peer 1 requests "$(field requests "$out")"
say "the peer served $(field requests "$out") GETs in $PEER_SECONDS s"
for keys in 1024 4096; do
    warm_config "$tmp/asker.toml" "from_peers = true" "peer_keys = $keys"
    start_nearcache asker "${port[redis]}" --config "$tmp/asker.toml" --bus-key-file "$tmp/bus.key" "$@"
    wait_warmed asker
    first_requests "peers_$keys" asker
done
stop "${pid[peer]}" 6
unset "pid[peer]"

# --- pattern invalidation beside hits ---------------------------------------------------------
# GET latency over the hot keys of a sidecar whose L1 holds the BENCH_KEYS keys, quiet and while
# one more client sends NEARCACHE INVALIDATE 'user:*' back to back: no key matches, so each one
# is a pass over all of L1 (off the worker thread) that other clients must not wait for.
start_nearcache large "${port[redis]}" --l1-max-bytes "$MEMORY_BOUND" "$@"
"$tool" read --addr "127.0.0.1:${port[large]}" --count "$BENCH_KEYS" >/dev/null 2>"$tmp/large-read.err" ||
    fail "reading $BENCH_KEYS keys through the large nearcache failed: $(tail -n 1 "$tmp/large-read.err")"
say "large L1: $(info_field "${port[large]}" l1_entries) entries"
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    load invalidate_quiet hits "$round" get --addr "127.0.0.1:${port[large]}" --clients "$CLIENTS" --keys "$HOT_KEYS"
    : >"$tmp/invalidations"
    (
        while redis-cli -h 127.0.0.1 -p "${port[large]}" NEARCACHE INVALIDATE 'user:*' >/dev/null; do
            echo >>"$tmp/invalidations"
        done
    ) &
    pid[invalidating]=$!
    loop_started=$(date +%s.%N)
    load invalidate_busy hits "$round" get --addr "127.0.0.1:${port[large]}" --clients "$CLIENTS" --keys "$HOT_KEYS"
    stop "${pid[invalidating]}" 6
    unset "pid[invalidating]"
    record invalidate_busy hits "$round" invalidations "$(wc -l <"$tmp/invalidations")"
    record invalidate_busy hits "$round" seconds "$(awk -v s="$loop_started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')"
    say "round $round/$BENCH_ROUNDS: $(wc -l <"$tmp/invalidations") INVALIDATE 'user:*' completed during the GET run"
done
stop "${pid[large]}" 6
unset "pid[large]"

memory_run memory "$MEMORY_BOUND" "$BENCH_KEYS" "$@"
record memory nearcache 1 key_bytes "$KEY_BYTES"
record memory nearcache 1 value_bytes "$VALUE_BYTES"

# Ten times the entries that fit, at the size L1 counts one entry of the run above.
entries=$(awk -F, '$1 == "memory" && $4 == "l1_entries" { print $5 }' "$raw")
used=$(awk -F, '$1 == "memory" && $4 == "l1_used_bytes" { print $5 }' "$raw")
if [ -n "$entries" ] && [ -n "$used" ] && [ "$entries" -gt 0 ]; then
    bounded_keys=$(awk -v b="$bounded_bytes" -v u="$used" -v e="$entries" 'BEGIN { printf "%d", 10 * b / (u / e) }')
    if [ "$bounded_keys" -gt "$BENCH_KEYS" ]; then
        say "filling $((bounded_keys - BENCH_KEYS)) more keys for the bounded run"
        "$tool" fill --addr "127.0.0.1:${port[redis]}" --start "$BENCH_KEYS" \
            --count "$((bounded_keys - BENCH_KEYS))" --value-size "$VALUE_BYTES" >/dev/null 2>"$tmp/fill.err" ||
            fail "filling more keys failed"
    fi
    memory_run bounded "$bounded_bytes" "$bounded_keys" "$@"
    record bounded nearcache 1 bound "$bounded_bytes"
else
    not_measured bounded nearcache 1 "INFO nearcache gave no l1_entries/l1_used_bytes to size the key space"
fi

# --- report ---------------------------------------------------------------------------------
versions="Redis $(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
if [ "$have_twemproxy" = 1 ]; then
    versions="$versions, $(nutcracker -V 2>&1 | sed -n 's/.*\(nutcracker-[0-9.]*\).*/\1/p' | head -n 1)"
fi
versions="$versions, nearcache $("$bin" --version | awk '{print $2}')${*:+ (flags: $*)}"
record meta versions 0 value "$versions"
record meta rounds 0 value "$BENCH_ROUNDS"
record meta seconds 0 value "$BENCH_SECONDS"
record meta keys 0 value "$BENCH_KEYS"
record meta relay_delay_ms 0 value "$(awk -v us="$RELAY_DELAY_US" 'BEGIN { print us / 1000 }')"
record meta memory_bound 0 value "$MEMORY_BOUND"
record meta machine 0 value "$(nproc) cores shared by every server and load generator (load average at the end: $(cut -d' ' -f1-3 /proc/loadavg))"

echo
"$tool" report --raw "$raw" --out "$report" || fail "the report could not be made from $raw"
echo
say "report in $report, raw figures in $raw; $(($(date +%s) - started)) s in all"
