//! Sentinel over TLS (`rediss+sentinel://`): primary, replica and sentinels listen for TLS
//! only (client certificates required) and the sidecar reaches the sentinels and the
//! primary they name over TLS with the same options, each connection checked against the
//! host it connects to. It serves and caches, follows `SENTINEL FAILOVER` to the replica,
//! and with a CA that signed none of the certificates is not ready and logs why.

use std::fs;
use std::time::Duration;

use proto_tests::sentinel::{sidecar_primary, SentinelGroup, SentinelNode};
use proto_tests::tempdir::TempDir;
use proto_tests::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// Bound on following a failover (down-after + election + failover, with room for a slow
/// machine): no assertion on how fast, only that it happens.
const FOLLOW: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(10);

/// The certificates of a TLS group, in a temporary directory, and a CA that signed none
/// (the TLS cluster suite uses them too).
pub(crate) struct Pki {
    dir: TempDir,
    root: (CertificateParams, KeyPair),
    /// The CA, a node certificate (server and client use) and a client certificate.
    pub(crate) files: TlsFiles,
    /// A CA that signed none of them.
    pub(crate) other_ca: String,
}

impl Pki {
    /// `files` with a node certificate for `names` alone (server and client use).
    fn files_for(&self, label: &str, names: &[&str]) -> TlsFiles {
        let (cert, key) = leaf(names, node_purposes(), &self.root);
        let cert_path = self.dir.path().join(format!("{label}.crt"));
        let key_path = self.dir.path().join(format!("{label}.key"));
        fs::write(&cert_path, cert).unwrap();
        fs::write(&key_path, key).unwrap();
        TlsFiles {
            cert: cert_path.to_string_lossy().into_owned(),
            key: key_path.to_string_lossy().into_owned(),
            ..self.files.clone()
        }
    }
}

/// A node certificate serves as a client certificate too: replicas and sentinels present
/// it to the nodes and to each other.
fn node_purposes() -> Vec<ExtendedKeyUsagePurpose> {
    vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ]
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params, KeyPair::generate().unwrap())
}

fn leaf(
    names: &[&str],
    purposes: Vec<ExtendedKeyUsagePurpose>,
    ca: &(CertificateParams, KeyPair),
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = purposes;
    let key = KeyPair::generate().unwrap();
    let cert = params
        .signed_by(&key, &Issuer::from_params(&ca.0, &ca.1))
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A CA; a node certificate for `localhost` and 127.0.0.1; a client
/// certificate for the sidecar and redis-cli; another CA.
pub(crate) fn pki() -> Pki {
    let dir = TempDir::new("sentinel-tls");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let root = ca("nearcache sentinel test CA");
    let (other, other_key) = ca("another CA");
    let (cert, key) = leaf(&["localhost", "127.0.0.1"], node_purposes(), &root);
    let (client_cert, client_key) = leaf(
        &["client"],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
        &root,
    );
    let files = TlsFiles {
        ca: write("ca.crt", &root.0.self_signed(&root.1).unwrap().pem()),
        cert: write("node.crt", &cert),
        key: write("node.key", &key),
        client_cert: write("client.crt", &client_cert),
        client_key: write("client.key", &client_key),
    };
    let other_ca = write(
        "other-ca.crt",
        &other.self_signed(&other_key).unwrap().pem(),
    );
    Pki {
        dir,
        root,
        files,
        other_ca,
    }
}

/// The sidecar's flags for mutual TLS with `ca` as the trusted CA.
pub(crate) fn tls_flags<'a>(files: &'a TlsFiles, ca: &'a str) -> Vec<&'a str> {
    vec![
        "--upstream-tls-ca",
        ca,
        "--upstream-tls-cert",
        &files.client_cert,
        "--upstream-tls-key",
        &files.client_key,
    ]
}

/// `INFO <section>` of a sidecar as text.
fn info(conn: &mut Conn, section: &str) -> String {
    String::from_utf8(bulk_reply(&conn.cmd_str(&["INFO", section])).unwrap_or_default()).unwrap()
}

#[test]
fn serves_caches_and_follows_a_failover_with_tls_to_the_sentinels_and_the_primary() {
    let pki = pki();
    let group = SentinelGroup::start_tls(&pki.files);
    let url = group.url();
    assert!(url.starts_with("rediss+sentinel://127.0.0.1:"), "{url}");
    let sidecar = Sidecar::start_url(&url, &tls_flags(&pki.files, &pki.files.ca));
    let addr = sidecar.metrics_addr().expect("metrics on");
    poll_until(WAIT, "ready", || http_get(addr, "/readyz").0 == 200);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v1"]), b"+OK\r\n", "SET");
    assert_eq!(group.primary.cli(&["GET", "k"]), "v1", "on the primary");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v1"), "GET (miss)");
    let hits = info_u64(&info(&mut c, "nearcache_l1"), "l1_hits");
    assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v1"), "GET (hit)");
    assert_eq!(
        info_u64(&info(&mut c, "nearcache_l1"), "l1_hits"),
        hits + 1,
        "the second GET is an L1 hit"
    );
    let primary = group.primary.addr().to_string();
    assert_eq!(sidecar_primary(&mut c), primary);
    let upstream = info(&mut c, "nearcache_upstream");
    assert_eq!(
        info_field(&upstream, "upstream_tls").as_deref(),
        Some("yes"),
        "{upstream}"
    );
    // Every sentinel's +switch-master subscription runs over TLS too.
    poll_until(WAIT, "every sentinel subscribed", || {
        info_u64(&info(&mut c, "nearcache"), "sentinel_reachable") == 3
    });

    group.failover();
    let replica = group.replica.addr().to_string();
    poll_until(FOLLOW, "the sidecar follows the failover", || {
        sidecar_primary(&mut c) == replica
    });
    assert_eq!(
        info_u64(&info(&mut c, "nearcache"), "sentinel_failovers"),
        1
    );
    poll_until(WAIT, "a write through the sidecar", || {
        c.cmd_str(&["SET", "w", "through"]) == b"+OK\r\n"
    });
    assert_eq!(
        group.replica.cli(&["GET", "w"]),
        "through",
        "on the new primary"
    );
    assert_eq!(group.replica.cli(&["ROLE"]).lines().next(), Some("master"));
    assert!(
        !sidecar.stderr().contains("TLS:"),
        "no TLS failure: {}",
        sidecar.stderr()
    );
}

#[test]
fn with_a_ca_that_signed_no_sentinel_the_sidecar_is_not_ready_and_logs_the_tls_cause() {
    let pki = pki();
    let primary = Redis::start_tls(&pki.files, &[]);
    let sentinel = SentinelNode::start_tls(primary.port(), &pki.files);
    let url = format!(
        "rediss+sentinel://127.0.0.1:{}/{}",
        sentinel.port(),
        proto_tests::sentinel::MASTER
    );
    let mut flags = tls_flags(&pki.files, &pki.other_ca);
    flags.extend(["--connect-timeout", "500ms"]);
    let sidecar = Sidecar::start_url(&url, &flags);
    let addr = sidecar.metrics_addr().expect("metrics on");
    let cause = format!("127.0.0.1:{}: TLS: ", sentinel.port());
    poll_until(WAIT, "the log names the sentinel's TLS failure", || {
        let log = sidecar.stderr();
        log.contains("sentinel discovery found no primary")
            && log.contains(&cause)
            && log.contains("unknown issuer")
    });
    assert_eq!(
        http_get(addr, "/readyz"),
        (503, "not ready: no primary known\n".to_owned())
    );
    // The same sentinel with the right CA names the primary.
    let right = Sidecar::start_url(&url, &tls_flags(&pki.files, &pki.files.ca));
    let addr = right.metrics_addr().expect("metrics on");
    poll_until(WAIT, "ready with the right CA", || {
        http_get(addr, "/readyz").0 == 200
    });
    assert_eq!(
        sidecar_primary(&mut right.conn()),
        primary.addr().to_string()
    );
}

#[test]
fn each_connection_checks_the_name_of_the_host_it_connects_to() {
    let pki = pki();
    // The primary's certificate names 127.0.0.1 only (the address the sentinel gives), the
    // sentinel's names localhost only (the host in the URL).
    let sentinel_files = pki.files_for("sentinel", &["localhost"]);
    let primary_files = pki.files_for("primary", &["127.0.0.1"]);
    let primary = Redis::start_tls(&primary_files, &[]);
    let sentinel = SentinelNode::start_tls(primary.port(), &sentinel_files);
    let url = format!(
        "rediss+sentinel://localhost:{}/{}",
        sentinel.port(),
        proto_tests::sentinel::MASTER
    );
    let sidecar = Sidecar::start_url(&url, &tls_flags(&pki.files, &pki.files.ca));
    let addr = sidecar.metrics_addr().expect("metrics on");
    poll_until(WAIT, "ready", || http_get(addr, "/readyz").0 == 200);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    assert_eq!(primary.cli(&["GET", "k"]), "v", "on the primary");
    // --upstream-tls-server-name is the name of every connection: the sentinel's
    // certificate fits it, the primary's does not.
    let mut flags = tls_flags(&pki.files, &pki.files.ca);
    flags.extend(["--upstream-tls-server-name", "localhost"]);
    flags.extend(["--connect-timeout", "500ms"]);
    let named = Sidecar::start_url(&url, &flags);
    let addr = named.metrics_addr().expect("metrics on");
    let cause = format!("HELLO on {}: TLS: ", primary.addr());
    poll_until(WAIT, "the primary's name mismatch is logged", || {
        let log = named.stderr();
        log.contains(&cause) && log.contains("name mismatch")
    });
    assert_eq!(
        http_get(addr, "/readyz"),
        (503, "not ready: no primary known\n".to_owned())
    );
}
