# syntax=docker/dockerfile:1
# nearcache and nearcache-injector in one minimal image.
#   make image             one platform, the builder's (docker build, or CONTAINER_TOOL=podman)
#   make image-multiarch   linux/amd64 and linux/arm64 in one manifest list, pushed
#                          (docker buildx build --platform ... --push)
# Build stage: the Rust toolchain, run on the builder's own platform ($BUILDPLATFORM) and
# cross-compiling to the image's ($TARGETARCH) with Debian's cross gcc, so an arm64 image
# is built at native speed on an amd64 runner (no emulation). Runtime: distroless with glibc
# (Debian 12, as the build stage) and CA certificates, no shell, no package manager, running
# as the non-root user 65532. Nothing is written to the filesystem at run time, so
# readOnlyRootFilesystem: true works.
FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
ARG BUILDARCH
ARG TARGETARCH
# The Rust target, and for a cross build the C cross compiler (ring and zstd compile C) and
# the linker, written to /env for the build step.
RUN set -eu; \
    case "${TARGETARCH:-$BUILDARCH}" in \
      amd64) triple=x86_64-unknown-linux-gnu; gnu=x86_64-linux-gnu; debarch=amd64; gcc=gcc-x86-64-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; debarch=arm64; gcc=gcc-aarch64-linux-gnu ;; \
      *) echo "TARGETARCH=${TARGETARCH}: the image is built for amd64 and arm64 only" >&2; exit 1 ;; \
    esac; \
    echo "export TRIPLE=$triple" > /env; \
    if [ "${TARGETARCH:-$BUILDARCH}" != "$BUILDARCH" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "$gcc" "libc6-dev-$debarch-cross"; \
      rm -rf /var/lib/apt/lists/*; \
      rustup target add "$triple"; \
      var=$(echo "$triple" | tr 'a-z-' 'A-Z_'); low=$(echo "$triple" | tr '-' '_'); \
      { echo "export CARGO_TARGET_${var}_LINKER=$gnu-gcc"; \
        echo "export CC_${low}=$gnu-gcc"; \
        echo "export AR_${low}=$gnu-ar"; } >> /env; \
    fi
WORKDIR /src
# The workspace: every member's directory (cargo reads each member's manifest and targets).
COPY Cargo.toml Cargo.lock ./
COPY src/ src/
COPY injector/ injector/
COPY proto-tests/ proto-tests/
COPY bench/ bench/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eu; . /env; \
    cargo build --release --locked --target "$TRIPLE" -p nearcache -p nearcache-injector; \
    install -D -m 0755 "target/$TRIPLE/release/nearcache" /out/nearcache; \
    install -D -m 0755 "target/$TRIPLE/release/nearcache-injector" /out/nearcache-injector

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# glibc raises its mmap threshold (up to 32 MiB) each time a large block is freed, after
# which large replies are carved from the heap and their memory is kept once they are gone;
# fixed at 1 MiB, a buffer of a large value is given back to the system when it is freed.
ENV MALLOC_MMAP_THRESHOLD_=1048576
# 6380: clients (the sidecar listens on 127.0.0.1 by default, inside the pod);
# 9380: /metrics, /healthz, /readyz; 8443: the injector's admission webhook.
EXPOSE 6380 9380 8443
ENTRYPOINT ["/usr/local/bin/nearcache"]
