//! Namespaces (`[[namespace]]` in the config file) proven through the sidecar against a real
//! redis-server: whether a read reached the upstream is read from its own `INFO
//! commandstats`, so a hit is a read that added no GET or MGET there.

use std::fs;
use std::thread;
use std::time::Duration;

use proto_tests::http::{http_get, metric};
use proto_tests::tempdir::TempDir;
use proto_tests::*;

/// A sidecar in front of `redis` with `toml` as its config file (kept in `dir`).
fn start_with(redis: &Redis, dir: &TempDir, toml: &str, extra: &[&str]) -> Sidecar {
    let file = dir.path().join("nearcache.toml");
    fs::write(&file, toml).unwrap();
    let file = file.display().to_string();
    let mut args = vec!["--config", &file];
    args.extend_from_slice(extra);
    Sidecar::start(redis.port(), &args)
}

/// GET and MGET calls the upstream ran.
fn reads(redis: &Redis) -> u64 {
    commandstat_calls(redis, "get") + commandstat_calls(redis, "mget")
}

/// Reads `key` through `c`, checks the reply, and returns how many reads the upstream ran
/// for it.
fn read(redis: &Redis, c: &mut Conn, key: &str, want: &[u8]) -> u64 {
    let before = reads(redis);
    assert_reply(&c.cmd_str(&["GET", key]), want, key);
    reads(redis) - before
}

/// `NEARCACHE NAMESPACES` rows: (name, [(field, value text)]).
type Rows = Vec<(String, Vec<(String, String)>)>;

/// `NEARCACHE NAMESPACES`, parsed.
fn namespaces(c: &mut Conn) -> Rows {
    let reply = c.cmd_str(&["NEARCACHE", "NAMESPACES"]);
    let text = String::from_utf8_lossy(&reply).into_owned();
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    let rows: usize = lines.next().unwrap()[1..].parse().unwrap();
    let mut out = Vec::new();
    for _ in 0..rows {
        let n: usize = lines.next().unwrap()[1..].parse().unwrap();
        let mut fields = Vec::new();
        for _ in 0..n / 2 {
            let _len = lines.next().unwrap();
            let field = lines.next().unwrap().to_owned();
            let value = lines.next().unwrap();
            let value = match value.strip_prefix(':') {
                Some(int) => int.to_owned(),
                None => lines.next().unwrap().to_owned(),
            };
            fields.push((field, value));
        }
        let name = fields[0].1.clone();
        out.push((name, fields));
    }
    out
}

fn field(rows: &Rows, name: &str, f: &str) -> u64 {
    let (_, fields) = rows.iter().find(|(n, _)| n == name).unwrap();
    let (_, v) = fields.iter().find(|(k, _)| k == f).unwrap();
    v.parse().unwrap()
}

#[test]
fn a_bypassed_namespace_forwards_every_read_and_fills_nothing() {
    let redis = Redis::start();
    let mut direct = redis.conn();
    direct.cmd_str(&["SET", "session:1", "s1"]);
    direct.cmd_str(&["SET", "user:1", "u1"]);
    let dir = TempDir::new("ns-bypass");
    let toml = "[[namespace]]\nname = \"session\"\npattern = \"session:*\"\ncache = false\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let mut c = sidecar.conn();
    for _ in 0..5 {
        assert_eq!(read(&redis, &mut c, "session:1", &bulk(b"s1")), 1);
    }
    // A change made elsewhere is seen at once (nothing was cached to go stale).
    direct.cmd_str(&["SET", "session:1", "s2"]);
    assert_eq!(read(&redis, &mut c, "session:1", &bulk(b"s2")), 1);
    // MGET: the bypassed key is fetched every time, the other one is cached.
    let want = [b"*2\r\n".to_vec(), bulk(b"s2"), bulk(b"u1")].concat();
    let before = reads(&redis);
    assert_reply(&c.cmd_str(&["MGET", "session:1", "user:1"]), &want, "mget");
    assert_eq!(c.cmd_str(&["GET", "user:1"]), bulk(b"u1"));
    assert_reply(&c.cmd_str(&["MGET", "session:1", "user:1"]), &want, "mget");
    assert_eq!(
        reads(&redis) - before,
        2,
        "one MGET each time, user:1 then a hit"
    );
    // An MGET of bypassed keys only is forwarded as it is.
    let before = commandstat_calls(&redis, "pttl");
    let want = [b"*2\r\n".to_vec(), bulk(b"s2"), b"$-1\r\n".to_vec()].concat();
    assert_reply(
        &c.cmd_str(&["MGET", "session:1", "session:2"]),
        &want,
        "mget",
    );
    assert_eq!(
        commandstat_calls(&redis, "pttl"),
        before,
        "no fill, no PTTL"
    );
    let rows = namespaces(&mut c);
    assert_eq!(field(&rows, "session", "entries"), 0);
    assert_eq!(field(&rows, "session", "cache"), 0);
    assert_eq!(field(&rows, "session", "hits"), 0);
    assert_eq!(field(&rows, "session", "misses"), 6 + 2 + 2);
    assert_eq!(field(&rows, "default", "entries"), 1);
    assert_eq!(field(&rows, "default", "hits"), 2);
}

#[test]
fn a_namespace_ttl_caps_an_entrys_life() {
    let redis = Redis::start();
    let mut direct = redis.conn();
    direct.cmd_str(&["SET", "short:1", "a"]);
    direct.cmd_str(&["SET", "long:1", "b"]);
    let dir = TempDir::new("ns-ttl");
    let toml = "[[namespace]]\nname = \"short\"\npattern = \"short:*\"\nl1_ttl = \"300ms\"\n";
    let sidecar = start_with(&redis, &dir, toml, &["--l1-ttl", "60s"]);
    let mut c = sidecar.conn();
    assert_eq!(read(&redis, &mut c, "short:1", &bulk(b"a")), 1);
    assert_eq!(read(&redis, &mut c, "long:1", &bulk(b"b")), 1);
    assert_eq!(
        read(&redis, &mut c, "short:1", &bulk(b"a")),
        0,
        "a hit at first"
    );
    thread::sleep(Duration::from_millis(900));
    assert_eq!(read(&redis, &mut c, "short:1", &bulk(b"a")), 1, "expired");
    assert_eq!(
        read(&redis, &mut c, "long:1", &bulk(b"b")),
        0,
        "the default TTL"
    );
    let rows = namespaces(&mut c);
    assert_eq!(field(&rows, "short", "l1_ttl_ms"), 300);
    assert_eq!(field(&rows, "default", "l1_ttl_ms"), 60_000);
}

#[test]
fn cache_nil_per_namespace_and_the_defaults_elsewhere() {
    let redis = Redis::start();
    let dir = TempDir::new("ns-nil");
    let toml = "[[namespace]]\nname = \"flags\"\npattern = \"flag:*\"\ncache_nil = false\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let mut c = sidecar.conn();
    let nil = b"$-1\r\n";
    assert_eq!(read(&redis, &mut c, "flag:absent", nil), 1);
    assert_eq!(
        read(&redis, &mut c, "flag:absent", nil),
        1,
        "nil not cached"
    );
    assert_eq!(read(&redis, &mut c, "plain:absent", nil), 1);
    assert_eq!(
        read(&redis, &mut c, "plain:absent", nil),
        0,
        "default: nil cached"
    );
    let rows = namespaces(&mut c);
    assert_eq!(field(&rows, "flags", "cache_nil"), 0);
    assert_eq!(field(&rows, "default", "cache_nil"), 1);
    assert_eq!(field(&rows, "flags", "misses"), 2);
    assert_eq!(field(&rows, "default", "hits"), 1);
}

/// Reads `keep:0..keep` once each, then floods with `flood:0..flood` (each read three
/// times, so moka's admission favours them over the once-read `keep` keys), and returns
/// how many `keep` keys went upstream again when read afterwards.
fn flood(toml: &str, keep: usize, flood: usize) -> (u64, Rows) {
    let redis = Redis::start();
    let value = "v".repeat(1024);
    let mut direct = redis.conn();
    for prefix_n in [("keep", keep), ("flood", flood)] {
        let (prefix, n) = prefix_n;
        for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
            let mut args = vec!["MSET".to_owned()];
            for i in chunk {
                args.push(format!("{prefix}:{i}"));
                args.push(value.clone());
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            assert_eq!(direct.cmd_str(&args), b"+OK\r\n");
        }
    }
    let dir = TempDir::new("ns-share");
    // No staleness audits: an audited hit is a GET upstream, which this counts as a refetch.
    let args = ["--l1-max-bytes", "4MiB", "--audit-rate", "0"];
    let sidecar = start_with(&redis, &dir, toml, &args);
    let mut c = sidecar.conn();
    let want = bulk(value.as_bytes());
    for i in 0..keep {
        read(&redis, &mut c, &format!("keep:{i}"), &want);
    }
    for _ in 0..3 {
        for i in 0..flood {
            assert_eq!(c.cmd_str(&["GET", &format!("flood:{i}")]), want);
        }
    }
    let before = reads(&redis);
    for i in 0..keep {
        assert_eq!(c.cmd_str(&["GET", &format!("keep:{i}")]), want);
    }
    (reads(&redis) - before, namespaces(&mut c))
}

#[test]
fn max_bytes_keeps_a_flood_of_one_namespace_from_evicting_another() {
    let (keep, flooded) = (200, 4000);
    let shared = "[[namespace]]\nname = \"flood\"\npattern = \"flood:*\"\n";
    let (refetched, _) = flood(shared, keep, flooded);
    assert!(
        refetched > keep as u64 / 2,
        "without a share, the flood evicts most keep keys ({refetched} of {keep} refetched)"
    );
    let own = format!("{shared}max_bytes = \"1MiB\"\n");
    let (refetched, rows) = flood(&own, keep, flooded);
    assert_eq!(
        refetched, 0,
        "with its own share, the flood evicts only its own"
    );
    assert!(field(&rows, "flood", "bytes") <= 1 << 20, "{rows:?}");
    assert!(field(&rows, "flood", "entries") > 100, "{rows:?}");
    assert_eq!(field(&rows, "flood", "max_bytes"), 1 << 20);
    assert_eq!(field(&rows, "default", "entries"), keep as u64);
}

#[test]
fn info_and_metrics_carry_the_namespace_label() {
    let redis = Redis::start();
    let mut direct = redis.conn();
    direct.cmd_str(&["SET", "flag:a", "1"]);
    let dir = TempDir::new("ns-info");
    let toml = "[[namespace]]\nname = \"flags\"\npattern = \"flag:*\"\n\
                [[namespace]]\nname = \"session\"\npattern = \"session:*\"\ncache = false\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let mut c = sidecar.conn();
    for _ in 0..3 {
        assert_eq!(c.cmd_str(&["GET", "flag:a"]), bulk(b"1"));
    }
    c.cmd_str(&["GET", "session:x"]);
    c.cmd_str(&["GET", "other"]);
    let info = c.info(Some("nearcache_l1"));
    let line = info_field(&info, "namespace_flags").unwrap();
    assert!(line.starts_with("entries=1,"), "{line}");
    assert!(line.contains(",hits=2,misses=1,cache=1"), "{line}");
    let line = info_field(&info, "namespace_session").unwrap();
    assert!(line.contains("entries=0,") && line.contains(",hits=0,misses=1,cache=0"));
    let line = info_field(&info, "namespace_default").unwrap();
    assert!(line.contains(",hits=0,misses=1,cache=1"), "{line}");
    let (status, text) = http_get(sidecar.metrics_addr().unwrap(), "/metrics");
    assert_eq!(status, 200);
    let m = |name: &str, ns: &str| metric(&text, name, &format!("cache_namespace=\"{ns}\""));
    assert_eq!(m("nearcache_namespace_hits_total", "flags"), Some(2.0));
    assert_eq!(m("nearcache_namespace_misses_total", "flags"), Some(1.0));
    assert_eq!(m("nearcache_namespace_misses_total", "session"), Some(1.0));
    assert_eq!(m("nearcache_namespace_entries", "flags"), Some(1.0));
    assert!(m("nearcache_namespace_bytes", "flags").unwrap() > 0.0);
    assert_eq!(
        m("nearcache_namespace_entries", "default"),
        Some(1.0),
        "a cached nil"
    );
}

#[test]
fn no_namespaces_no_lines() {
    let (_redis, sidecar) = start_pair(&[]);
    let mut c = sidecar.conn();
    let info = c.info(Some("nearcache_l1"));
    assert!(!info.contains("namespace_"), "{info}");
    let rows = namespaces(&mut c);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, "default");
}

#[test]
fn invalid_namespaces_are_refused_at_start_naming_the_namespace() {
    let dir = TempDir::new("ns-invalid");
    let cases = [
        (
            "[[namespace]]\nname = \"users\"\npattern = \"user:[abc\"\n",
            "namespace \"users\": bad pattern",
        ),
        (
            "[[namespace]]\nname = \"users\"\npattern = \"user:*\"\nttl = \"5m\"\n",
            "namespace \"users\": ttl: unknown key",
        ),
        (
            "[[namespace]]\nname = \"a\"\npattern = \"a:*\"\n[[namespace]]\nname = \"a\"\npattern = \"b:*\"\n",
            "namespace \"a\": duplicate name",
        ),
        (
            "[[namespace]]\nname = \"big\"\npattern = \"b:*\"\nmax_bytes = \"2GiB\"\n",
            "max_bytes add up to",
        ),
        (
            "[[namespace]]\nname = \"default\"\npattern = \"d:*\"\n",
            "namespace \"default\": name \"default\" is the label",
        ),
    ];
    for (toml, wanted) in cases {
        let file = dir.path().join("bad.toml");
        fs::write(&file, toml).unwrap();
        let file = file.display().to_string();
        let args = ["--config", &file, "--l1-max-bytes", "1GiB"];
        let out = run_nearcache(&args, &[], Duration::from_secs(10));
        assert!(!out.status.success(), "{toml}");
        assert!(out.stderr.contains(wanted), "{toml}: {}", out.stderr);
    }
}

#[test]
fn warming_leaves_out_bypassed_keys_and_fills_the_others_by_their_policy() {
    let redis = Redis::start();
    let mut direct = redis.conn();
    for i in 0..10 {
        direct.cmd_str(&["SET", &format!("session:{i}"), "s"]);
        direct.cmd_str(&["SET", &format!("user:{i}"), "u"]);
    }
    let dir = TempDir::new("ns-warm");
    let toml = "[warm]\npatterns = [\"*\"]\nfrom_peers = false\n\
                [[namespace]]\nname = \"session\"\npattern = \"session:*\"\ncache = false\n\
                [[namespace]]\nname = \"users\"\npattern = \"user:*\"\n";
    let sidecar = start_with(&redis, &dir, toml, &[]);
    let mut c = sidecar.conn();
    poll_until(Duration::from_secs(20), "the warming ends", || {
        info_field(&c.info(Some("nearcache_l1")), "warm_state").as_deref() == Some("done")
    });
    let info = c.info(Some("nearcache_l1"));
    assert_eq!(info_u64(&info, "warm_keys_loaded"), 10, "{info}");
    let rows = namespaces(&mut c);
    assert_eq!(field(&rows, "users", "entries"), 10);
    assert_eq!(field(&rows, "session", "entries"), 0);
    assert_eq!(read(&redis, &mut c, "user:3", &bulk(b"u")), 0, "warmed");
    assert_eq!(
        read(&redis, &mut c, "session:3", &bulk(b"s")),
        1,
        "bypassed"
    );
}
