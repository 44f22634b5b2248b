//! TLS to the upstream (`rediss://`): a redis-server listening for TLS only, with client
//! certificates required, and certificates made by the test (rcgen). Caching, tracking
//! invalidations, pinned transactions and pub/sub work through the sidecar over TLS; a wrong
//! CA, a wrong name, an expired certificate and a plain-text server are refused with their
//! cause in the reply; a CA file replaced on disk is used by the next connection. INFO and
//! `/metrics` say what TLS is in use (`figures`).

use std::fs;
use std::time::Duration;

use proto_tests::tempdir::TempDir;
use proto_tests::*;
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

mod figures;

const WAIT: Duration = Duration::from_secs(10);

/// A CA, a server certificate for `localhost` and 127.0.0.1 and a client certificate, all
/// written to a temporary directory, and a second CA that signed none of them.
struct Pki {
    dir: TempDir,
    files: TlsFiles,
    other_ca: String,
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
    purpose: ExtendedKeyUsagePurpose,
    ca: &(CertificateParams, KeyPair),
    not_after: Option<(i32, u8, u8)>,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![purpose];
    if let Some((year, month, day)) = not_after {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(year, month, day);
    }
    let key = KeyPair::generate().unwrap();
    let issuer = Issuer::from_params(&ca.0, &ca.1);
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// When the client certificate expires: 2040-01-01T00:00:00Z.
const CLIENT_NOT_AFTER: (i32, u8, u8) = (2040, 1, 1);
/// The same in seconds since the Unix epoch.
const CLIENT_NOT_AFTER_UNIX: i64 = 2_208_988_800;

fn pki(expired_server: bool) -> Pki {
    let dir = TempDir::new("tls");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let root = ca("nearcache test CA");
    let (other, _) = ca("another CA");
    let other_key = KeyPair::generate().unwrap();
    let other_pem = other.self_signed(&other_key).unwrap().pem();
    let (cert, key) = leaf(
        &["localhost", "127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &root,
        expired_server.then_some((2021, 1, 1)),
    );
    let (client_cert, client_key) = leaf(
        &["client"],
        ExtendedKeyUsagePurpose::ClientAuth,
        &root,
        Some(CLIENT_NOT_AFTER),
    );
    let files = TlsFiles {
        ca: write("ca.crt", &root.0.self_signed(&root.1).unwrap().pem()),
        cert: write("server.crt", &cert),
        key: write("server.key", &key),
        client_cert: write("client.crt", &client_cert),
        client_key: write("client.key", &client_key),
    };
    let other_ca = write("other-ca.crt", &other_pem);
    Pki {
        dir,
        files,
        other_ca,
    }
}

/// The sidecar's flags for mutual TLS with `ca` as the trusted CA.
fn tls_flags<'a>(files: &'a TlsFiles, ca: &'a str) -> Vec<&'a str> {
    vec![
        "--upstream-tls-ca",
        ca,
        "--upstream-tls-cert",
        &files.client_cert,
        "--upstream-tls-key",
        &files.client_key,
    ]
}

fn get(c: &mut Conn, key: &str) -> Vec<u8> {
    c.cmd_str(&["GET", key])
}

fn get_calls(redis: &Redis) -> u64 {
    let stats = redis.cli(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[test]
fn caching_writes_and_tracking_work_over_tls() {
    let pki = pki(false);
    let redis = Redis::start_tls(&pki.files, &[]);
    let url = format!("rediss://localhost:{}", redis.port());
    let sidecar = Sidecar::start_url(&url, &tls_flags(&pki.files, &pki.files.ca));
    assert_eq!(redis.cli(&["SET", "k", "v1"]), "OK");
    let mut c = sidecar.conn();
    assert_reply(&get(&mut c, "k"), &bulk(b"v1"), "GET miss over TLS");
    assert_reply(&get(&mut c, "k"), &bulk(b"v1"), "GET hit");
    assert_eq!(get_calls(&redis), 1, "the second GET is an L1 hit");
    // A write through the sidecar evicts.
    assert_reply(&c.cmd_str(&["SET", "k", "v2"]), b"+OK\r\n", "SET");
    assert_reply(&get(&mut c, "k"), &bulk(b"v2"), "GET after a write");
    assert_reply(&get(&mut c, "k"), &bulk(b"v2"), "GET hit again");
    // A write by a direct TLS client reaches L1 through tracking on the TLS control
    // connection.
    assert_eq!(redis.cli(&["SET", "k", "v3"]), "OK");
    poll_until(WAIT, "the direct write invalidates L1", || {
        get(&mut c, "k") == bulk(b"v3")
    });
    assert!(
        !sidecar.stderr().contains("TLS:"),
        "no TLS failure: {}",
        sidecar.stderr()
    );
}

#[test]
fn transactions_and_pubsub_run_on_pinned_tls_connections() {
    let pki = pki(false);
    let redis = Redis::start_tls(&pki.files, &[]);
    // By IP address: the certificate names 127.0.0.1 too.
    let url = format!("rediss://127.0.0.1:{}", redis.port());
    let sidecar = Sidecar::start_url(&url, &tls_flags(&pki.files, &pki.files.ca));
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_reply(&c.cmd_str(&["SET", "t", "1"]), b"+QUEUED\r\n", "SET queued");
    assert_reply(&c.cmd_str(&["INCR", "t"]), b"+QUEUED\r\n", "INCR queued");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*2\r\n+OK\r\n:2\r\n", "EXEC");
    let mut s = sidecar.conn();
    s.send(&encode_command_str(&["SUBSCRIBE", "ch"]));
    assert_reply(
        &s.read_reply(),
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n",
        "SUBSCRIBE",
    );
    assert_eq!(redis.cli(&["PUBLISH", "ch", "hello"]), "1");
    assert_reply(
        &s.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n",
        "the message over the pinned TLS connection",
    );
    assert_reply(
        &c.cmd_str(&["PUBLISH", "ch", "again"]),
        b":1\r\n",
        "PUBLISH",
    );
    assert_reply(
        &s.read_reply(),
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nagain\r\n",
        "a message published through the sidecar",
    );
}

/// The reply to a GET through a sidecar started with `flags` in front of `url`, and the
/// sidecar's log.
fn refused(url: &str, flags: &[&str]) -> (String, String) {
    let mut flags = flags.to_vec();
    // The GET waits this long for a connection, then gets the last attempt's cause: long
    // enough for a loaded machine to finish one handshake (2 s once was not, with the
    // whole suite on two cores: the reply was `connect timed out`), well under the test
    // client's 10 s read timeout.
    flags.extend(["--connect-timeout", "5s"]);
    let sidecar = Sidecar::start_url(url, &flags);
    let reply = get(&mut sidecar.conn(), "k");
    (
        String::from_utf8_lossy(&reply).into_owned(),
        sidecar.stderr(),
    )
}

fn assert_cause(reply: &str, log: &str, cause: &str) {
    assert!(
        reply.starts_with("-ERR nearcache: upstream unavailable (TLS: ") && reply.contains(cause),
        "reply {reply:?} should name {cause:?}"
    );
    assert!(log.contains(cause), "log should name {cause:?}: {log}");
}

#[test]
fn a_certificate_of_another_ca_is_an_unknown_issuer() {
    let pki = pki(false);
    let redis = Redis::start_tls(&pki.files, &[]);
    let url = format!("rediss://localhost:{}", redis.port());
    let (reply, log) = refused(&url, &tls_flags(&pki.files, &pki.other_ca));
    assert_cause(&reply, &log, "unknown issuer");
}

#[test]
fn a_certificate_for_another_name_is_a_name_mismatch() {
    let pki = pki(false);
    let redis = Redis::start_tls(&pki.files, &[]);
    let url = format!("rediss://127.0.0.1:{}", redis.port());
    let mut flags = tls_flags(&pki.files, &pki.files.ca);
    flags.extend(["--upstream-tls-server-name", "redis.example.com"]);
    let (reply, log) = refused(&url, &flags);
    assert_cause(&reply, &log, "name mismatch");
    assert!(reply.contains("redis.example.com"), "{reply}");
}

#[test]
fn an_expired_certificate_is_refused_as_expired() {
    let pki = pki(true);
    let redis = Redis::start_tls(&pki.files, &[]);
    let url = format!("rediss://localhost:{}", redis.port());
    let (reply, log) = refused(&url, &tls_flags(&pki.files, &pki.files.ca));
    assert_cause(&reply, &log, "expired");
}

#[test]
fn a_plain_text_server_on_the_tls_port_is_named() {
    let pki = pki(false);
    let redis = Redis::start();
    let url = format!("rediss://localhost:{}", redis.port());
    let (reply, log) = refused(&url, &tls_flags(&pki.files, &pki.files.ca));
    assert_cause(&reply, &log, "plain-text server on a TLS port");
}

#[test]
fn a_server_that_never_answers_the_handshake_is_named_not_a_bare_timeout() {
    // Accepts and reads, never writes: the TLS attempt runs to `--connect-timeout`, and the
    // GET that waited for it from the start gets its cause.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let pki = pki(false);
    let mut flags = tls_flags(&pki.files, &pki.files.ca);
    flags.extend(["--connect-timeout", "1s"]);
    let sidecar = Sidecar::start_url(&format!("rediss://localhost:{port}"), &flags);
    let reply = String::from_utf8_lossy(&get(&mut sidecar.conn(), "k")).into_owned();
    assert_cause(&reply, &sidecar.stderr(), "handshake timed out");
}

#[test]
fn insecure_accepts_any_certificate_and_warns() {
    let pki = pki(false);
    let redis = Redis::start_tls(&pki.files, &[]);
    let url = format!("rediss://localhost:{}", redis.port());
    let mut flags = tls_flags(&pki.files, &pki.other_ca);
    flags.drain(..2);
    flags.push("--upstream-tls-insecure");
    let sidecar = Sidecar::start_url(&url, &flags);
    assert_eq!(redis.cli(&["SET", "k", "v"]), "OK");
    assert_reply(
        &get(&mut sidecar.conn(), "k"),
        &bulk(b"v"),
        "GET, unverified",
    );
    assert!(
        sidecar.stderr().contains("--upstream-tls-insecure"),
        "a warning at start: {}",
        sidecar.stderr()
    );
}

#[test]
fn a_ca_file_replaced_on_disk_is_used_by_the_next_connection() {
    let pki = pki(false);
    let redis = Redis::start_tls(&pki.files, &[]);
    assert_eq!(redis.cli(&["SET", "k", "v"]), "OK");
    // The sidecar trusts a file that holds the wrong CA at first.
    let ca = pki.dir.path().join("rotated-ca.crt");
    fs::copy(&pki.other_ca, &ca).unwrap();
    let ca = ca.to_string_lossy().into_owned();
    let url = format!("rediss://localhost:{}", redis.port());
    let mut flags = tls_flags(&pki.files, &ca);
    // The GET waits this long for a connection, then gets the last attempt's cause: long
    // enough for a loaded machine to finish one handshake (2 s once was not, with the
    // whole suite on two cores: the reply was `connect timed out`), well under the test
    // client's 10 s read timeout.
    flags.extend(["--connect-timeout", "5s"]);
    let sidecar = Sidecar::start_url(&url, &flags);
    let mut c = sidecar.conn();
    assert!(show(&get(&mut c, "k")).contains("unknown issuer"));
    // The right CA arrives (a rotated Secret): new connections verify with it.
    fs::write(&ca, fs::read(&pki.files.ca).unwrap()).unwrap();
    poll_until(WAIT, "a connection with the new CA", || {
        get(&mut c, "k") == bulk(b"v")
    });
    assert!(sidecar.stderr().contains("upstream TLS files changed"));
}

#[test]
fn tls_options_need_a_rediss_upstream_and_their_files() {
    let out = run_nearcache(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "redis://127.0.0.1:1",
            "--upstream-tls-ca",
            "/nonexistent/ca.crt",
        ],
        &[],
        WAIT,
    );
    assert_eq!(out.status.code(), Some(64), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("--upstream-tls-ca: the upstream is not a TLS one (use a rediss:// URL)"),
        "{}",
        out.stderr
    );
    let out = run_nearcache(
        &[
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "rediss://127.0.0.1:1",
            "--upstream-tls-ca",
            "/nonexistent/ca.crt",
        ],
        &[],
        WAIT,
    );
    assert!(!out.status.success(), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot read /nonexistent/ca.crt"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("listening"), "{}", out.stdout);
}

#[test]
fn a_ca_file_that_no_longer_loads_leaves_the_previous_one_in_use() {
    let pki = pki(false);
    let redis = Redis::start_tls(&pki.files, &[]);
    let ca = pki.dir.path().join("broken-ca.crt");
    fs::copy(&pki.files.ca, &ca).unwrap();
    let ca = ca.to_string_lossy().into_owned();
    let url = format!("rediss://localhost:{}", redis.port());
    let sidecar = Sidecar::start_url(&url, &tls_flags(&pki.files, &ca));
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    fs::write(&ca, "not a certificate\n").unwrap();
    // MULTI opens a new (pinned) connection: it still verifies with the previous CA.
    assert_reply(&c.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_reply(&c.cmd_str(&["GET", "k"]), b"+QUEUED\r\n", "GET queued");
    assert_reply(&c.cmd_str(&["EXEC"]), b"*1\r\n$1\r\nv\r\n", "EXEC");
    poll_until(WAIT, "the broken file is logged", || {
        sidecar.stderr().contains("do not load")
    });
}
