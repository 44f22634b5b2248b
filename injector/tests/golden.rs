//! Golden tests of the pure decision: `golden/<case>.yaml` (input pod) → `inject` → the
//! patch applied with `json-patch` → `golden/<case>.injected.yaml` (full pod, preceded by
//! comments with the decision and warnings). `UPDATE_GOLDEN=1` rewrites the outputs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Pod;
use nearcache_injector::{inject, Decision, InjectorConfig};
use serde_json::Value;

/// (case, namespace labelled `nearcache.io/injection: enabled`)
const CASES: &[(&str, bool)] = &[
    ("no-init-containers", false),
    ("existing-redis-url", false),
    ("existing-init-containers", false),
    ("opted-out", true),
    ("already-injected", false),
    ("host-network", false),
    ("secret-upstream", false),
    ("namespace-opt-in", true),
    ("system-namespace", true),
    ("invalid-annotation", false),
    ("custom-url-env", false),
    ("no-upstream", false),
    ("url-from-configmap", false),
    ("conflicting-url-env", false),
    ("bus-key-secret", false),
    ("env-reference", false),
    ("env-reference-envfrom", false),
    ("container-named-nearcache", false),
    ("port-conflict", false),
    ("memory-limit-too-small", false),
    ("refused-url", false),
    ("upstream-tls-secret", false),
    ("upstream-tls-ca-only", false),
    ("upstream-credentials-secret", false),
    ("sentinel-upstream", false),
    ("upstream-secrets-conflict", false),
    ("upstream-secrets-invalid", false),
];

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn ns_labels(enabled: bool) -> BTreeMap<String, String> {
    if enabled {
        BTreeMap::from([("nearcache.io/injection".to_owned(), "enabled".to_owned())])
    } else {
        BTreeMap::new()
    }
}

fn load(case: &str) -> Value {
    let path = golden_dir().join(format!("{case}.yaml"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
}

/// The rendered golden output and the decision, for one case.
fn render(case: &str, ns_enabled: bool, config: &InjectorConfig) -> (String, Decision) {
    let input = load(case);
    let pod: Pod = serde_json::from_value(input.clone()).expect("input is a Pod");
    let decision = inject(&pod, &ns_labels(ns_enabled), config).expect("inject");
    let mut out = input.clone();
    let mut header = String::new();
    match &decision {
        Decision::Skip { reason, .. } => header.push_str(&format!("# decision: skip ({reason})\n")),
        Decision::Inject { patch, .. } => {
            header.push_str("# decision: inject\n");
            json_patch::patch(&mut out, patch).expect("the patch applies to the input pod");
        }
    }
    for w in decision.warnings() {
        header.push_str(&format!("# warning: {w}\n"));
    }
    let yaml = serde_yaml::to_string(&out).expect("yaml");
    (format!("{header}{yaml}"), decision)
}

#[test]
fn golden_cases() {
    let config = InjectorConfig::default();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for &(case, ns) in CASES {
        let (rendered, _) = render(case, ns, &config);
        let path = golden_dir().join(format!("{case}.injected.yaml"));
        if update {
            std::fs::write(&path, &rendered).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == rendered => {}
            Ok(expected) => failures.push(format!(
                "{case}: output differs from {path:?}\n--- expected\n{expected}\n--- got\n{rendered}"
            )),
            Err(e) => failures.push(format!("{case}: {path:?}: {e} (run with UPDATE_GOLDEN=1)")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn expected_decisions() {
    let config = InjectorConfig::default();
    for &(case, ns) in CASES {
        let (_, decision) = render(case, ns, &config);
        let injected = matches!(decision, Decision::Inject { .. });
        let expect_inject = matches!(
            case,
            "no-init-containers"
                | "existing-redis-url"
                | "existing-init-containers"
                | "secret-upstream"
                | "namespace-opt-in"
                | "custom-url-env"
                | "url-from-configmap"
                | "bus-key-secret"
                | "env-reference"
                | "upstream-tls-secret"
                | "upstream-tls-ca-only"
                | "upstream-credentials-secret"
                | "sentinel-upstream"
        );
        assert_eq!(injected, expect_inject, "{case}: {decision:?}");
        let warns = !decision.warnings().is_empty();
        let expect_warn = matches!(
            case,
            "host-network"
                | "system-namespace"
                | "invalid-annotation"
                | "no-upstream"
                | "conflicting-url-env"
                | "env-reference-envfrom"
                | "container-named-nearcache"
                | "port-conflict"
                | "memory-limit-too-small"
                | "refused-url"
                | "upstream-secrets-conflict"
                | "upstream-secrets-invalid"
        );
        assert_eq!(warns, expect_warn, "{case}: {decision:?}");
    }
}

/// Injected pods are valid Pods, have exactly one sidecar first, every app container
/// points at it, and a second admission (reinvocation) leaves them alone.
#[test]
fn injected_pods_are_consistent_and_reinvocation_safe() {
    let config = InjectorConfig::default();
    for &(case, ns) in CASES {
        let input = load(case);
        let pod: Pod = serde_json::from_value(input.clone()).unwrap();
        let Decision::Inject { patch, .. } = inject(&pod, &ns_labels(ns), &config).unwrap() else {
            continue;
        };
        let mut out = input.clone();
        json_patch::patch(&mut out, &patch).unwrap();
        let injected: Pod = serde_json::from_value(out).expect("patched pod is a Pod");
        let spec = injected.spec.as_ref().unwrap();
        let inits = spec.init_containers.as_ref().unwrap();
        assert_eq!(inits[0].name, "nearcache", "{case}");
        assert_eq!(inits[0].restart_policy.as_deref(), Some("Always"));
        assert_eq!(inits.iter().filter(|c| c.name == "nearcache").count(), 1);
        let before = pod
            .spec
            .as_ref()
            .unwrap()
            .init_containers
            .clone()
            .unwrap_or_default();
        assert_eq!(
            &inits[1..],
            &before[..],
            "{case}: existing init containers shifted"
        );
        let url_env = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("nearcache.io/url-env"))
            .cloned()
            .unwrap_or_else(|| "REDIS_URL".to_owned());
        for c in &spec.containers {
            let hits: Vec<_> = c
                .env
                .iter()
                .flatten()
                .filter(|e| e.name == url_env)
                .collect();
            assert_eq!(hits.len(), 1, "{case}/{}", c.name);
            assert_eq!(hits[0].value.as_deref(), Some("redis://127.0.0.1:6380"));
            assert!(hits[0].value_from.is_none());
        }
        assert_eq!(
            injected.metadata.annotations.as_ref().unwrap()["nearcache.io/status"],
            "injected"
        );
        let again = inject(&injected, &ns_labels(ns), &config).unwrap();
        assert!(
            matches!(&again, Decision::Skip { reason, .. } if reason == "already injected"),
            "{case}: {again:?}"
        );
    }
}

#[test]
fn config_changes_defaults() {
    let config = InjectorConfig::from_yaml(
        "image: mirror.example/nearcache:9\nimagePullPolicy: IfNotPresent\nurlEnv: CACHE_URL\nl1MaxBytes: 1GiB\nl1Ttl: 10s\ncpuRequest: 250m\nsystemNamespaces: [shop]\n",
    )
    .unwrap();
    let pod: Pod = serde_json::from_value(load("no-init-containers")).unwrap();
    assert!(matches!(
        inject(&pod, &BTreeMap::new(), &config).unwrap(),
        Decision::Skip { reason, .. } if reason == "system namespace"
    ));
    let config = InjectorConfig {
        system_namespaces: vec![],
        ..config
    };
    let Decision::Inject { patch, .. } = inject(&pod, &BTreeMap::new(), &config).unwrap() else {
        panic!("not injected");
    };
    let text = serde_json::to_string(&patch).unwrap();
    for needle in [
        "mirror.example/nearcache:9",
        "\"imagePullPolicy\":\"IfNotPresent\"",
        "\"name\":\"CACHE_URL\"",
        "\"value\":\"1073741824\"",
        "\"value\":\"10s\"",
        "\"cpu\":\"250m\"",
        "\"memory\":\"1568Mi\"",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
}
