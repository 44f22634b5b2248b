//! What an L1 entry really costs in memory, for moka's weigher and the front's budget.
//!
//! An entry's weight is its heap footprint as the process pays it, not its payload:
//! [`ENTRY_OVERHEAD`] (moka's per-entry structures and the map around them) plus each
//! allocation the entry owns, rounded as the allocator rounds it ([`heap`]). Values and keys
//! are stored as exact-size copies (a slice of a read buffer would pin the whole buffer),
//! so these allocations are the only ones an entry holds.

use super::store::{Entry, Stored};
use super::CacheKey;

/// Fixed per-entry cost beyond the key's and the value's own allocations, in bytes.
///
/// What moka allocates per entry (with `expire_after`, an eviction listener and invalidation
/// closures): the `Arc<CacheKey>`, the value entry with our `Entry` inline, its `EntryInfo`
/// and deque-node holder, an access-order deque node, a timer-wheel node, a hash-table
/// bucket, plus its share of the bucket array and the frequency sketch, each rounded to the
/// allocator's chunks.
///
/// Measured, not summed: a release binary with `--l1-max-bytes 4GiB` filled with one million
/// 100-byte values (13-byte keys, one GET each through the sidecar, so no `Bytes` header yet)
/// grew by 671 B per entry of VmRSS over its idle RSS; minus heap(key) = 32 and
/// heap(value) = 128 that leaves 511 B. See `proto-tests/tests/suite/memory.rs`
/// (`rss_of_a_million_100_byte_values`, ignored, run by hand on a release build).
pub const ENTRY_OVERHEAD: u64 = 512;

/// The reference-counted header a `Bytes` allocates the first time it is cloned (every L1
/// hit clones the stored value).
pub const BYTES_SHARED: u64 = 32;

/// glibc malloc: requests at or above this are served by `mmap` (page-rounded).
const MMAP_THRESHOLD: u64 = 128 << 10;

/// The heap bytes one allocation of `n` bytes occupies: glibc's chunk (8-byte header, 16-byte
/// alignment, 32-byte minimum), or whole pages for large ones. Zero for an empty buffer.
pub const fn heap(n: usize) -> u64 {
    let n = n as u64;
    if n == 0 {
        0
    } else if n + 16 >= MMAP_THRESHOLD {
        (n + 16 + 4095) & !4095
    } else {
        let chunk = (n + 8 + 15) & !15;
        if chunk < 32 {
            32
        } else {
            chunk
        }
    }
}

/// The weight of one entry (see the module docs).
pub fn weigh(key: &CacheKey, entry: &Entry) -> u32 {
    let value = match &entry.stored {
        Stored::Plain(b) => heap(b.len()) + BYTES_SHARED,
        Stored::Compressed { data, .. } => heap(data.len()) + BYTES_SHARED,
        Stored::Missing => 0,
    };
    let weight = ENTRY_OVERHEAD + heap(key.key.len()) + value;
    u32::try_from(weight).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_rounds_like_the_allocator() {
        assert_eq!(heap(0), 0);
        assert_eq!(heap(1), 32);
        assert_eq!(heap(24), 32);
        assert_eq!(heap(25), 48);
        assert_eq!(heap(107), 128);
        assert_eq!(heap(1 << 20), (1 << 20) + 4096);
    }

    #[test]
    fn weight_counts_overhead_key_value_and_header() {
        use bytes::Bytes;
        use std::time::Instant;
        let key = CacheKey {
            user: 0,
            db: 0,
            key: Bytes::from_static(b"key:000000000001"),
        };
        let entry = |stored| Entry {
            stored,
            expires_at: Instant::now(),
            fence: Default::default(),
        };
        let plain = entry(Stored::Plain(Bytes::from(vec![b'x'; 107])));
        assert_eq!(
            weigh(&key, &plain) as u64,
            ENTRY_OVERHEAD + 32 + 128 + BYTES_SHARED
        );
        assert_eq!(
            weigh(&key, &entry(Stored::Missing)) as u64,
            ENTRY_OVERHEAD + 32
        );
    }
}
