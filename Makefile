# nearcache — common tasks. `make` alone lists them.

CARGO ?= cargo

.DEFAULT_GOAL := help
.PHONY: help build run test bench bench-compare bench-lag bench-fleet bench-instructions bench-micro image image-push image-multiarch chart-package chart-push fmt lint clean

help:
	@echo "nearcache make targets:"
	@echo "  make build   cargo build --release (target/release/nearcache)"
	@echo "  make run     install redis if missing, start one on :6379 if none answers,"
	@echo "               then run nearcache on 127.0.0.1:6380, metrics on 9380 (scripts/run-local.sh;"
	@echo "               LISTEN_PORT=6393 for a second one: metrics on LISTEN_PORT + 3000)"
	@echo "  make test    install what the tests need if missing (redis, prometheus, client libraries,"
	@echo "               helm, kubernetes-validate: scripts/ensure-*.sh), then build and run every test"
	@echo "  make bench   nearcache vs Redis direct vs twemproxy: GET/SET/INCR/MGET, a Zipf mix, idle"
	@echo "               clients, a remote upstream, 20 namespaces, a new sidecar's first requests"
	@echo "               (cold, warmed), L1 memory; table + PASS/FAIL in target/bench/"
	@echo "               (bench/scripts/bench.sh; BENCH_QUICK=1 for a short run, BENCH_ROUNDS=N)"
	@echo "  make bench-compare BASE=<rev>  the bench for the binary at BASE and this one, alternated"
	@echo "                    run by run; rows worse beyond the spread marked (bench/scripts/compare.sh)"
	@echo "  make bench-lag    invalidation lag across two sidecars, tracking cost"
	@echo "                    (bench/scripts/bench-lag.sh)"
	@echo "  make bench-fleet  FLEET=100 sidecars on one Redis: its tracking memory, CPU, invalidation"
	@echo "                    messages per write, lag at the farthest sidecar, connections; table in"
	@echo "                    target/bench/fleet.md (bench/scripts/fleet.sh; FLEET=\"100 300\","
	@echo "                    TRACKING=default|off|bcast, TABLE_MAX_KEYS=N)"
	@echo "  make bench-instructions  instructions per request (callgrind): GET hit of 100 B and 1 KiB,"
	@echo "                    GET miss, MGET with misses, SET at -P 1 and -P 16, a forwarded GET and"
	@echo "                    twemproxy's GET and SET (bench/scripts/instructions.sh)"
	@echo "  make bench-micro  criterion benches of parsing, L1 lookup, reply framing"
	@echo "                    (bench/benches/hot_path.rs)"
	@echo "  make image   build the image of nearcache and nearcache-injector (Dockerfile) for this"
	@echo "               machine's platform: IMAGE=<registry>/<path> VERSION=<tag>, CONTAINER_TOOL=podman"
	@echo "  make image-push       push IMAGE:VERSION (after make image)"
	@echo "  make image-multiarch  docker buildx build for PLATFORMS (linux/amd64,linux/arm64), pushed"
	@echo "  make chart-package    helm package the chart into target/charts/nearcache-<chart version>.tgz"
	@echo "  make chart-push       helm push it to oci://CHART_REGISTRY (e.g. CHART_REGISTRY=ghcr.io/me/charts)"
	@echo "  make fmt     cargo fmt --all"
	@echo "  make lint    rustfmt check + clippy with warnings as errors"
	@echo "  make clean   cargo clean"

build:
	$(CARGO) build --release

run:
	scripts/run-local.sh

# Installs the test tools if missing (scripts/ensure-*.sh), builds the binary the black-box
# tests run, runs every test and prints one summary line (scripts/test.sh).
test:
	scripts/test.sh

# Every measurement is in bench/ (the nearcache-bench crate): its scripts, its criterion
# benches, its examples.
# Installs Redis and nutcracker if missing, builds nearcache and nearcache-bench (bench/),
# prints the table and writes target/bench/report.md and raw.csv (bench/scripts/bench.sh).
bench:
	bench/scripts/bench.sh

# The previous binary (BASE, a git revision) and this one in the same run, alternated.
bench-compare:
	BASE=$(BASE) bench/scripts/compare.sh

bench-lag:
	bench/scripts/bench-lag.sh

bench-fleet:
	bench/scripts/fleet.sh

bench-instructions:
	bench/scripts/instructions.sh

# The image: nothing publishes ghcr.io/nearcache/nearcache, so set IMAGE to a repository of
# your registry (and log in to it with `docker login` / `podman login` first).
IMAGE ?= ghcr.io/nearcache/nearcache
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
# docker, podman or buildah (anything with `build -t` and `push`).
CONTAINER_TOOL ?= docker
# The platforms of image-multiarch (the Dockerfile cross-compiles to amd64 and arm64).
PLATFORMS ?= linux/amd64,linux/arm64
HELM ?= $(shell test -x target/k8s-tools/bin/helm && echo target/k8s-tools/bin/helm || echo helm)
CHART_DIR := deploy/helm/nearcache
CHART_VERSION := $(shell sed -n 's/^version: *//p' $(CHART_DIR)/Chart.yaml)
# Where chart-push pushes the chart: an OCI registry path, without oci:// (helm adds the
# chart's name): e.g. ghcr.io/<owner>/charts.
CHART_REGISTRY ?=

# Needs a container builder with access to the rust and distroless base images.
image:
	$(CONTAINER_TOOL) build -t $(IMAGE):$(VERSION) .

image-push:
	$(CONTAINER_TOOL) push $(IMAGE):$(VERSION)

# One manifest list for PLATFORMS, built by one builder (the build stage runs on the
# builder's platform and cross-compiles) and pushed: a multi-platform image cannot be loaded
# into the local image store. Needs docker buildx (a docker-container builder:
# `docker buildx create --use` once). In CI, log in to the registry first, then run this.
image-multiarch:
	docker buildx build --platform $(PLATFORMS) -t $(IMAGE):$(VERSION) --push .

chart-package:
	mkdir -p target/charts
	$(HELM) package $(CHART_DIR) -d target/charts

chart-push: chart-package
	@test -n "$(CHART_REGISTRY)" || { echo "chart-push: set CHART_REGISTRY=<registry>/<path>, e.g. ghcr.io/<owner>/charts (then: helm registry login <registry>)"; exit 2; }
	$(HELM) push target/charts/nearcache-$(CHART_VERSION).tgz oci://$(CHART_REGISTRY)

bench-micro:
	$(CARGO) bench -p nearcache-bench --bench hot_path

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
