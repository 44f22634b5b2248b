#!/usr/bin/env bash
# Run nearcache in front of a local Redis.
#   UPSTREAM_PORT (default 6379): the Redis to use; one is started there if nothing answers PING.
#   LISTEN_PORT   (default 6380): where nearcache listens.
# Extra arguments are passed to nearcache, e.g. `scripts/run-local.sh --l1-ttl 10s`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

UPSTREAM_PORT=${UPSTREAM_PORT:-6379}
LISTEN_PORT=${LISTEN_PORT:-6380}
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
exec target/release/nearcache --listen "127.0.0.1:$LISTEN_PORT" \
    --upstream "redis://127.0.0.1:$UPSTREAM_PORT" "$@"
