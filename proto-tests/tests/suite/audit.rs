//! The staleness audit (`--audit-rate`): sampled L1 hits are re-read from the upstream and
//! compared. A write that bypasses the sidecar and never reaches it as an invalidation makes
//! its hits stale, and the audit counts and logs them; writes through the sidecar never do.
//! (Runs with cross-sidecar invalidation off, so that a direct write stays unseen.)

use std::time::Duration;

use proto_tests::*;

const WAIT: Duration = Duration::from_secs(10);

fn stats(c: &mut Conn) -> String {
    c.info(Some("nearcache"))
}

/// Waits until every L1 hit so far has had its audit finished (each is audited at rate 1).
fn audits_settled(c: &mut Conn) -> String {
    let mut last = String::new();
    let settled = (0..WAIT.as_millis() / 10).any(|_| {
        last = stats(c);
        let finished = ["audits_done", "audits_failed", "audits_skipped"]
            .iter()
            .map(|f| info_u64(&last, f))
            .sum::<u64>();
        std::thread::sleep(Duration::from_millis(10));
        finished == info_u64(&last, "l1_hits")
    });
    assert!(settled, "audits not all finished: {last}");
    last
}

#[test]
fn direct_write_makes_audited_hits_stale_and_logged() {
    // Tracking off: it would evict the key written directly before any hit could be stale.
    let (redis, sidecar) = start_pair(&["--audit-rate", "1", "--tracking", "off"]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    let set = direct.cmd_str(&["MSET", "audit:k", "old", "audit:m", "old"]);
    assert_reply(&set, b"+OK\r\n", "MSET");
    for _ in 0..2 {
        assert_reply(&c.cmd_str(&["GET", "audit:k"]), &bulk(b"old"), "warm GET");
        let want = [b"*1\r\n".to_vec(), bulk(b"old")].concat();
        assert_reply(&c.cmd_str(&["MGET", "audit:m"]), &want, "warm MGET");
    }
    let warm = audits_settled(&mut c);
    assert_eq!(info_u64(&warm, "stale_hits_detected"), 0, "{warm}");
    assert!(info_u64(&warm, "audits_done") >= 2, "{warm}");

    let set = direct.cmd_str(&["MSET", "audit:k", "new", "audit:m", "new"]);
    assert_reply(&set, b"+OK\r\n", "direct MSET");
    for _ in 0..3 {
        // Served from L1: the sidecar has not heard of the write.
        assert_reply(&c.cmd_str(&["GET", "audit:k"]), &bulk(b"old"), "stale GET");
    }
    poll_until(WAIT, "a stale GET hit is detected and logged", || {
        info_u64(&stats(&mut c), "stale_hits_detected") >= 1
            && sidecar.stderr().contains("key \"audit:k\"")
    });
    let after_get = info_u64(&audits_settled(&mut c), "stale_hits_detected");
    assert_eq!(after_get, 3, "each stale GET hit is counted");

    let want = [b"*1\r\n".to_vec(), bulk(b"old")].concat();
    assert_reply(&c.cmd_str(&["MGET", "audit:m"]), &want, "stale MGET");
    let after_mget = audits_settled(&mut c);
    assert_eq!(
        info_u64(&after_mget, "stale_hits_detected"),
        after_get + 1,
        "the stale MGET hit is counted: {after_mget}"
    );
    let lines = sidecar.stderr().matches("stale L1 hit").count();
    assert!(
        (1..=2).contains(&lines),
        "at most one line a second: {}",
        sidecar.stderr()
    );
}

#[test]
fn writes_through_the_sidecar_never_look_stale() {
    let (_redis, sidecar) = start_pair(&["--audit-rate", "1"]);
    let mut c = sidecar.conn();
    let mut pipelined = sidecar.conn();
    for round in 0..100 {
        let key = format!("rw:{}", round % 5);
        let value = format!("v{round}");
        assert_reply(&c.cmd_str(&["SET", &key, &value]), b"+OK\r\n", "SET");
        for _ in 0..3 {
            assert_reply(&c.cmd_str(&["GET", &key]), &bulk(value.as_bytes()), "GET");
        }
        let want = [b"*1\r\n".to_vec(), bulk(value.as_bytes())].concat();
        assert_reply(&c.cmd_str(&["MGET", &key]), &want, "MGET");
        // A hit then a write of the same key in one batch: the write is in flight while
        // the hit is audited.
        let next = format!("p{round}");
        let batch = [
            encode_command_str(&["GET", &key]),
            encode_command_str(&["SET", &key, &next]),
            encode_command_str(&["GET", &key]),
        ]
        .concat();
        pipelined.send(&batch);
        let replies = pipelined.read_replies(3);
        assert_reply(&replies[0], &bulk(value.as_bytes()), "pipelined GET");
        assert_reply(
            &replies[2],
            &bulk(next.as_bytes()),
            "pipelined GET after SET",
        );
    }
    let text = audits_settled(&mut c);
    assert_eq!(info_u64(&text, "stale_hits_detected"), 0, "{text}");
    assert!(info_u64(&text, "audits_done") >= 200, "{text}");
    assert!(!sidecar.stderr().contains("stale L1 hit"));
}

#[test]
fn audit_rate_zero_audits_nothing() {
    let (redis, sidecar) = start_pair(&["--audit-rate", "0"]);
    let mut c = sidecar.conn();
    assert_reply(&redis.conn().cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    for _ in 0..500 {
        assert_reply(&c.cmd_str(&["GET", "k"]), &bulk(b"v"), "GET");
    }
    let want = [b"*1\r\n".to_vec(), bulk(b"v")].concat();
    assert_reply(&c.cmd_str(&["MGET", "k"]), &want, "MGET");
    std::thread::sleep(Duration::from_millis(200));
    let text = stats(&mut c);
    assert!(info_u64(&text, "l1_hits") >= 499, "{text}");
    assert_eq!(info_field(&text, "audit_rate").as_deref(), Some("0"));
    for field in [
        "audits_done",
        "audits_failed",
        "audits_skipped",
        "stale_hits_detected",
    ] {
        assert_eq!(info_u64(&text, field), 0, "{field}: {text}");
    }
}

/// An MGET answered wholly from L1 audits each key against what was served for that key:
/// only the key written directly is stale (a wrong slice of the reply would make the fresh
/// ones look stale too).
#[test]
fn an_all_hit_mget_audits_each_key_against_its_own_element() {
    let (redis, sidecar) = start_pair(&["--audit-rate", "1", "--tracking", "off"]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    let set = direct.cmd_str(&["MSET", "a:1", "one", "a:2", "two", "a:3", "three"]);
    assert_reply(&set, b"+OK\r\n", "MSET");
    let mget = ["MGET", "a:1", "a:2", "a:3"];
    let reply = |second: &[u8]| {
        [
            b"*3\r\n".to_vec(),
            bulk(b"one"),
            bulk(second),
            bulk(b"three"),
        ]
        .concat()
    };
    assert_reply(&c.cmd_str(&mget), &reply(b"two"), "the MGET that fills L1");
    let warm = audits_settled(&mut c);
    assert_eq!(info_u64(&warm, "stale_hits_detected"), 0, "{warm}");
    assert_reply(
        &direct.cmd_str(&["SET", "a:2", "changed"]),
        b"+OK\r\n",
        "SET",
    );
    let hits = info_u64(&warm, "l1_hits");
    assert_reply(&c.cmd_str(&mget), &reply(b"two"), "served from L1");
    let after = audits_settled(&mut c);
    assert_eq!(info_u64(&after, "l1_hits"), hits + 3, "three hits: {after}");
    assert_eq!(
        info_u64(&after, "stale_hits_detected"),
        1,
        "only the key written directly: {after}"
    );
}
