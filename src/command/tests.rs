//! Classification against the built-in table (the real `COMMAND` reply of redis-server 7.0)
//! and against hand-written replies for older and unusual shapes.

use super::*;

fn req(a: &[&str]) -> Request {
    let args: Vec<&[u8]> = a.iter().map(|s| s.as_bytes()).collect();
    Request::from_args(&args)
}

fn key(db: u32, k: &str) -> WrittenKey {
    WrittenKey::new(db, Bytes::copy_from_slice(k.as_bytes()))
}

fn builtin() -> &'static CommandTable {
    CommandTable::builtin()
}

/// What `a` invalidates in database 0 with the built-in table.
fn inv(a: &[&str]) -> Invalidation {
    inv_with(builtin(), a)
}

fn inv_with(table: &CommandTable, a: &[&str]) -> Invalidation {
    match classify(&req(a), 0, table) {
        Action::Forward(inv) => inv,
        other => panic!("{a:?} is not forwarded: {other:?}"),
    }
}

fn keys(ks: &[&str]) -> Invalidation {
    Invalidation::Keys(ks.iter().map(|k| key(0, k)).collect())
}

/// Every argument after the name, as a written key.
fn every_argument(a: &[&str]) -> Invalidation {
    keys(&a[1..])
}

#[test]
fn builtin_table_is_redis_7() {
    let t = builtin();
    assert!(t.is_builtin());
    assert!(t.len() > 200, "{} commands", t.len());
    let parsed = CommandTable::parse(table::REDIS7).unwrap();
    assert!(!parsed.is_builtin());
    assert_eq!(parsed.len(), t.len());
}

#[test]
fn classifies_reads_locals_and_refusals() {
    let t = builtin();
    assert_eq!(classify(&req(&["get", "k"]), 0, t), Action::Get);
    assert_eq!(inv(&["GET"]), Invalidation::None);
    assert_eq!(classify(&req(&["MGet", "a", "b"]), 0, t), Action::Mget);
    assert_eq!(
        classify(&req(&["select", "1"]), 0, t),
        Action::Local(Local::Select)
    );
    assert_eq!(
        classify(&req(&["client", "setname", "x"]), 0, t),
        Action::Local(Local::ClientSetName)
    );
    for pinned in [
        &["multi"][..],
        &["WATCH", "k"],
        &["subscribe", "c"],
        &["BLPOP", "q", "0"],
        &["CLIENT", "TRACKING", "on"],
        &["client", "no-evict", "on"],
        &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
    ] {
        assert_eq!(classify(&req(pinned), 0, t), Action::Pin, "{pinned:?}");
    }
    // Outside a pinned state these are answered by any connection as by Redis.
    assert!(matches!(
        classify(&req(&["EXEC"]), 0, t),
        Action::Forward(Invalidation::None)
    ));
    assert!(matches!(
        classify(&req(&["XREAD", "STREAMS", "s", "0"]), 0, t),
        Action::Forward(_)
    ));
    assert_eq!(
        classify(&req(&["client", "reply", "off"]), 0, t),
        Action::Local(Local::ClientReply)
    );
    // A wrong number of arguments: Redis words the error.
    assert!(matches!(
        classify(&req(&["client", "reply"]), 0, t),
        Action::Forward(_)
    ));
    assert_eq!(
        classify(&req(&["CLIENT", "UNBLOCK", "7", "ERROR"]), 0, t),
        Action::Local(Local::ClientUnblock)
    );
    assert_eq!(
        classify(&req(&["client", "tracking", "on", "redirect", "7"]), 0, t),
        Action::Pin
    );
    assert_eq!(
        classify(&req(&["client", "kill", "id", "7", "skipme", "no"]), 0, t),
        Action::Local(Local::ClientKill)
    );
    for other in [
        &["client", "kill", "addr", "127.0.0.1:1"][..],
        &["client", "kill", "id", "7", "type", "normal"],
        &["client", "kill", "127.0.0.1:1"],
        &["client", "kill", "skipme", "no"],
    ] {
        assert_eq!(
            classify(&req(other), 0, t),
            Action::Refuse(Bytes::from("client kill")),
            "{other:?}"
        );
    }
    assert_eq!(
        classify(&req(&["PSYNC", "?", "-1"]), 0, t),
        Action::Refuse(Bytes::from("PSYNC"))
    );
    assert!(blocks(&req(&["brpop", "q", "1"]).args));
    assert!(blocks(
        &req(&[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "BLOCK",
            "5",
            "STREAMS",
            "s",
            ">"
        ])
        .args
    ));
    assert!(!blocks(&req(&["XREAD", "STREAMS", "s", "0"]).args));
}

#[test]
fn cross_database_writes_evict_both_sides() {
    let t = builtin();
    assert_eq!(
        classify(&req(&["MOVE", "k", "3"]), 1, t),
        Action::Forward(Invalidation::Keys(vec![key(1, "k"), key(3, "k")].into()))
    );
    assert_eq!(
        inv(&["COPY", "a", "b", "DB", "2"]),
        Invalidation::Keys(vec![key(0, "a"), key(0, "b"), key(0, "b"), key(2, "b")].into())
    );
    assert_eq!(
        classify(&req(&["FLUSHDB"]), 4, t),
        Action::Forward(Invalidation::Db(4))
    );
    assert_eq!(inv(&["eval", "x", "0"]), Invalidation::All);
    assert_eq!(inv(&["FCALL", "f", "1", "k"]), Invalidation::All);
    assert_eq!(inv(&["FLUSHALL"]), Invalidation::All);
    assert_eq!(inv(&["SWAPDB", "0", "1"]), Invalidation::Swapped);
}

#[test]
fn writes_come_from_key_spec_flags() {
    // RW without the `write` flag: PFCOUNT rewrites the HLL header.
    assert_eq!(inv(&["PFCOUNT", "h"]), keys(&["h"]));
    assert_eq!(inv(&["pfcount", "h1", "h2"]), keys(&["h1", "h2"]));
    // The `write` flag, but the key spec reads (RO ACCESS).
    assert_eq!(
        inv(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"]),
        Invalidation::None
    );
    // RW/UPDATE: GETEX changes the TTL; RW/DELETE.
    assert_eq!(inv(&["GETEX", "k", "EX", "10"]), keys(&["k"]));
    assert_eq!(inv(&["GETDEL", "k"]), keys(&["k"]));
    assert_eq!(inv(&["EXPIRE", "k", "10"]), keys(&["k"]));
    // Reads.
    assert_eq!(inv(&["OBJECT", "ENCODING", "k"]), Invalidation::None);
    assert_eq!(inv(&["object", "freq", "k"]), Invalidation::None);
    assert_eq!(inv(&["STRLEN", "k"]), Invalidation::None);
    assert_eq!(inv(&["EXISTS", "a", "b"]), Invalidation::None);
    assert_eq!(inv(&["SORT_RO", "src", "BY", "w_*"]), Invalidation::None);
    assert_eq!(inv(&["EVAL_RO", "return 1", "1", "k"]), Invalidation::None);
    // Writes with no key: the dataset may change in ways keys cannot name.
    assert_eq!(inv(&["FUNCTION", "FLUSH"]), Invalidation::All);
    assert_eq!(inv(&["FUNCTION", "LIST"]), Invalidation::None);
    assert_eq!(
        inv(&["CONFIG", "SET", "maxmemory", "0"]),
        Invalidation::None
    );
}

#[test]
fn written_positions_follow_index_keyword_and_keynum() {
    assert_eq!(inv(&["SET", "k", "v", "GET"]), keys(&["k"]));
    assert_eq!(inv(&["MSET", "a", "1", "b", "2"]), keys(&["a", "b"]));
    assert_eq!(inv(&["DEL", "a", "b", "c"]), keys(&["a", "b", "c"]));
    assert_eq!(inv(&["RENAME", "a", "b"]), keys(&["a", "b"]));
    assert_eq!(
        inv(&["LMOVE", "a", "b", "LEFT", "RIGHT"]),
        keys(&["a", "b"])
    );
    assert_eq!(inv(&["XADD", "s", "*", "f", "v"]), keys(&["s"]));
    assert_eq!(inv(&["BITOP", "AND", "dst", "a", "b"]), keys(&["dst"]));
    assert_eq!(
        inv(&["XGROUP", "CREATE", "s", "g", "$"]),
        keys(&["s"]),
        "a subcommand's positions count its parent's name"
    );
    // Only the destination: the sources' spec is RO (keynum).
    assert_eq!(
        inv(&["ZUNIONSTORE", "dst", "2", "a", "b", "WEIGHTS", "1", "2"]),
        keys(&["dst"])
    );
    assert_eq!(
        inv(&[
            "GEOSEARCHSTORE",
            "dst",
            "src",
            "FROMMEMBER",
            "m",
            "BYRADIUS",
            "1",
            "km"
        ]),
        keys(&["dst"])
    );
    // keynum for written keys.
    assert_eq!(inv(&["LMPOP", "2", "a", "b", "LEFT"]), keys(&["a", "b"]));
    assert_eq!(
        inv(&["ZMPOP", "3", "a", "b", "c", "MIN", "COUNT", "2"]),
        keys(&["a", "b", "c"])
    );
    // keyword: GEORADIUS writes only with STORE / STOREDIST.
    assert_eq!(
        inv(&["GEORADIUS", "src", "0", "0", "1", "km", "STORE", "dst"]),
        keys(&["dst"])
    );
    assert_eq!(
        inv(&["georadius", "src", "0", "0", "1", "km", "storedist", "d"]),
        keys(&["d"])
    );
    assert_eq!(
        inv(&["GEORADIUS", "src", "0", "0", "1", "km", "WITHDIST"]),
        Invalidation::None
    );
}

#[test]
fn sort_writes_only_its_store_destinations() {
    assert_eq!(inv(&["SORT", "src", "STORE", "dst"]), keys(&["dst"]));
    assert_eq!(
        inv(&["sort", "src", "BY", "store", "LIMIT", "0", "10", "GET", "#", "store", "d"]),
        keys(&["d"]),
        "option values are skipped as SORT skips them"
    );
    assert_eq!(
        inv(&["SORT", "src", "STORE", "d1", "STORE", "d2"]),
        keys(&["d1", "d2"])
    );
    assert_eq!(inv(&["SORT", "src", "ALPHA", "DESC"]), Invalidation::None);
}

#[test]
fn unknown_or_incomplete_specs_evict_every_argument() {
    // MIGRATE's KEYS spec is incomplete.
    let migrate = ["MIGRATE", "h", "6379", "", "0", "5000", "KEYS", "a", "b"];
    assert_eq!(inv(&migrate), every_argument(&migrate));
    // A syntax error (numkeys not a number, keyword without key): more, never less.
    let bad = ["LMPOP", "x", "a", "LEFT"];
    assert_eq!(inv(&bad), every_argument(&bad));
    let bad = ["LMPOP", "5", "a", "LEFT"];
    assert_eq!(inv(&bad), every_argument(&bad));
    let bad = ["GEORADIUS", "src", "0", "0", "1", "km", "X", "STORE"];
    assert_eq!(inv(&bad), Invalidation::None, "a keyword last has no key");
}

#[test]
fn commands_unknown_to_the_builtin_table_evict_every_argument() {
    let module = ["JSON.SET", "doc", "$", "1"];
    assert_eq!(inv(&module), every_argument(&module));
    let sub = ["XGROUP", "NEWSUB", "s", "g"];
    assert_eq!(inv(&sub), every_argument(&sub));
    // Unknown to the upstream's own table: the upstream refuses it.
    let upstream = CommandTable::parse(table::REDIS7).unwrap();
    assert_eq!(inv_with(&upstream, &module), Invalidation::None);
    assert_eq!(inv_with(&upstream, &["PFCOUNT", "h"]), keys(&["h"]));
}

/// One Redis 7 entry with a single key spec (`flags`, begin_search, find_keys as RESP2).
fn entry7(name: &str, flags: &[&str], begin: &str, find: &str) -> String {
    let flags: String = flags.iter().map(|f| format!("+{f}\r\n")).collect();
    format!(
        "*10\r\n${}\r\n{name}\r\n:-1\r\n*0\r\n:0\r\n:0\r\n:0\r\n*0\r\n*0\r\n\
         *1\r\n*6\r\n$5\r\nflags\r\n*{}\r\n{flags}$12\r\nbegin_search\r\n{begin}\
         $9\r\nfind_keys\r\n{find}*0\r\n",
        name.len(),
        flags.matches('+').count()
    )
}

fn search(kind: &str, spec: &str, fields: usize) -> String {
    format!(
        "*4\r\n$4\r\ntype\r\n${}\r\n{kind}\r\n$4\r\nspec\r\n*{fields}\r\n{spec}",
        kind.len()
    )
}

#[test]
fn keyword_ranges_with_a_limit_take_their_share() {
    // Like XREAD's STREAMS spec, but written: keys are the first half after STREAMS.
    let begin = search(
        "keyword",
        "$7\r\nkeyword\r\n$7\r\nSTREAMS\r\n$9\r\nstartfrom\r\n:1\r\n",
        4,
    );
    let find = search(
        "range",
        "$7\r\nlastkey\r\n:-1\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:2\r\n",
        6,
    );
    let reply = format!("*1\r\n{}", entry7("xw", &["RW"], &begin, &find));
    let t = CommandTable::parse(reply.as_bytes()).unwrap();
    assert_eq!(
        inv_with(&t, &["XW", "COUNT", "1", "STREAMS", "a", "b", "0", "0"]),
        keys(&["a", "b"])
    );
    // Backwards from the end (startfrom -2), as MIGRATE's KEYS.
    let begin = search(
        "keyword",
        "$7\r\nkeyword\r\n$4\r\nKEYS\r\n$9\r\nstartfrom\r\n:-2\r\n",
        4,
    );
    let find = search(
        "range",
        "$7\r\nlastkey\r\n:-1\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n",
        6,
    );
    let reply = format!("*1\r\n{}", entry7("kw", &["OW"], &begin, &find));
    let t = CommandTable::parse(reply.as_bytes()).unwrap();
    assert_eq!(
        inv_with(&t, &["KW", "x", "KEYS", "a", "b"]),
        keys(&["a", "b"])
    );
    assert_eq!(inv_with(&t, &["KW", "x", "y"]), Invalidation::None);
}

#[test]
fn specs_out_of_any_plausible_range_count_as_unknown() {
    let begin = search("index", "$5\r\nindex\r\n:9223372036854775807\r\n", 2);
    let find = search(
        "range",
        "$7\r\nlastkey\r\n:0\r\n$7\r\nkeystep\r\n:1\r\n$5\r\nlimit\r\n:0\r\n",
        6,
    );
    let reply = format!("*1\r\n{}", entry7("huge", &["RW"], &begin, &find));
    let t = CommandTable::parse(reply.as_bytes()).unwrap();
    let a = ["HUGE", "a", "b"];
    assert_eq!(inv_with(&t, &a), every_argument(&a));
}

/// Redis 6 entries: no key specs, only first/last/step and `movablekeys`.
const REDIS6_REPLY: &[u8] = b"*4\r\n\
    *7\r\n$4\r\nmset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n:1\r\n:-1\r\n:2\r\n*0\r\n\
    *7\r\n$11\r\nzunionstore\r\n:-4\r\n*2\r\n+write\r\n+movablekeys\r\n:0\r\n:0\r\n:0\r\n*0\r\n\
    *7\r\n$8\r\nflushall\r\n:-1\r\n*1\r\n+write\r\n:0\r\n:0\r\n:0\r\n*0\r\n\
    *7\r\n$7\r\npfcount\r\n:-2\r\n*1\r\n+readonly\r\n:1\r\n:-1\r\n:1\r\n*0\r\n";

#[test]
fn tables_without_key_specs_use_key_positions() {
    let t = CommandTable::parse(REDIS6_REPLY).unwrap();
    assert_eq!(t.len(), 4);
    assert_eq!(
        inv_with(&t, &["MSET", "a", "1", "b", "2"]),
        keys(&["a", "b"])
    );
    let z = ["ZUNIONSTORE", "d", "2", "a", "b"];
    assert_eq!(inv_with(&t, &z), every_argument(&z));
    assert_eq!(inv_with(&t, &["SWAPDB", "0", "1"]), Invalidation::Swapped);
    assert_eq!(inv_with(&t, &["PFCOUNT", "h"]), Invalidation::None);
}

#[test]
fn tables_prefer_the_upstream_once_loaded() {
    let tables = Tables::new();
    assert!(tables.get().is_builtin());
    assert!(!tables.loaded());
    assert!(tables.claim(1));
    assert!(!tables.claim(1), "once per identity");
    assert!(tables.claim(2));
}
