//! The nearcache sidecar injector: a Kubernetes mutating admission webhook.
//!
//! [`inject`] is the pure decision: given a pod, the labels of its namespace and the
//! injector configuration, it either skips (with a reason and warnings) or returns the
//! JSON patch that adds the sidecar. [`server`] wraps it in an HTTPS endpoint.

pub mod config;
pub mod conflicts;
pub mod parse;
pub mod refs;
pub mod secrets;
pub mod server;
mod settings;
pub mod tls;

use std::collections::BTreeMap;

use json_patch::{AddOperation, Patch, PatchOperation, ReplaceOperation};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, ExecAction, Pod, Probe, ResourceRequirements,
    SecurityContext, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use nearcache::config::spec;
use serde_json::{json, Value};

pub use config::InjectorConfig;
use settings::{settings, Settings, Upstream};

/// Pod label that opts a pod in (`"true"`) or out (`"false"`).
pub const LABEL_INJECT: &str = "nearcache.io/inject";
/// Namespace label that opts every pod of the namespace in (`enabled`).
pub const LABEL_NS_INJECTION: &str = "nearcache.io/injection";
/// Annotation written on injected pods (`injected`).
pub const ANNOTATION_STATUS: &str = "nearcache.io/status";
pub const ANNOTATION_UPSTREAM: &str = "nearcache.io/upstream";
pub const ANNOTATION_UPSTREAM_SECRET: &str = "nearcache.io/upstream-secret";
pub const ANNOTATION_URL_ENV: &str = "nearcache.io/url-env";
pub const ANNOTATION_L1_MAX_BYTES: &str = "nearcache.io/l1-max-bytes";
pub const ANNOTATION_L1_TTL: &str = "nearcache.io/l1-ttl";
pub const ANNOTATION_IMAGE: &str = "nearcache.io/image";
pub const ANNOTATION_CPU_REQUEST: &str = "nearcache.io/cpu-request";
pub const ANNOTATION_MEMORY_LIMIT: &str = "nearcache.io/memory-limit";
/// `<secret>/<key>`: the invalidation bus key (overrides the injector's `busKeySecret`).
pub const ANNOTATION_BUS_KEY_SECRET: &str = "nearcache.io/bus-key-secret";

/// `<secret>[/<key>,...]`: a Secret with the upstream's TLS material (`ca.crt`, `tls.crt`,
/// `tls.key`), mounted for `--upstream-tls-ca`/`-cert`/`-key` (see [`secrets`]).
pub const ANNOTATION_UPSTREAM_TLS_SECRET: &str = "nearcache.io/upstream-tls-secret";
/// The name the upstream's certificate must be valid for (`--upstream-tls-server-name`).
pub const ANNOTATION_UPSTREAM_TLS_SERVER_NAME: &str = "nearcache.io/upstream-tls-server-name";
/// `<secret>[/<key>,...]`: the upstream's `username` and `password`, mounted for
/// `--upstream-username-file` and `--upstream-password-file`.
pub const ANNOTATION_UPSTREAM_CREDENTIALS_SECRET: &str = "nearcache.io/upstream-credentials-secret";
/// `<secret>[/<key>,...]`: the sentinels' `username` and `password`, mounted for
/// `--sentinel-username-file` and `--sentinel-password-file`.
pub const ANNOTATION_SENTINEL_CREDENTIALS_SECRET: &str = "nearcache.io/sentinel-credentials-secret";

/// The pod volume holding the bus key, and where the sidecar mounts it.
pub const BUS_KEY_VOLUME: &str = "nearcache-bus-key";
pub const BUS_KEY_DIR: &str = "/etc/nearcache/bus-key";
/// The file in [`BUS_KEY_DIR`]; a Secret volume without `subPath` is updated in place when
/// the Secret rotates, and the sidecar re-reads it.
pub const BUS_KEY_FILE: &str = "/etc/nearcache/bus-key/bus.key";

/// Name of the injected (native sidecar) init container.
pub const SIDECAR_NAME: &str = "nearcache";
/// Where the sidecar listens: its default `--listen`; the app's URL env var points here.
pub const SIDECAR_LISTEN: &str = spec::listen.default.shown();
/// The sidecar's metrics port: its default `--metrics-listen`'s (listening on every address).
pub const METRICS_PORT: i32 = nearcache::config::DEFAULT_METRICS_LISTEN.port() as i32;

/// The URL the app's URL env var is set to: the sidecar's listen address.
pub fn sidecar_url() -> String {
    format!("redis://{SIDECAR_LISTEN}")
}
pub const SIDECAR_BINARY: &str = "/usr/local/bin/nearcache";

const DEFAULT_GRACE_SECONDS: i64 = 30;
const MIB: u64 = 1 << 20;

/// What to do with a pod.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Admit unchanged.
    Skip {
        reason: String,
        warnings: Vec<String>,
    },
    /// Admit with this JSON patch.
    Inject { patch: Patch, warnings: Vec<String> },
}

impl Decision {
    pub fn warnings(&self) -> &[String] {
        match self {
            Decision::Skip { warnings, .. } | Decision::Inject { warnings, .. } => warnings,
        }
    }

    fn skip(reason: impl Into<String>) -> Self {
        Decision::Skip {
            reason: reason.into(),
            warnings: Vec::new(),
        }
    }

    fn skip_warn(reason: impl Into<String>, warnings: Vec<String>) -> Self {
        Decision::Skip {
            reason: reason.into(),
            warnings,
        }
    }
}

/// A pod the injector cannot reason about at all (the server still admits it).
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("pod has no containers")]
    NoContainers,
    #[error("cannot serialise the sidecar: {0}")]
    Serialise(#[from] serde_json::Error),
}

/// Escapes one JSON pointer token (`~` → `~0`, `/` → `~1`).
pub fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Decides whether and how to inject the sidecar into `pod`.
///
/// `pod.metadata.namespace` must be set (the server fills it from the admission request).
pub fn inject(
    pod: &Pod,
    namespace_labels: &BTreeMap<String, String>,
    config: &InjectorConfig,
) -> Result<Decision, InjectError> {
    let meta = &pod.metadata;
    let labels = meta.labels.clone().unwrap_or_default();
    let annotations = meta.annotations.clone().unwrap_or_default();
    let mut warnings = Vec::new();

    match labels.get(LABEL_INJECT).map(String::as_str) {
        Some("false") => return Ok(Decision::skip("opted out by pod label")),
        Some("true") | None => {}
        Some(other) => warnings.push(format!(
            "label {LABEL_INJECT}={other:?} is neither \"true\" nor \"false\"; ignored"
        )),
    }
    let pod_opt_in = labels.get(LABEL_INJECT).map(String::as_str) == Some("true");
    let ns_opt_in = namespace_labels.get(LABEL_NS_INJECTION).map(String::as_str) == Some("enabled");
    if !pod_opt_in && !ns_opt_in {
        return Ok(Decision::skip_warn("not opted in", warnings));
    }

    if annotations.get(ANNOTATION_STATUS).map(String::as_str) == Some("injected")
        || pod_spec_init_names(pod).any(|n| n == SIDECAR_NAME)
    {
        return Ok(Decision::skip_warn("already injected", warnings));
    }

    let namespace = meta.namespace.as_deref().unwrap_or("");
    if config.system_namespaces.iter().any(|n| n == namespace) {
        warnings.push(format!(
            "nearcache sidecar not injected: {namespace:?} is a system namespace"
        ));
        return Ok(Decision::skip_warn("system namespace", warnings));
    }

    let Some(spec) = pod.spec.as_ref() else {
        return Err(InjectError::NoContainers);
    };
    if spec.containers.is_empty() {
        return Err(InjectError::NoContainers);
    }
    if spec.host_network == Some(true) {
        warnings.push(format!(
            "nearcache sidecar not injected: hostNetwork pods would share {SIDECAR_LISTEN} with the node"
        ));
        return Ok(Decision::skip_warn("hostNetwork pod", warnings));
    }
    let conflicts = conflicts::check(spec);
    if !conflicts.is_empty() {
        warnings.extend(
            conflicts
                .into_iter()
                .map(|p| format!("nearcache sidecar not injected: {p}")),
        );
        return Ok(Decision::skip_warn("conflicts with the sidecar", warnings));
    }

    let settings = match settings(pod, &annotations, config) {
        Ok(s) => s,
        Err((reason, problems)) => {
            warnings.extend(
                problems
                    .into_iter()
                    .map(|p| format!("nearcache sidecar not injected: {p}")),
            );
            return Ok(Decision::skip_warn(reason, warnings));
        }
    };
    let Some(upstream) = settings.upstream.as_ref() else {
        warnings.push(format!(
            "nearcache sidecar not injected: no upstream (set annotation {ANNOTATION_UPSTREAM} \
             or {ANNOTATION_UPSTREAM_SECRET}, or give the app containers {})",
            settings.url_env
        ));
        return Ok(Decision::skip_warn("no upstream", warnings));
    };

    let mut ops = Vec::new();
    let mut volumes: Vec<Value> = Vec::new();
    if let Some((name, key)) = &settings.bus_key {
        volumes.push(json!({
            "name": BUS_KEY_VOLUME,
            "secret": {"secretName": name, "items": [{"key": key, "path": "bus.key"}]},
        }));
    }
    volumes.extend(settings.mounts.iter().map(|m| m.volume()));
    match spec.volumes {
        _ if volumes.is_empty() => {}
        None => ops.push(add("/spec/volumes", Value::Array(volumes))),
        Some(_) => ops.extend(volumes.into_iter().map(|v| add("/spec/volumes/-", v))),
    }
    let sidecar = serde_json::to_value(sidecar_container(pod, &settings, upstream, config))?;
    if spec.init_containers.is_none() {
        ops.push(add("/spec/initContainers", json!([sidecar])));
    } else {
        ops.push(add("/spec/initContainers/0", sidecar));
    }

    for (i, c) in spec.containers.iter().enumerate() {
        let base = format!("/spec/containers/{i}/env");
        let entry = json!({ "name": settings.url_env, "value": sidecar_url() });
        match &c.env {
            None => ops.push(add(&base, json!([entry]))),
            Some(env) => {
                // Every entry of that name is rewritten (with duplicates, the last wins).
                let mut found = false;
                for (j, e) in env
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.name == settings.url_env)
                {
                    found = true;
                    if e.value_from.is_none() && e.value.is_some() {
                        ops.push(replace(&format!("{base}/{j}/value"), json!(sidecar_url())));
                    } else {
                        ops.push(replace(&format!("{base}/{j}"), entry.clone()));
                    }
                }
                if !found {
                    ops.push(add(&format!("{base}/-"), entry));
                }
            }
        }
    }

    if meta.annotations.is_none() {
        ops.push(add(
            "/metadata/annotations",
            json!({ ANNOTATION_STATUS: "injected" }),
        ));
    } else {
        ops.push(add(
            &format!(
                "/metadata/annotations/{}",
                escape_pointer(ANNOTATION_STATUS)
            ),
            json!("injected"),
        ));
    }

    Ok(Decision::Inject {
        patch: Patch(ops),
        warnings,
    })
}

fn pod_spec_init_names(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
}

fn add(path: &str, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: path.parse().expect("patch paths are valid JSON pointers"),
        value,
    })
}

fn replace(path: &str, value: Value) -> PatchOperation {
    PatchOperation::Replace(ReplaceOperation {
        path: path.parse().expect("patch paths are valid JSON pointers"),
        value,
    })
}

/// Memory request and limit for an L1 bound: 1.5 × L1 + 32 MiB, rounded up to a MiB.
pub fn memory_for(l1_max_bytes: u64) -> String {
    memory_mib(l1_max_bytes.saturating_add(l1_max_bytes / 2) + 32 * MIB)
}

/// Bytes as a quantity in MiB, rounded up.
fn memory_mib(bytes: u64) -> String {
    format!("{}Mi", bytes.div_ceil(MIB))
}

/// NEARCACHE_SHUTDOWN_GRACE: 5 s shorter than the pod's grace period, at least 1 s.
pub fn shutdown_grace(termination_grace_seconds: Option<i64>) -> String {
    let grace = termination_grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS);
    format!("{}s", (grace - 5).max(1))
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

/// An exec probe running `nearcache probe`: with `listening` it passes once the sidecar
/// answers at all (`--listening`, whatever Redis does), else once it serves (a `PING`
/// that needs the upstream).
fn probe(period: i32, failure_threshold: i32, listening: bool) -> Probe {
    let mut command = vec![SIDECAR_BINARY.to_owned(), "probe".to_owned()];
    if listening {
        command.push("--listening".to_owned());
    }
    Probe {
        exec: Some(ExecAction {
            command: Some(command),
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(1),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    }
}

fn sidecar_container(
    pod: &Pod,
    s: &Settings,
    upstream: &Upstream,
    config: &InjectorConfig,
) -> Container {
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds);
    let upstream_env = match upstream {
        Upstream::Value(v) => env(spec::upstream.env, v.clone()),
        Upstream::From(src) => EnvVar {
            name: spec::upstream.env.to_owned(),
            value: None,
            value_from: Some((**src).clone()),
        },
    };
    let quantity = |v: &str| Quantity(v.to_owned());
    // Kubernetes expands `$(VAR)` in NEARCACHE_UPSTREAM from the entries before it.
    let mut env_vars = s.upstream_env.clone();
    env_vars.extend([
        env(spec::listen.env, SIDECAR_LISTEN),
        upstream_env,
        env(spec::l1_max_bytes.env, s.l1_max_bytes.to_string()),
        env(spec::l1_ttl.env, s.l1_ttl.clone()),
        env(spec::metrics_listen.env, format!("0.0.0.0:{METRICS_PORT}")),
        env(spec::shutdown_grace.env, shutdown_grace(grace)),
    ]);
    let mut mounts = Vec::new();
    if s.bus_key.is_some() {
        env_vars.push(env(spec::bus_key_file.env, BUS_KEY_FILE));
        mounts.push(VolumeMount {
            name: BUS_KEY_VOLUME.to_owned(),
            mount_path: BUS_KEY_DIR.to_owned(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    // Directories, never subPath: see `secrets` (a subPath mount never sees a rotation).
    for m in &s.mounts {
        env_vars.extend(m.env());
        mounts.push(m.mount());
    }
    if let Some(name) = &s.tls_server_name {
        env_vars.push(env(spec::upstream_tls_server_name.env, name.clone()));
    }
    let mounts = (!mounts.is_empty()).then_some(mounts);
    Container {
        name: SIDECAR_NAME.to_owned(),
        image: Some(s.image.clone()),
        image_pull_policy: config.image_pull_policy.clone(),
        restart_policy: Some("Always".to_owned()),
        args: Some(Vec::new()),
        env: Some(env_vars),
        volume_mounts: mounts,
        ports: Some(vec![ContainerPort {
            name: Some("metrics".to_owned()),
            container_port: METRICS_PORT,
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        // The app starts once the startup probe passes: by default once the sidecar
        // listens, so that it starts (and retries) while Redis is down.
        startup_probe: Some(probe(1, 30, !config.startup_requires_upstream)),
        readiness_probe: Some(probe(5, 3, false)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), quantity(&s.cpu_request)),
                ("memory".to_owned(), quantity(&s.memory)),
            ])),
            limits: Some(BTreeMap::from([("memory".to_owned(), quantity(&s.memory))])),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
