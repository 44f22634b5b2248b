//! What a switch of the Sentinel-named primary does to clients of the sidecar: a pinned
//! connection (a transaction under way, a subscriber, a blocked call) is closed, as the old
//! primary going away would close it for a direct client, and its client reconnects to the
//! new primary; pooled clients keep their connection to the sidecar and are served by the
//! new primary. A fake sentinel names the primaries, so the old one stays up and keeps its
//! connections (real sentinels also `CLIENT KILL` the clients of a demoted primary): what
//! closes them here is the sidecar.

use std::time::Duration;

use proto_tests::sentinel::{sidecar_primary, FakeSentinel};
use proto_tests::*;

#[test]
fn pinned_connections_close_at_a_switch_and_pooled_ones_go_on_with_the_new_primary() {
    let (old, new) = (Redis::start(), Redis::start());
    let fake = FakeSentinel::start();
    fake.name(old.port());
    let sidecar = Sidecar::start_url(&fake.url(), &["--sentinel-recheck", "200ms"]);
    let addr = sidecar.metrics_addr().expect("metrics on");
    poll_until(Duration::from_secs(10), "ready", || {
        http_get(addr, "/readyz").0 == 200
    });
    let mut pooled = sidecar.conn();
    assert_reply(&pooled.cmd_str(&["SET", "k", "old"]), b"+OK\r\n", "SET");

    let mut transaction = sidecar.conn();
    assert_reply(&transaction.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_reply(
        &transaction.cmd_str(&["SET", "t", "queued"]),
        b"+QUEUED\r\n",
        "queued",
    );
    let mut subscriber = sidecar.conn();
    subscriber.send(&encode_command_str(&["SUBSCRIBE", "news"]));
    assert!(subscriber
        .read_reply()
        .starts_with(b"*3\r\n$9\r\nsubscribe"));
    let mut blocked = sidecar.conn();
    blocked.send(&encode_command_str(&["BLPOP", "queue", "0"]));
    // The blocked call has reached the old primary.
    poll_until(Duration::from_secs(10), "BLPOP blocked upstream", || {
        info_u64(&old.conn().info(Some("clients")), "blocked_clients") == 1
    });

    assert_reply(&new.conn().cmd_str(&["SET", "k", "new"]), b"+OK\r\n", "SET");
    fake.name(new.port());
    poll_until(Duration::from_secs(10), "the sidecar switches", || {
        sidecar_primary(&mut pooled) == new.addr().to_string()
    });

    // Each pinned client sees its connection closed; nothing half-applied.
    for (what, conn) in [
        ("the transaction", &mut transaction),
        ("the subscriber", &mut subscriber),
        ("the blocked BLPOP", &mut blocked),
    ] {
        if let Err(e) = conn.try_read_to_close() {
            panic!("{what}'s connection was not closed at the switch: {e}");
        }
    }
    let mut on_old = old.conn();
    assert_reply(
        &on_old.cmd_str(&["EXISTS", "t"]),
        b":0\r\n",
        "the queued SET never ran",
    );
    poll_until(
        Duration::from_secs(10),
        "the old primary lost the sidecar's connections",
        || info_u64(&on_old.info(Some("clients")), "connected_clients") == 1,
    );

    // Pooled clients kept their connection and are served by the new primary; reconnected
    // pinned clients reach it too.
    assert_reply(
        &pooled.cmd_str(&["GET", "k"]),
        &bulk(b"new"),
        "GET after the switch",
    );
    let mut subscriber = sidecar.conn();
    subscriber.send(&encode_command_str(&["SUBSCRIBE", "news"]));
    assert!(subscriber
        .read_reply()
        .starts_with(b"*3\r\n$9\r\nsubscribe"));
    assert_eq!(int_reply(&pooled.cmd_str(&["PUBLISH", "news", "hello"])), 1);
    let message = subscriber.read_reply();
    assert!(
        String::from_utf8_lossy(&message).contains("hello"),
        "{}",
        show(&message)
    );
    let mut transaction = sidecar.conn();
    assert_reply(&transaction.cmd_str(&["MULTI"]), b"+OK\r\n", "MULTI");
    assert_reply(
        &transaction.cmd_str(&["SET", "t", "after"]),
        b"+QUEUED\r\n",
        "queued",
    );
    let exec = transaction.cmd_str(&["EXEC"]);
    assert_eq!(exec, b"*1\r\n+OK\r\n", "EXEC: {}", show(&exec));
    assert_reply(
        &new.conn().cmd_str(&["GET", "t"]),
        &bulk(b"after"),
        "on the new primary",
    );
}
