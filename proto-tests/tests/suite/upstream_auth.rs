//! A password-protected upstream is reachable, whatever the sidecar's own credentials: with
//! none in `--upstream` it reports "authentication required" and is ready (clients
//! authenticate themselves); with a wrong password it reports "authentication failed" and is
//! not ready, saying why; with the right one it is up. Never "unreachable" (which is what
//! pages an operator: `NearcacheUpstreamDown`) for either.

use std::time::Duration;

use proto_tests::*;

const PASSWORD: &str = "upstream-auth-secret";
const WAIT: Duration = Duration::from_secs(10);

/// A redis-server with `--requirepass` and a sidecar in front of it with `url_auth` (`""`,
/// `":wrong@"`, ...) in its upstream URL.
fn start(url_auth: &str) -> (Redis, Sidecar) {
    let redis = Redis::start_with(&["--requirepass", PASSWORD]);
    let url = format!("redis://{url_auth}127.0.0.1:{}", redis.port());
    let sidecar = Sidecar::start_url(&url, &[]);
    (redis, sidecar)
}

/// `nearcache_upstream_state{state=...}` and `nearcache_upstream_link_up`, from /metrics.
fn metrics(sidecar: &Sidecar) -> (Vec<(String, f64)>, Option<f64>) {
    let (_, text) = http_get(sidecar.metrics_addr().expect("metrics on"), "/metrics");
    let states = ["up", "unreachable", "auth_required", "auth_failed"]
        .iter()
        .map(|s| {
            let labels = format!("state=\"{s}\"");
            let v = metric(&text, "nearcache_upstream_state", &labels).unwrap_or(-1.0);
            (s.to_string(), v)
        })
        .collect();
    (states, metric(&text, "nearcache_upstream_link_up", ""))
}

/// The one state whose gauge is 1, asserting the others are 0.
fn metric_state(sidecar: &Sidecar) -> (String, Option<f64>) {
    let (states, link_up) = metrics(sidecar);
    let on: Vec<_> = states.iter().filter(|(_, v)| *v == 1.0).collect();
    assert_eq!(on.len(), 1, "exactly one state is 1: {states:?}");
    assert!(
        states.iter().all(|(_, v)| *v == 0.0 || *v == 1.0),
        "{states:?}"
    );
    (on[0].0.clone(), link_up)
}

/// `INFO nearcache` as a client that authenticated itself.
fn info(sidecar: &Sidecar) -> String {
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["AUTH", PASSWORD]), b"+OK\r\n", "AUTH");
    c.info(Some("nearcache"))
}

#[test]
fn without_credentials_the_sidecar_is_ready_and_says_authentication_is_required() {
    let (_redis, sidecar) = start("");
    let http = sidecar.metrics_addr().expect("metrics on");
    // Before any client authenticated: ready, since the clients authenticate themselves.
    poll_until(WAIT, "the upstream's refusal is logged", || {
        sidecar
            .stderr()
            .contains("upstream requires authentication")
    });
    poll_until(WAIT, "/readyz 200 with no client yet", || {
        http_get(http, "/readyz") == (200, "ready\n".to_owned())
    });
    assert_eq!(
        metric_state(&sidecar),
        ("auth_required".to_owned(), Some(1.0)),
        "reachable (no outage), authentication required"
    );
    poll_until(WAIT, "the invalidation link's wait is logged", || {
        sidecar
            .stderr()
            .contains("invalidation link waits for a client to authenticate")
    });
    let stderr = sidecar.stderr();
    assert!(!stderr.contains("unreachable"), "{stderr}");
    assert!(!stderr.contains("not established"), "{stderr}");
    // A client that does not authenticate gets Redis's own reply, as from Redis.
    let mut anonymous = sidecar.conn();
    let reply = anonymous.cmd_str(&["GET", "k"]);
    assert!(reply.starts_with(b"-NOAUTH"), "{}", show(&reply));
    // One that does is served, and INFO tells what the sidecar's own link is.
    let text = info(&sidecar);
    assert_eq!(
        info_field(&text, "upstream_state").as_deref(),
        Some("auth_required")
    );
    assert_eq!(
        info_field(&text, "upstream_link_status").as_deref(),
        Some("up")
    );
    assert_eq!(info_field(&text, "ready").as_deref(), Some("1"));
}

#[test]
fn a_wrong_password_is_not_ready_with_authentication_failed_as_the_reason() {
    let (_redis, sidecar) = start(":not-the-password@");
    let http = sidecar.metrics_addr().expect("metrics on");
    let reason = "not ready: upstream authentication failed";
    poll_until(WAIT, "/readyz 503 naming the refused credentials", || {
        let (status, body) = http_get(http, "/readyz");
        status == 503 && body.starts_with(reason)
    });
    poll_until(WAIT, "the refusal is logged", || {
        sidecar
            .stderr()
            .contains("upstream authentication failed (WRONGPASS")
    });
    let stderr = sidecar.stderr();
    assert!(!stderr.contains("unreachable"), "{stderr}");
    assert!(!stderr.contains("not-the-password"), "{stderr}");
    assert_eq!(
        metric_state(&sidecar),
        ("auth_failed".to_owned(), Some(1.0)),
        "reachable (no outage), credentials refused"
    );
    // A client's command over the sidecar's own credentials says so too.
    let mut c = sidecar.conn();
    let reply = c.cmd_str(&["GET", "k"]);
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("-ERR nearcache: upstream authentication failed (WRONGPASS"),
        "{text}"
    );
    let text = info(&sidecar);
    assert_eq!(
        info_field(&text, "upstream_state").as_deref(),
        Some("auth_failed")
    );
    assert_eq!(info_field(&text, "ready").as_deref(), Some("0"));
}

#[test]
fn the_right_password_is_up() {
    let (_redis, sidecar) = start(&format!(":{PASSWORD}@"));
    let http = sidecar.metrics_addr().expect("metrics on");
    poll_until(WAIT, "/readyz 200", || {
        http_get(http, "/readyz") == (200, "ready\n".to_owned())
    });
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    poll_until(WAIT, "up in INFO", || {
        info_field(&c.info(Some("nearcache")), "upstream_state").as_deref() == Some("up")
    });
    assert_eq!(metric_state(&sidecar), ("up".to_owned(), Some(1.0)));
}

#[test]
fn an_unreachable_upstream_is_still_an_outage() {
    let sidecar = Sidecar::start(free_port(), &[]);
    let http = sidecar.metrics_addr().expect("metrics on");
    poll_until(WAIT, "/readyz 503 unreachable", || {
        http_get(http, "/readyz") == (503, "not ready: upstream unreachable\n".to_owned())
    });
    assert_eq!(
        metric_state(&sidecar),
        ("unreachable".to_owned(), Some(0.0))
    );
    // The state turns before its log line is written (and read back from the pipe).
    poll_until(WAIT, "the outage logged as such", || {
        sidecar.stderr().contains("upstream unreachable")
    });
}
