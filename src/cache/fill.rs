//! Filling L1 from a fetch: a GET or MGET element and the key's PTTL, pipelined together,
//! become an L1 insert (the entry never outlives the key) and the answer for the fetch's
//! followers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{CacheKey, Cached, Fetched, FilledBy, Generation, L1};
use crate::protocol::decode::{integer, is_bulk, is_null};

impl L1 {
    /// Interprets one key's `reply` and `pttl` (sent at `sent_at`), installs it when it is
    /// a plain answer that no invalidation overtook since `taken`, and returns what followers
    /// should be told. `from_get`: the reply is GET's (nil means missing); from MGET a nil
    /// may also be a key of another type. Runs on the upstream reader: a value to compress
    /// is installed later, from a blocking thread ([`L1::insert_later`]). Nothing is
    /// installed unless `by` names the connection the reply was read on (`None`: its
    /// tracking does not cover the key); the entry ends when that connection does.
    #[allow(clippy::too_many_arguments)]
    pub fn fill(
        self: &Arc<Self>,
        key: CacheKey,
        taken: Generation,
        sent_at: Instant,
        reply: &Bytes,
        pttl: &Bytes,
        from_get: bool,
        by: Option<FilledBy>,
    ) -> Fetched {
        let pttl = integer(pttl);
        if is_bulk(reply) {
            self.count_l2(true);
            let expiry = match pttl {
                Some(-1) => Some(None),
                Some(ms) if ms > 0 => Some(Some(sent_at + Duration::from_millis(ms as u64))),
                _ => None, // gone or changed between GET and PTTL: answer, do not cache
            };
            if let Some(expiry) = expiry.filter(|_| by.is_some()) {
                self.insert_later(key, taken, Cached::Value(reply.clone()), expiry, by);
            }
            return Fetched::Value(reply.clone());
        }
        let missing = is_null(reply) && (from_get || pttl == Some(-2));
        if !missing {
            return Fetched::Unknown;
        }
        self.count_l2(false);
        let ns = self.namespaces();
        if by.is_some() && pttl == Some(-2) && ns.policy(ns.of(&key.key)).cache_nil {
            self.slots.missing_cached(taken.slot);
            self.insert_later(key, taken, Cached::Missing, None, by);
        }
        Fetched::Missing
    }
}
