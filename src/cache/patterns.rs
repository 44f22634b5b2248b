//! Pattern invalidations (`NEARCACHE INVALIDATE`, `DELPATTERN`, a bus `P` message) without
//! a pass over L1 on the serving thread.
//!
//! Registering an invalidation costs O(patterns): its patterns join the pending set and the
//! epoch of everything is bumped, so from then on no fetch that started before can install
//! its result and no hit is served for a key a pending pattern matches ([`L1::read`] refuses
//! it: one atomic load while nothing is pending). A scan then removes the matching entries
//! on a blocking thread (`spawn_blocking`): one pass over every table, a segment at a time
//! (the keys a segment holds are matched under its shard's lock, then removed one by one
//! under their stripe locks), for all the
//! invalidations registered by the time it starts, each key tried only against the patterns
//! whose literal head starts with the key's first byte (and those without a head). An
//! invalidation leaves the pending set, and learns how many entries it evicted, when the
//! pass that took it is done. A pending set beyond [`MAX_PENDING`] patterns is not grown:
//! L1 is flushed instead (conservative and cheap).
//!
//! The pass runs in slices of [`SLICE`] entries and rests after each for [`REST_FACTOR`]
//! times as long as the slice took: on a small machine (the sidecar shares its pod's cores
//! with the application) it takes at most about a ninth of one core, so a pass over a
//! large L1 takes longer but leaves the serving thread its core. Only the keys the pending
//! patterns match wait for it (they are refused as hits until it is done).

use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::oneshot;

use super::{CacheKey, L1};
use crate::glob::Pattern;

/// Most patterns pending at once (registered, their scan not done); an invalidation that
/// would take more flushes L1 instead.
pub const MAX_PENDING: usize = 256;
/// Entries a scan looks at between two rests.
const SLICE: usize = 16_384;
/// A scan rests this many times as long as its last slice took.
const REST_FACTOR: u32 = 8;

/// The pattern invalidations registered and not yet scanned.
#[derive(Default)]
pub(super) struct Pending {
    /// Patterns in `jobs`: the hit path reads only this while it is zero.
    patterns: AtomicUsize,
    /// In registration order.
    jobs: RwLock<Vec<Arc<Job>>>,
    /// A scan is running; it takes every job registered before it looks again, and stops
    /// (clearing this under the lock) only when it finds none.
    scanning: Mutex<bool>,
}

/// One registered invalidation.
pub(super) struct Job {
    patterns: Vec<Pattern>,
    /// Taken by a scan (each job is scanned once).
    claimed: AtomicBool,
    /// Entries its patterns matched that the scan removed.
    evicted: AtomicU64,
    done: Mutex<Option<oneshot::Sender<u64>>>,
}

/// The outcome of a pattern invalidation: the number of entries it evicted, once its scan
/// is done.
pub struct Invalidation(oneshot::Receiver<u64>);

impl Invalidation {
    /// Waits for the scan; the entries it evicted (zero if it could not run).
    pub async fn evicted(self) -> u64 {
        self.0.await.unwrap_or(0)
    }

    fn ready(evicted: u64) -> Invalidation {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(evicted);
        Invalidation(rx)
    }
}

impl Pending {
    /// Whether any pattern is pending (the hit path's check).
    #[inline]
    pub(super) fn any(&self) -> bool {
        self.patterns.load(SeqCst) != 0
    }

    /// Whether a pending pattern matches `key`.
    #[cold]
    #[inline(never)]
    pub(super) fn covers(&self, key: &[u8]) -> bool {
        let jobs = self.jobs.read();
        jobs.iter()
            .any(|job| job.patterns.iter().any(|p| p.matches(key)))
    }

    /// Patterns pending now.
    pub(super) fn len(&self) -> usize {
        self.patterns.load(SeqCst)
    }
}

/// Which patterns of a batch of jobs a key may match, by the key's first byte.
struct Index<'a> {
    /// (job, pattern) pairs whose literal head starts with the byte.
    by_first: Vec<Vec<(usize, &'a Pattern)>>,
    /// Pairs whose pattern has no literal head.
    headless: Vec<(usize, &'a Pattern)>,
}

impl<'a> Index<'a> {
    fn new(batch: &'a [Arc<Job>]) -> Index<'a> {
        let mut by_first = vec![Vec::new(); 256];
        let mut headless = Vec::new();
        for (j, job) in batch.iter().enumerate() {
            for p in &job.patterns {
                match p.first_byte() {
                    Some(b) => by_first[usize::from(b)].push((j, p)),
                    None => headless.push((j, p)),
                }
            }
        }
        Index { by_first, headless }
    }

    /// Pushes onto `jobs` (cleared first) each job with a pattern that matches `key`.
    fn matching(&self, key: &[u8], jobs: &mut Vec<usize>) {
        jobs.clear();
        let headed = key
            .first()
            .map_or(&[][..], |b| &self.by_first[usize::from(*b)]);
        for &(j, p) in headed.iter().chain(&self.headless) {
            if !jobs.contains(&j) && p.matches(key) {
                jobs.push(j);
            }
        }
    }
}

impl L1 {
    /// Evicts every entry whose key matches one of `patterns`, in every database and for
    /// every user, without blocking the caller: registers them (see the module docs) and
    /// has a blocking thread scan L1 (on this thread when there is no tokio runtime).
    /// From the return on, no hit is served for a matching key and no fetch that started
    /// before installs. The [`Invalidation`] gives the number of entries evicted.
    pub fn invalidate_patterns(self: &Arc<Self>, patterns: Vec<Pattern>) -> Invalidation {
        let (invalidation, _) = self.register(patterns, false);
        self.start_scan();
        invalidation
    }

    /// Like [`L1::invalidate_patterns`] for one pattern, scanned on the calling thread
    /// (which it blocks): for callers off the serving path. Returns the entries evicted.
    pub fn invalidate_matching(&self, pattern: &Pattern) -> u64 {
        let (_, job) = self.register(vec![pattern.clone()], true);
        let Some(job) = job else {
            return 0;
        };
        let batch = [job];
        self.scan(&batch);
        self.finish(&batch);
        batch[0].evicted.load(SeqCst)
    }

    /// Patterns registered whose scan is not done.
    pub fn pending_patterns(&self) -> usize {
        self.pending.len()
    }

    /// Registers an invalidation (O(patterns)); `claimed` keeps it from the background
    /// scan (its caller scans it). The job is `None` when there is nothing to scan: no
    /// patterns, or L1 was flushed because the pending set would grow past [`MAX_PENDING`]
    /// (the invalidation is then ready with the entries L1 held).
    pub(super) fn register(
        &self,
        patterns: Vec<Pattern>,
        claimed: bool,
    ) -> (Invalidation, Option<Arc<Job>>) {
        if patterns.is_empty() {
            return (Invalidation::ready(0), None);
        }
        let (tx, rx) = oneshot::channel();
        let n = patterns.len();
        let job = Arc::new(Job {
            patterns,
            claimed: AtomicBool::new(claimed),
            evicted: AtomicU64::new(0),
            done: Mutex::new(Some(tx)),
        });
        {
            let mut jobs = self.pending.jobs.write();
            if self.pending.patterns.load(SeqCst) + n > MAX_PENDING {
                drop(jobs);
                let held = self.entry_count();
                tracing::warn!(
                    "more than {MAX_PENDING} invalidation patterns pending: L1 flushed instead"
                );
                self.flush_all();
                return (Invalidation::ready(held), None);
            }
            jobs.push(job.clone());
            self.pending.patterns.fetch_add(n, SeqCst);
        }
        // Any fetch in flight may have read a key the patterns match.
        let _all = self.generations.lock_all();
        self.generations.bump_all();
        (Invalidation(rx), Some(job))
    }

    /// Starts a background scan unless one is running (it will take the new jobs).
    fn start_scan(self: &Arc<Self>) {
        {
            let mut scanning = self.pending.scanning.lock();
            if *scanning {
                return;
            }
            *scanning = true;
        }
        let l1 = self.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || l1.scan_pending())),
            Err(_) => l1.scan_pending(),
        }
    }

    /// Scans for every job not yet taken, batch after batch, until none is left.
    pub(super) fn scan_pending(&self) {
        loop {
            let batch: Vec<Arc<Job>> = {
                let mut scanning = self.pending.scanning.lock();
                let jobs = self.pending.jobs.read();
                let batch: Vec<_> = jobs
                    .iter()
                    .filter(|job| !job.claimed.swap(true, SeqCst))
                    .cloned()
                    .collect();
                if batch.is_empty() {
                    *scanning = false;
                    return;
                }
                batch
            };
            self.scan(&batch);
            self.finish(&batch);
        }
    }

    /// One pass over L1: removes every entry a pattern of `batch` matches (under its
    /// stripe lock, bumping its bucket, as a write's eviction does) and counts it for each
    /// job that matched it.
    fn scan(&self, batch: &[Arc<Job>]) {
        let index = Index::new(batch);
        let mut matched = Vec::new();
        let mut found: Vec<(CacheKey, Vec<usize>)> = Vec::new();
        let mut visited = 0;
        let mut slice_started = std::time::Instant::now();
        for store in &self.stores {
            for shard in 0..store.shards() {
                for segment in store.segments(shard) {
                    store.keys_in(shard, segment, |key| {
                        visited += 1;
                        index.matching(key.key, &mut matched);
                        if !matched.is_empty() {
                            let key = CacheKey {
                                user: key.user,
                                db: key.db,
                                key: bytes::Bytes::copy_from_slice(key.key),
                            };
                            found.push((key, matched.clone()));
                        }
                    });
                    for (key, jobs) in found.drain(..) {
                        let hash = self.key_hash(key.db, &key.key);
                        let _key = self.generations.lock(hash);
                        if store.remove(hash, &key.as_key_ref()) {
                            self.counters.invalidated.fetch_add(1, Relaxed);
                            for j in jobs {
                                batch[j].evicted.fetch_add(1, SeqCst);
                            }
                        }
                        self.generations.bump_key(hash);
                    }
                    if visited >= SLICE {
                        std::thread::sleep(slice_started.elapsed() * REST_FACTOR);
                        slice_started = std::time::Instant::now();
                        visited = 0;
                    }
                }
            }
        }
    }

    /// Takes scanned jobs out of the pending set and gives each its count.
    fn finish(&self, batch: &[Arc<Job>]) {
        {
            let mut jobs = self.pending.jobs.write();
            jobs.retain(|job| !batch.iter().any(|done| Arc::ptr_eq(done, job)));
            let n: usize = batch.iter().map(|job| job.patterns.len()).sum();
            self.pending.patterns.fetch_sub(n, SeqCst);
        }
        for job in batch {
            let done = job.done.lock().take();
            if let Some(done) = done {
                let _ = done.send(job.evicted.load(SeqCst));
            }
        }
    }
}

#[cfg(test)]
mod tests;
