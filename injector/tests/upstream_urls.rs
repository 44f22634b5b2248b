//! One URL grammar for the injector and the sidecar: every URL of the table goes through the
//! sidecar's own configuration (`--upstream`, as `Config::from_parts` reads it) and through
//! the injector's decision, and both must agree with the table: a URL the sidecar refuses
//! (it would exit 64 and, as a native sidecar with a startup probe, keep the app from
//! starting) leaves the pod unchanged with a warning naming the problem.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use nearcache::config::{Config, Flags};
use nearcache_injector::{inject, Decision, InjectorConfig};
use serde_json::json;

/// (URL, whether the sidecar starts with it, a word the refusal names)
const URLS: &[(&str, bool, &str)] = &[
    ("redis://redis:6379", true, ""),
    ("redis://redis.shop.svc.cluster.local:6379/2", true, ""),
    ("redis://:s3cret@redis:6379/0", true, ""),
    ("redis://app:p%40ss@redis", true, ""),
    ("redis://app:a@b/c@redis", true, ""),
    ("redis://[fd00::1]:6379", true, ""),
    ("REDIS://redis/", true, ""),
    // Query parameters clients write: applied (db, password) or ignored (client options).
    ("redis://redis:6379?protocol=3", true, ""),
    ("redis://redis:6379/0?protocol=2&timeout=5s", true, ""),
    ("redis://redis:6379?timeout=5s", true, ""),
    (
        "redis://redis?dial_timeout=3s&pool_size=20&max_retries=2",
        true,
        "",
    ),
    (
        "redis://redis?socket_timeout=0.5&max_connections=10",
        true,
        "",
    ),
    ("redis://redis?db=3", true, ""),
    ("redis://redis/3?db=3", true, ""),
    ("redis://redis?password=s3cret", true, ""),
    ("redis://redis:6379#frag", true, ""),
    ("redis://redis:6379/1#frag", true, ""),
    // Refused by both, naming the problem.
    ("redis://redis?protocol=4", false, "protocol"),
    ("redis://redis?foo=bar", false, "unknown query parameter"),
    ("redis://redis/1?db=2", false, "two dbs"),
    ("redis://redis?db=x", false, "invalid db"),
    ("redis://redis:0", false, "invalid port"),
    ("redis://redis:65536", false, "invalid port"),
    ("redis://redis:http", false, "invalid port"),
    ("redis://redis:", false, "invalid port"),
    ("redis://redis/x", false, "invalid db"),
    ("redis://redis/-1", false, "invalid db"),
    ("redis://redis/99999999999", false, "invalid db"),
    ("redis://[::1:6379", false, "unclosed '['"),
    ("redis://::1]:6379", false, "IPv6"),
    ("redis://redis]:6379", false, "unbalanced"),
    ("redis://[redis]:6379", false, "invalid IPv6"),
    ("redis://:%FF@redis", false, "UTF-8"),
    ("redis://redis?password=%C3", false, "UTF-8"),
    ("redis://re dis:6379", false, "spaces"),
    ("redis://re$dis:6379", false, "invalid host"),
    ("redis://", false, "empty host"),
    // TLS: the sidecar verifies the server against the image's system roots.
    ("rediss://redis:6379", true, ""),
    ("rediss://:pw@redis:6380/1", true, ""),
    ("http://redis:6379", false, "scheme"),
    ("redis:6379", false, "redis://"),
    ("redis://127.0.0.1:6380", false, "sidecar"),
];

fn sidecar_accepts(url: &str) -> Result<(), String> {
    let flags = Flags {
        upstream: Some(url.to_owned()),
        ..Default::default()
    };
    Config::from_parts(&flags, None)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn pod(url: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "shop", "labels": {"nearcache.io/inject": "true"}},
        "spec": {"containers": [{"name": "app", "env": [{"name": "REDIS_URL", "value": url}]}]}
    }))
    .unwrap()
}

#[test]
fn injector_and_sidecar_accept_and_refuse_the_same_urls() {
    for &(url, ok, word) in URLS {
        let sidecar = sidecar_accepts(url);
        // The sidecar's own address is valid to the sidecar (it notices the loop at run time).
        if word != "sidecar" {
            assert_eq!(sidecar.is_ok(), ok, "sidecar on {url}: {sidecar:?}");
        }
        if let Err(e) = &sidecar {
            assert!(e.contains(word), "sidecar on {url}: {e}");
        }
        let decision = inject(&pod(url), &BTreeMap::new(), &InjectorConfig::default()).unwrap();
        match decision {
            Decision::Inject { .. } => assert!(ok, "injector injected {url}"),
            Decision::Skip { reason, warnings } => {
                assert!(!ok, "injector skipped {url}: {reason} {warnings:?}");
                assert!(
                    warnings.iter().any(|w| w.contains(word)),
                    "injector on {url}: {warnings:?}"
                );
            }
        }
    }
}

#[test]
fn a_refused_url_warning_never_shows_the_password() {
    let d = inject(
        &pod("redis://app:hunter2@redis:99999"),
        &BTreeMap::new(),
        &InjectorConfig::default(),
    )
    .unwrap();
    assert!(!d.warnings().is_empty());
    assert!(d.warnings().iter().all(|w| !w.contains("hunter2")), "{d:?}");
}

/// Sentinel upstreams, `redis+sentinel://[user:pass@]host1:26379,host2:26379/mymaster[/db]`
/// (`rediss+sentinel://`: TLS to the sentinels and the primary). The sidecar's grammar
/// (`nearcache::config::url`) does not have this form yet; the injector takes the host list
/// and the master name apart and hands every sentinel to that grammar, so user info, ports,
/// db and query follow the sidecar's rules. (URL, injected, a word the refusal names)
const SENTINEL_URLS: &[(&str, bool, &str)] = &[
    (
        "redis+sentinel://s0:26379,s1:26379,s2:26379/mymaster",
        true,
        "",
    ),
    ("redis+sentinel://s0:26379/mymaster/2", true, ""),
    ("REDIS+SENTINEL://s0/mymaster", true, ""),
    (
        "rediss+sentinel://app:p%40ss@s0:26379,[fd00::1]:26379/mymaster/0",
        true,
        "",
    ),
    ("rediss+sentinel://s0:26379/mymaster?protocol=3", true, ""),
    (
        "redis+sentinel://s0:26379,s1:26379",
        false,
        "no master name",
    ),
    ("redis+sentinel://s0:26379/", false, "no master name"),
    ("redis+sentinel:///mymaster", false, "no sentinel address"),
    (
        "redis+sentinel://s0:26379,,s1:26379/mymaster",
        false,
        "empty sentinel address",
    ),
    (
        "redis+sentinel://s0:26379/mymaster/1/2",
        false,
        "too many path segments",
    ),
    ("redis+sentinel://s0:26379/my master", false, "spaces"),
    (
        "redis+sentinel://s0:26379/my%20master",
        false,
        "invalid master name",
    ),
    ("redis+sentinel://s0:99999/mymaster", false, "invalid port"),
    ("redis+sentinel://s0:26379/mymaster/x", false, "invalid db"),
    (
        "redis+sentinel://s0:26379/mymaster?foo=1",
        false,
        "unknown query parameter",
    ),
    ("redis+sentinel://s$0:26379/mymaster", false, "invalid host"),
    ("sentinel://s0:26379/mymaster", false, "scheme"),
    ("redis+cluster://n0:7000,n1:7000", true, ""),
    ("rediss+cluster://app:pw@n0:7000,n1/0", true, ""),
    ("redis+cluster://n0:7000/2", false, "only db 0"),
    ("redis+cluster://n0:7000,,n1", false, "empty"),
];

#[test]
fn sentinel_urls_are_checked_with_the_sidecars_grammar() {
    for &(url, ok, word) in SENTINEL_URLS {
        let decision = inject(&pod(url), &BTreeMap::new(), &InjectorConfig::default()).unwrap();
        match decision {
            Decision::Inject { .. } => assert!(ok, "injector injected {url}"),
            Decision::Skip { reason, warnings } => {
                assert!(!ok, "injector skipped {url}: {reason} {warnings:?}");
                assert!(
                    warnings.iter().any(|w| w.contains(word)),
                    "injector on {url}: {warnings:?}"
                );
            }
        }
    }
    let d = inject(
        &pod("redis+sentinel://app:hunter2@s0:26379/mymaster/x"),
        &BTreeMap::new(),
        &InjectorConfig::default(),
    )
    .unwrap();
    assert!(!d.warnings().is_empty());
    assert!(d.warnings().iter().all(|w| !w.contains("hunter2")), "{d:?}");
}
