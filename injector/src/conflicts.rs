//! What in a pod would make the injected one invalid or broken: the API server refuses a
//! second container named `nearcache`, and a port the app already uses cannot be the
//! sidecar's. `failurePolicy: Ignore` cannot help once the mutation succeeded, so such a pod
//! is admitted unchanged, with a warning.

use k8s_openapi::api::core::v1::PodSpec;

use crate::{METRICS_PORT, SIDECAR_NAME};

/// The sidecar's client port (see [`crate::SIDECAR_LISTEN`]).
pub const LISTEN_PORT: i32 = nearcache::config::DEFAULT_LISTEN.port() as i32;

/// Every conflict between `spec` and the sidecar, as a sentence each.
pub fn check(spec: &PodSpec) -> Vec<String> {
    let mut problems = Vec::new();
    let all = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in all {
        if c.name == SIDECAR_NAME {
            problems.push(format!(
                "a container is already named {SIDECAR_NAME:?} (the sidecar's name)"
            ));
        }
        for p in c.ports.iter().flatten() {
            let what = match p.container_port {
                LISTEN_PORT => "client port",
                METRICS_PORT => "metrics port",
                _ => continue,
            };
            problems.push(format!(
                "container {:?} already uses port {} (the sidecar's {what})",
                c.name, p.container_port
            ));
        }
    }
    problems
}
