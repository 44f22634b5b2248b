//! (e) L1's own store, as the sidecar runs it: `nearcache::cache::table::Table` (shards of
//! segments and an index of locations, FIFO over segments with a second chance), with the
//! sidecar's key hasher and a listener that counts nothing; (f) the same with the sidecar's
//! admission once the table is crowded.

use std::time::{Duration, Instant};

use nearcache::cache::admission::Doorkeeper;
use nearcache::cache::table::{Put, Table, Value};
use nearcache::cache::{Fence, KeyHasher, KeyRef, ENTRY_OVERHEAD};

use super::stores::Store;

/// The table.
pub struct Segments {
    table: Table,
    expires_at: Instant,
    /// The sidecar's admission (see `nearcache::cache::admission`): once the table is
    /// crowded, a key is inserted only on its second miss.
    door: Option<Doorkeeper>,
}

impl Segments {
    /// Under the memory bound (`overhead` > 0) the table gets `capacity` as it is: it
    /// bounds what it really allocates (segments and index). Under the payload bound
    /// (`overhead` 0: every entry weighs its key and value) it gets what holds the same
    /// number of entries as the others: `entries` times payload and its own per-entry cost.
    pub fn new(capacity: u64, overhead: u64, entries: usize, admit: bool) -> Segments {
        let capacity = if overhead > 0 {
            capacity
        } else {
            let payload = capacity / entries.max(1) as u64;
            entries as u64 * (payload + ENTRY_OVERHEAD)
        };
        Segments {
            table: Table::new(capacity, KeyHasher::new(), |_| {}),
            expires_at: Instant::now() + Duration::from_secs(3600),
            door: admit.then(|| Doorkeeper::new(capacity)),
        }
    }
}

fn key_ref(key: &[u8]) -> KeyRef<'_> {
    KeyRef {
        user: 0,
        db: 0,
        key,
    }
}

impl Store for Segments {
    fn get(&self, key: &[u8]) -> Option<usize> {
        let hash = self.table.hash(0, key);
        self.table
            .read(hash, &key_ref(key), |value, _| match value {
                Value::Plain(v) => v.len(),
                Value::Missing => 0,
                Value::Compressed { len, .. } => len,
            })
    }

    fn insert(&self, key: &[u8], value: &[u8]) {
        let put = Put {
            user: 0,
            db: 0,
            key,
            value: Value::Plain(value),
            expires_at: self.expires_at,
            fence: Fence::default(),
        };
        let hash = self.table.hash(0, key);
        if let Some(door) = &self.door {
            if self.table.crowded(hash) && !door.seen_again(hash) {
                return;
            }
        }
        self.table.insert(hash, &put);
    }

    fn len(&self) -> u64 {
        self.table.len()
    }

    fn own_bytes(&self) -> Option<u64> {
        Some(self.table.footprint())
    }
}
