//! Unit tests of the decision that need a pod built in code (the golden cases are in
//! tests/golden.rs).

use super::*;

fn pod(annotations: &[(&str, &str)], url: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {
            "name": "p", "namespace": "shop",
            "labels": {LABEL_INJECT: "true"},
            "annotations": annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        },
        "spec": {"containers": [{"name": "app", "env": [{"name": "REDIS_URL", "value": url}]}]}
    }))
    .unwrap()
}

fn reason(p: &Pod) -> String {
    match inject(p, &BTreeMap::new(), &InjectorConfig::default()).unwrap() {
        Decision::Skip { reason, .. } => reason,
        Decision::Inject { .. } => "inject".to_owned(),
    }
}

#[test]
fn an_upstream_that_is_the_sidecar_itself_is_refused() {
    assert_eq!(
        reason(&pod(&[], "redis://127.0.0.1:6380")),
        "unusable existing upstream"
    );
    assert_eq!(
        reason(&pod(
            &[(ANNOTATION_UPSTREAM, "redis://localhost:6380")],
            "x"
        )),
        "invalid annotations"
    );
    assert_eq!(reason(&pod(&[], "redis://redis:6379")), "inject");
}

#[test]
fn upstream_secret_volumes_never_replace_the_pods_own() {
    let mut p = pod(
        &[(ANNOTATION_UPSTREAM_CREDENTIALS_SECRET, "redis-acl/password")],
        "redis://redis:6379",
    );
    assert_eq!(reason(&p), "inject");
    p.spec.as_mut().unwrap().volumes = Some(vec![serde_json::from_value(
        json!({"name": "nearcache-upstream-credentials", "emptyDir": {}}),
    )
    .unwrap()]);
    assert_eq!(reason(&p), "volume name taken");
}

#[test]
fn config_secrets_apply_where_they_fit_the_upstream() {
    let config = InjectorConfig::from_yaml(
        "upstreamTlsSecret: redis-tls\nupstreamTlsServerName: redis.shop\nupstreamCredentialsSecret: redis-acl\nsentinelCredentialsSecret: redis-sentinel/password\n",
    )
    .unwrap();
    let env_names = |url: &str| {
        let Decision::Inject { patch, .. } =
            inject(&pod(&[], url), &BTreeMap::new(), &config).unwrap()
        else {
            panic!("{url}: not injected");
        };
        let text = serde_json::to_string(&patch).unwrap();
        [
            "NEARCACHE_UPSTREAM_TLS_CA",
            "NEARCACHE_UPSTREAM_TLS_SERVER_NAME",
            "NEARCACHE_UPSTREAM_PASSWORD_FILE",
            "NEARCACHE_SENTINEL_PASSWORD_FILE",
        ]
        .into_iter()
        .filter(|n| text.contains(n))
        .collect::<Vec<_>>()
    };
    assert_eq!(
        env_names("redis://redis:6379"),
        ["NEARCACHE_UPSTREAM_PASSWORD_FILE"]
    );
    assert_eq!(env_names("rediss://redis:6379").len(), 3);
    assert_eq!(env_names("rediss+sentinel://s0:26379/m").len(), 4);
    assert_eq!(
        env_names("redis+sentinel://s0:26379/m"),
        [
            "NEARCACHE_UPSTREAM_PASSWORD_FILE",
            "NEARCACHE_SENTINEL_PASSWORD_FILE"
        ]
    );
}

#[test]
fn memory_and_grace() {
    assert_eq!(memory_for(64 << 20), "128Mi");
    assert_eq!(memory_for(1), "33Mi");
    assert_eq!(shutdown_grace(None), "25s");
    assert_eq!(shutdown_grace(Some(3)), "1s");
    assert_eq!(shutdown_grace(Some(0)), "1s");
}
