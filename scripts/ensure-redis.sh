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

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "ensure-redis: redis is missing and this is not root and sudo is not available;" \
            "install redis-server and redis-tools (redis >= 7.0) by hand" >&2
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-redis: redis is missing and apt-get is not available;" \
        "install redis-server and redis-tools (redis >= 7.0) by hand" >&2
    exit 1
fi

log=$(mktemp /tmp/ensure-redis.XXXXXX.log)
policy=/usr/sbin/policy-rc.d
made_policy=0

cleanup() {
    if [ "$made_policy" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$policy" || true
    fi
}
trap cleanup EXIT

# Keep the package's postinst from starting (and so possibly waiting on) its own service.
# An existing policy-rc.d is left as it is.
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    made_policy=1
fi

apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
if ! { "${SUDO[@]}" apt-get "${apt_opts[@]}" update &&
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get "${apt_opts[@]}" install -y --no-install-recommends redis-server redis-tools; } >"$log" 2>&1; then
    echo "ensure-redis: apt-get failed; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
fi

if ! have_all; then
    echo "ensure-redis: installed redis-server and redis-tools but redis-server/redis-cli/redis-benchmark" \
        "are still not all on PATH (PATH=$PATH)" >&2
    exit 1
fi
rm -f "$log"
echo "ensure-redis: installed $(redis-server --version | awk '{print $1, $2, $3}') with apt-get (redis-server, redis-tools)"
