//! The optional YAML injector configuration (`--config`).

use serde::Deserialize;

use crate::parse;
use crate::secrets::{self, SecretKind};

/// Injector-wide defaults; pod annotations override them per pod.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct InjectorConfig {
    pub image: String,
    pub image_pull_policy: Option<String>,
    pub url_env: String,
    pub l1_max_bytes: String,
    pub l1_ttl: String,
    pub cpu_request: String,
    pub system_namespaces: Vec<String>,
    /// `<secret>/<key>`: the invalidation bus key every injected sidecar mounts (see the
    /// sidecar's `--bus-key-file`); `None`: the bus is open unless a pod names one.
    pub bus_key_secret: Option<String>,
    /// `<secret>[/<key>,...]`: the upstream's TLS material for every injected sidecar whose
    /// upstream is a TLS one (or unreadable here); the annotation
    /// `nearcache.io/upstream-tls-secret` overrides it (see [`crate::secrets`]).
    pub upstream_tls_secret: Option<String>,
    /// `--upstream-tls-server-name` for the same sidecars.
    pub upstream_tls_server_name: Option<String>,
    /// `<secret>[/<key>,...]`: the upstream's `username` and `password` files.
    pub upstream_credentials_secret: Option<String>,
    /// `<secret>[/<key>,...]`: the sentinels' `username` and `password` files, for every
    /// sidecar whose upstream is a Sentinel one (or unreadable here).
    pub sentinel_credentials_secret: Option<String>,
    /// Whether the sidecar's startup probe (which holds the app containers back) waits for
    /// the upstream: `false` (the default), the app starts once the sidecar listens, Redis
    /// down or not, and its commands get `-ERR ... upstream unavailable` until Redis is
    /// back; `true`, the app starts only once the sidecar serves, and a sidecar whose Redis
    /// stays unreachable for 30 s is restarted. Readiness always needs the upstream.
    pub startup_requires_upstream: bool,
}

impl Default for InjectorConfig {
    fn default() -> Self {
        InjectorConfig {
            image: "ghcr.io/nearcache/nearcache:0.1.0".to_owned(),
            image_pull_policy: None,
            url_env: "REDIS_URL".to_owned(),
            l1_max_bytes: "64MiB".to_owned(),
            // The sidecar's own default.
            l1_ttl: nearcache::config::spec::l1_ttl.default.shown().to_owned(),
            cpu_request: "50m".to_owned(),
            system_namespaces: ["kube-system", "kube-public", "kube-node-lease"]
                .map(str::to_owned)
                .to_vec(),
            bus_key_secret: None,
            upstream_tls_secret: None,
            upstream_tls_server_name: None,
            upstream_credentials_secret: None,
            sentinel_credentials_secret: None,
            startup_requires_upstream: false,
        }
    }
}

impl InjectorConfig {
    /// Parses and validates YAML (an empty document is the defaults).
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let config: InjectorConfig = if text.trim().is_empty() {
            InjectorConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| e.to_string())?
        };
        config.validate()?;
        Ok(config)
    }

    /// Every value must be one the annotations would also accept.
    pub fn validate(&self) -> Result<(), String> {
        let field = |name: &str, r: Result<(), String>| r.map_err(|e| format!("{name}: {e}"));
        field("image", parse::image(&self.image))?;
        if let Some(p) = &self.image_pull_policy {
            if !matches!(p.as_str(), "Always" | "IfNotPresent" | "Never") {
                return Err(format!(
                    "imagePullPolicy: {p:?} is not Always, IfNotPresent or Never"
                ));
            }
        }
        field("urlEnv", parse::env_name(&self.url_env))?;
        field(
            "l1MaxBytes",
            parse::positive_size(&self.l1_max_bytes).map(|_| ()),
        )?;
        field("l1Ttl", parse::duration_ms(&self.l1_ttl).map(|_| ()))?;
        field("cpuRequest", parse::cpu_quantity(&self.cpu_request))?;
        if let Some(r) = &self.bus_key_secret {
            field("busKeySecret", parse::secret_ref(r).map(|_| ()))?;
        }
        for kind in secrets::KINDS {
            if let Some(v) = self.secret(kind) {
                field(kind.config_key, secrets::parse(kind, v).map(|_| ()))?;
            }
        }
        if let Some(v) = &self.upstream_tls_server_name {
            field("upstreamTlsServerName", parse::tls_server_name(v))?;
        }
        Ok(())
    }

    /// The config's Secret of this kind.
    pub fn secret(&self, kind: &SecretKind) -> Option<&String> {
        if std::ptr::eq(kind, &secrets::UPSTREAM_TLS) {
            self.upstream_tls_secret.as_ref()
        } else if std::ptr::eq(kind, &secrets::UPSTREAM_CREDENTIALS) {
            self.upstream_credentials_secret.as_ref()
        } else {
            self.sentinel_credentials_secret.as_ref()
        }
    }

    /// `l1MaxBytes` in bytes (validated at load).
    pub fn l1_max_bytes_value(&self) -> u64 {
        parse::positive_size(&self.l1_max_bytes).unwrap_or(64 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keys_are_camel_case_and_checked() {
        let c = InjectorConfig::from_yaml(
            "image: reg/nc:1\nimagePullPolicy: IfNotPresent\nurlEnv: CACHE_URL\nl1MaxBytes: 128MiB\nl1Ttl: 5m\ncpuRequest: 100m\nsystemNamespaces: [infra]\n",
        )
        .unwrap();
        assert_eq!(c.url_env, "CACHE_URL");
        assert_eq!(c.l1_max_bytes_value(), 128 << 20);
        assert_eq!(c.system_namespaces, vec!["infra"]);
        assert_eq!(
            InjectorConfig::from_yaml("").unwrap(),
            InjectorConfig::default()
        );
        assert!(InjectorConfig::from_yaml("l1MaxBytes: lots\n").is_err());
        assert!(InjectorConfig::from_yaml("imagePullPolicy: Sometimes\n").is_err());
        assert!(InjectorConfig::from_yaml("unknownKey: 1\n").is_err());
        let keyed = InjectorConfig::from_yaml("busKeySecret: nearcache-bus/key\n").unwrap();
        assert_eq!(keyed.bus_key_secret.as_deref(), Some("nearcache-bus/key"));
        assert!(InjectorConfig::from_yaml("busKeySecret: no-key-named\n").is_err());
        assert!(!InjectorConfig::default().startup_requires_upstream);
        let strict = InjectorConfig::from_yaml("startupRequiresUpstream: true\n").unwrap();
        assert!(strict.startup_requires_upstream);
        assert!(InjectorConfig::from_yaml("startupRequiresUpstream: maybe\n").is_err());
        let secrets = InjectorConfig::from_yaml(
            "upstreamTlsSecret: redis-tls\nupstreamTlsServerName: redis.shop\nupstreamCredentialsSecret: redis-acl/password\nsentinelCredentialsSecret: redis-sentinel\n",
        )
        .unwrap();
        assert_eq!(secrets.upstream_tls_secret.as_deref(), Some("redis-tls"));
        for bad in [
            "upstreamTlsSecret: Redis\n",
            "upstreamTlsSecret: t/tls.crt\n",
            "upstreamTlsServerName: a b\n",
            "upstreamCredentialsSecret: c/username\n",
            "sentinelCredentialsSecret: s/pass\n",
        ] {
            let e = InjectorConfig::from_yaml(bad).unwrap_err();
            assert!(e.starts_with(bad.split(':').next().unwrap()), "{bad}: {e}");
        }
    }
}
