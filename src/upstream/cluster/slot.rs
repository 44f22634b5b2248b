//! Key slots: which of Redis Cluster's 16384 slots a key hashes to, hash tags included.

/// How many slots a Redis Cluster has.
pub const SLOTS: usize = 16384;

/// The slot of `key`, as `CLUSTER KEYSLOT` computes it: CRC16-XMODEM of the key modulo
/// 16384, or of its hash tag when it has one (the bytes between the first `{` and the first
/// `}` after it, when there are any: `{}x` hashes the whole key). `redis_protocol`'s
/// `redis_keyslot` implements exactly this; the tests below and the cluster suite pin it
/// against a real server.
pub fn slot(key: &[u8]) -> u16 {
    redis_protocol::redis_keyslot(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_own_examples() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.0 and the cluster specification.
        for (key, want) in [
            (&b"foo"[..], 12182),
            (b"bar", 5061),
            (b"hello", 866),
            (b"123456789", 12739),
            (b"", 0),
            (b"{user1000}.following", 3443),
            (b"user1000", 3443),
            (b"{}x", 10595),
            (b"{bar", 4015),
            (b"}{", 12793),
        ] {
            assert_eq!(slot(key), want, "{}", key.escape_ascii());
        }
    }

    #[test]
    fn the_first_non_empty_tag_decides() {
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"foo{bar}{zap}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
        assert_eq!(slot(b"{foo}{bar}"), slot(b"foo"));
    }

    #[test]
    fn an_empty_or_unclosed_tag_hashes_the_whole_key() {
        assert_ne!(slot(b"{}x"), slot(b"x"));
        assert_ne!(slot(b"{}x"), slot(b""));
        assert_eq!(slot(b"{}x"), redis_protocol::redis_keyslot(b"{}x"));
        assert_ne!(slot(b"{abc"), slot(b"abc"));
        assert_ne!(slot(b"x{"), slot(b"x"));
        assert_ne!(slot(b"}{"), slot(b""));
        for key in [&b"{"[..], b"}", b"{}", b"}{", b"{{}}"] {
            assert!(usize::from(slot(key)) < SLOTS);
        }
    }
}
