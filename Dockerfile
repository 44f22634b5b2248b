# nearcache and nearcache-injector in one minimal image.
#   make image            (docker build -t ghcr.io/nearcache/nearcache:$(VERSION) .)
# Build stage: the Rust toolchain; runtime: distroless with glibc and CA certificates, no
# shell, no package manager, running as the non-root user 65532. Nothing is written to the
# filesystem at run time, so readOnlyRootFilesystem: true works.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p nearcache -p nearcache-injector \
 && install -D -m 0755 target/release/nearcache /out/nearcache \
 && install -D -m 0755 target/release/nearcache-injector /out/nearcache-injector

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
