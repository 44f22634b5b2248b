#!/usr/bin/env bash
# Make sure redis-server, redis-cli and redis-benchmark are on PATH.
# If any is missing, install Debian's redis-server + redis-tools with apt.
# The package's own redis service is not started during installation (a temporary
# policy-rc.d denies it); the tests and scripts start their own servers on free ports.
# Idempotent; prints one line saying what it did.
set -euo pipefail

have_all() {
    command -v redis-server >/dev/null 2>&1 &&
        command -v redis-cli >/dev/null 2>&1 &&
        command -v redis-benchmark >/dev/null 2>&1
}

if have_all; then
    echo "ensure-redis: $(redis-server --version | awk '{print $1, $2, $3}') already installed, nothing to do"
    exit 0
fi

"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" ensure-redis "install redis-server and redis-tools (redis >= 7.0) by hand" redis-server redis-tools

if ! have_all; then
    echo "ensure-redis: installed redis-server and redis-tools but redis-server/redis-cli/redis-benchmark" \
        "are still not all on PATH (PATH=$PATH)" >&2
    exit 1
fi
echo "ensure-redis: installed $(redis-server --version | awk '{print $1, $2, $3}') with apt-get (redis-server, redis-tools)"
