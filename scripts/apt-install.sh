#!/usr/bin/env bash
# Installs Debian packages for the ensure-* scripts: `scripts/apt-install.sh TAG HINT PKG...`.
# As root (or with sudo), with apt-get, without recommends, without letting a package's
# postinst start its own service (a temporary policy-rc.d; an existing one is left alone).
# On failure prints TAG, the last lines of apt's log and HINT (what to install by hand),
# and exits 1. Prints nothing on success.
set -euo pipefail

tag=$1
hint=$2
shift 2

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "$tag: not root and sudo is not available; $hint" >&2
        exit 1
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "$tag: apt-get is not available; $hint" >&2
    exit 1
fi

log=$(mktemp "/tmp/$tag.XXXXXX.log")
policy=/usr/sbin/policy-rc.d
made_policy=0
cleanup() {
    if [ "$made_policy" -eq 1 ]; then
        "${SUDO[@]}" rm -f "$policy" || true
    fi
}
trap cleanup EXIT
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
    "${SUDO[@]}" chmod 755 "$policy"
    made_policy=1
fi

apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
if ! { "${SUDO[@]}" apt-get "${apt_opts[@]}" update &&
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get "${apt_opts[@]}" install -y --no-install-recommends "$@"; } >"$log" 2>&1; then
    echo "$tag: apt-get install $* failed; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    echo "$tag: $hint" >&2
    exit 1
fi
rm -f "$log"
