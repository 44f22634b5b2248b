# nearcache — common tasks. `make` alone lists them.

CARGO ?= cargo

.DEFAULT_GOAL := help
.PHONY: help build run test bench bench-lag bench-micro image fmt lint clean

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
	@echo "               (scripts/bench.sh; BENCH_QUICK=1 for a short run, BENCH_ROUNDS=N)"
	@echo "  make bench-lag    invalidation lag across two sidecars, tracking cost (scripts/bench-lag.sh)"
	@echo "  make bench-micro  criterion benches of parsing, L1 lookup, reply framing"
	@echo "  make image   docker build the image of nearcache and nearcache-injector (Dockerfile)"
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

# Installs Redis and nutcracker if missing, builds nearcache and nearcache-bench (bench/),
# prints the table and writes target/bench/report.md and raw.csv (scripts/bench.sh).
bench:
	scripts/bench.sh

bench-lag:
	scripts/bench-lag.sh

IMAGE ?= ghcr.io/nearcache/nearcache
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

# Needs a container builder with access to the rust and distroless base images.
image:
	docker build -t $(IMAGE):$(VERSION) .

bench-micro:
	$(CARGO) bench --bench hot_path

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
