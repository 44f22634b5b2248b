//! N+1 reads: a client that GETs many keys of one shape one at a time, each reply awaited,
//! where one MGET would do, is reported once per shape and window on stderr; GETs pipelined
//! together, spread out, batched or few are not; the lines are limited for the whole
//! process to about one a second, every N+1 still counted.

use std::time::Duration;

use proto_tests::*;

/// The N+1 lines the sidecar has written so far.
fn n_plus_one_lines(sidecar: &Sidecar) -> Vec<String> {
    sidecar
        .stderr()
        .lines()
        .filter(|l| l.contains("N+1"))
        .map(str::to_owned)
        .collect()
}

/// GETs `keys` through `c` pipelined: sent in one write, then every reply read.
fn get_pipelined(c: &mut Conn, keys: impl IntoIterator<Item = String>) {
    let mut bytes = Vec::new();
    let mut n = 0;
    for key in keys {
        bytes.extend(encode_command_str(&["GET", &key]));
        n += 1;
    }
    c.send(&bytes);
    c.read_replies(n);
}

/// The window of the N+1 tests: long enough for a loaded machine to make ten round trips.
const WINDOW: &str = "2s";

/// GETs `keys` through `c` one at a time, each reply awaited before the next is sent (an
/// N+1, as a loop over keys in the application makes it).
fn get_one_by_one(c: &mut Conn, keys: impl IntoIterator<Item = String>) {
    for key in keys {
        c.cmd_str(&["GET", &key]);
    }
}

#[test]
fn twenty_gets_of_one_shape_one_at_a_time_are_one_n_plus_one() {
    let (_redis, sidecar) = start_pair(&["--n-plus-one-window", WINDOW]);
    let mut c = sidecar.conn();
    assert_reply(
        &c.cmd_str(&["CLIENT", "SETNAME", "web"]),
        b"+OK\r\n",
        "SETNAME",
    );
    assert_reply(
        &c.cmd_str(&["SET", "user:3:profile", "x"]),
        b"+OK\r\n",
        "SET one",
    );
    get_one_by_one(&mut c, (0..20).map(|i| format!("user:{i}:profile")));
    poll_until(Duration::from_secs(5), "an N+1 line", || {
        !n_plus_one_lines(&sidecar).is_empty()
    });
    // The later reads of the same window add no line.
    std::thread::sleep(Duration::from_millis(200));
    let lines = n_plus_one_lines(&sidecar);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let want = format!(
        "N+1: client {} name web read 10 keys like user:#:profile within 2000ms; \
         one MGET would do: MGET user:0:profile user:1:profile user:2:profile ...",
        c.local()
    );
    assert!(
        lines[0].ends_with(&want),
        "{} does not end with {want}",
        lines[0]
    );
}

#[test]
fn spread_pipelined_batched_or_few_reads_are_no_n_plus_one() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    // 20 GETs spread over more than the window: at most 4 per 100ms.
    for i in 0..20 {
        c.cmd_str(&["GET", &format!("spread:{i}:x")]);
        std::thread::sleep(Duration::from_millis(30));
    }
    // 20 GETs pipelined in one write: one round trip, not twenty.
    get_pipelined(&mut c, (0..20).map(|i| format!("piped:{i}")));
    // One MGET of 20 keys.
    let keys: Vec<String> = (0..20).map(|i| format!("batch:{i}")).collect();
    let mut mget = vec!["MGET"];
    mget.extend(keys.iter().map(String::as_str));
    assert!(c.cmd_str(&mget).starts_with(b"*20\r\n"), "MGET of 20");
    // 9 GETs: below the threshold.
    get_one_by_one(&mut c, (0..9).map(|i| format!("few:{i}")));
    // 20 GETs of 20 different shapes.
    get_one_by_one(&mut c, (0..20).map(|i| format!("{}:1", "k".repeat(i + 1))));
    // Reads of one shape from different clients do not add up.
    for _ in 0..4 {
        let mut other = sidecar.conn();
        get_one_by_one(&mut other, (0..5).map(|i| format!("shared:{i}")));
    }
    // A client that does trigger proves the sidecar was looking (the window is long
    // enough for ten round trips only in a sidecar started with a longer one).
    let (_redis2, control) = start_pair(&["--n-plus-one-window", WINDOW]);
    get_one_by_one(&mut control.conn(), (0..10).map(|i| format!("last:{i}")));
    poll_until(Duration::from_secs(5), "the control N+1 line", || {
        !n_plus_one_lines(&control).is_empty()
    });
    let lines = n_plus_one_lines(&sidecar);
    assert!(lines.is_empty(), "{lines:?}");
}

/// N+1 lines are limited for the whole process: twenty clients each making an N+1 at once
/// are twenty in `n_plus_one_detected` but about one line a second, the rest counted.
#[test]
fn n_plus_one_lines_are_at_most_about_one_a_second_for_all_clients() {
    let (_redis, sidecar) = start_pair(&["--n-plus-one-window", WINDOW]);
    let started = std::time::Instant::now();
    let clients = 20;
    for n in 0..clients {
        let mut c = sidecar.conn();
        get_one_by_one(&mut c, (0..10).map(|i| format!("c{n}:{i}")));
    }
    let took = started.elapsed();
    let detected = || {
        let info = sidecar.conn().info(Some("nearcache_profiler"));
        info_u64(&info, "n_plus_one_detected")
    };
    poll_until(Duration::from_secs(5), "every N+1 counted", || {
        detected() == clients
    });
    // The suppressed ones are reported at the end of their second.
    poll_until(Duration::from_secs(5), "the suppressed count", || {
        n_plus_one_lines(&sidecar)
            .iter()
            .any(|l| l.contains("more"))
    });
    let lines = n_plus_one_lines(&sidecar);
    // One line per second begun while they were found, plus the count of the last one.
    let bound = took.as_secs() as usize + 2;
    assert!(
        lines.len() <= bound,
        "{} lines for {clients} N+1s found in {took:?}: {lines:?}",
        lines.len()
    );
}
