//! Unit tests of the TLS client: the files' problems and the server name.

use super::*;

fn options() -> TlsOptions {
    TlsOptions {
        ca: Some("/nonexistent/ca.crt".into()),
        ..TlsOptions::default()
    }
}

#[test]
fn a_missing_or_empty_file_and_a_lone_certificate_are_named() {
    let e = Tls::new(options(), Some("redis")).unwrap_err();
    assert!(e.contains("cannot read /nonexistent/ca.crt"), "{e}");
    let empty = std::env::temp_dir().join(format!("nearcache-empty-ca-{}", std::process::id()));
    std::fs::write(&empty, "").unwrap();
    let e = Tls::new(
        TlsOptions {
            ca: Some(empty.clone()),
            ..TlsOptions::default()
        },
        Some("redis"),
    )
    .unwrap_err();
    assert!(e.contains("no PEM certificate"), "{e}");
    let _ = std::fs::remove_file(&empty);
    let lone = TlsOptions {
        insecure: true,
        cert: Some("/nonexistent/client.crt".into()),
        ..TlsOptions::default()
    };
    let e = Tls::new(lone, Some("redis")).unwrap_err();
    assert!(e.contains("go together"), "{e}");
}

#[test]
fn the_server_name_is_the_hosts_or_the_override() {
    let insecure = |name: Option<&str>| TlsOptions {
        insecure: true,
        server_name: name.map(str::to_owned),
        ..TlsOptions::default()
    };
    let tls = Tls::new(insecure(None), Some("127.0.0.1")).unwrap();
    assert!(matches!(
        tls.name,
        Some(pki_types::ServerName::IpAddress(_))
    ));
    let tls = Tls::new(insecure(Some("redis.internal")), Some("127.0.0.1")).unwrap();
    assert!(matches!(tls.name, Some(pki_types::ServerName::DnsName(_))));
    assert!(Tls::new(insecure(Some("bad_name!")), Some("h")).is_err());
    // Discovered hosts: each connection's own.
    let tls = Tls::new(insecure(None), None).unwrap();
    assert!(tls.name.is_none());
    assert_eq!(host_of("[::1]:6379"), "::1");
    assert_eq!(host_of("redis-0.redis:6380"), "redis-0.redis");
}
