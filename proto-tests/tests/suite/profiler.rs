//! The profiler: `NEARCACHE SLOWLOG` lists upstream calls slower than `--slow-threshold`
//! in Redis's `SLOWLOG GET` shape, and `NEARCACHE HOTKEYS` lists the most read keys. Each
//! with a workload that must trigger it and workloads that must not. (N+1 reads: the
//! `n_plus_one` suite.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{SystemTime, UNIX_EPOCH};

use proto_tests::*;
use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame;

/// A client that knows its own address (the slow log names it) and decodes replies.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to the sidecar");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    fn local(&self) -> String {
        self.stream.local_addr().unwrap().to_string()
    }

    /// Sends every command in one write, then reads one reply per command.
    fn pipeline(&mut self, cmds: &[Vec<String>]) -> Vec<OwnedFrame> {
        let mut bytes = Vec::new();
        for args in cmds {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            bytes.extend(encode_command_str(&args));
        }
        self.stream.write_all(&bytes).unwrap();
        (0..cmds.len()).map(|_| self.read()).collect()
    }

    fn cmd(&mut self, args: &[&str]) -> OwnedFrame {
        let args = args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        self.pipeline(&[args]).pop().unwrap()
    }

    fn read(&mut self) -> OwnedFrame {
        loop {
            if let Some((frame, n)) = decode(&self.buf).expect("a valid reply") {
                self.buf.drain(..n);
                return frame;
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).expect("read a reply");
            assert!(n > 0, "the sidecar closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn ok(frame: OwnedFrame, what: &str) {
    assert_eq!(frame, OwnedFrame::SimpleString(b"OK".to_vec()), "{what}");
}

fn int(frame: OwnedFrame) -> i64 {
    match frame {
        OwnedFrame::Integer(n) => n,
        other => panic!("not an integer: {other:?}"),
    }
}

fn array(frame: OwnedFrame) -> Vec<OwnedFrame> {
    match frame {
        OwnedFrame::Array(a) => a,
        other => panic!("not an array: {other:?}"),
    }
}

fn text(frame: &OwnedFrame) -> String {
    match frame {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => {
            String::from_utf8(b.clone()).unwrap()
        }
        other => panic!("not a string: {other:?}"),
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// One `SLOWLOG GET` entry.
#[derive(Debug)]
struct Entry {
    id: i64,
    time: i64,
    micros: i64,
    args: Vec<String>,
    client: String,
    name: String,
}

fn slowlog(c: &mut Client, count: Option<&str>) -> Vec<Entry> {
    let mut args = vec!["NEARCACHE", "SLOWLOG", "GET"];
    args.extend(count);
    array(c.cmd(&args))
        .into_iter()
        .map(|e| {
            let e = array(e);
            assert_eq!(e.len(), 6, "{e:?}");
            let mut e = e.into_iter();
            Entry {
                id: int(e.next().unwrap()),
                time: int(e.next().unwrap()),
                micros: int(e.next().unwrap()),
                args: array(e.next().unwrap()).iter().map(text).collect(),
                client: text(&e.next().unwrap()),
                name: text(&e.next().unwrap()),
            }
        })
        .collect()
}

fn slowlog_len(c: &mut Client) -> i64 {
    int(c.cmd(&["NEARCACHE", "SLOWLOG", "LEN"]))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn a_slow_upstream_call_is_in_the_slowlog_with_args_client_and_name() {
    let (_redis, sidecar) = start_pair(&["--slow-threshold", "50ms"]);
    let mut c = Client::connect(sidecar.addr());
    ok(c.cmd(&["CLIENT", "SETNAME", "billing"]), "SETNAME");
    // Fast commands: forwarded, fetched, answered from L1, answered locally.
    ok(c.cmd(&["SET", "a", "1"]), "SET");
    for _ in 0..3 {
        assert_eq!(text(&c.cmd(&["GET", "a"])), "1");
    }
    c.cmd(&["INCR", "n"]);
    c.cmd(&["PING"]);
    assert_eq!(slowlog_len(&mut c), 0, "fast commands are not slow");

    let before = unix_now();
    ok(c.cmd(&["DEBUG", "SLEEP", "0.1"]), "DEBUG SLEEP");
    let after = unix_now();
    let entries = slowlog(&mut c, None);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let e = &entries[0];
    assert_eq!(e.args, ["DEBUG", "SLEEP", "0.1"]);
    assert!((95_000..5_000_000).contains(&e.micros), "{e:?}");
    assert!((before..=after).contains(&e.time), "{e:?}");
    assert_eq!(e.client, c.local());
    assert_eq!(e.name, "billing");

    // More fast commands: still one entry.
    ok(c.cmd(&["SET", "b", "2"]), "SET b");
    c.cmd(&["GET", "b"]);
    assert_eq!(slowlog_len(&mut c), 1);

    // A slow call holding a pipeline is logged once, as its first command.
    let replies = c.pipeline(&[
        strings(&["DEBUG", "SLEEP", "0.06"]),
        strings(&["GET", "not-cached"]),
    ]);
    assert_eq!(replies[1], OwnedFrame::Null);
    let entries = slowlog(&mut c, None);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(
        entries[0].args,
        [
            "DEBUG",
            "SLEEP",
            "0.06",
            "... (+1 more commands in the pipeline)"
        ]
    );
    assert!(entries[0].id > entries[1].id, "newest first");
    assert_eq!(slowlog(&mut c, Some("1")).len(), 1);
    assert_eq!(slowlog(&mut c, Some("-1")).len(), 2);
    assert_eq!(slowlog(&mut c, Some("0")).len(), 0);

    // Another client's entry names that client; RESET empties the log.
    let mut other = Client::connect(sidecar.addr());
    ok(other.cmd(&["DEBUG", "SLEEP", "0.06"]), "DEBUG SLEEP other");
    let entries = slowlog(&mut c, Some("1"));
    assert_eq!(
        (entries[0].client.as_str(), entries[0].name.as_str()),
        (other.local().as_str(), "")
    );
    assert_eq!(slowlog_len(&mut c), 3);
    ok(c.cmd(&["NEARCACHE", "SLOWLOG", "RESET"]), "RESET");
    assert_eq!(slowlog_len(&mut c), 0);
    assert!(slowlog(&mut c, None).is_empty());
}

#[test]
fn arguments_are_truncated_like_redis() {
    let (_redis, sidecar) = start_pair(&["--slow-threshold", "0"]);
    let mut c = Client::connect(sidecar.addr());
    let long = "v".repeat(200);
    let mut args = vec!["RPUSH".to_string(), "list".to_string(), long];
    args.extend((0..40).map(|i| i.to_string()));
    c.pipeline(&[args]);
    let entries = slowlog(&mut c, Some("1"));
    let got = &entries[0].args;
    assert_eq!(got.len(), 32, "{got:?}");
    assert_eq!(got[2], format!("{}... (72 more bytes)", "v".repeat(128)));
    assert_eq!(got[31], "... (12 more arguments)");
}

#[test]
fn an_untracked_read_is_logged_as_the_clients_command() {
    // Reads that fill nothing go upstream behind `CLIENT CACHING no`: the log shows what
    // the client sent, and counts the commands it sent.
    let (_redis, sidecar) = start_pair(&["--slow-threshold", "0"]);
    let mut c = Client::connect(sidecar.addr());
    let replies = c.pipeline(&[strings(&["HGET", "h", "f"]), strings(&["STRLEN", "s"])]);
    assert_eq!(replies[0], OwnedFrame::Null);
    let entries = slowlog(&mut c, Some("1"));
    assert_eq!(
        entries[0].args,
        ["HGET", "h", "f", "... (+1 more commands in the pipeline)"]
    );
}

#[test]
fn a_normal_workload_logs_nothing_with_the_default_threshold() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = Client::connect(sidecar.addr());
    // A round trip can truly exceed 10ms when the test machine is starved for CPU (the
    // whole suite runs in parallel): one of three runs must log nothing at all.
    let mut runs = Vec::new();
    for _ in 0..3 {
        ok(c.cmd(&["NEARCACHE", "SLOWLOG", "RESET"]), "RESET");
        for i in 0..50 {
            let key = format!("k:{}", i % 10);
            c.cmd(&["SET", &key, "v"]);
            c.cmd(&["GET", &key]);
            c.cmd(&["MGET", &key, "other"]);
        }
        let entries = slowlog(&mut c, None);
        if entries.is_empty() {
            return;
        }
        runs.push(entries);
    }
    panic!("every run logged slow calls: {runs:?}");
}

#[test]
fn slowlog_subcommand_errors_and_help() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = Client::connect(sidecar.addr());
    let help = array(c.cmd(&["NEARCACHE", "SLOWLOG", "HELP"]));
    assert!(text(&help[0]).starts_with("NEARCACHE SLOWLOG <subcommand>"));
    for (args, want) in [
        (
            &["NEARCACHE", "SLOWLOG"][..],
            "ERR wrong number of arguments for 'nearcache|slowlog' command",
        ),
        (
            &["NEARCACHE", "SLOWLOG", "LEN", "x"][..],
            "ERR unknown subcommand or wrong number of arguments for 'LEN'. Try NEARCACHE SLOWLOG HELP.",
        ),
        (
            &["NEARCACHE", "SLOWLOG", "GET", "-2"][..],
            "ERR count should be greater than or equal to -1",
        ),
        (
            &["NEARCACHE", "HOTKEYS", "0"][..],
            "ERR value is out of range, must be positive",
        ),
        (
            &["NEARCACHE", "HOTKEYS", "1", "2"][..],
            "ERR wrong number of arguments for 'nearcache|hotkeys' command",
        ),
    ] {
        assert_eq!(c.cmd(args), OwnedFrame::Error(want.into()), "{args:?}");
    }
    let help = array(c.cmd(&["NEARCACHE", "HELP"]));
    for sub in ["SLOWLOG GET", "HOTKEYS"] {
        assert!(
            help.iter().any(|l| text(l).starts_with(sub)),
            "HELP names {sub}"
        );
    }
}

fn gets(keys: impl IntoIterator<Item = String>) -> Vec<Vec<String>> {
    keys.into_iter().map(|k| strings(&["GET", &k])).collect()
}

/// `NEARCACHE HOTKEYS n` as (key, count) pairs.
fn hotkeys(c: &mut Client, n: usize) -> Vec<(String, i64)> {
    let flat = array(c.cmd(&["NEARCACHE", "HOTKEYS", &n.to_string()]));
    flat.chunks(2)
        .map(|p| (text(&p[0]), int(p[1].clone())))
        .collect()
}

/// Reads every key of `reads` with GET (in pipelines of 100), or with MGET when the
/// position says so, in the given order.
fn read_all(c: &mut Client, reads: &[String]) {
    for chunk in reads.chunks(100) {
        let cmds: Vec<Vec<String>> = chunk
            .chunks(4)
            .enumerate()
            .flat_map(|(i, keys)| {
                if i % 5 == 0 {
                    let mut mget = vec!["MGET".to_string()];
                    mget.extend(keys.iter().cloned());
                    vec![mget]
                } else {
                    gets(keys.iter().cloned())
                }
            })
            .collect();
        c.pipeline(&cmds);
    }
}

#[test]
fn a_skewed_workload_lists_the_hot_key_first_with_its_count() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = Client::connect(sidecar.addr());
    ok(c.cmd(&["SET", "hot", "v"]), "SET hot");
    let mut reads: Vec<String> = vec!["hot".to_string(); 2000];
    reads.extend((0..500).map(|i| format!("cold:{i}")));
    let mut rng = Rng(7);
    for i in (1..reads.len()).rev() {
        reads.swap(i, rng.below(i + 1));
    }
    read_all(&mut c, &reads);
    let top = hotkeys(&mut c, 3);
    assert_eq!(top.len(), 3, "{top:?}");
    assert_eq!(top[0].0, "hot", "{top:?}");
    assert!((1000..=3000).contains(&top[0].1), "{top:?}");
    assert!(top[1].1 < 200, "{top:?}");
    assert_eq!(hotkeys(&mut c, 10).len(), 10);
}

#[test]
fn a_uniform_workload_has_no_hot_key() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = Client::connect(sidecar.addr());
    let reads: Vec<String> = (0..2500).map(|i| format!("key:{}", i % 500)).collect();
    read_all(&mut c, &reads);
    let top = hotkeys(&mut c, 3);
    assert!(!top.is_empty());
    assert!(top.iter().all(|(_, n)| *n < 200), "{top:?}");
}
