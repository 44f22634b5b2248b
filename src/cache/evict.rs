//! Removing entries: a key before a write and after its reply, a key changed elsewhere, a
//! user's or a database's entries, everything (the keys a pattern matches: see `patterns`). Every removal
//! bumps the generations it concerns under their stripe locks, so a fetch that started
//! before it cannot install its result afterwards.

use std::sync::atomic::Ordering::Relaxed;

use super::{KeyRef, Reason, Table, L1};

impl L1 {
    /// Evicts one key for every user, before a write is sent. Removal and generation bump
    /// happen under the key's stripe lock, which fills take too: a fetch that started before
    /// this cannot install its result afterwards. Returns what [`L1::invalidate_after`] needs when the write's
    /// reply arrives.
    pub fn invalidate(&self, db: u32, key: &[u8]) -> u64 {
        self.evict(db, key, None, Reason::Written)
    }

    /// Evicts one key for every user because it changed elsewhere (a bus message, a
    /// pattern's key): like [`L1::invalidate`], counted as invalidated.
    pub fn invalidate_key(&self, db: u32, key: &[u8]) {
        self.evict(db, key, None, Reason::Invalidated);
    }

    /// Evicts one key again when the write's reply arrives: a fetch that started after the
    /// first eviction may have read the old value. The removal is skipped when nothing was
    /// installed in the key's bucket since (`seen`), which is the common case.
    pub fn invalidate_after(&self, db: u32, key: &[u8], seen: u64) {
        self.evict(db, key, Some(seen), Reason::Written);
    }

    /// Evicts keys in every database a fetch was taken for, for every user: for a Redis
    /// tracking invalidation, which names no database. Like [`L1::invalidate`], a fetch of
    /// a key in flight cannot install its result afterwards. (The databases are copied out
    /// once per message: evicting takes key locks, which inserts take before the set.)
    pub fn invalidate_everywhere<K: AsRef<[u8]>>(&self, keys: &[K]) {
        let mut dbs = Vec::new();
        self.dbs.each(|db| dbs.push(db));
        for key in keys {
            for &db in &dbs {
                self.evict(db, key.as_ref(), None, Reason::Invalidated);
            }
        }
    }

    /// Removes the key for every user that may have entries (unless nothing was installed
    /// in its bucket since `seen`), then bumps its generation; returns the bucket's install
    /// count.
    fn evict(&self, db: u32, key: &[u8], seen: Option<u64>, reason: Reason) -> u64 {
        let hash = self.key_hash(db, key);
        let _key = self.generations.lock(hash);
        let installs = self.generations.installs(hash);
        if seen != Some(installs) && self.live.may_hold(hash) {
            let counter = match reason {
                Reason::Written => &self.counters.written,
                Reason::Invalidated => &self.counters.invalidated,
            };
            let store = self.store_of(key);
            self.users.each(|user| {
                if store.remove(hash, &KeyRef { user, db, key }) {
                    counter.fetch_add(1, Relaxed);
                }
            });
        }
        self.generations.bump_key(hash);
        installs
    }

    /// Removes every entry of `user` and stops covering it in invalidations: for an
    /// identity that is gone (ids are never reused). A fetch of that user still in flight
    /// may install afterwards; it adds the user back, so invalidations stay exact.
    pub fn forget_user(&self, user: u32) {
        let _all = self.generations.lock_all();
        self.users.remove(user);
        for store in &self.stores {
            store.remove_if(|u, _, _| u == user);
        }
    }

    /// Evicts every entry of one database (all users).
    pub fn flush_db(&self, db: u32) {
        let _all = self.generations.lock_all();
        for store in &self.stores {
            store.remove_if(|_, d, _| d == db);
        }
        self.generations.bump_db(db);
    }

    /// Evicts everything.
    pub fn flush_all(&self) {
        let _all = self.generations.lock_all();
        self.stores.iter().for_each(Table::clear);
        self.generations.bump_all();
    }
}
