//! The chart's values for upstreams over TLS, with credentials from Secrets, or behind
//! Sentinel: a values file using all of them renders valid objects and reaches the
//! injector's config.yaml under the injector's keys (injector/src/config.rs); values the
//! injector would refuse at start are refused by `helm template` (values.schema.json), and
//! values.yaml documents the Sentinel URL form.

use super::*;

/// Every upstream Secret value set, as an operator's values file would.
const VALUES: &str = "\
sidecar:
  upstreamTlsSecret: redis-client-tls
  upstreamTlsServerName: redis.shop.svc.cluster.local
  upstreamCredentialsSecret: redis-acl/username,password
  sentinelCredentialsSecret: redis-sentinel/password
";

/// `helm template` with a values file (`-f`); stdout only.
fn render_values(values: &str) -> String {
    let dir = TempDir::new("helm-values");
    let file = dir.path().join("values.yaml");
    fs::write(&file, values).expect("write the values file");
    helm(&[
        "template",
        RELEASE,
        CHART,
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        "-f",
        file.to_str().unwrap(),
    ])
}

fn injector_config(stream: &str) -> String {
    let docs = split_docs(stream);
    let config = docs
        .iter()
        .find(|d| d.kind == "ConfigMap")
        .expect("the injector's ConfigMap");
    let value: serde_yaml::Value = serde_yaml::from_str(&config.text).expect("ConfigMap YAML");
    value["data"]["config.yaml"]
        .as_str()
        .expect("data.config.yaml")
        .to_owned()
}

#[test]
fn upstream_secret_values_reach_the_injector_config() {
    let stream = render_values(VALUES);
    validate_docs(&split_docs(&stream), "helm template (upstream secrets)");
    let config: serde_yaml::Value =
        serde_yaml::from_str(&injector_config(&stream)).expect("config.yaml is YAML");
    for (key, want) in [
        ("upstreamTlsSecret", "redis-client-tls"),
        ("upstreamTlsServerName", "redis.shop.svc.cluster.local"),
        ("upstreamCredentialsSecret", "redis-acl/username,password"),
        ("sentinelCredentialsSecret", "redis-sentinel/password"),
    ] {
        assert_eq!(config[key].as_str(), Some(want), "{key} in {config:?}");
    }
    let default = injector_config(&render(""));
    for key in [
        "upstreamTlsSecret",
        "upstreamTlsServerName",
        "upstreamCredentialsSecret",
        "sentinelCredentialsSecret",
    ] {
        assert!(!default.contains(key), "{key} unset by default: {default}");
    }
}

#[test]
fn upstream_secret_values_follow_the_injectors_grammar() {
    for (set, key) in [
        ("sidecar.upstreamTlsSecret=Redis_TLS", "upstreamTlsSecret"),
        (
            "sidecar.upstreamTlsSecret=redis-tls/tls.crt",
            "upstreamTlsSecret",
        ),
        (
            "sidecar.upstreamTlsSecret=redis-tls/ca.pem",
            "upstreamTlsSecret",
        ),
        ("sidecar.upstreamTlsServerName=a b", "upstreamTlsServerName"),
        (
            "sidecar.upstreamCredentialsSecret=redis-acl/username",
            "upstreamCredentialsSecret",
        ),
        (
            "sidecar.sentinelCredentialsSecret=redis-sentinel/pass",
            "sentinelCredentialsSecret",
        ),
    ] {
        render_refused(&["--set", set], key, "values.schema.json");
    }
    for (set, rendered) in [
        (
            "sidecar.upstreamTlsSecret=redis-ca/ca.crt",
            "upstreamTlsSecret: \"redis-ca/ca.crt\"",
        ),
        (
            "sidecar.upstreamTlsSecret=redis-client/tls.crt\\,tls.key",
            "upstreamTlsSecret: \"redis-client/tls.crt,tls.key\"",
        ),
        (
            "sidecar.upstreamCredentialsSecret=redis-pw/password",
            "upstreamCredentialsSecret: \"redis-pw/password\"",
        ),
        (
            "sidecar.sentinelCredentialsSecret=redis-sentinel",
            "sentinelCredentialsSecret: \"redis-sentinel\"",
        ),
    ] {
        let config = injector_config(&render(set));
        assert!(config.contains(rendered), "{set}: {config}");
    }
}

#[test]
fn values_yaml_documents_the_sentinel_and_tls_upstreams() {
    let values = fs::read_to_string(root().join(CHART).join("values.yaml")).unwrap();
    for needle in [
        "redis+sentinel://",
        "rediss+sentinel://",
        "rediss://",
        "subPath",
        "nearcache.io/upstream-tls-secret",
    ] {
        assert!(values.contains(needle), "values.yaml mentions {needle}");
    }
}
