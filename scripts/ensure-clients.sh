#!/usr/bin/env bash
# Installs the client libraries that proto-tests/tests/integrations/clients.rs runs through nearcache:
#   - redis-py (proto-tests/clients/python/requirements.txt) into the venv target/clients/venv
#   - ioredis and node-redis (proto-tests/clients/node/package.json) into target/clients/node
# Skips whatever is already installed at the pinned versions; prints one line per ecosystem
# saying what it did; exits non-zero with the installer's output if an install fails.
# Missing prerequisites (python3 with venv, Node.js 18+ with npm) are installed with apt-get
# when root or with sudo; otherwise one line says what is missing and how to get it.
# `--check`: only say (one line per ecosystem) whether both are installed where the tests look
# (the same definition as below); exit 1 if not.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

root=target/clients
scripts=scripts
check=0
[ "${1:-}" = --check ] && check=1
[ "$check" -eq 1 ] || mkdir -p "$root"

# True when apt-get can be used here (root, or sudo is available).
can_apt() {
    command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null 2>&1; }
}

fail() {
    echo "ensure-clients: $1" >&2
    if [ -n "${2:-}" ] && [ -f "$2" ]; then
        echo "ensure-clients: last lines of $2:" >&2
        tail -n 30 "$2" >&2
    fi
    exit 1
}

# ---- Python: redis-py in a venv -------------------------------------------------------
py_req=proto-tests/clients/python/requirements.txt
venv=$root/venv
py_stamp=$venv/.requirements.txt
python=${PYTHON:-python3}

py_ok() {
    [ -x "$venv/bin/python" ] && cmp -s "$py_req" "$py_stamp" &&
        "$venv/bin/python" -c 'import redis' >/dev/null 2>&1
}

if [ "$check" -eq 1 ]; then
    if py_ok; then
        echo "ensure-clients: python: redis-py $("$venv/bin/python" -c 'import redis; print(redis.__version__)') installed in $venv"
    else
        check_failed=1
        echo "ensure-clients: python: redis-py is not installed in $venv at the pinned version; run scripts/ensure-clients.sh (make test runs it)" >&2
    fi
elif py_ok; then
    echo "ensure-clients: python: redis-py $("$venv/bin/python" -c 'import redis; print(redis.__version__)') already in $venv, nothing to do"
else
    log=$root/pip.log
    started=$(date +%s)
    # Debian's python3 makes venvs with pip only with python3-venv (ensurepip) installed.
    if can_apt && { ! command -v "$python" >/dev/null 2>&1 ||
        { [ "$(command -v "$python")" = /usr/bin/python3 ] && ! "$python" -c 'import ensurepip' >/dev/null 2>&1; }; }; then
        "$scripts/apt-install.sh" ensure-clients "install python3 and python3-venv by hand (Python 3.8+ with venv and pip)" python3 python3-venv python3-pip
    fi
    command -v "$python" >/dev/null 2>&1 || fail "python: $python not found; install Python 3.8+ with venv and pip (as root: apt-get install python3 python3-venv python3-pip)"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
        rm -rf "$venv"
        # Debian's python3 without python3-venv has no ensurepip: make the venv without pip
        # and install into it with the outer pip (--target, so PEP 668 does not apply).
        if ! "$python" -m venv "$venv" >"$log" 2>&1; then
            rm -rf "$venv"
            "$python" -m venv --without-pip "$venv" >>"$log" 2>&1 ||
                fail "python: '$python -m venv $venv' failed; install venv support (as root: apt-get install python3-venv)" "$log"
        fi
    fi
    pip_opts=(--disable-pip-version-check -q -r "$py_req")
    if "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        "$venv/bin/python" -m pip install "${pip_opts[@]}" >"$log" 2>&1 ||
            fail "python: pip install -r $py_req failed (needs network access to pypi.org)" "$log"
    else
        site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        "$python" -m pip install --upgrade --target "$site" "${pip_opts[@]}" >"$log" 2>&1 ||
            fail "python: the venv has no pip and '$python -m pip install --target $site' failed; install pip (as root: apt-get install python3-venv python3-pip) and check access to pypi.org" "$log"
    fi
    "$venv/bin/python" -c 'import redis' >>"$log" 2>&1 ||
        fail "python: redis-py installed but does not import" "$log"
    cp "$py_req" "$py_stamp"
    rm -f "$log"
    echo "ensure-clients: python: installed redis-py $("$venv/bin/python" -c 'import redis; print(redis.__version__)') into $venv in $(($(date +%s) - started)) s"
fi

# ---- Node: ioredis and node-redis under target/clients/node ----------------------------
node_pkg=proto-tests/clients/node/package.json
node_dir=$root/node

node_ok() {
    cmp -s "$node_pkg" "$node_dir/package.json" &&
        [ -f "$node_dir/node_modules/ioredis/package.json" ] &&
        [ -f "$node_dir/node_modules/redis/package.json" ]
}

node_version_of() {
    node -p "require('./$node_dir/node_modules/$1/package.json').version"
}

# Node.js 18 or newer: the oldest that ioredis and node-redis (proto-tests/clients/node) support.
node_major() {
    node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0
}

if [ "$check" -eq 1 ]; then
    if ! command -v node >/dev/null 2>&1; then
        check_failed=1
        echo "ensure-clients: node: node not found; install Node.js 18+ with npm (as root: apt-get install nodejs npm; or https://nodejs.org)" >&2
    elif [ "$(node_major)" -lt 18 ]; then
        check_failed=1
        echo "ensure-clients: node: node $(node --version) is older than 18; install Node.js 18+ (https://nodejs.org)" >&2
    elif node_ok; then
        echo "ensure-clients: node: ioredis $(node_version_of ioredis), redis $(node_version_of redis) installed in $node_dir"
    else
        check_failed=1
        echo "ensure-clients: node: ioredis/redis are not installed in $node_dir at the pinned versions; run scripts/ensure-clients.sh (make test runs it)" >&2
    fi
    exit "${check_failed:-0}"
elif node_ok && [ "$(node_major)" -ge 18 ]; then
    echo "ensure-clients: node: ioredis $(node_version_of ioredis), redis $(node_version_of redis) already in $node_dir, nothing to do"
else
    need=()
    command -v node >/dev/null 2>&1 || need+=(nodejs)
    command -v npm >/dev/null 2>&1 || need+=(npm)
    if [ "${#need[@]}" -gt 0 ] && can_apt; then
        "$scripts/apt-install.sh" ensure-clients "install Node.js 18+ with npm by hand (https://nodejs.org)" "${need[@]}"
    fi
    command -v node >/dev/null 2>&1 || fail "node: node not found; install Node.js 18+ with npm (as root: apt-get install nodejs npm; or https://nodejs.org)"
    command -v npm >/dev/null 2>&1 || fail "node: npm not found; install npm (as root: apt-get install npm)"
    [ "$(node_major)" -ge 18 ] || fail "node: node $(node --version) is older than 18; install Node.js 18+ (https://nodejs.org)"
    log=$root/npm.log
    started=$(date +%s)
    mkdir -p "$node_dir"
    cp "$node_pkg" "$node_dir/package.json"
    if ! npm install --prefix "$node_dir" --no-audit --no-fund --no-package-lock \
        --loglevel=error >"$log" 2>&1; then
        rm -f "$node_dir/package.json" # not marked installed: the next run tries again
        fail "node: npm install --prefix $node_dir failed (needs network access to registry.npmjs.org)" "$log"
    fi
    node_ok || fail "node: npm install finished but ioredis/redis are not in $node_dir/node_modules" "$log"
    rm -f "$log"
    echo "ensure-clients: node: installed ioredis $(node_version_of ioredis), redis $(node_version_of redis) into $node_dir in $(($(date +%s) - started)) s"
fi
