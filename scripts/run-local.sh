#!/usr/bin/env bash
# Run nearcache in front of a local Redis.
#   UPSTREAM_PORT (default 6379): the Redis to use; one is started there if nothing answers PING.
#   LISTEN_PORT   (default 6380): where nearcache listens.
#   METRICS_PORT  (default LISTEN_PORT + 3000, so 9380 by default): where /metrics, /healthz
#                 and /readyz listen on 127.0.0.1, or `off`. A second instance on one host
#                 needs only another LISTEN_PORT: `LISTEN_PORT=6393 make run` listens on 6393
#                 with its metrics on 9393, in front of the same Redis.
# Extra arguments are passed to nearcache, e.g. `scripts/run-local.sh --l1-ttl 10s`; a
# `--metrics-listen` among them (or NEARCACHE_METRICS_LISTEN, when METRICS_PORT is not set)
# replaces METRICS_PORT.
# RUN_LOCAL_DRY_RUN=1: print the nearcache arguments, one per line, and exit without
# installing, building or starting anything (the tests use it).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() {
    echo "run-local: $*" >&2
    exit 1
}

# A TCP port: digits, 1..65535.
valid_port() {
    [[ $1 =~ ^[0-9]{1,5}$ ]] && [ "$1" -ge 1 ] && [ "$1" -le 65535 ]
}

UPSTREAM_PORT=${UPSTREAM_PORT:-6379}
LISTEN_PORT=${LISTEN_PORT:-6380}
valid_port "$UPSTREAM_PORT" || fail "UPSTREAM_PORT=$UPSTREAM_PORT is not a port (1-65535)"
valid_port "$LISTEN_PORT" || fail "LISTEN_PORT=$LISTEN_PORT is not a port (1-65535)"

args=(--listen "127.0.0.1:$LISTEN_PORT" --upstream "redis://127.0.0.1:$UPSTREAM_PORT")
metrics_in_args=0
for a in "$@"; do
    case $a in --metrics-listen | --metrics-listen=*) metrics_in_args=1 ;; esac
done
if [ "$metrics_in_args" -eq 0 ] && { [ -n "${METRICS_PORT:-}" ] || [ -z "${NEARCACHE_METRICS_LISTEN:-}" ]; }; then
    if [ -z "${METRICS_PORT:-}" ]; then
        METRICS_PORT=$((LISTEN_PORT + 3000))
        valid_port "$METRICS_PORT" ||
            fail "LISTEN_PORT=$LISTEN_PORT leaves no metrics port at LISTEN_PORT + 3000; set METRICS_PORT (a port or off)"
    fi
    if [ "$METRICS_PORT" = off ]; then
        args+=(--metrics-listen off)
    else
        valid_port "$METRICS_PORT" || fail "METRICS_PORT=$METRICS_PORT is not a port (1-65535) or off"
        [ "$METRICS_PORT" != "$LISTEN_PORT" ] || fail "METRICS_PORT and LISTEN_PORT are both $LISTEN_PORT"
        args+=(--metrics-listen "127.0.0.1:$METRICS_PORT")
    fi
fi
args+=("$@")

if [ "${RUN_LOCAL_DRY_RUN:-}" = 1 ]; then
    printf '%s\n' "${args[@]}"
    exit 0
fi

REDIS_LOG=/tmp/nearcache-upstream-redis.log

scripts/ensure-redis.sh

redis_up() {
    [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$UPSTREAM_PORT" ping 2>/dev/null)" = "PONG" ]
}

if redis_up; then
    echo "run-local: using the Redis already answering on 127.0.0.1:$UPSTREAM_PORT"
else
    echo "run-local: starting redis-server on port $UPSTREAM_PORT (log: $REDIS_LOG)"
    redis-server --port "$UPSTREAM_PORT" --daemonize yes --save '' --appendonly no \
        --dir /tmp --logfile "$REDIS_LOG"
    for _ in $(seq 50); do
        redis_up && break
        sleep 0.1
    done
    if ! redis_up; then
        echo "run-local: redis-server on port $UPSTREAM_PORT did not answer PING within 5 s; last lines of $REDIS_LOG:" >&2
        tail -n 20 "$REDIS_LOG" >&2 || true
        exit 1
    fi
fi

cargo build --release
exec target/release/nearcache "${args[@]}"
