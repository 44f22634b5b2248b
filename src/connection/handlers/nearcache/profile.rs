//! What `NEARCACHE HOTKEYS` and `NEARCACHE SLOWLOG` show a client: only what its own Redis
//! user may see.
//!
//! - `HOTKEYS` lists a key only if Redis lets the client's user read it: the candidates,
//!   most read first, are checked with `EXISTS <key>` pipelined on the client's own route,
//!   and a key whose `EXISTS` Redis refuses (`-NOPERM`: no read access to the key) is left
//!   out. `EXISTS` is the read whose check is the key's read permission and no more: it
//!   returns no value and does not touch the key's LRU/LFU. A user Redis does not let run
//!   `EXISTS` at all sees no keys (the check errs towards hiding). The sketch itself counts
//!   reads of every user (per-user counts would multiply its memory by the users), so the
//!   counts shown are of all users' reads of a key the client may read.
//! - `SLOWLOG GET`/`LEN` show the entries of calls made as the client's ACL user, or every
//!   entry when its user may run Redis's own `SLOWLOG GET` (see
//!   `Connection::sees_every_slow_call`); `RESET` needs Redis's `SLOWLOG RESET` (checked by
//!   `access` before it gets here) and empties the whole log, as Redis's does.

use bytes::{Bytes, BytesMut};

use super::DEFAULT_COUNT;
use crate::connection::handlers::Ctx;
use crate::profiler::slowlog::write_entries;
use crate::protocol::decode::is_error;
use crate::protocol::{
    parse_decimal, write_array_header, write_bulk, write_command, write_decimal, OK,
};
use crate::upstream::Router;

/// Hot-key candidates checked per pipelined call.
const CHECK_BATCH: usize = 256;

/// The `NEARCACHE SLOWLOG HELP` lines (Redis's `SLOWLOG HELP`).
const SLOWLOG_HELP: &[&str] = &[
    "NEARCACHE SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Print this help.",
];

/// Whose slow log entries a client is shown.
enum Scope {
    /// Every user's (an admin).
    Every,
    /// Those of this ACL user.
    User(Bytes),
    /// None (the client's identity was dropped meanwhile).
    Nobody,
}

impl<R: Router> Ctx<R> {
    /// `NEARCACHE HOTKEYS [count]`: the most read keys the client's user may read.
    pub(in crate::connection) async fn hot_keys(&mut self, count: Option<&Bytes>) {
        let n = match count {
            None => DEFAULT_COUNT,
            Some(n) => match parse_decimal(n) {
                Some(n) if n > 0 => n,
                _ => return self.reply_error("ERR value is out of range, must be positive"),
            },
        };
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let candidates = self.services.profiler.hot_keys(usize::MAX);
        let mut shown = Vec::new();
        for batch in candidates.chunks(CHECK_BATCH) {
            let mut checks = BytesMut::new();
            for (key, _) in batch {
                write_command(&mut checks, &[b"EXISTS", key]);
            }
            let frames = match self.ask(checks.freeze(), batch.len()).await {
                Ok(frames) => frames,
                Err(e) => return self.replies.error(&e),
            };
            let readable = batch.iter().zip(&frames).filter(|(_, f)| !is_error(f));
            shown.extend(readable.map(|(hot, _)| hot.clone()).take(n - shown.len()));
            if shown.len() == n {
                break;
            }
        }
        let mut out = BytesMut::new();
        write_array_header(&mut out, shown.len() * 2);
        for (key, count) in shown {
            write_bulk(&mut out, &key);
            out.extend_from_slice(b":");
            write_decimal(&mut out, count.min(i64::MAX as u64) as i64);
        }
        self.replies.ready_bytes(out.freeze());
    }

    /// `NEARCACHE SLOWLOG GET [count] | LEN | RESET | HELP`, answered as Redis's `SLOWLOG`
    /// with the entries the client's user may see.
    pub(in crate::connection) async fn slowlog(&mut self, params: &[Bytes]) {
        let sub = &params[0];
        let is = |name: &[u8]| sub.eq_ignore_ascii_case(name);
        match params.len() {
            1 | 2 if is(b"GET") => {
                let count = match params.get(1) {
                    None => DEFAULT_COUNT,
                    Some(n) => match parse_decimal(n) {
                        Some(n) if n >= -1 => n,
                        _ => {
                            return self
                                .reply_error("ERR count should be greater than or equal to -1")
                        }
                    },
                };
                let count = (count >= 0).then_some(count as usize);
                let scope = self.slowlog_scope().await;
                let log = &self.services.profiler.slowlog;
                let entries = match scope {
                    Scope::Every => log.newest(count),
                    Scope::User(user) => log.newest_of(count, Some(&user)),
                    Scope::Nobody => Vec::new(),
                };
                let mut out = BytesMut::new();
                write_entries(&mut out, &entries);
                self.replies.ready_bytes(out.freeze());
            }
            1 if is(b"LEN") => {
                let scope = self.slowlog_scope().await;
                let log = &self.services.profiler.slowlog;
                let len = match scope {
                    Scope::Every => log.len(),
                    Scope::User(user) => log.len_of(&user),
                    Scope::Nobody => 0,
                };
                self.reply_integer(len as i64);
            }
            1 if is(b"RESET") => {
                self.services.profiler.slowlog.reset();
                self.replies.ready(OK);
            }
            1 if is(b"HELP") => self.reply_help(SLOWLOG_HELP),
            _ => {
                let shown = String::from_utf8_lossy(&sub[..sub.len().min(128)]);
                self.reply_error(&format!(
                    "ERR unknown subcommand or wrong number of arguments for '{shown}'. \
                     Try NEARCACHE SLOWLOG HELP."
                ))
            }
        }
    }

    /// Whose entries this client is shown.
    async fn slowlog_scope(&mut self) -> Scope {
        if self.sees_every_slow_call().await {
            return Scope::Every;
        }
        match self.user_name() {
            Some(user) => Scope::User(user),
            None => Scope::Nobody,
        }
    }
}
