//! A Redis Cluster upstream (`redis+cluster://`): until requests are routed by key slot, the
//! sidecar refuses to start on one rather than send every request to the first seed.

use std::time::Duration;

use proto_tests::*;

#[test]
fn a_cluster_url_is_refused_at_start_with_a_clear_message() {
    for url in [
        "redis+cluster://app:secret-pw-9q@127.0.0.1:1,127.0.0.1:2",
        "rediss+cluster://127.0.0.1:1/0",
    ] {
        let args = ["--listen", "127.0.0.1:0", "--upstream", url];
        let out = run_nearcache(&args, &[], Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(64), "{url}: {}", out.stderr);
        assert!(
            out.stderr.contains("Redis Cluster") && out.stderr.contains("key slot"),
            "{url}: {}",
            out.stderr
        );
        assert!(!out.stderr.contains("secret-pw-9q"), "{}", out.stderr);
    }
    // A db other than 0 is a configuration error of its own.
    let args = ["--upstream", "redis+cluster://127.0.0.1:1/2"];
    let out = run_nearcache(&args, &[], Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("only db 0"), "{}", out.stderr);
}
