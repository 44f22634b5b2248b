//! Head-of-line blocking on pooled upstream connections: a command Redis holds (under
//! `CLIENT PAUSE WRITE`) must not hold up other clients' commands that Redis would answer
//! at once, whether they arrive right after it or once it has waited a while, and whether
//! the clients are new or have used the sidecar before.

use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use proto_tests::*;

/// Clients that read while the command is held: twice the default
/// `--upstream-connections`, so that some of them start on the held command's connection.
const READERS: usize = 8;

/// What arrived, in the order it arrived.
#[derive(Debug, PartialEq)]
enum Arrived {
    Get(usize, Vec<u8>),
    Held(Vec<u8>),
}

/// A sidecar with every L1 lookup forwarded (`--l1-ttl 0`) and the default
/// `--upstream-connections`, a writer and [`READERS`] readers that have each used it once
/// (their pool connections are established), and Redis paused for writes for 3 s.
fn paused_with_clients() -> (Redis, Sidecar, Conn, Vec<Conn>) {
    let (redis, sidecar) = start_pair(&["--l1-ttl", "0", "--acl-recheck", "0"]);
    let mut writer = sidecar.conn();
    let mut readers: Vec<Conn> = (0..READERS).map(|_| sidecar.conn()).collect();
    assert_reply(
        &writer.cmd_str(&["GET", "warm"]),
        b"$-1\r\n",
        "writer warm-up",
    );
    for (i, r) in readers.iter_mut().enumerate() {
        let what = format!("reader {i} warm-up");
        assert_reply(&r.cmd_str(&["GET", "warm"]), b"$-1\r\n", &what);
    }
    let mut direct = redis.conn();
    let pause = direct.cmd_str(&["CLIENT", "PAUSE", "3000", "WRITE"]);
    assert_reply(&pause, b"+OK\r\n", "CLIENT PAUSE");
    (redis, sidecar, writer, readers)
}

/// Readers that each send one GET of an uncached key once `go` is released, reporting the
/// replies on `events` as they arrive.
fn readers_ready(
    readers: Vec<Conn>,
    go: &Arc<Barrier>,
    events: &mpsc::Sender<Arrived>,
) -> Vec<thread::JoinHandle<()>> {
    readers
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            let (go, events) = (go.clone(), events.clone());
            thread::spawn(move || {
                go.wait();
                let reply = c.cmd_str(&["GET", &format!("cold{i}")]);
                let _ = events.send(Arrived::Get(i, reply));
            })
        })
        .collect()
}

/// Sends `args` on `writer` and waits until Redis holds it blocked by the pause (checked
/// without pausing between checks, so that what follows can come right after it); the
/// returned thread reads its reply and reports it on `events`.
fn send_held(
    redis: &Redis,
    mut writer: Conn,
    args: &[&str],
    events: mpsc::Sender<Arrived>,
) -> thread::JoinHandle<()> {
    let mut direct = redis.conn();
    writer.send(&encode_command_str(args));
    let deadline = Instant::now() + Duration::from_secs(5);
    while info_u64(&direct.info(Some("clients")), "blocked_clients") == 0 {
        assert!(
            Instant::now() < deadline,
            "{args:?} to be held by the pause"
        );
    }
    thread::spawn(move || {
        let reply = writer.read_reply();
        let _ = events.send(Arrived::Held(reply));
    })
}

/// Holds `args` with the readers ready; releases them `after` it is held; checks that
/// every reader got its reply while Redis still held the command (an ordering, not a time:
/// a reader queued behind it would be answered only after it), and that the held command
/// got `held_reply` last.
fn readers_are_not_held(args: &[&str], held_reply: &[u8], after: Duration) -> Redis {
    let (redis, sidecar, writer, readers) = paused_with_clients();
    let (tx, rx) = mpsc::channel();
    let go = Arc::new(Barrier::new(READERS + 1));
    let gets = readers_ready(readers, &go, &tx);
    let held = send_held(&redis, writer, args, tx);
    thread::sleep(after);
    go.wait();
    for h in gets {
        h.join().expect("reader thread");
    }
    let still = info_u64(&redis.conn().info(Some("clients")), "blocked_clients");
    held.join().expect("writer thread");
    let arrived: Vec<Arrived> = rx.iter().collect();
    assert_eq!(arrived.len(), READERS + 1, "{arrived:?}");
    assert!(
        still >= 1,
        "every reader answered while Redis still held {args:?}: {arrived:?}"
    );
    let (last, gets) = arrived.split_last().expect("replies");
    assert_eq!(
        last,
        &Arrived::Held(held_reply.to_vec()),
        "{args:?} is answered last, once the pause ends: {arrived:?}"
    );
    for got in gets {
        match got {
            Arrived::Get(i, reply) => assert_reply(reply, b"$-1\r\n", &format!("reader {i}")),
            other => panic!("only GETs before {args:?}: {other:?}"),
        }
    }
    drop(sidecar);
    redis
}

#[test]
fn reads_right_behind_a_paused_write_are_answered_before_it() {
    // At once: before the held SET looks stalled (its connection's oldest call is young).
    let redis = readers_are_not_held(&["SET", "held", "1"], b"+OK\r\n", Duration::ZERO);
    let mut direct = redis.conn();
    assert_reply(
        &direct.cmd_str(&["GET", "held"]),
        &bulk(b"1"),
        "the SET applied",
    );
}

#[test]
fn clients_that_used_a_connection_before_move_off_it_once_it_stalls() {
    // PUBLISH is held by CLIENT PAUSE WRITE but writes no key: only the stall (its call
    // older than the sidecar's threshold, 10 ms; not an assertion, a premise) moves the
    // readers, which all used their own connection before.
    readers_are_not_held(
        &["PUBLISH", "channel", "m"],
        b":0\r\n",
        Duration::from_millis(50),
    );
}
