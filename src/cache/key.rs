//! What identifies an L1 entry: the owned key a fill carries and the borrowed form a lookup
//! builds straight from a client's input buffer.

use bytes::Bytes;

/// What identifies an L1 entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Upstream identity the client authenticated as (0: the sidecar's own credentials).
    pub user: u32,
    /// Logical database.
    pub db: u32,
    /// The Redis key.
    pub key: Bytes,
}

impl CacheKey {
    /// The borrowed form used for lookups.
    pub fn as_key_ref(&self) -> KeyRef<'_> {
        KeyRef {
            user: self.user,
            db: self.db,
            key: &self.key,
        }
    }
}

/// A borrowed [`CacheKey`] for lookups straight from a client's input buffer (hashes and
/// compares like the owned key, so the hit path creates no `Bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyRef<'a> {
    /// See [`CacheKey::user`].
    pub user: u32,
    /// See [`CacheKey::db`].
    pub db: u32,
    /// See [`CacheKey::key`].
    pub key: &'a [u8],
}

impl equivalent::Equivalent<CacheKey> for KeyRef<'_> {
    fn equivalent(&self, k: &CacheKey) -> bool {
        self.user == k.user && self.db == k.db && self.key == &k.key[..]
    }
}
