//! Upstream connections: large values are not copied whole and buffers shrink back, pools
//! and identities nobody uses go away, a slow command does not hold up other clients, and
//! a runaway script can be killed through the sidecar.

use std::time::Duration;

use proto_tests::*;

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`) in MiB.
fn proc_mib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let kb: u64 = info_field(&text, field)
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("kB figure");
    kb / 1024
}

#[test]
fn large_values_leave_no_large_buffers_behind() {
    const SIZE: usize = 100 << 20;
    // L1 kept small so what stays resident is the connections' buffers, not a cached copy.
    let (_redis, sidecar) = start_pair(&["--l1-max-bytes", "1MiB"]);
    let value = random_bytes(SIZE, 7);
    let mut c = sidecar.conn();
    assert_reply(&c.cmd(&[b"SET", b"big", &value]), b"+OK\r\n", "SET 100MiB");
    for round in 0..2 {
        let reply = c.cmd(&[b"GET", b"big"]);
        assert!(
            bulk_reply(&reply).as_deref() == Some(&value[..]),
            "GET {round} returned {} bytes, not the value",
            reply.len()
        );
    }
    drop(value);
    assert_reply(
        &c.cmd_str(&["PING"]),
        b"+PONG\r\n",
        "PING after the large values",
    );
    let pid = sidecar.pid();
    // Buffers are given back when idle: allow the connections a moment to notice.
    let mut idle = 0;
    poll_until(Duration::from_secs(5), "idle RSS below 120 MiB", || {
        idle = proc_mib(pid, "VmRSS");
        idle < 120
    });
    let peak = proc_mib(pid, "VmHWM");
    eprintln!("sidecar after 100MiB SET + 2 GETs: peak {peak} MiB, idle {idle} MiB");
    // One copy of the value in flight at a time, not a copy per buffer it passes through.
    assert!(peak < 250, "peak RSS {peak} MiB for a 100 MiB value");
}
