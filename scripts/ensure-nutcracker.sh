#!/usr/bin/env bash
# Make sure nutcracker (twemproxy, the reference Redis forwarder `make bench` compares with)
# is on PATH. If it is missing, install Debian's nutcracker package with apt; its own service
# is not started during installation (scripts/apt-install.sh). `make bench` starts its own
# nutcracker on a free port.
# Idempotent; prints one line saying what it did.
set -euo pipefail

version() {
    # `nutcracker -V` prints "This is nutcracker-0.5.0" (on stderr in some versions).
    nutcracker -V 2>&1 | sed -n 's/.*\(nutcracker-[0-9][0-9.]*\).*/\1/p' | head -n 1
}

if command -v nutcracker >/dev/null 2>&1; then
    echo "ensure-nutcracker: $(version) already installed, nothing to do"
    exit 0
fi

"$(dirname "${BASH_SOURCE[0]}")/apt-install.sh" ensure-nutcracker \
    "install twemproxy (Debian package nutcracker) by hand" nutcracker

if ! command -v nutcracker >/dev/null 2>&1; then
    echo "ensure-nutcracker: installed nutcracker but it is not on PATH (PATH=$PATH)" >&2
    exit 1
fi
echo "ensure-nutcracker: installed $(version) with apt-get (nutcracker)"
