//! The invalidation bus under `--bus-key-file`: sidecars act only on messages signed with
//! the fleet's key. An application that may `PUBLISH` on the channel (the sidecars publish
//! with the applications' own Redis users) forges flushes, patterns, keys, hot-key asks,
//! sequence gaps, oversized and replayed messages: none of it changes what a sidecar
//! serves, flushes, or holds in memory. Every sidecar runs `--tracking off`, so the bus is
//! the only thing that evicts a value changed straight on Redis.

use std::time::Duration;

use proto_tests::*;

const BOUND: Duration = Duration::from_secs(5);
const CHANNEL: &str = "nearcache:invalidate";

fn keyed(redis: &Redis, key_file: &str) -> Sidecar {
    let sidecar = Sidecar::start(
        redis.port(),
        &["--tracking", "off", "--bus-key-file", key_file],
    );
    poll_until(BOUND, "subscribed to the bus", || {
        info_field(&bus_info(&sidecar), "bus").as_deref() == Some("subscribed")
    });
    sidecar
}

fn bus_info(sidecar: &Sidecar) -> String {
    sidecar.conn().info(Some("nearcache_invalidation"))
}

fn bus(sidecar: &Sidecar, field: &str) -> u64 {
    info_u64(&bus_info(sidecar), field)
}

fn hits(sidecar: &Sidecar) -> u64 {
    info_u64(&sidecar.conn().info(Some("nearcache")), "l1_hits")
}

/// Reads `key` through `sidecar` until a read is a hit answering `want`.
fn warm(sidecar: &Sidecar, key: &str, want: &[u8]) {
    let mut c = sidecar.conn();
    poll_until(BOUND, &format!("{key} to be a hit"), || {
        assert_reply(&c.cmd_str(&["GET", key]), want, "first read");
        let before = hits(sidecar);
        assert_reply(&c.cmd_str(&["GET", key]), want, "second read");
        hits(sidecar) == before + 1
    });
}

/// `key` is `old` in `sidecar`'s L1 while Redis holds `new`.
fn stale(redis: &Redis, sidecar: &Sidecar, key: &str) {
    let mut direct = redis.conn();
    assert_reply(&direct.cmd_str(&["SET", key, "old"]), b"+OK\r\n", "SET");
    warm(sidecar, key, &bulk(b"old"));
    assert_reply(&direct.cmd_str(&["SET", key, "new"]), b"+OK\r\n", "SET");
}

/// Publishes through `from` a genuine pattern message and waits until `to` applied it:
/// everything published on the channel before it has been handled by `to` then.
fn barrier(from: &Sidecar, to: &Sidecar) {
    let before = bus(to, "bus_received_patterns");
    let reply = from
        .conn()
        .cmd_str(&["NEARCACHE", "INVALIDATE", "barrier:nothing:*"]);
    assert!(reply.starts_with(b":"), "{}", show(&reply));
    poll_until(BOUND, "the barrier message arrives", || {
        bus(to, "bus_received_patterns") > before
    });
}

/// The payload of the next pub/sub message read on a subscribed RESP2 connection.
fn next_message(sub: &mut Conn) -> Vec<u8> {
    let reply = sub.read_reply();
    // *3 $7 message $<n> <channel> $<m> <payload>
    let mut parts = reply.split(|&b| b == b'\n');
    let head: Vec<&[u8]> = parts.by_ref().take(6).collect();
    assert_eq!(head[2], b"message\r", "{}", show(&reply));
    let start = head.iter().map(|l| l.len() + 1).sum::<usize>();
    reply[start..reply.len() - 2].to_vec()
}

/// Forged messages of every kind: unsigned, signed with a made-up MAC, signed by an
/// unknown key, and an unsigned sequence gap under a new sender id.
fn forgeries() -> Vec<Vec<u8>> {
    let mac = "0".repeat(64);
    let mut out: Vec<Vec<u8>> = [
        "v1 - - - F".to_owned(),
        "v1 - - - P 1:*".to_owned(),
        "v1 - - - K * 3:k:1".to_owned(),
        "v1 - - - H? forger 16384".to_owned(),
        "v1 forger 1 - K 0 1:z".to_owned(),
        "v1 forger 3 - K 0 1:z".to_owned(),
        format!("s1 00000000 {mac} v1 forger 5 1 F"),
        format!("s1 deadbeef {mac} v1 forger 6 1 P 1:*"),
    ]
    .map(String::into_bytes)
    .into();
    // An unsigned key message naming a cached key.
    out.push(b"v1 - - - K 0 3:k:1".to_vec());
    out
}

#[test]
fn forged_messages_are_counted_and_change_nothing() {
    let redis = Redis::start();
    let (_dir, key) = bus_key_file(&[BUS_KEY]);
    let a = keyed(&redis, &key);
    let b = keyed(&redis, &key);
    assert!(!b.stderr().contains("is open"), "{}", b.stderr());
    assert_eq!(info_field(&bus_info(&b), "bus_keyed").as_deref(), Some("1"));
    for i in 0..3 {
        stale(&redis, &b, &format!("k:{i}"));
    }
    let mut direct = redis.conn();
    for message in forgeries() {
        direct.cmd(&[b"PUBLISH", CHANNEL.as_bytes(), &message]);
    }
    // A's real sender id (INFO shows it) with a sequence number far ahead: A's next
    // genuine message must not look like a gap to B.
    let a_id = info_field(&bus_info(&a), "bus_sender_id").unwrap();
    let forged = format!("v1 {a_id} 999999 {} K 0 3:k:1", 1_700_000_000_000u64);
    direct.cmd(&[b"PUBLISH", CHANNEL.as_bytes(), forged.as_bytes()]);
    barrier(&a, &b);
    let info = bus_info(&b);
    assert_eq!(
        info_u64(&info, "bus_unauthenticated_messages"),
        10,
        "{info}"
    );
    assert_eq!(info_u64(&info, "l1_flushes_bus"), 0, "{info}");
    assert_eq!(info_u64(&info, "l1_flushes_link_lost"), 0, "{info}");
    assert_eq!(info_u64(&info, "bus_sequence_gaps"), 0, "{info}");
    assert_eq!(info_u64(&info, "bus_hot_asks_received"), 0, "{info}");
    for i in 0..3 {
        let before = hits(&b);
        let got = b.conn().cmd_str(&["GET", &format!("k:{i}")]);
        assert_reply(&got, &bulk(b"old"), "still served from L1");
        assert_eq!(hits(&b), before + 1, "a hit");
    }
    // The fleet's own messages still work.
    a.conn().cmd_str(&["NEARCACHE", "INVALIDATE", "k:*"]);
    expect_within(
        &mut b.conn(),
        "k:1",
        &bulk(b"new"),
        BOUND,
        "a genuine pattern evicts",
    );
}

#[test]
fn a_replayed_message_is_dropped() {
    let redis = Redis::start();
    let (_dir, key) = bus_key_file(&[BUS_KEY]);
    let a = keyed(&redis, &key);
    let b = keyed(&redis, &key);
    let mut sub = redis.conn();
    sub.cmd_str(&["SUBSCRIBE", CHANNEL]);
    stale(&redis, &b, "r");
    assert_reply(
        &a.conn().cmd_str(&["NEARCACHE", "FLUSH", "ALL"]),
        b"+OK\r\n",
        "FLUSH ALL",
    );
    // The sidecars' own start-up asks may come first.
    let genuine = std::iter::repeat_with(|| next_message(&mut sub))
        .find(|m| m.ends_with(b" F"))
        .unwrap();
    assert!(genuine.starts_with(b"s1 "), "{}", show(&genuine));
    poll_until(BOUND, "B flushed once", || bus(&b, "l1_flushes_bus") == 1);
    stale(&redis, &b, "r");
    let mut direct = redis.conn();
    for _ in 0..3 {
        direct.cmd(&[b"PUBLISH", CHANNEL.as_bytes(), &genuine]);
    }
    barrier(&a, &b);
    assert_eq!(bus(&b, "bus_replayed_messages"), 3);
    assert_eq!(bus(&b, "l1_flushes_bus"), 1, "no flush for a replay");
    assert_reply(&b.conn().cmd_str(&["GET", "r"]), &bulk(b"old"), "L1 kept");
}

#[test]
fn a_flood_of_forgeries_leaves_hits_and_memory_where_they_were() {
    let redis = Redis::start_with(&["--client-output-buffer-limit", "pubsub 0 0 0"]);
    let (_dir, key) = bus_key_file(&[BUS_KEY]);
    let a = keyed(&redis, &key);
    let b = keyed(&redis, &key);
    let mut c = b.conn();
    let keys: Vec<String> = (0..200).map(|i| format!("hot:{i}")).collect();
    let mut direct = redis.conn();
    for k in &keys {
        direct.cmd_str(&["SET", k, "v"]);
        c.cmd_str(&["GET", k]);
    }
    let before_hits = hits(&b);
    let before_peak = proc_status_bytes(b.pid(), "VmHWM");
    // 1000 forgeries of every kind, and three 10 MiB key messages, in one pipeline.
    let mut flood = Vec::new();
    for _ in 0..125 {
        for message in forgeries() {
            flood.extend(encode_command(&[b"PUBLISH", CHANNEL.as_bytes(), &message]));
        }
    }
    let mut big = b"v1 - - - K 0".to_vec();
    while big.len() < 10 << 20 {
        big.extend_from_slice(b" 8:k:000000");
    }
    for _ in 0..3 {
        flood.extend(encode_command(&[b"PUBLISH", CHANNEL.as_bytes(), &big]));
    }
    direct.send(&flood);
    direct.read_replies(125 * 9 + 3);
    barrier(&a, &b);
    let info = bus_info(&b);
    assert_eq!(
        info_u64(&info, "bus_unauthenticated_messages"),
        1125,
        "{info}"
    );
    assert_eq!(info_u64(&info, "bus_oversized_messages"), 3, "{info}");
    assert_eq!(info_u64(&info, "l1_flushes_bus"), 0, "{info}");
    assert_eq!(info_u64(&info, "l1_flushes_link_lost"), 0, "{info}");
    for k in &keys {
        assert_reply(&c.cmd_str(&["GET", k]), &bulk(b"v"), "served");
    }
    assert_eq!(
        hits(&b),
        before_hits + 200,
        "every read after the flood is a hit"
    );
    // 30 MiB went by: skipped as they arrived, not buffered (peak grew by far less).
    let grown = proc_status_bytes(b.pid(), "VmHWM").saturating_sub(before_peak);
    assert!(grown < 8 << 20, "peak memory grew by {grown} bytes");
}

#[test]
fn a_rotation_accepts_both_keys_and_the_file_is_read_again() {
    let redis = Redis::start();
    let (old_dir, old) = bus_key_file(&["previous-fleet-key-0123456789"]);
    let (both_dir, both) = bus_key_file(&[
        "current-fleet-key-0123456789",
        "previous-fleet-key-0123456789",
    ]);
    let (new_dir, new) = bus_key_file(&["current-fleet-key-0123456789"]);
    let a = keyed(&redis, &old);
    let b = keyed(&redis, &both);
    let c = keyed(&redis, &new);
    stale(&redis, &b, "x");
    stale(&redis, &c, "x");
    a.conn().cmd_str(&["NEARCACHE", "INVALIDATE", "x"]);
    expect_within(
        &mut b.conn(),
        "x",
        &bulk(b"new"),
        BOUND,
        "B holds A's key as its previous one",
    );
    poll_until(BOUND, "C drops A's message", || {
        bus(&c, "bus_unauthenticated_messages") == 1
    });
    assert_reply(&c.conn().cmd_str(&["GET", "x"]), &bulk(b"old"), "C kept");

    // A's Secret rotates: the file is read again and A signs with the new key.
    let before = info_field(&bus_info(&a), "bus_key_id");
    std::fs::write(&old, "current-fleet-key-0123456789\n").unwrap();
    poll_until(BOUND, "A re-read its key file", || {
        info_field(&bus_info(&a), "bus_key_id") != before
    });
    assert_eq!(
        info_field(&bus_info(&a), "bus_key_id"),
        info_field(&bus_info(&c), "bus_key_id")
    );
    assert_eq!(bus(&a, "bus_key_reloads"), 1);
    a.conn().cmd_str(&["NEARCACHE", "INVALIDATE", "x"]);
    expect_within(
        &mut c.conn(),
        "x",
        &bulk(b"new"),
        BOUND,
        "C takes the new key",
    );
    drop((old_dir, both_dir, new_dir));
}

/// Waits for `sidecar`'s start-up warming to end; its `INFO nearcache_l1` then.
fn wait_warmed(sidecar: &Sidecar) -> String {
    let mut text = String::new();
    poll_until(Duration::from_secs(20), "the warming ends", || {
        text = sidecar.conn().info(Some("nearcache_l1"));
        info_field(&text, "warm_state").as_deref() == Some("done")
    });
    text
}

#[test]
fn hot_key_asks_get_a_few_answers_not_one_per_peer() {
    let redis = Redis::start();
    let (_dir, key) = bus_key_file(&[BUS_KEY]);
    let mut direct = redis.conn();
    for i in 0..10 {
        direct.cmd_str(&["SET", &format!("hot:{i}"), "h"]);
    }
    let peers: Vec<Sidecar> = (0..5).map(|_| keyed(&redis, &key)).collect();
    for p in &peers {
        let mut c = p.conn();
        for _ in 0..20 {
            for i in 0..10 {
                c.cmd_str(&["GET", &format!("hot:{i}")]);
            }
        }
    }
    let answers_sent =
        |peers: &[Sidecar]| -> u64 { peers.iter().map(|p| bus(p, "bus_hot_answers_sent")).sum() };
    // The peers answered each other's start-up asks already: wait until each one's own
    // warming is over (answers go within 400 ms, an asker waits 500 ms) before counting.
    for p in &peers {
        wait_warmed(p);
    }
    let before = answers_sent(&peers);
    // Any subscriber of the channel (a weak ACL user) sees the answers go by, sealed.
    let mut sub = redis.conn();
    sub.cmd_str(&["SUBSCRIBE", CHANNEL]);
    let asker = keyed(&redis, &key);
    let text = wait_warmed(&asker);
    sub.set_read_timeout(Duration::from_millis(300));
    let mut seen = Vec::new();
    while let Ok(message) = sub.try_read_reply() {
        seen.push(message);
    }
    let answers: Vec<_> = seen
        .iter()
        .filter(|m| m.windows(3).any(|w| w == b" H "))
        .collect();
    assert!(!answers.is_empty(), "answers went by on the channel");
    for m in answers {
        assert!(
            !m.windows(4).any(|w| w == b"hot:"),
            "key names in {}",
            show(m)
        );
    }
    let answers = info_u64(&text, "warm_peer_answers");
    assert!(answers >= 1, "{text}");
    assert!(info_u64(&text, "warm_peer_keys") >= 10, "{text}");
    // Usually one or two answer; answers can cross on a loaded machine, but peers that saw
    // one stay silent, so not every peer answers.
    let sent = answers_sent(&peers) - before;
    assert!(
        sent < peers.len() as u64,
        "{sent} answers published by 5 peers"
    );
}

#[test]
fn an_open_bus_is_logged_once_and_answers_no_hot_key_ask() {
    let redis = Redis::start();
    let a = Sidecar::start(redis.port(), &["--tracking", "off"]);
    poll_until(BOUND, "subscribed", || {
        info_field(&bus_info(&a), "bus").as_deref() == Some("subscribed")
    });
    let warning = "is open (no --bus-key-file)";
    poll_until(BOUND, "the open bus logged", || {
        a.stderr().contains(warning)
    });
    assert_eq!(a.stderr().matches(warning).count(), 1);
    assert_eq!(info_field(&bus_info(&a), "bus_keyed").as_deref(), Some("0"));
    let mut c = a.conn();
    for _ in 0..20 {
        c.cmd_str(&["GET", "hot:1"]);
    }
    redis
        .conn()
        .cmd_str(&["PUBLISH", CHANNEL, "v1 - - - H? asker 100"]);
    poll_until(BOUND, "the ask arrives", || {
        bus(&a, "bus_hot_asks_received") == 1
    });
    // Answers go out within 400 ms when they go out at all.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(bus(&a, "bus_hot_answers_sent"), 0);
}

/// docs/bus.md's recipe for a service that signs its own message, run as written (with the
/// test's key file and Redis port).
#[test]
fn the_docs_signing_recipe_is_accepted() {
    let readme = include_str!("../../../docs/bus.md");
    let start = readme
        .find("```sh\nKEY=$(head -n 1 /etc/nearcache/bus.key)")
        .expect("the recipe in docs/bus.md")
        + "```sh\n".len();
    let recipe = &readme[start..start + readme[start..].find("```").unwrap()];
    let redis = Redis::start();
    let (_dir, key) = bus_key_file(&[BUS_KEY]);
    let b = keyed(&redis, &key);
    stale(&redis, &b, "user:7");
    let script = recipe
        .replace("/etc/nearcache/bus.key", &key)
        .replace("redis-cli ", &format!("redis-cli -p {} ", redis.port()));
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect_within(
        &mut b.conn(),
        "user:7",
        &bulk(b"new"),
        BOUND,
        "the signed pattern evicts",
    );
    assert_eq!(bus(&b, "bus_unauthenticated_messages"), 0);
}
