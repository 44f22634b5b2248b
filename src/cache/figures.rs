//! [`L1Figures`]: one snapshot of L1's figures, what INFO and `/metrics` render.

use super::namespaces::Row;
use super::{Evictions, Fenced, L1};

/// L1's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct L1Figures {
    /// Entries held.
    pub entries: u64,
    /// Weighted bytes held.
    pub used_bytes: u64,
    /// The bound (`--l1-max-bytes`).
    pub max_bytes: u64,
    /// Entries stored zstd-compressed.
    pub compressed_entries: u64,
    /// First misses forwarded without filling because L1 was crowded.
    pub not_admitted: u64,
    /// Entries removed, by why.
    pub evictions: Evictions,
    /// Entries ended at once by their slot's or connection's fence, by cause.
    pub fenced: Fenced,
    /// GET/MGET keys fetched from the upstream that it held.
    pub l2_hits: u64,
    /// ... and that it did not.
    pub l2_misses: u64,
    /// Every namespace, the default one last; empty when none is configured.
    pub namespaces: Vec<Row>,
}

impl L1 {
    /// The figures now.
    pub fn figures(&self) -> L1Figures {
        let (l2_hits, l2_misses) = self.l2_counts();
        let namespaces = self.namespaces();
        L1Figures {
            entries: self.entry_count(),
            used_bytes: self.used_bytes(),
            max_bytes: self.max_bytes(),
            compressed_entries: self.compressed_entries(),
            not_admitted: self.not_admitted(),
            evictions: self.evictions_by_reason(),
            fenced: self.fenced(),
            l2_hits,
            l2_misses,
            namespaces: if namespaces.is_empty() {
                Vec::new()
            } else {
                namespaces.rows()
            },
        }
    }
}
