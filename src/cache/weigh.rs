//! What an L1 entry really costs in memory, for the figures and the namespaces' accounts.
//!
//! The table ([`super::table`]) holds an entry as `[header][key][value]` bytes in a segment
//! plus one location in its shard's index: no allocation of its own, no allocator rounding.
//! Its weight is those bytes and its share of the index. The `--l1-max-bytes` bound is kept
//! by the table on what it really allocates (segments and indexes), not on these weights.

use super::table::{self, Value, HEADER, INDEX_SHARE};

/// Fixed per-entry cost beyond the key and the value, in bytes: the entry's header in its
/// segment and its share of the index.
///
/// Measured, not only summed: a release binary with `--l1-max-bytes 4GiB` filled with one
/// million 100-byte values (13-byte keys, 107-byte encoded replies, one GET each through
/// the sidecar) grew by 173 B per entry of VmRSS over its idle RSS (671 with moka); minus
/// the key and the encoded reply that leaves 53 B (60 beyond the key and the 100-byte
/// payload), against the 52 counted here (32 of header, 20 of index). See
/// `proto-tests/tests/suite/memory.rs`
/// (`rss_of_a_million_100_byte_values`, ignored, run by hand on a release build).
pub const ENTRY_OVERHEAD: u64 = HEADER as u64 + INDEX_SHARE;

/// The weight of an entry of a `key_len`-byte key holding `value`.
pub fn weigh(key_len: usize, value: &Value<'_>) -> u32 {
    u32::try_from(table::weight_of(key_len, value.stored_len())).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_counts_overhead_key_and_stored_value() {
        let key = b"key:000000000001";
        let plain = [b'x'; 107];
        assert_eq!(ENTRY_OVERHEAD, 52);
        assert_eq!(
            weigh(key.len(), &Value::Plain(&plain)) as u64,
            ENTRY_OVERHEAD + 16 + 107
        );
        assert_eq!(
            weigh(key.len(), &Value::Missing) as u64,
            ENTRY_OVERHEAD + 16
        );
        let compressed = Value::Compressed {
            data: &plain[..40],
            len: 107,
        };
        assert_eq!(
            weigh(key.len(), &compressed) as u64,
            ENTRY_OVERHEAD + 16 + 4 + 40
        );
    }
}
