//! Blocking commands through the sidecar: each blocked client has an upstream connection
//! of its own, so it delays no one; it waits for its own timeout, not the sidecar's
//! upstream timeout; and what it pops is evicted from L1.

use std::thread;
use std::time::{Duration, Instant};

use proto_tests::*;

#[test]
fn blocked_clients_delay_no_one() {
    let (redis, sidecar) = start_pair(&[]);
    const BLOCKED: usize = 20;
    let mut blocked = Vec::new();
    for i in 0..BLOCKED {
        let mut c = sidecar.conn();
        c.send(&encode_command_str(&["BLPOP", &format!("q{i}"), "0"]));
        blocked.push(c);
    }
    poll_until(
        Duration::from_secs(5),
        "every BLPOP is blocked upstream",
        || info_u64(&redis.conn().info(Some("clients")), "blocked_clients") == BLOCKED as u64,
    );
    // A flood of ordinary clients meanwhile: all served (misses, hits and writes).
    let started = Instant::now();
    let flood: Vec<_> = (0..8)
        .map(|t| {
            let addr = sidecar.addr();
            thread::spawn(move || {
                let mut c = Conn::connect(addr);
                for i in 0..250 {
                    let key = format!("f{t}:{}", i % 10);
                    let reply = c.cmd_str(&["SET", &key, "v"]);
                    assert_reply(&reply, b"+OK\r\n", "SET in the flood");
                    assert_reply(&c.cmd_str(&["GET", &key]), &bulk(b"v"), "GET");
                }
            })
        })
        .collect();
    for f in flood {
        f.join().unwrap();
    }
    eprintln!(
        "4000 requests beside {BLOCKED} blocked clients: {:?}",
        started.elapsed()
    );
    // Each blocked client gets its own value.
    let mut direct = redis.conn();
    for i in 0..BLOCKED {
        let q = format!("q{i}");
        assert_eq!(
            int_reply(&direct.cmd_str(&["RPUSH", &q, &format!("job{i}")])),
            1
        );
    }
    for (i, c) in blocked.iter_mut().enumerate() {
        let q = format!("q{i}");
        let job = format!("job{i}");
        let want = [b"*2\r\n".to_vec(), bulk(q.as_bytes()), bulk(job.as_bytes())].concat();
        assert_reply(&c.read_reply(), &want, "BLPOP's reply");
        // Back on the shared connections: an ordinary command works.
        assert_reply(&c.cmd_str(&["PING"]), b"+PONG\r\n", "PING after BLPOP");
    }
}

#[test]
fn a_blocked_call_waits_for_its_own_timeout_not_the_upstream_timeout() {
    let (redis, sidecar) = start_pair(&["--upstream-timeout", "200ms"]);
    let mut c = sidecar.conn();
    let started = Instant::now();
    assert_reply(
        &c.cmd_str(&["BRPOP", "empty", "1"]),
        b"*-1\r\n",
        "BRPOP times out",
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "returned after {:?}, before its own 1 s timeout",
        started.elapsed()
    );
    // Timeout 0 waits until a value comes, however long after the upstream timeout.
    c.send(&encode_command_str(&[
        "BLMOVE", "src", "dst", "LEFT", "RIGHT", "0",
    ]));
    thread::sleep(Duration::from_millis(600));
    assert_eq!(int_reply(&redis.conn().cmd_str(&["RPUSH", "src", "x"])), 1);
    assert_reply(&c.read_reply(), &bulk(b"x"), "BLMOVE");
    // XREAD BLOCK, BZPOPMIN and BLMPOP likewise.
    c.send(&encode_command_str(&[
        "XREAD", "BLOCK", "0", "STREAMS", "s", "$",
    ]));
    thread::sleep(Duration::from_millis(400));
    let id = redis.conn().cmd_str(&["XADD", "s", "5-1", "f", "v"]);
    assert_reply(&id, &bulk(b"5-1"), "XADD");
    let want = "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n5-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n";
    assert_reply(&c.read_reply(), want.as_bytes(), "XREAD BLOCK");
    c.send(&encode_command_str(&["BZPOPMIN", "z", "0"]));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        int_reply(&redis.conn().cmd_str(&["ZADD", "z", "1.5", "m"])),
        1
    );
    assert_reply(
        &c.read_reply(),
        b"*3\r\n$1\r\nz\r\n$1\r\nm\r\n$3\r\n1.5\r\n",
        "BZPOPMIN",
    );
}

#[test]
fn what_a_blocking_pop_writes_is_evicted() {
    let (redis, sidecar) = start_pair(&["--tracking", "off"]);
    let mut direct = redis.conn();
    let mut c = sidecar.conn();
    assert_reply(&direct.cmd_str(&["SET", "q", "string"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "q"]), &bulk(b"string"), "GET (fill)");
    // Behind the sidecar's back (no tracking): q becomes a list; L1 still holds the string.
    assert_eq!(int_reply(&direct.cmd_str(&["DEL", "q"])), 1);
    assert_eq!(int_reply(&direct.cmd_str(&["RPUSH", "q", "job"])), 1);
    let want = [b"*2\r\n".to_vec(), bulk(b"q"), bulk(b"job")].concat();
    assert_reply(&c.cmd_str(&["BLPOP", "q", "1"]), &want, "BLPOP");
    assert_reply(&c.cmd_str(&["GET", "q"]), b"$-1\r\n", "q popped: evicted");
    // The destination of a blocking move too.
    assert_reply(&direct.cmd_str(&["SET", "dst", "s"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["GET", "dst"]), &bulk(b"s"), "GET dst (fill)");
    assert_eq!(int_reply(&direct.cmd_str(&["DEL", "dst"])), 1);
    assert_eq!(int_reply(&direct.cmd_str(&["RPUSH", "src", "x"])), 1);
    let moved = c.cmd_str(&["BLMOVE", "src", "dst", "LEFT", "RIGHT", "1"]);
    assert_reply(&moved, &bulk(b"x"), "BLMOVE");
    let got = c.cmd_str(&["GET", "dst"]);
    assert!(
        got.starts_with(b"-WRONGTYPE"),
        "dst is a list now: {}",
        show(&got)
    );
}

#[test]
fn a_blocked_client_that_leaves_unblocks_its_connection() {
    let (redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    c.send(&encode_command_str(&["BLPOP", "gone", "0"]));
    poll_until(Duration::from_secs(5), "blocked upstream", || {
        info_u64(&redis.conn().info(Some("clients")), "blocked_clients") == 1
    });
    drop(c);
    poll_until(Duration::from_secs(5), "no longer blocked upstream", || {
        info_u64(&redis.conn().info(Some("clients")), "blocked_clients") == 0
    });
    // Nothing was popped for the client that left.
    assert_eq!(int_reply(&redis.conn().cmd_str(&["RPUSH", "gone", "x"])), 1);
    assert_eq!(int_reply(&redis.conn().cmd_str(&["LLEN", "gone"])), 1);
}

#[test]
fn wait_counts_replicas_that_have_the_clients_writes() {
    let (redis, sidecar) = start_pair(&[]);
    let replica = Redis::start_with(&["--replicaof", "127.0.0.1", &redis.port().to_string()]);
    poll_until(Duration::from_secs(10), "the replica is in sync", || {
        let info = redis.conn().info(Some("replication"));
        info_u64(&info, "connected_slaves") == 1 && info.contains("state=online")
    });
    let mut c = sidecar.conn();
    assert_reply(&c.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    assert_reply(&c.cmd_str(&["WAIT", "1", "5000"]), b":1\r\n", "WAIT 1");
    assert_reply(
        &replica.conn().cmd_str(&["GET", "k"]),
        &bulk(b"v"),
        "the replica has the write WAIT waited for",
    );
}
