//! Bounds on what a client may send in one request.

/// Redis's default `proto-max-bulk-len` (512 MiB), assumed when the upstream will not say.
pub const REDIS_DEFAULT_MAX_BULK: u64 = 512 << 20;

/// Bounds on what a client may send in one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted from a client (`--max-bulk-bytes`, capped by the
    /// upstream's `proto-max-bulk-len` through [`Limits::with_upstream_max_bulk`]).
    pub max_bulk_bytes: usize,
    /// Largest multibulk argument count accepted from a client (`--max-array-len`).
    pub max_array_len: usize,
    /// Longest inline command line, and longest multibulk header line
    /// (`--max-inline-bytes`; Redis's fixed bound for both is 64 KiB).
    pub max_inline_bytes: usize,
}

impl Limits {
    /// These limits with the bulk bound lowered to the upstream's `proto-max-bulk-len`
    /// (`u64::MAX` while unknown), so no bulk the upstream would refuse is forwarded.
    #[inline]
    pub fn with_upstream_max_bulk(self, upstream_max_bulk: u64) -> Limits {
        let upstream = usize::try_from(upstream_max_bulk).unwrap_or(usize::MAX);
        Limits {
            max_bulk_bytes: self.max_bulk_bytes.min(upstream),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_max_bulk_only_lowers_the_bound() {
        let limits = Limits {
            max_bulk_bytes: 1000,
            max_array_len: 8,
            max_inline_bytes: 64,
        };
        assert_eq!(limits.with_upstream_max_bulk(u64::MAX), limits);
        assert_eq!(limits.with_upstream_max_bulk(5000).max_bulk_bytes, 1000);
        assert_eq!(limits.with_upstream_max_bulk(10).max_bulk_bytes, 10);
    }
}
