#!/usr/bin/env bash
# Make sure redis-server, redis-cli and redis-benchmark (Redis 7.0 or newer) are on PATH.
# If any is missing, install Debian's redis-server + redis-tools with apt-get (as root or
# with sudo; apt-get update first). The package's own redis service is not started during
# installation (a temporary policy-rc.d denies it); the tests and scripts start their own
# servers on free ports.
# `--check`: only say (one line) whether they are installed; exit 1 if not.
# Idempotent; prints one line saying what it did, or one line saying what is missing and
# how to get it.
set -euo pipefail

hint="install redis-server and redis-tools (Redis >= 7.0) by hand (as root: apt-get install redis-server redis-tools)"

missing() {
    local m=() t
    for t in redis-server redis-cli redis-benchmark; do
        command -v "$t" >/dev/null 2>&1 || m+=("$t")
    done
    echo "${m[*]}"
}

version() {
    redis-server --version | sed -n 's/.* v=\([0-9][0-9.]*\).*/\1/p'
}

# Fails (one line) when the redis-server on PATH is older than 7.0.
require_7() {
    local v
    v=$(version)
    if [ "${v%%.*}" -lt 7 ] 2>/dev/null; then
        echo "ensure-redis: redis-server $v is older than 7.0; $hint" >&2
        exit 1
    fi
}

if [ "${1:-}" = --check ]; then
    m=$(missing)
    if [ -n "$m" ]; then
        echo "ensure-redis: missing $m; run scripts/ensure-redis.sh or $hint" >&2
        exit 1
    fi
    require_7
    echo "ensure-redis: redis-server $(version), redis-cli and redis-benchmark installed"
    exit 0
fi

if [ -z "$(missing)" ]; then
    require_7
    echo "ensure-redis: redis-server $(version) already installed, nothing to do"
    exit 0
fi

"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" ensure-redis "missing $(missing); $hint" redis-server redis-tools

m=$(missing)
if [ -n "$m" ]; then
    echo "ensure-redis: installed redis-server and redis-tools but $m still not on PATH (PATH=$PATH)" >&2
    exit 1
fi
require_7
echo "ensure-redis: installed redis-server $(version) with apt-get (redis-server, redis-tools)"
