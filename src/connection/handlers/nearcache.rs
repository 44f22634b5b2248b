//! `NEARCACHE`, the sidecar's own command: evict keys from L1 by glob pattern
//! (`INVALIDATE`), delete keys upstream by pattern (`DELPATTERN`: `SCAN` + `UNLINK` in
//! batches on the client's own route, so its ACL user applies; never `KEYS`), flush L1
//! (`FLUSH`), the `# Nearcache` figures (`STATS`), the profiler's slow log (`SLOWLOG`, as
//! Redis's `SLOWLOG`) and most read keys (`HOTKEYS`), warming (`WARM`), the namespaces
//! with their policies and figures (`NAMESPACES`), and `HELP`. Errors are worded as
//! Redis words them for its own container commands.
//!
//! `INVALIDATE` and `DELPATTERN` evict here at once and put the pattern on the invalidation
//! bus for every other sidecar (see `control::bus`), as does `FLUSH ALL` with a flush.
//!
//! Who may run which subcommand is the client's own Redis rights, asked of the upstream as
//! that client (see `access`); `HOTKEYS` and `SLOWLOG` show it what its user may see (see
//! `profile`).

mod access;
mod profile;

use bytes::{Bytes, BytesMut};

use crate::admin::info;
use crate::cache::namespaces::Row;
use crate::connection::handlers::Ctx;
use crate::glob::{Pattern, MAX_PATTERNS, MAX_PATTERN_BYTES};
use crate::protocol::decode::{integer, scan_page};
use crate::protocol::{
    command, write_array_header, write_bulk, write_decimal, write_error, Request, Resp, OK,
};
use crate::upstream::Router;

/// Keys asked for per `SCAN` call (and so at most about that many per `UNLINK`).
const SCAN_COUNT: &[u8] = b"1000";

/// The `NEARCACHE HELP` lines, Redis's `<CMD> HELP` layout.
const HELP: &[&str] = &[
    "NEARCACHE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "INVALIDATE <pattern> [<pattern> ...]",
    "    Evict the keys matching any pattern (Redis glob rules) from every sidecar's L1, in",
    "    every database and for every user. Replies with the number of entries evicted here.",
    "    Needs your Redis user's SCAN and PUBLISH on the invalidation channel.",
    "DELPATTERN <pattern>",
    "    Delete the keys matching the pattern upstream (SCAN + UNLINK in batches, in the",
    "    current database), then evict them from every sidecar's L1. Replies with the",
    "    number of keys deleted. Needs PUBLISH on the invalidation channel.",
    "FLUSH [ALL]",
    "    Evict everything from this sidecar's L1 (with ALL: from every sidecar's L1; needs",
    "    PUBLISH on the invalidation channel).",
    "STATS",
    "    The sidecar's own figures, as INFO nearcache reports them.",
    "SLOWLOG GET [<count>] | LEN | RESET | HELP",
    "    Upstream calls that kept a client waiting at least --slow-threshold, as SLOWLOG",
    "    shows them: id, unix time, microseconds, arguments, client address, client name.",
    "    Your Redis user's calls only, unless it may run SLOWLOG GET; RESET needs SLOWLOG RESET.",
    "HOTKEYS [<count>]",
    "    The most read keys (GET/MGET, about 1 read in 8 sampled) with approximate read",
    "    counts, as a flat array: key, count, key, count... (default count: 10). Only keys",
    "    your Redis user may read.",
    "WARM <pattern> [LIMIT <n>]",
    "    Load the keys matching the pattern (SCAN + MGET in your database, as your Redis",
    "    user, within [warm] max_keys, max_bytes and rate) into L1. Replies with the",
    "    number of keys loaded once done; an error while another warming runs.",
    "NAMESPACES",
    "    Each namespace ([[namespace]] in the config, first match wins; 'default' last) as",
    "    a flat array: name, pattern, cache, l1_ttl_ms, cache_nil, compress_min_bytes,",
    "    max_bytes (0: shares the rest of L1), entries, bytes, hits, misses.",
    "HELP",
    "    Print this help.",
];

/// Entries `SLOWLOG GET` and keys `HOTKEYS` list when not told how many.
const DEFAULT_COUNT: i64 = 10;

/// A subcommand and how many arguments it takes after its name.
#[derive(Clone, Copy)]
pub(in crate::connection) enum Sub {
    Invalidate,
    DelPattern,
    Flush,
    Stats,
    Slowlog,
    Hotkeys,
    Warm,
    Namespaces,
    Help,
}

impl Sub {
    fn parse(name: &[u8]) -> Option<Sub> {
        [
            (&b"INVALIDATE"[..], Sub::Invalidate),
            (b"DELPATTERN", Sub::DelPattern),
            (b"FLUSH", Sub::Flush),
            (b"STATS", Sub::Stats),
            (b"SLOWLOG", Sub::Slowlog),
            (b"HOTKEYS", Sub::Hotkeys),
            (b"WARM", Sub::Warm),
            (b"NAMESPACES", Sub::Namespaces),
            (b"HELP", Sub::Help),
        ]
        .into_iter()
        .find_map(|(n, sub)| name.eq_ignore_ascii_case(n).then_some(sub))
    }

    /// The full name as Redis spells it in arity errors.
    fn full_name(self) -> &'static str {
        match self {
            Sub::Invalidate => "nearcache|invalidate",
            Sub::DelPattern => "nearcache|delpattern",
            Sub::Flush => "nearcache|flush",
            Sub::Stats => "nearcache|stats",
            Sub::Slowlog => "nearcache|slowlog",
            Sub::Hotkeys => "nearcache|hotkeys",
            Sub::Warm => "nearcache|warm",
            Sub::Namespaces => "nearcache|namespaces",
            Sub::Help => "nearcache|help",
        }
    }

    /// Whether `n` arguments after the subcommand name are right.
    fn arity_ok(self, n: usize) -> bool {
        match self {
            Sub::Invalidate | Sub::Slowlog => n >= 1,
            Sub::Hotkeys => n <= 1,
            Sub::Warm => n == 1 || n == 3,
            Sub::DelPattern => n == 1,
            Sub::Flush => n <= 1,
            Sub::Stats | Sub::Namespaces | Sub::Help => n == 0,
        }
    }
}

impl<R: Router> Ctx<R> {
    /// Help `lines` as simple strings, Redis's `<CMD> HELP` layout.
    pub(in crate::connection) fn reply_help(&mut self, lines: &[&str]) {
        let mut out = BytesMut::new();
        write_array_header(&mut out, lines.len());
        for line in lines {
            out.extend_from_slice(b"+");
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.replies.ready_bytes(out.freeze());
    }

    /// `DELPATTERN`: pages of `SCAN 0 MATCH <pattern> COUNT 1000`, each page's keys
    /// unlinked upstream and then evicted from L1 (a fetch that read one before the
    /// `UNLINK` cannot install it afterwards); at the end the pattern is evicted from L1 as
    /// `INVALIDATE` does. The reply is the sum of the `UNLINK` replies, or the first error
    /// the upstream answers (e.g. `-NOPERM`), as is.
    async fn delete_pattern(&mut self, pattern: &Bytes) {
        let db = self.session.db;
        let mut cursor = Bytes::from_static(b"0");
        let mut deleted = 0;
        loop {
            let scan = command(&[b"SCAN", &cursor, b"MATCH", pattern, b"COUNT", SCAN_COUNT]);
            let Some(reply) = self.ask_one(scan).await else {
                return;
            };
            let Some((next, keys)) = scan_page(&reply) else {
                return self.replies.ready(&reply);
            };
            if !keys.is_empty() {
                let mut unlink: Vec<&[u8]> = Vec::with_capacity(keys.len() + 1);
                unlink.push(b"UNLINK");
                unlink.extend(keys.iter().map(|k| &k[..]));
                let Some(reply) = self.ask_one(command(&unlink)).await else {
                    return;
                };
                let Some(n) = integer(&reply) else {
                    return self.replies.ready(&reply);
                };
                deleted += n;
                for key in &keys {
                    self.services.l1.invalidate_key(db, key);
                }
            }
            if &next[..] == b"0" {
                break;
            }
            cursor = next;
        }
        let scan = self
            .services
            .l1
            .invalidate_patterns(vec![Pattern::new(pattern)]);
        self.services
            .control
            .bus
            .patterns(std::slice::from_ref(pattern));
        scan.evicted().await;
        self.reply_integer(deleted);
    }

    /// One command on the client's upstream slot; on failure the error is the reply.
    async fn ask_one(&mut self, bytes: Bytes) -> Option<Bytes> {
        match self.ask(bytes, 1).await {
            Ok(mut frames) => frames.pop(),
            Err(e) => {
                self.replies.error(&e);
                None
            }
        }
    }

    /// The route `WARM` runs on: the client's database and user (RESP2, in which the warm
    /// fetch reads its replies), so Redis applies the client's rules to its reads.
    fn warm_route(&self) -> crate::upstream::Route {
        crate::upstream::Route {
            db: self.session.db,
            resp: Resp::V2,
            user: self.session.user,
        }
    }

    pub(in crate::connection) fn reply_integer(&mut self, n: i64) {
        self.replies.ready_with(|out| {
            out.extend_from_slice(b":");
            write_decimal(out, n);
        });
    }

    pub(in crate::connection) fn reply_error(&mut self, message: &str) {
        self.replies.ready_with(|out| write_error(out, message));
    }
}

/// One `NEARCACHE NAMESPACES` element: field names and values, flat.
fn write_namespace(out: &mut BytesMut, row: &Row) {
    let p = &row.policy;
    let int = |n: u64| n.min(i64::MAX as u64) as i64;
    let numbers = [
        ("cache", i64::from(p.cache)),
        ("l1_ttl_ms", int(p.ttl.as_millis() as u64)),
        ("cache_nil", i64::from(p.cache_nil)),
        ("compress_min_bytes", int(p.compress_min_bytes as u64)),
        ("max_bytes", int(p.max_bytes.unwrap_or(0))),
        ("entries", int(row.entries)),
        ("bytes", int(row.bytes)),
        ("hits", int(row.hits)),
        ("misses", int(row.misses)),
    ];
    write_array_header(out, 4 + 2 * numbers.len());
    for (field, text) in [("name", &row.name), ("pattern", &row.pattern)] {
        write_bulk(out, field.as_bytes());
        write_bulk(out, text.as_bytes());
    }
    for (field, n) in numbers {
        write_bulk(out, field.as_bytes());
        out.extend_from_slice(b":");
        write_decimal(out, n);
    }
}

/// `NEARCACHE <subcommand> [args]`.
pub(in crate::connection) async fn run<R: Router>(cx: &mut Ctx<R>, req: Request) {
    let args = &req.args;
    let Some(name) = args.get(1) else {
        return cx.reply_error("ERR wrong number of arguments for 'nearcache' command");
    };
    let Some(sub) = Sub::parse(name) else {
        let shown = String::from_utf8_lossy(&name[..name.len().min(128)]);
        return cx.reply_error(&format!(
            "ERR unknown subcommand '{shown}'. Try NEARCACHE HELP."
        ));
    };
    let params = &args[2..];
    if !sub.arity_ok(params.len()) {
        return cx.reply_error(&format!(
            "ERR wrong number of arguments for '{}' command",
            sub.full_name()
        ));
    }
    if !cx.admit(sub, params).await {
        return;
    }
    match sub {
        Sub::Invalidate => {
            if params.len() > MAX_PATTERNS {
                return cx.reply_error(&format!(
                    "ERR too many patterns for 'nearcache|invalidate' command (at most {MAX_PATTERNS})"
                ));
            }
            if params.iter().any(|p| p.len() > MAX_PATTERN_BYTES) {
                return cx.reply_error(&format!(
                    "ERR pattern too long (at most {MAX_PATTERN_BYTES} bytes)"
                ));
            }
            let patterns = params.iter().map(|p| Pattern::new(p)).collect();
            // Registered at once; this client waits for the scan, the others are served.
            let scan = cx.services.l1.invalidate_patterns(patterns);
            cx.services.control.bus.patterns(params);
            let evicted = scan.evicted().await;
            cx.reply_integer(evicted as i64);
        }
        Sub::DelPattern if params[0].len() > MAX_PATTERN_BYTES => cx.reply_error(&format!(
            "ERR pattern too long (at most {MAX_PATTERN_BYTES} bytes)"
        )),
        Sub::DelPattern => cx.delete_pattern(&params[0]).await,
        Sub::Flush => {
            let all = match params.first() {
                None => false,
                Some(p) if p.eq_ignore_ascii_case(b"ALL") => true,
                Some(_) => return cx.reply_error("ERR syntax error"),
            };
            cx.services.l1.flush_all();
            if all {
                cx.services.control.bus.flush();
            }
            cx.replies.ready(OK);
        }
        Sub::Stats => {
            let text = info::sections(&cx.services);
            let mut out = BytesMut::new();
            if cx.session.resp == Resp::V3 {
                out.extend_from_slice(format!("={}\r\ntxt:", text.len() + 4).as_bytes());
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
            } else {
                write_bulk(&mut out, text.as_bytes());
            }
            cx.replies.ready_bytes(out.freeze());
        }
        Sub::Slowlog => cx.slowlog(params).await,
        Sub::Hotkeys => cx.hot_keys(params.first()).await,
        Sub::Warm => {
            match crate::warm::command(cx.services.warming.clone(), cx.warm_route(), params).await {
                Ok(keys) => cx.reply_integer(keys as i64),
                Err(e) => cx.reply_error(&e),
            }
        }
        Sub::Namespaces => {
            let rows = cx.services.l1.namespaces().rows();
            let mut out = BytesMut::new();
            write_array_header(&mut out, rows.len());
            rows.iter().for_each(|row| write_namespace(&mut out, row));
            cx.replies.ready_bytes(out.freeze());
        }
        Sub::Help => cx.reply_help(HELP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_are_case_insensitive_with_redis_arity() {
        assert!(matches!(Sub::parse(b"invalidate"), Some(Sub::Invalidate)));
        assert!(matches!(Sub::parse(b"DelPattern"), Some(Sub::DelPattern)));
        assert!(matches!(Sub::parse(b"slowlog"), Some(Sub::Slowlog)));
        assert!(matches!(Sub::parse(b"HotKeys"), Some(Sub::Hotkeys)));
        assert!(Sub::parse(b"slowlog2").is_none());
        assert!(!Sub::Slowlog.arity_ok(0) && Sub::Slowlog.arity_ok(2));
        assert!(Sub::Hotkeys.arity_ok(0) && Sub::Hotkeys.arity_ok(1) && !Sub::Hotkeys.arity_ok(2));
        assert!(!Sub::Invalidate.arity_ok(0) && Sub::Invalidate.arity_ok(3));
        assert!(Sub::DelPattern.arity_ok(1) && !Sub::DelPattern.arity_ok(2));
        assert!(Sub::Help.arity_ok(0) && !Sub::Help.arity_ok(1));
        assert!(Sub::Flush.arity_ok(1) && !Sub::Flush.arity_ok(2));
    }
}
