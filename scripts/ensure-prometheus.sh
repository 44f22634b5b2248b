#!/usr/bin/env bash
# Make sure prometheus and promtool are on PATH (proto-tests/tests/prometheus.rs runs both).
# If either is missing, install Debian's prometheus package with apt (no recommends: the
# exporters are not needed). The package's own prometheus service is not started during
# installation (a temporary policy-rc.d denies it) and, should one be running anyway, it
# does not matter: the tests start their own prometheus on a free port with their own
# config and data directory.
# Idempotent; prints one line saying what it did.
set -euo pipefail

have_all() {
    command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1
}

version() {
    prometheus --version 2>&1 | awk 'NR == 1 {print $1, $2, $3}'
}

if have_all; then
    echo "ensure-prometheus: $(version) and promtool already installed, nothing to do"
    exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "ensure-prometheus: prometheus/promtool missing and this is not root and sudo is" \
            "not available; install prometheus (>= 2.37, with promtool) by hand" >&2
        exit 1
    fi
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-prometheus: prometheus/promtool missing and apt-get is not available;" \
        "install prometheus (>= 2.37, with promtool) by hand" >&2
    exit 1
fi

log=$(mktemp /tmp/ensure-prometheus.XXXXXX.log)
policy=/usr/sbin/policy-rc.d
made_policy=0

cleanup() {
    if [ "$made_policy" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$policy" || true
    fi
}
trap cleanup EXIT

# Keep the package's postinst from starting its own service (on a machine with systemd
# the unit is enabled but stays stopped until the next boot). An existing policy-rc.d is
# left as it is.
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    made_policy=1
fi

started=$(date +%s)
apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
if ! { "${SUDO[@]}" apt-get "${apt_opts[@]}" update &&
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get "${apt_opts[@]}" install -y --no-install-recommends prometheus; } >"$log" 2>&1; then
    echo "ensure-prometheus: apt-get failed; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
fi

if ! have_all; then
    echo "ensure-prometheus: installed the prometheus package but prometheus/promtool are" \
        "still not both on PATH (PATH=$PATH)" >&2
    exit 1
fi
rm -f "$log"
echo "ensure-prometheus: installed $(version) and promtool with apt-get in $(($(date +%s) - started)) s"
