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

started=$(date +%s)
"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" ensure-prometheus "install prometheus (>= 2.37, with promtool) by hand" prometheus

if ! have_all; then
    echo "ensure-prometheus: installed the prometheus package but prometheus/promtool are" \
        "still not both on PATH (PATH=$PATH)" >&2
    exit 1
fi
echo "ensure-prometheus: installed $(version) and promtool with apt-get in $(($(date +%s) - started)) s"
