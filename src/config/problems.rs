//! Problems between options (each option's own value is checked by its parser): options
//! given for an upstream they do not apply to, secrets given twice, modes that exclude
//! each other.

use super::{Config, TrackingMode};

/// The `--upstream-tls-*` options make sense only for a `rediss://` upstream, and the
/// client certificate needs its key.
pub(super) fn tls_problems(config: &Config, problems: &mut Vec<String>) {
    let given = [
        ("--upstream-tls-ca", config.upstream_tls_ca.is_some()),
        ("--upstream-tls-cert", config.upstream_tls_cert.is_some()),
        ("--upstream-tls-key", config.upstream_tls_key.is_some()),
        (
            "--upstream-tls-server-name",
            config.upstream_tls_server_name.is_some(),
        ),
        ("--upstream-tls-insecure", config.upstream_tls_insecure),
    ];
    if !config.upstream.tls {
        for (flag, _) in given.iter().filter(|(_, set)| *set) {
            problems.push(format!(
                "{flag}: the upstream is not a TLS one (use a rediss:// URL)"
            ));
        }
    }
    if config.upstream_tls_cert.is_some() != config.upstream_tls_key.is_some() {
        problems
            .push("--upstream-tls-cert and --upstream-tls-key: give both or neither".to_owned());
    }
}

/// The `--sentinel-*` credentials make sense only for a `redis+sentinel://` upstream.
pub(super) fn sentinel_problems(config: &Config, problems: &mut Vec<String>) {
    let given = [
        ("--sentinel-username", config.sentinel_username.is_some()),
        ("--sentinel-password", config.sentinel_password.is_some()),
        (
            "--sentinel-username-file",
            config.sentinel_username_file.is_some(),
        ),
        (
            "--sentinel-password-file",
            config.sentinel_password_file.is_some(),
        ),
    ];
    if config.upstream.sentinel.is_none() {
        for (flag, _) in given.iter().filter(|(_, set)| *set) {
            problems.push(format!(
                "{flag}: the upstream is not a Sentinel one (use a redis+sentinel:// URL)"
            ));
        }
    }
}

/// A secret given twice (in the URL or as a value, and as a file), and a user name file
/// without a password to go with it.
pub(super) fn credential_problems(config: &Config, problems: &mut Vec<String>) {
    let u = &config.upstream;
    let c = config;
    let twice = [
        (
            "--upstream-password-file",
            "the --upstream URL has a password",
            c.upstream_password_file.is_some() && u.password.is_some(),
        ),
        (
            "--upstream-username-file",
            "the --upstream URL has a user name",
            c.upstream_username_file.is_some() && u.username.is_some(),
        ),
        (
            "--sentinel-password-file",
            "--sentinel-password is given",
            c.sentinel_password_file.is_some() && c.sentinel_password.is_some(),
        ),
        (
            "--sentinel-username-file",
            "--sentinel-username is given",
            c.sentinel_username_file.is_some() && c.sentinel_username.is_some(),
        ),
        (
            "--upstream-username-file",
            "there is no password (the URL's or --upstream-password-file)",
            c.upstream_username_file.is_some()
                && u.password.is_none()
                && c.upstream_password_file.is_none(),
        ),
        (
            "--sentinel-username-file",
            "there is no password (--sentinel-password or --sentinel-password-file)",
            c.sentinel_username_file.is_some()
                && c.sentinel_password.is_none()
                && c.sentinel_password_file.is_none(),
        ),
    ];
    for (flag, why, _) in twice.iter().filter(|(_, _, bad)| *bad) {
        problems.push(format!("{flag}: {why}; give the secret one way only"));
    }
}

/// `--tracking-prefixes` makes sense only with `--tracking bcast`, and broadcast tracking
/// only with one control connection (not a Redis Cluster's, one per node).
pub(super) fn tracking_problems(config: &Config, problems: &mut Vec<String>) {
    let bcast = config.tracking == TrackingMode::Bcast;
    if config.tracking_prefixes.is_some() && !bcast {
        problems.push(
            "--tracking-prefixes: only with --tracking bcast (default tracking follows the \
             keys each sidecar read)"
                .to_owned(),
        );
    }
    if bcast && config.upstream.cluster.is_some() {
        problems.push(
            "--tracking bcast: not supported with a Redis Cluster upstream \
             (redis+cluster://); use --tracking default or off"
                .to_owned(),
        );
    }
}
