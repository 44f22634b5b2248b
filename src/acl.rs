//! Command-level ACL rules for L1: an identity is answered from L1 only by a command the
//! upstream has let that identity run recently.
//!
//! L1 entries are per identity and filled only by that identity's own successful reads, so
//! key patterns are honoured by construction; what an entry cannot tell is whether the
//! identity may run the command that reads it (`+get -mget`). The sidecar needs no admin
//! rights to know: it learns from replies.
//!
//! - A *mark* per (identity, [`Read`]) records the ACL epoch in which a reply to that very
//!   command, for that identity, came back without an error. The command is answered from
//!   L1 only while its mark equals the current epoch; otherwise it is a miss, and the
//!   upstream's reply (a value, or `-NOPERM`) tells, and sets the mark again.
//! - The epoch is taken before the request is sent and the mark set to it when the reply
//!   arrives, so a reply that crossed a rule change sets a stale mark, which never matches.
//! - The epoch moves when rules change through this sidecar (`ACL SETUSER`, `DELUSER`,
//!   `LOAD`: before sending and again when the reply arrives), when the upstream link comes
//!   back, and every `--acl-recheck`, which bounds how long a rule changed directly on the
//!   upstream goes unseen.
//!
//! Misses of a command not known to be permitted coalesce only with fetches of that same
//! command (by the same identity, as every fetch): its reply is the check for all of them.
//!
//! The hit path reads two atomics (the epoch and the session's mark, both rarely written)
//! through an `Arc` the session holds: no lock, no map.

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Acquire, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::cache::Coalescer;

/// A command L1 answers, each permitted or not on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// `GET key`
    Get,
    /// `MGET key...`
    Mget,
}

/// A right `NEARCACHE` needs of the client's own Redis user (see
/// `connection::handlers::nearcache::access`), learned and forgotten like a [`Read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Right {
    /// `PUBLISH` on the invalidation channel (`INVALIDATE`, `DELPATTERN`, `FLUSH ALL`).
    Publish,
    /// `SCAN` (`INVALIDATE`, whose patterns reach keys as `SCAN MATCH` would).
    Scan,
    /// `SLOWLOG GET` (every user's slow log entries).
    SlowlogGet,
    /// `SLOWLOG RESET`.
    SlowlogReset,
}

/// Rights in [`Right`].
const RIGHTS: usize = 4;

/// How long an identity refused `CLIENT CACHING` is sent reads without it before the
/// prefix is tried again (a rule granting it is picked up within this).
pub const CACHING_RETRY_SECS: u64 = 60;

/// Now, Unix seconds.
fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What one identity is known to be allowed: per [`Read`] and [`Right`], the epoch in which
/// the upstream last let this identity run it (0: never).
#[derive(Debug, Default)]
pub struct Marks {
    get: AtomicU64,
    mget: AtomicU64,
    rights: [AtomicU64; RIGHTS],
    /// When the upstream last refused this identity `CLIENT CACHING` (`-NOPERM`), Unix
    /// seconds (0: never): for [`CACHING_RETRY_SECS`] its reads that fill nothing go
    /// without the prefix (tracked, as before `OPTOUT`), so an ACL without
    /// `+client|caching` adds Redis's ACL LOG one denial a minute, not one per read.
    caching_refused: AtomicU64,
}

impl Marks {
    /// Whether this identity may be sent `CLIENT CACHING no`: never refused it, or not in
    /// the last [`CACHING_RETRY_SECS`].
    #[inline]
    pub fn may_untrack(&self) -> bool {
        let refused = self.caching_refused.load(Acquire);
        refused == 0 || unix_secs() >= refused + CACHING_RETRY_SECS
    }

    /// Learns from the reply to a `CLIENT CACHING no` sent for this identity: a `-NOPERM`
    /// (an ACL without `+client|caching`) stops the prefix for [`CACHING_RETRY_SECS`].
    /// Another error (a connection whose tracking is not on yet) changes nothing.
    pub fn caching_reply(&self, reply: &[u8]) {
        if reply.starts_with(b"-NOPERM") {
            self.caching_refused.store(unix_secs().max(1), SeqCst);
        }
    }

    #[inline]
    fn slot(&self, read: Read) -> &AtomicU64 {
        match read {
            Read::Get => &self.get,
            Read::Mget => &self.mget,
        }
    }
}

/// The learned permissions of every identity and the epoch they are valid in.
pub struct Acl {
    /// Starts at 1 (0 in a mark means "never learned").
    epoch: AtomicU64,
    /// By identity id (see `Upstream::identity`); an identity's marks are dropped with it.
    marks: RwLock<HashMap<u32, Arc<Marks>>>,
    /// In-flight fetches made while GET, MGET (in that order) was not known permitted.
    unchecked: [Arc<Coalescer>; 2],
    /// `--acl-recheck` in nanoseconds (changed by a reload); zero: never.
    recheck: AtomicU64,
}

impl Default for Acl {
    fn default() -> Acl {
        Acl {
            epoch: AtomicU64::new(1),
            marks: RwLock::new(HashMap::new()),
            unchecked: [Coalescer::new(), Coalescer::new()],
            recheck: AtomicU64::new(0),
        }
    }
}

impl Acl {
    /// Nothing learned yet.
    pub fn new() -> Arc<Acl> {
        Arc::new(Acl::default())
    }

    /// The marks of `identity`, for its sessions to hold.
    pub fn marks(&self, identity: u32) -> Arc<Marks> {
        if let Some(m) = self.marks.read().get(&identity) {
            return m.clone();
        }
        let mut all = self.marks.write();
        all.entry(identity).or_default().clone()
    }

    /// Forgets a dropped identity (ids are never reused): what is kept stays bounded by the
    /// identities in use, not by every identity ever seen.
    pub fn drop_identity(&self, identity: u32) {
        let mut all = self.marks.write();
        all.remove(&identity);
    }

    /// Where a miss of `read` not known to be permitted joins or registers its fetch.
    pub fn unchecked_fills(&self, read: Read) -> &Arc<Coalescer> {
        &self.unchecked[read as usize]
    }

    /// The current epoch: take it before sending the request whose reply may [`Acl::learn`].
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Acquire)
    }

    /// Whether `read` may be answered from L1 for the identity of `marks`.
    #[inline]
    pub fn permits(&self, marks: &Marks, read: Read) -> bool {
        marks.slot(read).load(Acquire) == self.epoch()
    }

    /// Whether `read` ever succeeded for the identity (for serving stale hits while the
    /// upstream is unreachable, when nothing can be re-learned).
    pub fn ever_permitted(&self, marks: &Marks, read: Read) -> bool {
        marks.slot(read).load(Acquire) != 0
    }

    /// Whether the identity of `marks` is known to have `right` in this epoch.
    pub fn has(&self, marks: &Marks, right: Right) -> bool {
        marks.rights[right as usize].load(Acquire) == self.epoch()
    }

    /// Records that the upstream granted `right` to a request sent in epoch `taken`.
    pub fn grant(&self, marks: &Marks, right: Right, taken: u64) {
        marks.rights[right as usize].fetch_max(taken, SeqCst);
    }

    /// Records that the upstream answered `read` without error to a request sent in epoch
    /// `taken`; a mark from an older epoch than the current one is inert.
    pub fn learn(&self, marks: &Marks, read: Read, taken: u64) {
        let slot = marks.slot(read);
        if slot.load(Acquire) < taken {
            slot.fetch_max(taken, SeqCst);
        }
    }

    /// Forgets everything learned: the rules may have changed.
    pub fn forget(&self) {
        self.epoch.fetch_add(1, SeqCst);
    }

    /// How long a learned permission is trusted (`--acl-recheck`; zero: until a rule
    /// change through the sidecar or a reconnect).
    pub fn recheck(&self) -> Duration {
        Duration::from_nanos(self.recheck.load(Acquire))
    }

    /// Changes the re-check interval (a reload): the running [`Acl::recheck_every`] task
    /// follows within [`RECHECK_POLL`].
    pub fn set_recheck(&self, interval: Duration) {
        let nanos = interval.as_nanos().try_into().unwrap_or(u64::MAX);
        self.recheck.store(nanos, SeqCst);
    }

    /// Forgets everything every `interval` (zero: never, only rule changes through the
    /// sidecar and reconnects are seen), for as long as `acl` has other owners; follows
    /// [`Acl::set_recheck`], looking at the interval at least every [`RECHECK_POLL`].
    pub async fn recheck_every(acl: std::sync::Weak<Acl>, interval: Duration) {
        match acl.upgrade() {
            Some(acl) => acl.set_recheck(interval),
            None => return,
        }
        let mut since = tokio::time::Instant::now();
        loop {
            let Some(acl) = acl.upgrade() else { return };
            let interval = acl.recheck();
            let now = tokio::time::Instant::now();
            // `None` (never) for zero, and for an interval past the clock's range.
            let due = since.checked_add(interval).filter(|_| !interval.is_zero());
            if due.is_some_and(|due| now >= due) {
                acl.forget();
                since = now;
                continue;
            }
            drop(acl);
            let wait = due.map_or(RECHECK_POLL, |due| due.saturating_duration_since(now));
            tokio::time::sleep(wait.min(RECHECK_POLL)).await;
        }
    }
}

/// How often [`Acl::recheck_every`] looks at a re-check interval changed by a reload.
pub const RECHECK_POLL: Duration = Duration::from_secs(1);

/// Whether a request changes ACL rules: `ACL SETUSER`, `ACL DELUSER` or `ACL LOAD`.
pub fn changes_rules(args: &[Bytes]) -> bool {
    const CHANGING: [&[u8]; 3] = [b"SETUSER", b"DELUSER", b"LOAD"];
    match args {
        [name, sub, ..] if name.eq_ignore_ascii_case(b"ACL") => {
            CHANGING.iter().any(|c| sub.eq_ignore_ascii_case(c))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_permitted_until_learned_per_command() {
        let acl = Acl::new();
        let m = acl.marks(3);
        assert!(!acl.permits(&m, Read::Get));
        assert!(!acl.ever_permitted(&m, Read::Get));
        acl.learn(&m, Read::Get, acl.epoch());
        assert!(acl.permits(&m, Read::Get));
        assert!(!acl.permits(&m, Read::Mget), "GET says nothing about MGET");
        assert!(
            Arc::ptr_eq(&m, &acl.marks(3)),
            "one set of marks per identity"
        );
        assert!(
            !acl.permits(&acl.marks(0), Read::Get),
            "nor about another identity"
        );
    }

    #[test]
    fn a_rule_change_forgets_and_a_reply_that_crossed_it_teaches_nothing() {
        let acl = Acl::new();
        let m = acl.marks(0);
        acl.learn(&m, Read::Mget, acl.epoch());
        let taken = acl.epoch();
        acl.forget();
        assert!(!acl.permits(&m, Read::Mget));
        assert!(acl.ever_permitted(&m, Read::Mget));
        acl.learn(&m, Read::Mget, taken);
        assert!(!acl.permits(&m, Read::Mget), "sent before the change");
        acl.learn(&m, Read::Mget, acl.epoch());
        assert!(acl.permits(&m, Read::Mget));
        acl.learn(&m, Read::Mget, taken);
        assert!(
            acl.permits(&m, Read::Mget),
            "a late old reply does not undo a newer one"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reloaded_recheck_interval_is_followed_by_the_running_task() {
        let acl = Acl::new();
        let m = acl.marks(1);
        tokio::spawn(Acl::recheck_every(Arc::downgrade(&acl), Duration::ZERO));
        tokio::task::yield_now().await;
        acl.learn(&m, Read::Get, acl.epoch());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(acl.permits(&m, Read::Get), "zero: never re-checked");
        acl.set_recheck(Duration::from_millis(300));
        tokio::time::sleep(RECHECK_POLL + Duration::from_millis(50)).await;
        assert!(!acl.permits(&m, Read::Get), "re-checked after the reload");
        acl.learn(&m, Read::Get, acl.epoch());
        acl.set_recheck(Duration::ZERO);
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(acl.permits(&m, Read::Get), "zero again: never");
    }

    #[tokio::test(start_paused = true)]
    async fn marks_expire_every_recheck_interval() {
        let acl = Acl::new();
        let m = acl.marks(0);
        tokio::spawn(Acl::recheck_every(
            Arc::downgrade(&acl),
            Duration::from_secs(1),
        ));
        tokio::task::yield_now().await;
        acl.learn(&m, Read::Get, acl.epoch());
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(acl.permits(&m, Read::Get));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!acl.permits(&m, Read::Get), "expired after the interval");
    }

    #[test]
    fn rights_are_per_identity_and_forgotten_with_the_epoch() {
        let acl = Acl::new();
        let m = acl.marks(5);
        assert!(!acl.has(&m, Right::Publish));
        let taken = acl.epoch();
        acl.grant(&m, Right::Publish, taken);
        assert!(acl.has(&m, Right::Publish));
        assert!(
            !acl.has(&m, Right::SlowlogGet),
            "one right says nothing of another"
        );
        assert!(
            !acl.has(&acl.marks(6), Right::Publish),
            "nor of another identity"
        );
        acl.forget();
        assert!(!acl.has(&m, Right::Publish));
        acl.grant(&m, Right::Publish, taken);
        assert!(!acl.has(&m, Right::Publish), "granted before the change");
    }

    #[test]
    fn only_rule_changing_acl_subcommands_count() {
        let args = |a: &[&'static str]| a.iter().map(|s| Bytes::from(*s)).collect::<Vec<_>>();
        for yes in [
            &["ACL", "SETUSER", "u", "-get"][..],
            &["acl", "deluser", "u"],
            &["Acl", "Load"],
        ] {
            assert!(changes_rules(&args(yes)), "{yes:?}");
        }
        for no in [
            &["ACL", "WHOAMI"][..],
            &["ACL", "GETUSER", "u"],
            &["ACL"],
            &["GET", "SETUSER"],
            &["AUTH", "u", "p"],
        ] {
            assert!(!changes_rules(&args(no)), "{no:?}");
        }
    }
}
