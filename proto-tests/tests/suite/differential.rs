//! Randomised differential test: many writes of many kinds through the sidecar, from
//! several connections (RESP2 and RESP3, alone and pipelined), and after every step each
//! key read through the sidecar must equal the same key read directly from Redis.
//! Nothing else writes, so any difference is a missed invalidation or a wrong reply.

use proto_tests::{show, start_pair, Conn, Rng};

const KEYS: &[&str] = &["d:a", "d:b", "d:c", "d:d", "d:e"];
const STEPS: usize = 1500;

/// A random key of [`KEYS`].
fn key(rng: &mut Rng) -> &'static str {
    KEYS[rng.below(KEYS.len())]
}

/// A reply reduced to what both protocols share: a value, a nil, an error code, or
/// (for arrays) the list of those.
#[derive(Debug, PartialEq, Eq)]
enum Value {
    Bulk(Vec<u8>),
    Nil,
    Error(String),
    Array(Vec<Value>),
    Other(Vec<u8>),
}

fn parse(reply: &[u8]) -> (Value, usize) {
    let nl = reply
        .iter()
        .position(|&b| b == b'\n')
        .expect("a complete line");
    let header = std::str::from_utf8(&reply[1..nl - 1]).expect("ASCII header");
    match reply[0] {
        b'$' if header == "-1" => (Value::Nil, nl + 1),
        b'_' => (Value::Nil, nl + 1),
        b'$' => {
            let len: usize = header.parse().expect("bulk length");
            (
                Value::Bulk(reply[nl + 1..nl + 1 + len].to_vec()),
                nl + 1 + len + 2,
            )
        }
        b'-' => (
            Value::Error(header.split(' ').next().unwrap_or("").to_string()),
            nl + 1,
        ),
        b'*' => {
            let n: usize = header.parse().expect("array length");
            let (mut items, mut at) = (Vec::new(), nl + 1);
            for _ in 0..n {
                let (v, used) = parse(&reply[at..]);
                items.push(v);
                at += used;
            }
            (Value::Array(items), at)
        }
        _ => (Value::Other(reply[..nl + 1].to_vec()), nl + 1),
    }
}

fn value(reply: &[u8]) -> Value {
    parse(reply).0
}

/// One random write, as arguments.
fn random_write(rng: &mut Rng) -> Vec<String> {
    let (k, k2) = (key(rng).to_string(), key(rng).to_string());
    let v = format!("v{}", rng.below(1000));
    let w: Vec<&str> = match rng.below(22) {
        0..=2 => vec!["SET", &k, &v],
        3 => vec!["SET", &k, &v, "EX", "100"],
        4 => vec!["DEL", &k],
        5 => vec!["UNLINK", &k, &k2],
        6 => vec!["INCR", &k],
        7 => vec!["APPEND", &k, &v],
        8 => vec!["GETSET", &k, &v],
        9 => vec!["GETDEL", &k],
        10 => vec!["GETEX", &k, "EX", "100"],
        11 => vec!["PEXPIRE", &k, "0"],
        12 => vec!["RENAME", &k, &k2],
        13 => vec!["MSET", &k, &v, &k2, "w"],
        14 => vec!["SETRANGE", &k, "1", "xy"],
        15 => vec!["COPY", &k, &k2, "REPLACE"],
        16 => vec!["LPUSH", &k, &v],
        17 => vec!["HSET", &k, "f", &v],
        18 => vec![
            "EVAL",
            "return redis.call('SET', KEYS[1], ARGV[1])",
            "1",
            &k,
            &v,
        ],
        19 => vec!["SETNX", &k, &v],
        20 if rng.below(10) == 0 => vec!["FLUSHDB"],
        _ => vec!["MSETNX", &k, &v],
    };
    w.into_iter().map(String::from).collect()
}

fn send(conn: &mut Conn, args: &[String]) -> Vec<u8> {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    conn.cmd_str(&refs)
}

#[test]
fn every_read_through_the_sidecar_matches_redis_after_random_writes() {
    let (redis, sidecar) = start_pair(&[]);
    let mut direct = redis.conn();
    let mut conns = [sidecar.conn(), sidecar.conn(), sidecar.conn()];
    conns[2].hello3();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    for step in 0..STEPS {
        let c = rng.below(conns.len());
        let write = random_write(&mut rng);
        let key = write.get(1).cloned().unwrap_or_else(|| KEYS[0].to_string());
        if rng.below(3) == 0 {
            // Pipelined: the write, then reads of the key it wrote, in one batch.
            let mut batch = proto_tests::encode_command(
                &write.iter().map(|a| a.as_bytes()).collect::<Vec<_>>(),
            );
            batch.extend(proto_tests::encode_command_str(&["GET", &key]));
            batch.extend(proto_tests::encode_command_str(&["MGET", &key, KEYS[0]]));
            conns[c].send(&batch);
            let replies = conns[c].read_replies(3);
            let want_get = value(&direct.cmd_str(&["GET", &key]));
            let want_mget = value(&direct.cmd_str(&["MGET", &key, KEYS[0]]));
            assert_eq!(
                value(&replies[1]),
                want_get,
                "step {step}: pipelined GET {key} after {write:?}"
            );
            assert_eq!(
                value(&replies[2]),
                want_mget,
                "step {step}: pipelined MGET after {write:?}"
            );
        } else {
            let reply = send(&mut conns[c], &write);
            assert!(!reply.is_empty(), "step {step}: {write:?} got no reply");
        }
        for k in KEYS {
            let reader = rng.below(conns.len());
            let got = conns[reader].cmd_str(&["GET", k]);
            let want = direct.cmd_str(&["GET", k]);
            assert_eq!(
                value(&got),
                value(&want),
                "step {step}: GET {k} on conn {reader} after {write:?} on conn {c}: sidecar {} redis {}",
                show(&got),
                show(&want)
            );
        }
        if step % 10 == 0 {
            let reader = rng.below(conns.len());
            let got = conns[reader].cmd_str(&["MGET", KEYS[0], KEYS[1], KEYS[2], KEYS[3], KEYS[4]]);
            let want = direct.cmd_str(&["MGET", KEYS[0], KEYS[1], KEYS[2], KEYS[3], KEYS[4]]);
            assert_eq!(value(&got), value(&want), "step {step}: MGET of every key");
        }
    }
}

/// Writers bump their own key and must read their own write at once; readers hammer the
/// same keys (racing fetches against the writes) and must never see a key go backwards.
#[test]
fn concurrent_readers_never_see_a_key_go_back_and_writers_read_their_writes() {
    readers_and_writers(&[]);
}

/// The same with two worker threads: fills, invalidations and front reads truly in parallel.
#[test]
fn concurrent_readers_and_writers_on_two_worker_threads() {
    readers_and_writers(&["--threads", "2"]);
}

fn readers_and_writers(flags: &[&str]) {
    const WRITERS: usize = 4;
    const READERS: usize = 4;
    const ROUNDS: u64 = 300;
    let (_redis, sidecar) = start_pair(flags);
    let addr = sidecar.addr();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let number = |reply: &[u8]| match value(reply) {
        Value::Bulk(b) => String::from_utf8(b).unwrap().parse::<u64>().unwrap(),
        Value::Nil => 0,
        other => panic!("unexpected reply {other:?}"),
    };
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let done = done.clone();
            std::thread::spawn(move || {
                let mut conn = Conn::connect(addr);
                let mut seen = [0u64; WRITERS];
                let mut reads = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for (w, last) in seen.iter_mut().enumerate() {
                        let key = format!("ryw:{w}");
                        let now = if (reads + r as u64).is_multiple_of(3) {
                            match value(&conn.cmd_str(&["MGET", &key])) {
                                Value::Array(mut v) => match v.pop() {
                                    Some(Value::Bulk(b)) => {
                                        String::from_utf8(b).unwrap().parse().unwrap()
                                    }
                                    _ => 0,
                                },
                                other => panic!("MGET gave {other:?}"),
                            }
                        } else {
                            number(&conn.cmd_str(&["GET", &key]))
                        };
                        assert!(
                            now >= *last,
                            "reader {r}: {key} went back from {last} to {now}"
                        );
                        *last = now;
                        reads += 1;
                    }
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            std::thread::spawn(move || {
                let mut conn = Conn::connect(addr);
                let key = format!("ryw:{w}");
                for n in 1..=ROUNDS {
                    let set = conn.cmd_str(&["SET", &key, &n.to_string()]);
                    assert_eq!(set, b"+OK\r\n");
                    let got = number(&conn.cmd_str(&["GET", &key]));
                    assert_eq!(got, n, "writer {w} did not read its own write");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    assert!(reads > 0, "the readers ran");
}
