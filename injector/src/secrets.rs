//! Secrets the sidecar reads as files: the upstream's TLS material (`ca.crt`, `tls.crt`,
//! `tls.key`), the upstream's credentials and the sentinels' (`username`, `password`).
//!
//! Each is a Secret volume mounted read-only as a directory, never with `subPath`: the
//! kubelet updates a directory mount in place when the Secret changes (the atomic `..data`
//! symlink swap), while a `subPath` mount keeps the file it first saw forever, so a rotated
//! certificate or password would never reach the sidecar, which re-reads these files when
//! they change. Only the keys named are projected (`items`), so a Secret lacking one fails
//! the pod's volume set-up with an event naming the key, instead of a sidecar that cannot
//! start.
//!
//! The injector never reads the Secret (it has no access to Secrets): which keys it holds
//! is written in the annotation, `<secret>` for the standard layout or `<secret>/<key>,...`.

use k8s_openapi::api::core::v1::{EnvVar, VolumeMount};
use nearcache::config::spec;
use serde_json::{json, Value};

/// The upstreams a kind of Secret is for (the sidecar refuses it with any other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Every upstream.
    Any,
    /// `rediss://`, `rediss+sentinel://`.
    Tls,
    /// `redis+sentinel://`, `rediss+sentinel://`.
    Sentinel,
}

/// One kind of mounted Secret: where it goes and which env var points at each key.
#[derive(Debug)]
pub struct SecretKind {
    /// The annotation that names it per pod.
    pub annotation: &'static str,
    /// The injector config key that names it for every pod.
    pub config_key: &'static str,
    /// The pod volume's name.
    pub volume: &'static str,
    /// The directory the sidecar mounts it at.
    pub dir: &'static str,
    /// Every key this kind knows, with the sidecar env var set to its file.
    pub keys: &'static [(&'static str, &'static str)],
    /// The keys taken when the annotation names the Secret alone (the standard layout).
    pub default_keys: &'static [&'static str],
    /// Keys that must be given together.
    pub together: &'static [&'static str],
    /// A key that must be given.
    pub required: Option<&'static str>,
    /// The upstreams it is for.
    pub needs: Needs,
}

/// The sidecar's `--upstream-username-file` (env), added to the sidecar alongside the
/// injector; written out here until the sidecar's option table has the row.
pub const ENV_UPSTREAM_USERNAME_FILE: &str = "NEARCACHE_UPSTREAM_USERNAME_FILE";
/// The sidecar's `--upstream-password-file` (env); see [`ENV_UPSTREAM_USERNAME_FILE`].
pub const ENV_UPSTREAM_PASSWORD_FILE: &str = "NEARCACHE_UPSTREAM_PASSWORD_FILE";
/// The sidecar's `--sentinel-username-file` (env); see [`ENV_UPSTREAM_USERNAME_FILE`].
pub const ENV_SENTINEL_USERNAME_FILE: &str = "NEARCACHE_SENTINEL_USERNAME_FILE";
/// The sidecar's `--sentinel-password-file` (env); see [`ENV_UPSTREAM_USERNAME_FILE`].
pub const ENV_SENTINEL_PASSWORD_FILE: &str = "NEARCACHE_SENTINEL_PASSWORD_FILE";

/// TLS to the upstream: a `kubernetes.io/tls` Secret with `ca.crt` (cert-manager's
/// layout); `<secret>/ca.crt` for a CA alone (no client certificate).
pub static UPSTREAM_TLS: SecretKind = SecretKind {
    annotation: crate::ANNOTATION_UPSTREAM_TLS_SECRET,
    config_key: "upstreamTlsSecret",
    volume: "nearcache-upstream-tls",
    dir: "/etc/nearcache/upstream-tls",
    keys: &[
        ("ca.crt", spec::upstream_tls_ca.env),
        ("tls.crt", spec::upstream_tls_cert.env),
        ("tls.key", spec::upstream_tls_key.env),
    ],
    default_keys: &["ca.crt", "tls.crt", "tls.key"],
    together: &["tls.crt", "tls.key"],
    required: None,
    needs: Needs::Tls,
};

/// The upstream's ACL user and password: a `kubernetes.io/basic-auth` Secret;
/// `<secret>/password` for a password alone (the URL's user, or `default`).
pub static UPSTREAM_CREDENTIALS: SecretKind = SecretKind {
    annotation: crate::ANNOTATION_UPSTREAM_CREDENTIALS_SECRET,
    config_key: "upstreamCredentialsSecret",
    volume: "nearcache-upstream-credentials",
    dir: "/etc/nearcache/upstream-credentials",
    keys: &[
        ("username", ENV_UPSTREAM_USERNAME_FILE),
        ("password", ENV_UPSTREAM_PASSWORD_FILE),
    ],
    default_keys: &["username", "password"],
    together: &[],
    required: Some("password"),
    needs: Needs::Any,
};

/// The sentinels' user and password, as [`UPSTREAM_CREDENTIALS`].
pub static SENTINEL_CREDENTIALS: SecretKind = SecretKind {
    annotation: crate::ANNOTATION_SENTINEL_CREDENTIALS_SECRET,
    config_key: "sentinelCredentialsSecret",
    volume: "nearcache-sentinel-credentials",
    dir: "/etc/nearcache/sentinel-credentials",
    keys: &[
        ("username", ENV_SENTINEL_USERNAME_FILE),
        ("password", ENV_SENTINEL_PASSWORD_FILE),
    ],
    default_keys: &["username", "password"],
    together: &[],
    required: Some("password"),
    needs: Needs::Sentinel,
};

/// Every kind, in the order their volumes and env entries are added.
pub static KINDS: [&SecretKind; 3] = [&UPSTREAM_TLS, &UPSTREAM_CREDENTIALS, &SENTINEL_CREDENTIALS];

/// A Secret of one kind, to mount.
#[derive(Debug, Clone)]
pub struct SecretMount {
    pub kind: &'static SecretKind,
    /// The Secret's name.
    pub secret: String,
    /// The keys projected, in the kind's order.
    pub keys: Vec<&'static str>,
}

/// `<secret>` (the kind's standard layout) or `<secret>/<key>,<key>...`, checked.
pub fn parse(kind: &'static SecretKind, value: &str) -> Result<SecretMount, String> {
    let value = value.trim();
    let (name, list) = match value.split_once('/') {
        Some((name, list)) => (name, Some(list)),
        None => (value, None),
    };
    crate::parse::secret_name(name)?;
    let known: Vec<&str> = kind.keys.iter().map(|(k, _)| *k).collect();
    let wanted: Vec<&str> = match list {
        None => kind.default_keys.to_vec(),
        Some(list) => list.split(',').map(str::trim).collect(),
    };
    for key in &wanted {
        if !known.contains(key) {
            return Err(format!(
                "{key:?} is not one of the keys {} (expected <secret> or <secret>/<key>,...)",
                known.join(", ")
            ));
        }
    }
    if let Some(dup) = wanted
        .iter()
        .enumerate()
        .find(|(i, k)| wanted[..*i].contains(k))
    {
        return Err(format!("key {:?} is named twice", dup.1));
    }
    let given = kind.together.iter().filter(|k| wanted.contains(k)).count();
    if given != 0 && given != kind.together.len() {
        return Err(format!(
            "keys {} go together (a client certificate needs its key)",
            kind.together.join(" and ")
        ));
    }
    if let Some(r) = kind.required.filter(|r| !wanted.contains(r)) {
        return Err(format!("key {r:?} is required"));
    }
    let keys = known.into_iter().filter(|k| wanted.contains(k)).collect();
    Ok(SecretMount {
        kind,
        secret: name.to_owned(),
        keys,
    })
}

impl SecretMount {
    /// The pod volume: the Secret's keys as files of the same names.
    pub fn volume(&self) -> Value {
        let items: Vec<Value> = self
            .keys
            .iter()
            .map(|k| json!({"key": k, "path": k}))
            .collect();
        json!({
            "name": self.kind.volume,
            "secret": {"secretName": self.secret, "items": items},
        })
    }

    /// The sidecar's mount: the whole directory, read-only, never `subPath` (see the module
    /// documentation: a `subPath` mount never sees a rotated Secret).
    pub fn mount(&self) -> VolumeMount {
        VolumeMount {
            name: self.kind.volume.to_owned(),
            mount_path: self.kind.dir.to_owned(),
            read_only: Some(true),
            ..Default::default()
        }
    }

    /// The sidecar env entries pointing at the files.
    pub fn env(&self) -> Vec<EnvVar> {
        self.kind
            .keys
            .iter()
            .filter(|(k, _)| self.keys.contains(k))
            .map(|(k, env)| EnvVar {
                name: (*env).to_owned(),
                value: Some(format!("{}/{k}", self.kind.dir)),
                value_from: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_layouts_and_key_lists() {
        let tls = parse(&UPSTREAM_TLS, "redis-tls").unwrap();
        assert_eq!(tls.keys, ["ca.crt", "tls.crt", "tls.key"]);
        let env: Vec<_> = tls.env().into_iter().map(|e| e.name).collect();
        assert_eq!(
            env,
            [
                "NEARCACHE_UPSTREAM_TLS_CA",
                "NEARCACHE_UPSTREAM_TLS_CERT",
                "NEARCACHE_UPSTREAM_TLS_KEY"
            ]
        );
        let ca = parse(&UPSTREAM_TLS, " redis-ca/ca.crt ").unwrap();
        assert_eq!(ca.keys, ["ca.crt"]);
        assert_eq!(
            ca.env()[0].value.as_deref(),
            Some("/etc/nearcache/upstream-tls/ca.crt")
        );
        let client = parse(&UPSTREAM_TLS, "c/tls.key,tls.crt").unwrap();
        assert_eq!(client.keys, ["tls.crt", "tls.key"]);
        let creds = parse(&UPSTREAM_CREDENTIALS, "redis-acl").unwrap();
        assert_eq!(creds.keys, ["username", "password"]);
        let pw = parse(&SENTINEL_CREDENTIALS, "s/password").unwrap();
        assert_eq!(pw.env()[0].name, "NEARCACHE_SENTINEL_PASSWORD_FILE");
    }

    #[test]
    fn bad_values_are_refused_naming_the_problem() {
        for (kind, value, word) in [
            (&UPSTREAM_TLS, "Redis_TLS", "not a valid Secret name"),
            (&UPSTREAM_TLS, "", "not a valid Secret name"),
            (&UPSTREAM_TLS, "t/ca.pem", "not one of the keys"),
            (&UPSTREAM_TLS, "t/tls.crt", "go together"),
            (&UPSTREAM_TLS, "t/ca.crt,ca.crt", "twice"),
            (&UPSTREAM_TLS, "t/", "not one of the keys"),
            (
                &UPSTREAM_CREDENTIALS,
                "c/username",
                "\"password\" is required",
            ),
            (&SENTINEL_CREDENTIALS, "c/user", "not one of the keys"),
        ] {
            let e = parse(kind, value).unwrap_err();
            assert!(e.contains(word), "{value}: {e}");
        }
    }
}
