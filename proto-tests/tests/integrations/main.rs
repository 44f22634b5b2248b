//! nearcache against the tools around it, one test binary: the Kubernetes chart and
//! manifests (helm, kubernetes-validate), the monitoring kit (prometheus, promtool), real
//! client libraries (redis-py, ioredis, node-redis) and the `scripts/ensure-*.sh` installers
//! of those tools. Each needs what `scripts/ensure-*.sh` installs besides redis-server, so
//! they are apart from the `suite` binary, which needs redis-server only:
//! `cargo test -p proto-tests --test integrations kubernetes::` runs one module.

mod clients;
mod cluster_clients;
mod kubernetes;
mod prometheus;
mod setup_scripts;
