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
        match hit {
            true => self.hits += 1,
            false => self.misses += 1,
        }
        if !namespaces.is_empty() {
            self.namespace(namespaces, key)[usize::from(!hit)] += 1;
        }
    }

    /// Counts a hit of a key in namespace `i` (as [`crate::cache::L1::read`] found it).
    #[inline]
    pub(super) fn hit_in(&mut self, namespaces: &Namespaces, i: usize) {
        self.hits += 1;
        if !namespaces.is_empty() {
            if self.by_namespace.len() != namespaces.len() {
                self.by_namespace = vec![[0; 2]; namespaces.len()];
            }
            if let Some(counts) = self.by_namespace.get_mut(i) {
                counts[0] += 1;
            }
        }
    }

    /// A read counted as a hit turns out to be fetched after all.
    pub(super) fn hit_was_miss(&mut self, namespaces: &Namespaces, key: &[u8]) {
        self.hits -= 1;
        self.misses += 1;
        if !namespaces.is_empty() {
            let counts = self.namespace(namespaces, key);
            counts[0] -= 1;
            counts[1] += 1;
        }
    }

    #[inline]
    fn namespace(&mut self, namespaces: &Namespaces, key: &[u8]) -> &mut [u64; 2] {
        if self.by_namespace.len() != namespaces.len() {
            self.by_namespace = vec![[0; 2]; namespaces.len()];
        }
        let i = namespaces.of(key);
        &mut self.by_namespace[i]
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
