//! A connection's read counts (hits, misses, by namespace), added up locally and published
//! to the shared figures once per batch, so the hit path touches no shared counter.

use std::sync::atomic::Ordering::Relaxed;

use crate::cache::Namespaces;
use crate::metrics::Stats;

#[derive(Default)]
pub(super) struct Counts {
    hits: u64,
    misses: u64,
    /// GETs answered by the hit path (not dispatched, so not counted by command there).
    pub(super) hot_gets: u64,
    /// `[hits, misses]` by namespace index; empty until a read is counted with namespaces
    /// configured.
    by_namespace: Vec<[u64; 2]>,
}

impl Counts {
    /// Counts a read of `key` that L1 answered (`hit`) or did not.
    #[inline]
    pub(super) fn read(&mut self, namespaces: &Namespaces, key: &[u8], hit: bool) {
        self.read_in(namespaces, namespaces.of(key), hit);
    }

    /// Counts a read of a key of namespace `i` (as [`Namespaces::of`] or
    /// [`crate::cache::L1::read`] found it) that L1 answered (`hit`) or did not.
    #[inline]
    pub(super) fn read_in(&mut self, namespaces: &Namespaces, i: usize, hit: bool) {
        match hit {
            true => self.hits += 1,
            false => self.misses += 1,
        }
        if let Some(counts) = self.namespace(namespaces, i) {
            counts[usize::from(!hit)] += 1;
        }
    }

    /// A read of namespace `i` counted as a hit turns out to be fetched after all.
    pub(super) fn hit_was_miss(&mut self, namespaces: &Namespaces, i: usize) {
        self.hits -= 1;
        self.misses += 1;
        if let Some(counts) = self.namespace(namespaces, i) {
            counts[0] -= 1;
            counts[1] += 1;
        }
    }

    /// The counts of namespace `i`; `None` when no namespace is configured.
    #[inline]
    fn namespace(&mut self, namespaces: &Namespaces, i: usize) -> Option<&mut [u64; 2]> {
        if namespaces.is_empty() {
            return None;
        }
        if self.by_namespace.len() != namespaces.len() {
            self.by_namespace = vec![[0; 2]; namespaces.len()];
        }
        self.by_namespace.get_mut(i)
    }

    /// Adds the counts to the shared figures and starts again from zero.
    pub(super) fn publish(&mut self, stats: &Stats, namespaces: &Namespaces) {
        if self.hot_gets > 0 {
            stats.hot_path_gets.fetch_add(self.hot_gets, Relaxed);
        }
        if self.hits > 0 {
            stats.l1_hits.fetch_add(self.hits, Relaxed);
        }
        if self.misses > 0 {
            stats.l1_misses.fetch_add(self.misses, Relaxed);
        }
        (self.hits, self.misses, self.hot_gets) = (0, 0, 0);
        for (i, counts) in self.by_namespace.iter_mut().enumerate() {
            if *counts != [0, 0] {
                namespaces.count(i, counts[0], counts[1]);
                *counts = [0, 0];
            }
        }
    }
}
