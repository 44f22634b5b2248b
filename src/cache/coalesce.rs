//! Coalescing: concurrent misses of one key share one upstream fetch.
//!
//! A fetch is registered under (key, generation). A later miss joins it only while the
//! key's generation is unchanged, so a client never joins a fetch that started before its
//! own write (read-your-writes). The leader's [`Flight`] delivers the result to followers;
//! dropped without a result (connection lost, timeout), it tells them to fetch themselves.

use parking_lot::Mutex;
use std::collections::hash_map::{Entry, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::{CacheKey, Generation, KeyHasher};

const SHARDS: usize = 16;

/// What one fetch learned about one key, shared with the clients that joined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The encoded bulk reply.
    Value(Bytes),
    /// The key does not exist.
    Missing,
    /// Not a plain answer (an error, another type, a lost fetch): fetch it yourself.
    Unknown,
}

type Waiters = Vec<oneshot::Sender<Fetched>>;
/// In-flight fetches of one shard (keys hashed with their own seed, not the shard's).
type Shard = Mutex<HashMap<Id, Waiters, KeyHasher>>;

/// One fetch: a key at a generation, with the key's hash computed once (it picks the shard
/// and is all the shard's map hashes, on join and on finish alike).
#[derive(Clone)]
struct Id {
    hash: u64,
    key: CacheKey,
    taken: Generation,
}

impl PartialEq for Id {
    fn eq(&self, other: &Id) -> bool {
        self.hash == other.hash && self.taken == other.taken && self.key == other.key
    }
}

impl Eq for Id {}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// In-flight fetches, sharded by key.
pub struct Coalescer {
    shards: Box<[Shard]>,
    hasher: KeyHasher,
}

/// The outcome of asking to fetch a key.
pub enum Join {
    /// Nobody is fetching it: fetch, then [`Flight::complete`].
    Lead(Flight),
    /// Another client is fetching it: wait for its result.
    Follow(oneshot::Receiver<Fetched>),
}

/// The leader's obligation to tell the followers of one fetch what it learned.
pub struct Flight {
    coalescer: Option<Arc<Coalescer>>,
    key: Option<Id>,
}

impl Coalescer {
    /// No fetches in flight.
    pub fn new() -> Arc<Coalescer> {
        Arc::new(Coalescer {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(KeyHasher::new())))
                .collect(),
            hasher: Default::default(),
        })
    }

    /// Joins the fetch of `key` at generation `taken`, or becomes its leader.
    pub fn join(self: &Arc<Coalescer>, key: CacheKey, taken: Generation) -> Join {
        let hash = self.hasher.hash_one(&key.key);
        let id = Id { hash, key, taken };
        let mut shard = self.shard(hash).lock();
        match shard.entry(id) {
            Entry::Occupied(mut fetch) => {
                let (tx, rx) = oneshot::channel();
                fetch.get_mut().push(tx);
                Join::Follow(rx)
            }
            Entry::Vacant(fetch) => {
                let id = fetch.key().clone();
                fetch.insert(Vec::new());
                Join::Lead(Flight {
                    coalescer: Some(self.clone()),
                    key: Some(id),
                })
            }
        }
    }

    fn shard(&self, hash: u64) -> &Shard {
        &self.shards[hash as usize % SHARDS]
    }

    fn finish(&self, id: &Id, result: Fetched) {
        let waiters = {
            let mut shard = self.shard(id.hash).lock();
            shard.remove(id).unwrap_or_default()
        };
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

impl Flight {
    /// A fetch nobody can join (the leader has writes in flight).
    pub fn detached() -> Flight {
        Flight {
            coalescer: None,
            key: None,
        }
    }

    /// Delivers the fetch's result to every follower.
    pub fn complete(mut self, result: Fetched) {
        if let (Some(coalescer), Some(id)) = (&self.coalescer, self.key.take()) {
            coalescer.finish(&id, result);
        }
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let (Some(coalescer), Some(id)) = (&self.coalescer, self.key.take()) {
            coalescer.finish(&id, Fetched::Unknown);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{L1Options, L1};
    use std::time::Duration;

    fn setup() -> (L1, CacheKey) {
        let l1 = L1::new(L1Options {
            max_bytes: 1 << 20,
            ttl: Duration::from_secs(1),
            compress_min_bytes: 1024,
            cache_nil: true,
            admit_second_miss: false,
        });
        (
            l1,
            CacheKey {
                user: 0,
                db: 0,
                key: Bytes::from_static(b"k"),
            },
        )
    }

    #[test]
    fn second_miss_follows_the_first() {
        let (l1, k) = setup();
        let coalescer = Coalescer::new();
        let Join::Lead(flight) = coalescer.join(k.clone(), l1.generation(&k)) else {
            panic!("first leads")
        };
        let Join::Follow(mut rx) = coalescer.join(k.clone(), l1.generation(&k)) else {
            panic!("second follows")
        };
        flight.complete(Fetched::Missing);
        assert_eq!(rx.try_recv(), Ok(Fetched::Missing));
        assert!(matches!(
            coalescer.join(k.clone(), l1.generation(&k)),
            Join::Lead(_)
        ));
    }

    #[test]
    fn a_miss_after_an_invalidation_does_not_join_the_older_fetch() {
        let (l1, k) = setup();
        let coalescer = Coalescer::new();
        let _old = coalescer.join(k.clone(), l1.generation(&k));
        l1.invalidate(k.db, &k.key);
        assert!(matches!(
            coalescer.join(k.clone(), l1.generation(&k)),
            Join::Lead(_)
        ));
    }

    #[test]
    fn a_dropped_leader_sends_followers_to_fetch_themselves() {
        let (l1, k) = setup();
        let coalescer = Coalescer::new();
        let lead = coalescer.join(k.clone(), l1.generation(&k));
        let Join::Follow(mut rx) = coalescer.join(k.clone(), l1.generation(&k)) else {
            panic!()
        };
        drop(lead);
        assert_eq!(rx.try_recv(), Ok(Fetched::Unknown));
    }
}
