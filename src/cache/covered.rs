//! Which keys L1 may hold at all. With broadcast tracking (`--tracking bcast`) Redis reports
//! writes only of keys under its prefixes: a key outside every prefix would never be
//! invalidated, so it is neither filled nor answered from L1 (its reads are forwarded).

use std::sync::OnceLock;

use bytes::Bytes;

use super::L1;

/// The prefixes keys must start with; unset (or empty): every key.
#[derive(Default)]
pub(super) struct Covered(OnceLock<Vec<Bytes>>);

impl Covered {
    /// Whether `key` is under a prefix (or no prefix is set).
    #[inline]
    fn covers(&self, key: &[u8]) -> bool {
        match self.0.get() {
            None => true,
            Some(prefixes) => prefixes.is_empty() || prefixes.iter().any(|p| key.starts_with(p)),
        }
    }
}

impl L1 {
    /// Only keys that start with one of `prefixes` are cached from now on (set once, before
    /// any fetch; later calls are ignored). An empty list covers every key.
    pub fn cover_only(&self, prefixes: Vec<Bytes>) {
        let _ = self.covered.0.set(prefixes);
    }

    /// Whether every key may be in L1 (no prefix restricts it).
    pub fn covers_all(&self) -> bool {
        self.covered.0.get().is_none_or(Vec::is_empty)
    }

    /// Whether `key` may be in L1 at all (see [`L1::cover_only`]).
    #[inline]
    pub fn covers(&self, key: &[u8]) -> bool {
        self.covered.covers(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_outside_every_prefix_are_not_covered() {
        let covered = Covered::default();
        assert!(covered.covers(b"anything"));
        let _ = covered.0.set(vec![
            Bytes::from_static(b"user:"),
            Bytes::from_static(b"s:"),
        ]);
        assert!(covered.covers(b"user:1"));
        assert!(covered.covers(b"s:"));
        assert!(!covered.covers(b"user"));
        assert!(!covered.covers(b"order:1"));
        let every = Covered::default();
        let _ = every.0.set(Vec::new());
        assert!(every.covers(b"order:1"));
    }

    #[test]
    fn an_l1_covers_all_until_prefixes_restrict_it() {
        let l1 = L1::new(crate::cache::L1Options {
            max_bytes: 1 << 20,
            ttl: std::time::Duration::from_secs(60),
            compress_min_bytes: 4096,
            cache_nil: true,
            admit_second_miss: false,
        });
        assert!(l1.covers_all() && l1.caches(b"order:1"));
        l1.cover_only(vec![Bytes::from_static(b"user:")]);
        assert!(!l1.covers_all());
        assert!(l1.caches(b"user:1") && !l1.caches(b"order:1"));
    }
}
