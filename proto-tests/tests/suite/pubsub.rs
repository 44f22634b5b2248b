//! Pub/Sub through the sidecar: subscriptions on the client's own upstream connection,
//! messages relayed in order between replies exactly as Redis sends them, PING and RESET
//! in RESP2 subscribe mode, RESP3 pushes beside ordinary replies, PUBLISH from anywhere.

use std::thread;
use std::time::Duration;

use proto_tests::*;

fn message(channel: &str, payload: &str) -> Vec<u8> {
    [
        b"*3\r\n$7\r\nmessage\r\n".to_vec(),
        bulk(channel.as_bytes()),
        bulk(payload.as_bytes()),
    ]
    .concat()
}

fn confirm(kind: &str, channel: &str, count: i64) -> Vec<u8> {
    [
        b"*3\r\n".to_vec(),
        bulk(kind.as_bytes()),
        bulk(channel.as_bytes()),
        format!(":{count}\r\n").into_bytes(),
    ]
    .concat()
}

#[test]
fn resp2_subscribe_mode_is_redis_subscribe_mode() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    // The same steps on a direct connection and through the sidecar.
    for conn in [&mut direct, &mut c] {
        conn.send(&encode_command_str(&["SUBSCRIBE", "a", "b"]));
    }
    assert_same_reply_frames(&mut direct, &mut c, 2, "SUBSCRIBE a b");
    for step in [
        &["PING"][..],
        &["PING", "hi"],
        &["GET", "k"],
        &["PSUBSCRIBE", "c*"],
        &["UNSUBSCRIBE", "a"],
        &["SSUBSCRIBE", "s"],
        &["CLIENT", "ID"],
        &["SELECT", "1"],
        &["PUNSUBSCRIBE"],
        &["SUNSUBSCRIBE"],
    ] {
        assert_same_reply(&mut direct, &mut c, &encode_command_str(step));
    }
    // Still subscribed to b: a message, then UNSUBSCRIBE with no argument leaves the mode.
    assert_eq!(int_reply(&redis.conn().cmd_str(&["PUBLISH", "b", "m1"])), 2);
    assert_reply(
        &c.read_reply(),
        &message("b", "m1"),
        "message through the sidecar",
    );
    assert_reply(&direct.read_reply(), &message("b", "m1"), "message direct");
    for conn in [&mut direct, &mut c] {
        conn.send(&encode_command_str(&["UNSUBSCRIBE"]));
    }
    assert_same_reply_frames(&mut direct, &mut c, 1, "UNSUBSCRIBE");
    // Out of subscribe mode: ordinary commands again, through L1.
    assert_same_reply(&mut direct, &mut c, &encode_command_str(&["GET", "k"]));
    assert_same_reply(&mut direct, &mut c, &encode_command_str(&["PING"]));
    let info = c.info(Some("nearcache"));
    assert_eq!(
        info_u64(&info, "upstream_pinned_connections"),
        1,
        "kept for later"
    );
}

/// Reads `n` frames from both and compares them.
fn assert_same_reply_frames(direct: &mut Conn, proxied: &mut Conn, n: usize, what: &str) {
    let want = direct.read_replies(n);
    let got = proxied.read_replies(n);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_reply(g, w, &format!("{what}: frame {i}"));
    }
}

#[test]
fn reset_leaves_subscribe_mode_and_the_connection() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    c.send(&encode_command_str(&["SUBSCRIBE", "a"]));
    assert_reply(&c.read_reply(), &confirm("subscribe", "a", 1), "SUBSCRIBE");
    assert_reply(&c.cmd_str(&["RESET"]), b"+RESET\r\n", "RESET");
    poll_until(Duration::from_secs(5), "the subscription is gone", || {
        redis.conn().cmd_str(&["PUBSUB", "NUMSUB", "a"]) == b"*2\r\n$1\r\na\r\n:0\r\n"
    });
    assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n", "PING after RESET");
    let info = c.info(Some("nearcache"));
    assert_eq!(
        info_u64(&info, "upstream_pinned_connections"),
        0,
        "closed by RESET"
    );
}

#[test]
fn resp3_pushes_interleave_with_replies() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    c.hello3();
    c.send(&encode_command_str(&["SUBSCRIBE", "news"]));
    let confirmation = ">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n";
    assert_reply(
        &c.read_reply(),
        confirmation.as_bytes(),
        "RESP3 confirmation",
    );
    assert_reply(&redis.conn().cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    // Replies and pushes on one connection: a GET between two messages.
    let mut publisher = sidecar.conn();
    assert_eq!(
        int_reply(&publisher.cmd_str(&["PUBLISH", "news", "one"])),
        1
    );
    c.send(&encode_command_str(&["GET", "k"]));
    let frames = c.read_replies(2);
    let push = ">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$3\r\none\r\n";
    assert_reply(&frames[0], push.as_bytes(), "the message came first");
    assert_reply(&frames[1], &bulk(b"v"), "then GET's reply");
    assert_eq!(
        int_reply(&publisher.cmd_str(&["PUBLISH", "news", "two"])),
        1
    );
    let two = ">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$3\r\ntwo\r\n";
    assert_reply(&c.read_reply(), two.as_bytes(), "second message");
    assert_reply(
        &c.cmd_str(&["PING"]),
        b"+PONG\r\n",
        "RESP3 PING while subscribed",
    );
}

#[test]
fn a_hundred_subscribers_on_one_sidecar_hear_publishers_on_another() {
    let redis = Redis::start();
    let subs_side = Sidecar::start(redis.port(), &[]);
    let pub_side = Sidecar::start(redis.port(), &[]);
    const SUBSCRIBERS: usize = 100;
    const MESSAGES: usize = 50;
    let mut subscribers: Vec<Conn> = (0..SUBSCRIBERS)
        .map(|i| {
            let mut c = subs_side.conn();
            if i % 2 == 1 {
                c.hello3();
            }
            c.send(&encode_command_str(&["PSUBSCRIBE", "room:*"]));
            let reply = c.read_reply();
            assert!(reply.ends_with(b":1\r\n"), "{}", show(&reply));
            c
        })
        .collect();
    let publishers: Vec<_> = (0..2)
        .map(|p| {
            let addr = pub_side.addr();
            thread::spawn(move || {
                let mut c = Conn::connect(addr);
                for m in 0..MESSAGES {
                    let n =
                        int_reply(&c.cmd_str(&["PUBLISH", &format!("room:{p}"), &m.to_string()]));
                    assert_eq!(n, SUBSCRIBERS as i64, "every subscriber is listening");
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    for (i, c) in subscribers.iter_mut().enumerate() {
        c.set_read_timeout(Duration::from_secs(10));
        let frames = c.read_replies(2 * MESSAGES);
        // Each publisher's messages arrive in its order.
        let mut next = [0usize; 2];
        for f in frames {
            let text = String::from_utf8_lossy(&f).into_owned();
            let p = if text.contains("room:0") { 0 } else { 1 };
            let payload: usize = text.lines().nth(8).unwrap().parse().unwrap();
            assert_eq!(payload, next[p], "subscriber {i}, publisher {p}: {text:?}");
            next[p] += 1;
        }
    }
}
