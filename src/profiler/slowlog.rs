//! The slow log: upstream calls that kept a client waiting at least `--slow-threshold`,
//! newest first, at most `--slowlog-max-len` entries, written in the shape of Redis's
//! `SLOWLOG GET` (id, unix time, microseconds, arguments, client address, client name) with
//! Redis's truncation of long argument lists and long arguments, and Redis's redaction of
//! secrets (see [`super::redact`]). Each entry names the ACL user whose call it was, so
//! that a client is shown its own user's entries (see `NEARCACHE SLOWLOG`).

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};

use super::redact::redact;
use crate::protocol::{parse_request, write_array_header, write_bulk, write_decimal, Limits};

/// At most this many arguments are kept; the last kept one then says how many were left
/// out (Redis's `SLOWLOG_ENTRY_MAX_ARGC`).
pub const MAX_ARGS: usize = 32;
/// At most this many bytes of an argument are kept (Redis's `SLOWLOG_ENTRY_MAX_STRING`).
pub const MAX_ARG_BYTES: usize = 128;
/// The user of an entry whose identity was dropped before it was logged: it has a space,
/// so no ACL user name equals it.
pub const UNKNOWN_USER: &[u8] = b"(unknown user)";
/// Distinct command names counted in [`SlowLog::by_command`]; later names count as `other`.
const MAX_COMMAND_NAMES: usize = 256;

/// One slow call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Unique, increasing from 0 (reset does not restart it, as in Redis).
    pub id: u64,
    /// When it was logged, unix seconds.
    pub time: u64,
    /// How long the client waited for the upstream, microseconds.
    pub micros: u64,
    /// The command's arguments, truncated (see [`truncate_args`]).
    pub args: Vec<Bytes>,
    /// The client's `ip:port`.
    pub client: String,
    /// The client's `CLIENT SETNAME` name, empty when it has none.
    pub name: Bytes,
    /// The ACL user the call ran as (not shown in the entry).
    pub user: Bytes,
}

/// The bounded log and its counters.
pub struct SlowLog {
    /// Calls at least this long are logged, nanoseconds (changed by a reload).
    threshold: AtomicU64,
    /// Entries kept (changed by a reload).
    max_len: AtomicUsize,
    /// Newest first.
    entries: Mutex<VecDeque<Entry>>,
    /// The next entry's id.
    next_id: AtomicU64,
    /// Slow commands seen since start (entries dropped or reset still count).
    slow: AtomicU64,
    /// Slow calls by the upper-case name of their first command.
    by_command: Mutex<HashMap<String, u64>>,
}

impl SlowLog {
    /// An empty log of calls at least `threshold` long, keeping `max_len` entries.
    pub fn new(threshold: Duration, max_len: usize) -> SlowLog {
        SlowLog {
            threshold: AtomicU64::new(nanos(threshold)),
            max_len: AtomicUsize::new(max_len),
            entries: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            by_command: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a call that took `took` is logged.
    #[inline]
    pub fn is_slow(&self, took: Duration) -> bool {
        nanos(took) >= self.threshold.load(Relaxed)
    }

    /// Calls at least this long are logged (`--slow-threshold`).
    pub fn threshold(&self) -> Duration {
        Duration::from_nanos(self.threshold.load(Relaxed))
    }

    /// Entries kept (`--slowlog-max-len`).
    pub fn max_len(&self) -> usize {
        self.max_len.load(Relaxed)
    }

    /// Logs calls at least `threshold` long from now on (a reload).
    pub fn set_threshold(&self, threshold: Duration) {
        self.threshold.store(nanos(threshold), Relaxed);
    }

    /// Keeps `max_len` entries from now on, dropping the oldest beyond it (a reload).
    pub fn set_max_len(&self, max_len: usize) {
        self.max_len.store(max_len, Relaxed);
        self.entries.lock().truncate(max_len);
    }

    /// Logs a slow call of `args` (already redacted and truncated) by `client` named
    /// `name`, authenticated as ACL user `user`, counted as `commands` slow commands (a
    /// pipelined call holds several).
    pub fn log(
        &self,
        took: Duration,
        args: Vec<Bytes>,
        client: String,
        name: Bytes,
        user: Bytes,
        commands: u64,
    ) {
        self.slow.fetch_add(commands, Relaxed);
        if let Some(cmd) = args.first() {
            let mut by = self.by_command.lock();
            let mut cmd = String::from_utf8_lossy(cmd).to_ascii_uppercase();
            if by.len() >= MAX_COMMAND_NAMES && !by.contains_key(&cmd) {
                cmd = "other".to_owned();
            }
            *by.entry(cmd).or_default() += 1;
        }
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut entries = self.entries.lock();
        let entry = Entry {
            id: self.next_id.fetch_add(1, Relaxed),
            time,
            micros: took.as_micros().try_into().unwrap_or(u64::MAX),
            args,
            client,
            name,
            user,
        };
        entries.push_front(entry);
        entries.truncate(self.max_len.load(Relaxed));
    }

    /// Slow commands seen since start.
    pub fn slow_commands(&self) -> u64 {
        self.slow.load(Relaxed)
    }

    /// Slow calls by the name (upper case) of their first command, most first.
    pub fn by_command(&self) -> Vec<(String, u64)> {
        let by = self.by_command.lock();
        let mut counts: Vec<_> = by.iter().map(|(k, v)| (k.clone(), *v)).collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts
    }

    /// Entries kept now.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Entries kept now of calls made as ACL user `user`.
    pub fn len_of(&self, user: &[u8]) -> usize {
        let entries = self.entries.lock();
        entries.iter().filter(|e| e.user == user).count()
    }

    /// True when no entry is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry (the counters go on).
    pub fn reset(&self) {
        self.entries.lock().clear();
    }

    /// The newest `n` entries (all of them for `None`).
    pub fn newest(&self, n: Option<usize>) -> Vec<Entry> {
        self.newest_of(n, None)
    }

    /// The newest `n` entries (all of them for `None`) of calls made as ACL user `user`
    /// (of every user for `None`).
    pub fn newest_of(&self, n: Option<usize>, user: Option<&[u8]>) -> Vec<Entry> {
        let entries = self.entries.lock();
        let n = n.unwrap_or(entries.len());
        entries
            .iter()
            .filter(|e| user.is_none_or(|u| e.user == u))
            .take(n)
            .cloned()
            .collect()
    }
}

/// `d` in nanoseconds, saturated (585 years).
fn nanos(d: Duration) -> u64 {
    d.as_nanos().try_into().unwrap_or(u64::MAX)
}

/// Writes entries as `SLOWLOG GET` does: an array of 6-element arrays.
pub fn write_entries(out: &mut BytesMut, entries: &[Entry]) {
    write_array_header(out, entries.len());
    for e in entries {
        write_array_header(out, 6);
        for n in [e.id, e.time, e.micros] {
            out.extend_from_slice(b":");
            write_decimal(out, n.min(i64::MAX as u64) as i64);
        }
        write_array_header(out, e.args.len());
        for arg in &e.args {
            write_bulk(out, arg);
        }
        write_bulk(out, e.client.as_bytes());
        write_bulk(out, &e.name);
    }
}

/// The slow log arguments of an upstream call holding `commands` client commands: its first
/// command's, redacted as Redis redacts them ([`redact`]) and then truncated, with one more argument `... (+N more commands in the pipeline)`
/// when it held more (one round trip answers them all: which one was slow is not known).
pub fn call_args(request: &[u8], commands: usize) -> Vec<Bytes> {
    let limits = Limits {
        max_bulk_bytes: usize::MAX,
        max_array_len: usize::MAX,
        max_inline_bytes: usize::MAX,
    };
    let mut buf = BytesMut::from(request);
    let mut args = match parse_request(&mut buf, &limits) {
        Ok(Some(mut req)) => {
            redact(&mut req.args);
            truncate_args(req.args.iter().map(|a| &a[..]))
        }
        _ => Vec::new(),
    };
    if commands > 1 {
        let more = format!("... (+{} more commands in the pipeline)", commands - 1);
        args.push(Bytes::from(more));
    }
    args
}

/// Redis's slow log truncation: at most [`MAX_ARGS`] arguments, the last kept replaced by
/// `... (N more arguments)`, and each argument cut to [`MAX_ARG_BYTES`] followed by
/// `... (N more bytes)`.
pub fn truncate_args<'a>(args: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<Bytes> {
    let argc = args.len();
    let kept = argc.min(MAX_ARGS);
    let mut out = Vec::with_capacity(kept);
    for (j, arg) in args.take(kept).enumerate() {
        if kept != argc && j == kept - 1 {
            out.push(Bytes::from(format!(
                "... ({} more arguments)",
                argc - kept + 1
            )));
        } else if arg.len() > MAX_ARG_BYTES {
            let mut cut = Vec::with_capacity(MAX_ARG_BYTES + 32);
            cut.extend_from_slice(&arg[..MAX_ARG_BYTES]);
            let more = format!("... ({} more bytes)", arg.len() - MAX_ARG_BYTES);
            cut.extend_from_slice(more.as_bytes());
            out.push(Bytes::from(cut));
        } else {
            out.push(Bytes::copy_from_slice(arg));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truncate(args: &[Vec<u8>]) -> Vec<Bytes> {
        truncate_args(args.iter().map(|a| &a[..]))
    }

    #[test]
    fn short_commands_are_kept_as_they_are() {
        let args = vec![b"SET".to_vec(), b"k".to_vec(), vec![b'v'; MAX_ARG_BYTES]];
        let got = truncate(&args);
        assert_eq!(got, args);
    }

    #[test]
    fn long_arguments_and_long_lists_are_cut_like_redis() {
        let mut args = vec![b"RPUSH".to_vec(), vec![b'k'; 130]];
        args.extend((0..40).map(|i| format!("{i}").into_bytes()));
        let got = truncate(&args);
        assert_eq!(got.len(), MAX_ARGS);
        assert_eq!(&got[0][..], b"RPUSH");
        let mut want = vec![b'k'; 128];
        want.extend_from_slice(b"... (2 more bytes)");
        assert_eq!(&got[1][..], &want[..]);
        assert_eq!(&got[30][..], b"28");
        // 42 arguments, 31 kept: the last slot names the 11 left out.
        assert_eq!(&got[31][..], b"... (11 more arguments)");
        assert_eq!(truncate(&vec![b"x".to_vec(); 32]).len(), 32);
        assert_eq!(&truncate(&vec![b"x".to_vec(); 32])[31][..], b"x");
    }

    #[test]
    fn a_call_is_logged_as_its_first_command_and_a_count_of_the_others() {
        let one = b"*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$3\r\n0.1\r\n";
        assert_eq!(call_args(one, 1), ["DEBUG", "SLEEP", "0.1"]);
        let mut two = one.to_vec();
        two.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$4\r\nPTTL\r\n$1\r\nk\r\n");
        assert_eq!(
            call_args(&two, 2),
            [
                "DEBUG",
                "SLEEP",
                "0.1",
                "... (+1 more commands in the pipeline)"
            ]
        );
        assert!(call_args(b"garbage", 1).is_empty());
        let auth = crate::protocol::command(&[b"CONFIG", b"SET", b"masterauth", b"pw"]);
        assert_eq!(
            call_args(&auth, 1),
            ["CONFIG", "SET", "masterauth", "(redacted)"],
            "redacted before it is kept"
        );
    }

    #[test]
    fn a_reload_changes_threshold_and_length() {
        let log = SlowLog::new(Duration::from_millis(10), 4);
        for _ in 0..3 {
            let args = vec![Bytes::from_static(b"get")];
            let (c, n, u) = ("1.2.3.4:5".into(), Bytes::new(), Bytes::from_static(b"u"));
            log.log(Duration::from_millis(20), args, c, n, u, 1);
        }
        log.set_threshold(Duration::from_millis(30));
        assert!(!log.is_slow(Duration::from_millis(20)));
        assert_eq!(log.threshold(), Duration::from_millis(30));
        log.set_max_len(1);
        assert_eq!(
            (log.len(), log.max_len()),
            (1, 1),
            "the oldest dropped at once"
        );
        assert_eq!(log.newest(None)[0].id, 2);
    }

    #[test]
    fn the_log_is_bounded_newest_first_and_reset_keeps_ids_going() {
        let log = SlowLog::new(Duration::from_millis(10), 2);
        assert!(!log.is_slow(Duration::from_millis(9)));
        assert!(log.is_slow(Duration::from_millis(10)));
        for i in 0..3u64 {
            let args = vec![Bytes::from_static(b"get"), Bytes::from(i.to_string())];
            log.log(
                Duration::from_millis(20),
                args,
                "1.2.3.4:5".into(),
                Bytes::new(),
                Bytes::from(if i == 1 { "bob" } else { "default" }),
                1,
            );
        }
        assert_eq!(log.len(), 2);
        let newest = log.newest(None);
        assert_eq!((newest[0].id, newest[1].id), (2, 1));
        assert_eq!(newest[0].micros, 20_000);
        assert_eq!(log.newest(Some(1)).len(), 1);
        let bobs = log.newest_of(None, Some(b"bob"));
        assert_eq!(bobs.iter().map(|e| e.id).collect::<Vec<_>>(), [1]);
        assert_eq!((log.len_of(b"bob"), log.len_of(b"default")), (1, 1));
        assert_eq!(log.newest_of(Some(5), Some(b"eve")), []);
        assert_eq!(log.slow_commands(), 3);
        assert_eq!(log.by_command(), [("GET".to_owned(), 3)]);
        log.reset();
        assert!(log.is_empty());
        log.log(
            Duration::ZERO,
            vec![],
            String::new(),
            Bytes::new(),
            Bytes::new(),
            2,
        );
        assert_eq!(log.newest(None)[0].id, 3);
        assert_eq!(log.slow_commands(), 5);
        assert_eq!(log.by_command(), [("GET".to_owned(), 3)]);
    }

    #[test]
    fn entries_are_written_as_slowlog_get_writes_them() {
        let e = Entry {
            id: 7,
            time: 1700000000,
            micros: 100_123,
            args: vec![Bytes::from_static(b"DEBUG"), Bytes::from_static(b"SLEEP")],
            client: "127.0.0.1:5000".into(),
            name: Bytes::from_static(b"app"),
            user: Bytes::from_static(b"default"),
        };
        let mut out = BytesMut::new();
        write_entries(&mut out, &[e]);
        assert_eq!(
            &out[..],
            &b"*1\r\n*6\r\n:7\r\n:1700000000\r\n:100123\r\n*2\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n\
               $14\r\n127.0.0.1:5000\r\n$3\r\napp\r\n"[..]
        );
    }
}
