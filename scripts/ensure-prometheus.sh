#!/usr/bin/env bash
# Make sure prometheus and promtool are on PATH (proto-tests/tests/integrations/prometheus.rs runs both).
# If either is missing, install Debian's prometheus package with apt-get (as root or with
# sudo; apt-get update first; no recommends: the exporters are not needed). The package's
# own prometheus service is not started during installation (a temporary policy-rc.d denies
# it) and, should one be running anyway, it does not matter: the tests start their own
# prometheus on a free port with their own config and data directory.
# `--check`: only say (one line) whether both are installed; exit 1 if not.
# Idempotent; prints one line saying what it did, or one line saying what is missing and
# how to get it.
set -euo pipefail

hint="install prometheus (>= 2.37, with promtool) by hand (as root: apt-get install prometheus; or the release tarball from https://prometheus.io/download/ on PATH)"

missing() {
    local m=() t
    for t in prometheus promtool; do
        command -v "$t" >/dev/null 2>&1 || m+=("$t")
    done
    echo "${m[*]}"
}

version() {
    prometheus --version 2>&1 | awk 'NR == 1 {print $1, $2, $3}'
}

if [ "${1:-}" = --check ]; then
    m=$(missing)
    if [ -n "$m" ]; then
        echo "ensure-prometheus: missing $m; run scripts/ensure-prometheus.sh or $hint" >&2
        exit 1
    fi
    echo "ensure-prometheus: $(version) and promtool installed"
    exit 0
fi

if [ -z "$(missing)" ]; then
    echo "ensure-prometheus: $(version) and promtool already installed, nothing to do"
    exit 0
fi

started=$(date +%s)
"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" ensure-prometheus "missing $(missing); $hint" prometheus

m=$(missing)
if [ -n "$m" ]; then
    echo "ensure-prometheus: installed the prometheus package but $m still not on PATH (PATH=$PATH)" >&2
    exit 1
fi
echo "ensure-prometheus: installed $(version) and promtool with apt-get in $(($(date +%s) - started)) s"
