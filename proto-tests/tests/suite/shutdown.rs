//! Shutdown and accept-loop faults: SIGTERM loses no reply to a command that ran, and an
//! accept loop out of file descriptors waits instead of spinning.

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto_tests::*;

/// Reads `:n\r\n` integer replies until end of stream; returns them in order.
fn read_integers_to_close(stream: TcpStream) -> Vec<i64> {
    let mut reader = BufReader::with_capacity(1 << 16, stream);
    let mut all = Vec::new();
    let _ = reader.read_to_end(&mut all);
    let mut replies = Vec::new();
    for line in all.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = std::str::from_utf8(line).expect("ascii reply");
        let n = text
            .strip_prefix(':')
            .unwrap_or_else(|| panic!("not an integer reply: {text:?}"));
        replies.push(n.parse().expect("integer"));
    }
    replies
}

/// A client that keeps its pipeline full of INCRs while SIGTERM arrives gets a reply to
/// every INCR that Redis applied, in order, and then end of stream (no reset that would
/// destroy replies already written).
#[test]
fn sigterm_answers_every_command_that_ran() {
    let (redis, mut sidecar) = start_pair(&["--shutdown-grace", "3s"]);
    let stream = TcpStream::connect(sidecar.addr()).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writing = done.clone();
    let batch = encode_command_str(&["INCR", "counter"]).repeat(256);
    let writer = std::thread::spawn(move || {
        while !writing.load(Ordering::Relaxed) {
            if writer.write_all(&batch).is_err() {
                break;
            }
        }
    });
    let mut direct = redis.conn();
    poll_until(Duration::from_secs(10), "INCRs to be running", || {
        bulk_reply(&direct.cmd_str(&["GET", "counter"]))
            .is_some_and(|v| String::from_utf8_lossy(&v).parse::<i64>().unwrap_or(0) > 20_000)
    });
    sidecar.send_sigterm();
    let replies = read_integers_to_close(stream);
    done.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let status = sidecar.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "exit status: {status}");

    let applied: i64 = String::from_utf8(bulk_reply(&direct.cmd_str(&["GET", "counter"])).unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert!(applied > 0);
    assert_eq!(
        replies.len() as i64,
        applied,
        "replies received vs INCRs Redis applied"
    );
    assert!(
        replies.iter().zip(1..).all(|(&got, want)| got == want),
        "replies are 1..=n in order"
    );
}

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let after_name = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Out of file descriptors, the accept loop backs off instead of spinning on EMFILE, keeps
/// serving the clients it has, and accepts again once descriptors are free.
#[test]
fn accept_backs_off_when_out_of_descriptors() {
    let redis = Redis::start();
    let sidecar = Sidecar::start_wrapped(&["prlimit", "--nofile=64:64", "--"], &redis.url(), &[]);
    let mut first = sidecar.conn();
    assert_reply(&first.cmd_str(&["SET", "k", "v"]), b"+OK\r\n", "SET");
    // Fill the descriptor table: the kernel completes these connections in the backlog,
    // the sidecar cannot accept them.
    let mut extra = Vec::new();
    for _ in 0..80 {
        if let Ok(s) = TcpStream::connect(sidecar.addr()) {
            extra.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_seconds(sidecar.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_seconds(sidecar.pid()) - before;
    assert!(
        used < 0.5,
        "the sidecar used {used:.2} CPU seconds in 2 s while out of descriptors (spinning)"
    );
    assert_reply(
        &first.cmd_str(&["GET", "k"]),
        &bulk(b"v"),
        "an accepted client is still served",
    );
    assert!(
        sidecar.stderr().contains("accept failed"),
        "the accept failure is logged: {}",
        sidecar.stderr()
    );
    drop(extra);
    drop(first);
    poll_until(Duration::from_secs(10), "a new client to be served", || {
        TcpStream::connect(sidecar.addr())
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                s.write_all(b"*1\r\n$4\r\nPING\r\n").ok()?;
                let mut buf = [0u8; 7];
                s.read_exact(&mut buf).ok()?;
                Some(&buf == b"+PONG\r\n")
            })
            .unwrap_or(false)
    });
}
