//! The per-pod settings: the annotations applied over the injector's config and checked,
//! and the upstream (annotation, Secret or the app's own URL env, with the env entries its
//! `$(VAR)` references need), checked with the sidecar's own URL parser.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Pod, SecretKeySelector};

use crate::secrets::{self, Needs, SecretMount};
use crate::{
    memory_for, memory_mib, parse, refs, InjectorConfig, ANNOTATION_BUS_KEY_SECRET,
    ANNOTATION_CPU_REQUEST, ANNOTATION_IMAGE, ANNOTATION_L1_MAX_BYTES, ANNOTATION_L1_TTL,
    ANNOTATION_MEMORY_LIMIT, ANNOTATION_UPSTREAM, ANNOTATION_UPSTREAM_SECRET,
    ANNOTATION_UPSTREAM_TLS_SERVER_NAME, ANNOTATION_URL_ENV, BUS_KEY_VOLUME, MIB,
};

/// Where the sidecar's NEARCACHE_UPSTREAM comes from.
pub(crate) enum Upstream {
    Value(String),
    From(Box<EnvVarSource>),
}

/// Per-pod settings after annotations were applied to the config.
pub(crate) struct Settings {
    pub(crate) image: String,
    pub(crate) url_env: String,
    pub(crate) l1_max_bytes: u64,
    pub(crate) l1_ttl: String,
    pub(crate) cpu_request: String,
    pub(crate) memory: String,
    pub(crate) upstream: Option<Upstream>,
    /// Env entries the upstream URL references as `$(VAR)`, copied from the app container.
    pub(crate) upstream_env: Vec<EnvVar>,
    /// The bus key Secret (name, key).
    pub(crate) bus_key: Option<(String, String)>,
    /// The Secrets mounted for the upstream's TLS and credentials and the sentinels'.
    pub(crate) mounts: Vec<SecretMount>,
    /// `--upstream-tls-server-name`.
    pub(crate) tls_server_name: Option<String>,
}

/// Why a pod is not injected: the skip reason and the problems.
type Refusal = (&'static str, Vec<String>);

/// Applies the annotations to the config; every problem is reported, not just the first.
/// The error is the skip reason and the problems.
pub(crate) fn settings(
    pod: &Pod,
    ann: &BTreeMap<String, String>,
    config: &InjectorConfig,
) -> Result<Settings, (&'static str, Vec<String>)> {
    let mut problems = Vec::new();
    let mut check = |key: &str, f: &dyn Fn(&str) -> Result<(), String>| {
        if let Some(v) = ann.get(key) {
            if let Err(e) = f(v) {
                problems.push(format!("annotation {key}={v:?}: {e}"));
            }
        }
    };
    check(ANNOTATION_UPSTREAM_SECRET, &|v| {
        parse::secret_ref(v).map(|_| ())
    });
    check(ANNOTATION_URL_ENV, &|v| parse::env_name(v));
    check(ANNOTATION_L1_MAX_BYTES, &|v| {
        parse::positive_size(v).map(|_| ())
    });
    check(ANNOTATION_L1_TTL, &|v| parse::duration_ms(v).map(|_| ()));
    check(ANNOTATION_IMAGE, &|v| parse::image(v));
    check(ANNOTATION_CPU_REQUEST, &|v| parse::cpu_quantity(v));
    check(ANNOTATION_MEMORY_LIMIT, &|v| parse::memory_quantity(v));
    check(ANNOTATION_BUS_KEY_SECRET, &|v| {
        parse::secret_ref(v).map(|_| ())
    });
    for kind in secrets::KINDS {
        check(kind.annotation, &|v| secrets::parse(kind, v).map(|_| ()));
    }
    check(ANNOTATION_UPSTREAM_TLS_SERVER_NAME, &|v| {
        parse::tls_server_name(v)
    });
    let first = pod.spec.iter().flat_map(|s| s.containers.first()).next();
    let annotated_env = match (ann.get(ANNOTATION_UPSTREAM), first) {
        (Some(v), Some(c)) => match checked_url(v, c.env.as_deref().unwrap_or_default(), &c.name) {
            Ok(entries) => entries,
            Err(e) => {
                let v = parse::redact_url(v);
                problems.push(format!("annotation {ANNOTATION_UPSTREAM}={v:?}: {e}"));
                Vec::new()
            }
        },
        _ => Vec::new(),
    };
    if ann.contains_key(ANNOTATION_UPSTREAM) && ann.contains_key(ANNOTATION_UPSTREAM_SECRET) {
        problems.push(format!(
            "annotations {ANNOTATION_UPSTREAM} and {ANNOTATION_UPSTREAM_SECRET} are mutually exclusive"
        ));
    }
    if !problems.is_empty() {
        return Err(("invalid annotations", problems));
    }

    let get = |key: &str, default: &str| {
        ann.get(key)
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| default.to_owned())
    };
    let url_env = get(ANNOTATION_URL_ENV, &config.url_env);
    let l1_max_bytes = match ann.get(ANNOTATION_L1_MAX_BYTES) {
        Some(v) => parse::positive_size(v).expect("checked above"),
        None => config.l1_max_bytes_value(),
    };
    let memory = match ann.get(ANNOTATION_MEMORY_LIMIT) {
        Some(v) => {
            let floor = l1_max_bytes.saturating_add(32 * MIB);
            if parse::memory_bytes(v).expect("checked above") < floor {
                return Err((
                    "memory limit too small",
                    vec![format!(
                        "annotation {ANNOTATION_MEMORY_LIMIT}={v:?} is below the L1 bound + 32 MiB \
                         ({}), too little for the sidecar to run",
                        memory_mib(floor)
                    )],
                ));
            }
            v.trim().to_owned()
        }
        None => memory_for(l1_max_bytes),
    };

    let mut upstream_env = Vec::new();
    let upstream = if let Some(url) = ann.get(ANNOTATION_UPSTREAM) {
        upstream_env = annotated_env;
        Some(Upstream::Value(url.trim().to_owned()))
    } else if let Some(r) = ann.get(ANNOTATION_UPSTREAM_SECRET) {
        let (name, key) = parse::secret_ref(r).expect("checked above");
        Some(Upstream::From(Box::new(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: name.to_owned(),
                key: key.to_owned(),
                optional: None,
            }),
            ..Default::default()
        })))
    } else {
        let found =
            existing_upstream(pod, &url_env).map_err(|p| ("unusable existing upstream", p))?;
        found.map(|(upstream, entries)| {
            upstream_env = entries;
            upstream
        })
    };

    let bus_key = ann
        .get(ANNOTATION_BUS_KEY_SECRET)
        .or(config.bus_key_secret.as_ref())
        .and_then(|r| parse::secret_ref(r).ok())
        .map(|(name, key)| (name.to_owned(), key.to_owned()));
    if bus_key.is_some()
        && pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .any(|v| v.name == BUS_KEY_VOLUME)
    {
        return Err((
            "volume name taken",
            vec![format!(
                "the pod already has a volume named {BUS_KEY_VOLUME}"
            )],
        ));
    }

    let (mounts, tls_server_name) = upstream_secrets(ann, config, upstream.as_ref())?;
    if let Some(taken) = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .find(|v| mounts.iter().any(|m| m.kind.volume == v.name))
    {
        return Err((
            "volume name taken",
            vec![format!("the pod already has a volume named {}", taken.name)],
        ));
    }

    Ok(Settings {
        mounts,
        tls_server_name,
        bus_key,
        image: get(ANNOTATION_IMAGE, &config.image),
        url_env,
        l1_max_bytes,
        l1_ttl: get(ANNOTATION_L1_TTL, &config.l1_ttl),
        cpu_request: get(ANNOTATION_CPU_REQUEST, &config.cpu_request),
        memory,
        upstream,
        upstream_env,
    })
}

/// The URL as the sidecar will see it is one it starts with, and not its own address; the
/// env entries its `$(VAR)` references need (from `earlier`, entries of `container`).
fn checked_url(v: &str, earlier: &[EnvVar], container: &str) -> Result<Vec<EnvVar>, String> {
    let resolved = refs::resolve(v, earlier, container)?;
    parse::upstream_url(&resolved.expanded)?;
    if parse::is_sidecar_address(&resolved.expanded) {
        return Err("that is the sidecar's own address".to_owned());
    }
    Ok(resolved.entries)
}

/// The app containers' existing `<url_env>`: it becomes the upstream, with the env entries
/// its `$(VAR)` references need. Containers that disagree make the upstream ambiguous (a
/// problem); none at all is `None`.
fn existing_upstream(
    pod: &Pod,
    url_env: &str,
) -> Result<Option<(Upstream, Vec<EnvVar>)>, Vec<String>> {
    // (container name, the entries before the URL's, the URL's entry)
    let mut found: Vec<(&str, &[EnvVar], &EnvVar)> = Vec::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let env = c.env.as_deref().unwrap_or_default();
        for (j, e) in env.iter().enumerate().filter(|(_, e)| e.name == url_env) {
            if e.value.as_deref().is_some_and(|v| !v.is_empty()) || e.value_from.is_some() {
                found.push((&c.name, &env[..j], e));
            }
        }
    }
    let Some(&(container, earlier, first)) = found.first() else {
        return Ok(None);
    };
    if found
        .iter()
        .any(|(_, _, e)| e.value != first.value || e.value_from != first.value_from)
    {
        return Err(vec![format!(
            "the app containers set {url_env} to different values; annotate the pod with {ANNOTATION_UPSTREAM}"
        )]);
    }
    if let Some(v) = &first.value_from {
        return Ok(Some((Upstream::From(Box::new(v.clone())), Vec::new())));
    }
    let v = first.value.clone().unwrap_or_default();
    match checked_url(&v, earlier, container) {
        Ok(entries) => Ok(Some((Upstream::Value(v), entries))),
        Err(e) if e.contains("own address") => Err(vec![format!(
            "existing {url_env}={:?} already points at the sidecar's address; annotate the pod with {ANNOTATION_UPSTREAM}",
            parse::redact_url(&v)
        )]),
        Err(e) => Err(vec![format!(
            "existing {url_env}={:?}: {e}",
            parse::redact_url(&v)
        )]),
    }
}

/// The Secrets to mount and the TLS server name: each annotation, else the injector's config.
/// An annotation that does not fit the upstream (TLS for a `redis://` URL, Sentinel
/// credentials for a URL that is not a Sentinel one) is a problem, as the sidecar would
/// refuse to start; a config value applies to the pods whose upstream it fits, and to those
/// whose URL's scheme the injector cannot read (a Secret, a `$(VAR)`).
fn upstream_secrets(
    ann: &BTreeMap<String, String>,
    config: &InjectorConfig,
    upstream: Option<&Upstream>,
) -> Result<(Vec<SecretMount>, Option<String>), Refusal> {
    let scheme = match upstream {
        Some(Upstream::Value(url)) => parse::scheme(url),
        _ => None,
    };
    let mut problems = Vec::new();
    // Whether a setting for upstreams of this kind fits; an annotation that does not is a
    // problem.
    let mut fits = |annotation: &str, needs: Needs| {
        let fit = match (needs, scheme.as_deref()) {
            (_, None) | (Needs::Any, _) => true,
            (Needs::Tls, Some(s)) => parse::is_tls_scheme(s),
            (Needs::Sentinel, Some(s)) => parse::is_sentinel_scheme(s),
        };
        if !fit && ann.contains_key(annotation) {
            let what = match needs {
                Needs::Sentinel => {
                    "a Sentinel one (use a redis+sentinel:// or rediss+sentinel:// URL)"
                }
                _ => "a TLS one (use a rediss:// or rediss+sentinel:// URL)",
            };
            problems.push(format!(
                "annotation {annotation}: the upstream is not {what}"
            ));
        }
        fit
    };
    let mut mounts = Vec::new();
    for kind in secrets::KINDS {
        let fit = fits(kind.annotation, kind.needs);
        let value = ann
            .get(kind.annotation)
            .or(config.secret(kind).filter(|_| fit));
        if let Some(m) = value.and_then(|v| secrets::parse(kind, v).ok()) {
            mounts.push(m);
        }
    }
    let fit = fits(ANNOTATION_UPSTREAM_TLS_SERVER_NAME, Needs::Tls);
    let tls_server_name = ann
        .get(ANNOTATION_UPSTREAM_TLS_SERVER_NAME)
        .or(config.upstream_tls_server_name.as_ref().filter(|_| fit))
        .map(|v| v.trim().to_owned());
    if problems.is_empty() {
        Ok((mounts, tls_server_name))
    } else {
        Err(("annotations do not fit the upstream", problems))
    }
}
