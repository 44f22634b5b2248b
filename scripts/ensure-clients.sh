#!/usr/bin/env bash
# Installs the client libraries that proto-tests/tests/clients.rs runs through nearcache:
#   - redis-py (proto-tests/clients/python/requirements.txt) into the venv target/clients/venv
#   - ioredis and node-redis (proto-tests/clients/node/package.json) into target/clients/node
# Skips whatever is already installed at the pinned versions; prints one line per ecosystem
# saying what it did; exits non-zero with the installer's output if an install fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

root=target/clients
mkdir -p "$root"

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

if py_ok; then
    echo "ensure-clients: python: redis-py $("$venv/bin/python" -c 'import redis; print(redis.__version__)') already in $venv, nothing to do"
else
    command -v "$python" >/dev/null 2>&1 || fail "python: $python not found (need Python 3.8+ with venv and pip)"
    log=$root/pip.log
    started=$(date +%s)
    if [ ! -x "$venv/bin/python" ]; then
        rm -rf "$venv"
        # Debian's python3 without python3-venv has no ensurepip: make the venv without pip
        # and install into it with the outer pip (--target, so PEP 668 does not apply).
        if ! "$python" -m venv "$venv" >"$log" 2>&1; then
            rm -rf "$venv"
            "$python" -m venv --without-pip "$venv" >>"$log" 2>&1 ||
                fail "python: '$python -m venv $venv' failed (on Debian: apt-get install python3-venv)" "$log"
        fi
    fi
    pip_opts=(--disable-pip-version-check -q -r "$py_req")
    if "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        "$venv/bin/python" -m pip install "${pip_opts[@]}" >"$log" 2>&1 ||
            fail "python: pip install -r $py_req failed" "$log"
    else
        site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
        "$python" -m pip install --upgrade --target "$site" "${pip_opts[@]}" >"$log" 2>&1 ||
            fail "python: the venv has no pip and '$python -m pip install --target $site' failed" "$log"
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

if node_ok; then
    echo "ensure-clients: node: ioredis $(node_version_of ioredis), redis $(node_version_of redis) already in $node_dir, nothing to do"
else
    command -v node >/dev/null 2>&1 || fail "node: node not found (need Node.js 18+ with npm)"
    command -v npm >/dev/null 2>&1 || fail "node: npm not found (need Node.js 18+ with npm)"
    log=$root/npm.log
    started=$(date +%s)
    mkdir -p "$node_dir"
    cp "$node_pkg" "$node_dir/package.json"
    if ! npm install --prefix "$node_dir" --no-audit --no-fund --no-package-lock \
        --loglevel=error >"$log" 2>&1; then
        rm -f "$node_dir/package.json" # not marked installed: the next run tries again
        fail "node: npm install --prefix $node_dir failed" "$log"
    fi
    node_ok || fail "node: npm install finished but ioredis/redis are not in $node_dir/node_modules" "$log"
    rm -f "$log"
    echo "ensure-clients: node: installed ioredis $(node_version_of ioredis), redis $(node_version_of redis) into $node_dir in $(($(date +%s) - started)) s"
fi
