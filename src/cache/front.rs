//! A per-thread, direct-mapped front for small L1 values.
//!
//! moka's bookkeeping (read log, frequency sketch, LRU deques) costs more than the rest of a
//! hit put together, so each worker thread keeps the most recent small hits in a plain array.
//! A front slot is only ever filled from an L1 hit and remembers the [`Generation`] taken
//! *before* that lookup; every invalidation bumps the generation after removing the entry
//! from L1, so a slot that an invalidation could concern no longer matches and is ignored.
//! Slots also keep the entry's expiry. Values share their bytes with L1 (no copy); the front
//! holds at most [`SLOTS`] keys of [`MAX_KEY`] bytes and values of [`MAX_VALUE`] bytes per
//! thread, outside the `--l1-max-bytes` bound.

use std::cell::RefCell;
use std::time::Instant;

use bytes::Bytes;

use super::{Generation, KeyRef};

/// Slots per thread (a power of two).
pub const SLOTS: usize = 16 * 1024;
/// Longest key kept in the front (stored inline in the slot: no pointer to chase).
pub const MAX_KEY: usize = 40;
/// Longest encoded value kept in the front.
pub const MAX_VALUE: usize = 512;

struct Slot {
    owner: u64,
    hash: u64,
    user: u32,
    db: u32,
    key_len: u8,
    key: [u8; MAX_KEY],
    /// The encoded bulk reply, or `None` for a cached missing key.
    value: Option<Bytes>,
    expires_at: Instant,
    taken: Generation,
}

thread_local! {
    static FRONT: RefCell<Vec<Option<Slot>>> = const { RefCell::new(Vec::new()) };
}

fn index(hash: u64) -> usize {
    (hash >> 20) as usize & (SLOTS - 1)
}

/// Calls `read` with the front's answer for a key of L1 `owner` — `Some(bulk)` a value,
/// `None` a missing key — if it has one that is valid at generation `current`.
#[inline]
pub fn read<R>(
    owner: u64,
    hash: u64,
    key: &KeyRef<'_>,
    current: Generation,
    read: impl FnOnce(Option<&Bytes>) -> R,
) -> Option<R> {
    FRONT.with(|front| {
        let front = front.borrow();
        let slot = front.get(index(hash))?.as_ref()?;
        let hit = slot.owner == owner
            && slot.hash == hash
            && slot.taken == current
            && slot.user == key.user
            && slot.db == key.db
            && &slot.key[..slot.key_len as usize] == key.key
            && Instant::now() < slot.expires_at;
        hit.then(|| read(slot.value.as_ref()))
    })
}

/// Remembers an L1 hit found at generation `taken`.
pub fn put(
    owner: u64,
    hash: u64,
    key: &KeyRef<'_>,
    value: Option<&Bytes>,
    expires_at: Instant,
    taken: Generation,
) {
    if key.key.len() > MAX_KEY || value.is_some_and(|v| v.len() > MAX_VALUE) {
        return;
    }
    FRONT.with(|front| {
        let mut front = front.borrow_mut();
        if front.is_empty() {
            front.resize_with(SLOTS, || None);
        }
        let mut inline = [0u8; MAX_KEY];
        inline[..key.key.len()].copy_from_slice(key.key);
        front[index(hash)] = Some(Slot {
            owner,
            hash,
            user: key.user,
            db: key.db,
            key_len: key.key.len() as u8,
            key: inline,
            value: value.cloned(),
            expires_at,
            taken,
        });
    });
}
