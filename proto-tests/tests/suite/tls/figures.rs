//! INFO `# Nearcache_Upstream` and `/metrics` say what upstream TLS is in use: none for a
//! plain upstream; for a `rediss://` one how the server is verified, whether a client
//! certificate is shown and when it expires, the files' reloads (counted when a CA file is
//! replaced on disk, and as failed when it no longer loads) and failed handshakes (counted
//! against a server whose certificate the sidecar does not trust).

use std::time::{SystemTime, UNIX_EPOCH};

use super::*;

fn upstream_info(sidecar: &Sidecar) -> String {
    String::from_utf8_lossy(&sidecar.conn().cmd_str(&["INFO", "nearcache_upstream"])).into_owned()
}

fn metrics(sidecar: &Sidecar) -> String {
    let (status, body) = http_get(sidecar.metrics_addr().expect("metrics on"), "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn a_plain_upstream_says_upstream_tls_no() {
    let (_redis, sidecar) = start_pair(&[]);
    let info = upstream_info(&sidecar);
    assert_eq!(
        info_field(&info, "upstream_tls").as_deref(),
        Some("no"),
        "{info}"
    );
    assert_eq!(info_field(&info, "upstream_tls_verify"), None, "{info}");
    let m = metrics(&sidecar);
    assert_eq!(metric(&m, "nearcache_upstream_tls", ""), Some(0.0), "{m}");
    let failures = metric(&m, "nearcache_upstream_tls_handshake_failures_total", "");
    assert_eq!(failures, Some(0.0));
    assert!(!m.contains("nearcache_upstream_tls_verify{"), "{m}");
    assert!(
        !m.contains("nearcache_upstream_tls_cert_expiry_seconds "),
        "{m}"
    );
}

#[test]
fn tls_figures_name_the_verification_the_client_certificate_and_count_reloads() {
    let pki = pki(false);
    let redis = Redis::start_tls(&pki.files, &[]);
    assert_eq!(redis.cli(&["SET", "k", "v"]), "OK");
    // The CA file is a copy the test replaces, as a rotated Secret is (a new file renamed
    // over the old one).
    let ca = pki.dir.path().join("mounted-ca.crt");
    fs::copy(&pki.files.ca, &ca).unwrap();
    let replace_ca = |text: &[u8]| {
        let next = pki.dir.path().join("mounted-ca.crt.next");
        fs::write(&next, text).unwrap();
        fs::rename(&next, &ca).unwrap();
    };
    let ca_path = ca.to_string_lossy().into_owned();
    let url = format!("rediss://localhost:{}", redis.port());
    let sidecar = Sidecar::start_url(&url, &tls_flags(&pki.files, &ca_path));
    assert_reply(&get(&mut sidecar.conn(), "k"), &bulk(b"v"), "GET over TLS");

    let info = upstream_info(&sidecar);
    let field = |name: &str| info_field(&info, name).unwrap_or_else(|| panic!("{name}: {info}"));
    assert_eq!(field("upstream_tls"), "yes");
    assert_eq!(field("upstream_tls_verify"), "ca_file");
    assert_eq!(field("upstream_tls_client_cert"), "yes");
    assert_eq!(field("upstream_tls_reloads"), "0");
    assert_eq!(field("upstream_tls_reload_failures"), "0");
    assert_eq!(field("upstream_tls_handshake_failures"), "0");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expiry: i64 = field("upstream_tls_cert_expiry_seconds").parse().unwrap();
    let want = CLIENT_NOT_AFTER_UNIX - now;
    assert!(
        (expiry - want).abs() < 120,
        "expiry {expiry}, want about {want}"
    );

    let m = metrics(&sidecar);
    assert_eq!(metric(&m, "nearcache_upstream_tls", ""), Some(1.0), "{m}");
    let mode = |name: &str| {
        metric(
            &m,
            "nearcache_upstream_tls_verify",
            &format!("mode=\"{name}\""),
        )
    };
    assert_eq!(mode("ca_file"), Some(1.0), "{m}");
    assert_eq!(mode("system_roots"), Some(0.0), "{m}");
    assert_eq!(mode("insecure"), Some(0.0), "{m}");
    assert_eq!(
        metric(&m, "nearcache_upstream_tls_client_cert", ""),
        Some(1.0)
    );
    let exported = metric(&m, "nearcache_upstream_tls_cert_expiry_seconds", "").expect("expiry");
    assert!(
        (exported as i64 - want).abs() < 120,
        "{exported}, want about {want}"
    );

    // The same CA written anew: a reload, seen by the next snapshot.
    replace_ca(&fs::read(&pki.files.ca).unwrap());
    poll_until(WAIT, "the replaced CA file is reloaded", || {
        info_field(&upstream_info(&sidecar), "upstream_tls_reloads").as_deref() == Some("1")
    });
    // A file that no longer loads: a failed reload, the previous CA kept.
    replace_ca(b"not a certificate\n");
    poll_until(WAIT, "the broken CA file is a failed reload", || {
        info_field(&upstream_info(&sidecar), "upstream_tls_reload_failures").as_deref() == Some("1")
    });
    let info = upstream_info(&sidecar);
    assert_eq!(
        info_field(&info, "upstream_tls_reloads").as_deref(),
        Some("1"),
        "{info}"
    );
    let m = metrics(&sidecar);
    let reloads = |result: &str| {
        metric(
            &m,
            "nearcache_upstream_tls_reloads_total",
            &format!("result=\"{result}\""),
        )
    };
    assert_eq!(reloads("ok"), Some(1.0), "{m}");
    assert_eq!(reloads("failed"), Some(1.0), "{m}");
    // The previous CA still verifies a new connection.
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["MULTI"]),
        b"+OK\r\n",
        "MULTI on a new connection",
    );
    assert_reply(&c.cmd_str(&["EXEC"]), b"*0\r\n", "EXEC");
    let info = upstream_info(&sidecar);
    assert_eq!(
        info_field(&info, "upstream_tls_handshake_failures").as_deref(),
        Some("0")
    );
}

#[test]
fn failed_handshakes_are_counted_and_insecure_is_named() {
    let pki = pki(false);
    let redis = Redis::start_tls(&pki.files, &[]);
    assert_eq!(redis.cli(&["SET", "k", "v"]), "OK");
    let url = format!("rediss://localhost:{}", redis.port());
    // The sidecar trusts another CA than the one that signed the server's certificate.
    let ca = pki.dir.path().join("wrong-ca.crt");
    fs::copy(&pki.other_ca, &ca).unwrap();
    let ca_path = ca.to_string_lossy().into_owned();
    let mut flags = tls_flags(&pki.files, &ca_path);
    flags.extend(["--connect-timeout", "500ms"]);
    let sidecar = Sidecar::start_url(&url, &flags);
    assert!(show(&get(&mut sidecar.conn(), "k")).contains("unknown issuer"));
    // /metrics answers without the upstream (INFO waits for a connection that works).
    let failures = || {
        let m = metrics(&sidecar);
        metric(&m, "nearcache_upstream_tls_handshake_failures_total", "").unwrap_or(0.0)
    };
    poll_until(WAIT, "the failed handshake is counted", || {
        failures() >= 1.0
    });
    // The right CA arrives: INFO, answered again, counts the failures and the reload.
    let next = pki.dir.path().join("wrong-ca.crt.next");
    fs::write(&next, fs::read(&pki.files.ca).unwrap()).unwrap();
    fs::rename(&next, &ca).unwrap();
    let mut c = sidecar.conn();
    poll_until(WAIT, "a connection with the right CA", || {
        get(&mut c, "k") == bulk(b"v")
    });
    let info = upstream_info(&sidecar);
    assert!(
        info_u64(&info, "upstream_tls_handshake_failures") >= 1,
        "{info}"
    );
    assert_eq!(info_u64(&info, "upstream_tls_reloads"), 1, "{info}");

    // Unverified, no client certificate (a server that asks none): no expiry either.
    let open = Redis::start_tls(&pki.files, &["--tls-auth-clients", "no"]);
    let url = format!("rediss://localhost:{}", open.port());
    let insecure = Sidecar::start_url(&url, &["--upstream-tls-insecure"]);
    let info = upstream_info(&insecure);
    let field = |name: &str| info_field(&info, name);
    assert_eq!(
        field("upstream_tls_verify").as_deref(),
        Some("insecure"),
        "{info}"
    );
    assert_eq!(
        field("upstream_tls_client_cert").as_deref(),
        Some("no"),
        "{info}"
    );
    assert_eq!(field("upstream_tls_cert_expiry_seconds"), None, "{info}");
    let m = metrics(&insecure);
    let mode = metric(&m, "nearcache_upstream_tls_verify", "mode=\"insecure\"");
    assert_eq!(mode, Some(1.0), "{m}");
    assert_eq!(
        metric(&m, "nearcache_upstream_tls_client_cert", ""),
        Some(0.0),
        "{m}"
    );
    assert!(
        !m.contains("nearcache_upstream_tls_cert_expiry_seconds "),
        "{m}"
    );
}
