//! The handlers against a fake upstream ([`fake`]), over an in-memory client stream: no
//! socket, no Redis. Each test speaks RESP to a real [`Connection`] as a client would.

mod fake;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::Connection;
use crate::cache::{CacheKey, KeyRef};
use crate::config::{Config, Flags};
use crate::services::Services;
use clap::Parser;
use fake::Fake;

/// A client of a connection served against a fake upstream.
struct Client {
    stream: DuplexStream,
    services: Arc<Services>,
    fake: Arc<Fake>,
    _stop: tokio_util::sync::DropGuard,
}

impl Client {
    fn start() -> Client {
        let flags = Flags::try_parse_from([
            "nearcache",
            "--upstream",
            "redis://127.0.0.1:1",
            "--metrics-listen",
            "off",
            "--audit-rate",
            "0",
        ])
        .unwrap();
        let config = Config::from_parts(&flags, None).unwrap();
        let credentials = crate::app::credentials(&config).unwrap();
        let services = crate::app::services(
            config,
            None,
            credentials,
            crate::upstream::CredentialSource::fixed(None),
        );
        let fake = Fake::new();
        let (client, server) = tokio::io::duplex(64 * 1024);
        let stop = tokio_util::sync::CancellationToken::new();
        let connection = Connection::over(services.clone(), fake.clone(), server, None, 0);
        tokio::spawn(connection.run(stop.clone()));
        Client {
            stream: client,
            services,
            fake,
            _stop: stop.drop_guard(),
        }
    }

    /// Sends one request (as RESP) and checks the reply it gets.
    async fn call(&mut self, args: &[&str], want: &str) {
        let mut request = format!("*{}\r\n", args.len());
        for a in args {
            request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = vec![0u8; want.len()];
        let read = tokio::time::timeout(Duration::from_secs(5), self.stream.read_exact(&mut got));
        read.await.expect("a reply in time").unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want, "reply to {args:?}");
    }

    /// Whether L1 holds `key` (default user, db 0).
    fn cached(&self, key: &str) -> bool {
        cached(&self.services, key)
    }

    /// The commands the fake upstream received whose name is `name`.
    fn sent(&self, name: &str) -> Vec<String> {
        let log = self.fake.redis.log();
        let prefix = format!("{name} ");
        log.into_iter().filter(|c| c.starts_with(&prefix)).collect()
    }
}

fn cached(services: &Services, key: &str) -> bool {
    let key = KeyRef {
        user: 0,
        db: 0,
        key: key.as_bytes(),
    };
    services.l1.get_in(&key).is_some()
}

#[tokio::test]
async fn a_get_miss_fills_l1_and_the_next_get_is_a_hit() {
    let mut c = Client::start();
    c.fake.redis.set("k", "v1");
    c.call(&["GET", "k"], "$2\r\nv1\r\n").await;
    assert!(c.cached("k"), "the miss's fill lands in L1");
    c.call(&["GET", "k"], "$2\r\nv1\r\n").await;
    assert_eq!(c.sent("GET"), ["GET k"], "the second GET is a hit");
    assert_eq!(c.sent("PTTL"), ["PTTL k"], "the fill learns the key's TTL");
}

#[tokio::test]
async fn a_missing_key_is_cached_as_missing_and_answered_as_null() {
    let mut c = Client::start();
    c.call(&["GET", "nope"], "$-1\r\n").await;
    c.call(&["GET", "nope"], "$-1\r\n").await;
    assert_eq!(c.sent("GET"), ["GET nope"]);
}

#[tokio::test]
async fn mget_fetches_only_its_misses_in_one_call_and_answers_in_order() {
    let mut c = Client::start();
    for (k, v) in [("a", "1"), ("b", "2"), ("x", "3")] {
        c.fake.redis.set(k, v);
    }
    c.call(&["GET", "a"], "$1\r\n1\r\n").await;
    c.call(&["GET", "b"], "$1\r\n2\r\n").await;
    let want = "*4\r\n$1\r\n1\r\n$1\r\n3\r\n$1\r\n2\r\n$-1\r\n";
    c.call(&["MGET", "a", "x", "b", "y"], want).await;
    assert_eq!(
        c.sent("MGET"),
        ["MGET x y"],
        "one upstream MGET, misses only"
    );
    assert!(c.cached("x"), "the MGET's misses fill L1");
    // Every element is now in L1: no upstream call at all.
    c.call(&["MGET", "a", "x", "b", "y"], want).await;
    assert_eq!(c.sent("MGET").len(), 1);
}

#[tokio::test]
async fn a_write_evicts_before_it_is_sent_and_again_when_its_reply_arrives() {
    let mut c = Client::start();
    c.fake.redis.set("k", "old");
    c.call(&["GET", "k"], "$3\r\nold\r\n").await;
    assert!(c.cached("k"));
    // When the SET reaches the upstream, L1 no longer holds the key; a fetch that read the
    // old value just before (its generation taken after the first eviction) fills L1.
    let services = c.services.clone();
    let evicted_before_sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = evicted_before_sent.clone();
    c.fake.redis.on_command(Box::new(move |args: &[Bytes]| {
        if !args[0].eq_ignore_ascii_case(b"SET") {
            return;
        }
        seen.store(!cached(&services, "k"), std::sync::atomic::Ordering::SeqCst);
        let key = CacheKey {
            user: 0,
            db: 0,
            key: Bytes::from_static(b"k"),
        };
        let taken = services.l1.generation(&key);
        let (stale, pttl) = (
            Bytes::from_static(b"$3\r\nold\r\n"),
            Bytes::from_static(b":-1\r\n"),
        );
        services.l1.fill(
            key,
            taken,
            Instant::now(),
            &stale,
            &pttl,
            true,
            Some(crate::cache::FilledBy::LOCAL),
        );
        assert!(cached(&services, "k"), "the racing fill landed");
    }));
    c.call(&["SET", "k", "new"], "+OK\r\n").await;
    assert!(evicted_before_sent.load(std::sync::atomic::Ordering::SeqCst));
    assert!(
        !c.cached("k"),
        "the racing fill is evicted when the reply arrives"
    );
    c.call(&["GET", "k"], "$3\r\nnew\r\n").await;
}

#[tokio::test]
async fn keys_written_inside_multi_are_evicted_at_exec() {
    let mut c = Client::start();
    c.fake.redis.set("k", "old");
    c.call(&["GET", "k"], "$3\r\nold\r\n").await;
    c.call(&["MULTI"], "+OK\r\n").await;
    c.call(&["SET", "k", "new"], "+QUEUED\r\n").await;
    assert!(c.cached("k"), "a queued write has not run");
    c.call(&["EXEC"], "*1\r\n+OK\r\n").await;
    assert!(
        !c.cached("k"),
        "evicted at EXEC, before its reply reaches the client"
    );
    c.call(&["GET", "k"], "$3\r\nnew\r\n").await;
}

#[tokio::test]
async fn hello_refuses_an_unknown_option_as_redis_7_without_asking_the_upstream() {
    let mut c = Client::start();
    c.call(
        &["HELLO", "3", "BOGUS"],
        "-ERR Syntax error in HELLO option 'BOGUS'\r\n",
    )
    .await;
    c.call(
        &["HELLO", "2", "AUTH", "onlyuser"],
        "-ERR Syntax error in HELLO option 'AUTH'\r\n",
    )
    .await;
    assert!(c.fake.redis.log().is_empty(), "{:?}", c.fake.redis.log());
    // The session is unchanged: still RESP2.
    c.call(&["GET", "nope"], "$-1\r\n").await;
}
