//! [`Table::promote`]: a compressed entry that was read, stored plain in its place.

use super::segment::{Header, COMPRESSED, HEADER};
use super::{Cause, KeyRef, Table};

impl Table {
    /// Stores `key`'s compressed entry again as `plain`, its decompression (the same reply,
    /// expiry, fence, user and database), if it is still the entry whose compressed bytes
    /// are `data`: not replaced, removed or expired since it was read (checked under the
    /// shard's lock, so that nothing but that very entry is ever rewritten). A compressed
    /// entry that is read is stored plain, so that its next hits skip the decompression;
    /// the old entry leaves with [`Cause::Replaced`]. False when the entry was not
    /// rewritten (not held as it was read, `allowed` said no, or the plain entry did not
    /// fit: then it is gone). `allowed` runs under the lock: a removal that scans shard by
    /// shard and is announced before it starts (a pattern invalidation) is either seen by
    /// it, or sees the rewritten entry.
    pub fn promote(
        &self,
        hash: u64,
        key: &KeyRef<'_>,
        (data, plain): (&[u8], &[u8]),
        allowed: impl FnOnce() -> bool,
    ) -> bool {
        let len = HEADER + key.key.len() + plain.len();
        if len as u64 > self.ctx.capacity / 2 {
            return false;
        }
        let mut shard = self.shard(hash).lock();
        if !allowed() {
            return false;
        }
        let Some(at) = shard.find(hash, key.user, key.db, key.key) else {
            return false;
        };
        let entry = shard.entry(at);
        let header = Header::read(entry);
        let value = &entry[HEADER + header.key_len as usize..header.len()];
        if header.flags & COMPRESSED == 0
            || header.expires <= self.ctx.now()
            || value.get(4..) != Some(data)
        {
            return false;
        }
        let promoted = Header {
            flags: header.flags & !COMPRESSED,
            value_len: plain.len() as u32,
            ..header
        };
        shard.remove(&self.ctx, hash, at, Cause::Replaced);
        let written = shard.append(&self.ctx, hash, len, |entry| {
            promoted.write(entry);
            let (k, v) = entry[HEADER..].split_at_mut(key.key.len());
            k.copy_from_slice(key.key);
            v.copy_from_slice(plain);
        });
        written.is_some()
    }
}
