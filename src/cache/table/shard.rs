//! One shard of the table: its segments in FIFO order, the index of where each live entry
//! is, and the retiring of the oldest segment (CLOCK at segment granularity) when the
//! shard's share of the bound is reached.

use std::collections::VecDeque;
use std::hash::BuildHasher;

use hashbrown::HashTable;

use super::segment::{Header, Segment, ACCESSED, COMPRESSED, DEAD, HEADER};
use super::{weight, Cause, Ctx, Removed};

/// Segments are sized in whole pages.
const PAGE: usize = 4096;

/// Where an entry is: segment id in the high 32 bits, offset in the low.
pub type Loc = u64;

fn loc(segment: usize, offset: usize) -> Loc {
    (segment as u64) << 32 | offset as u64
}

fn split(loc: Loc) -> (usize, usize) {
    ((loc >> 32) as usize, (loc & 0xffff_ffff) as usize)
}

/// A shard's segments and index.
#[derive(Default)]
pub struct Shard {
    /// Locations of live entries, hashed by the key each points at.
    pub index: HashTable<Loc>,
    /// By id; `None` for a free id.
    segments: Vec<Option<Segment>>,
    free_ids: Vec<usize>,
    /// Segment ids, oldest first; the last is the head new entries are appended to.
    order: VecDeque<usize>,
    /// Bytes of the segments allocated.
    pub allocated: u64,
    /// Weights of the live entries.
    pub weighed: u64,
}

impl Shard {
    fn segment(&self, id: usize) -> &Segment {
        self.segments[id].as_ref().expect("a live segment id")
    }

    /// The entry at `loc`, from its header on.
    #[inline]
    pub fn entry(&self, at: Loc) -> &[u8] {
        let (id, offset) = split(at);
        self.segment(id).at(offset)
    }

    fn entry_mut(&mut self, at: Loc) -> &mut [u8] {
        let (id, offset) = split(at);
        let segment = self.segments[id].as_mut().expect("a live segment id");
        &mut segment.data[offset..]
    }

    /// Where (user, db, key) is, if held.
    #[inline]
    pub fn find(&self, hash: u64, user: u32, db: u32, key: &[u8]) -> Option<Loc> {
        let segments = &self.segments;
        self.index
            .find(hash, |&at| {
                let (id, offset) = split(at);
                let segment = segments[id].as_ref().expect("a live segment id");
                Header::is(segment.at(offset), user, db, key)
            })
            .copied()
    }

    /// Marks the entry read (its second chance when its segment is retired).
    #[inline]
    pub fn touch(&mut self, at: Loc) {
        let entry = self.entry_mut(at);
        if Header::flags(entry) & ACCESSED == 0 {
            Header::set(entry, ACCESSED);
        }
    }

    /// Removes the live entry at `at` (of key hash `hash`) from the index, marks it dead and
    /// tells the listener.
    pub fn remove(&mut self, ctx: &Ctx, hash: u64, at: Loc, cause: Cause) {
        if let Ok(found) = self.index.find_entry(hash, |&l| l == at) {
            found.remove();
        }
        let entry = self.entry_mut(at);
        Header::set(entry, DEAD);
        let header = Header::read(entry);
        self.weighed -= weight(&header);
        ctx.tell(&header, self.entry(at), hash, cause);
    }

    /// Appends an entry of `len` bytes written by `write`, making room first; returns its
    /// location, or `None` when it cannot fit in the shard at all.
    pub fn append(
        &mut self,
        ctx: &Ctx,
        hash: u64,
        len: usize,
        write: impl FnOnce(&mut [u8]),
    ) -> Option<Loc> {
        let segments = &self.segments;
        let rehash = |&at: &Loc| {
            let (id, offset) = split(at);
            let entry = segments[id].as_ref().expect("a live segment id").at(offset);
            let h = Header::read(entry);
            let key = &entry[HEADER..HEADER + h.key_len as usize];
            ctx.hasher.hash_one((h.db, key))
        };
        self.index.reserve(1, rehash);
        let id = self.make_room(ctx, len)?;
        let segment = self.segments[id].as_mut().expect("the head");
        let offset = segment.used;
        write(&mut segment.data[offset..offset + len]);
        segment.used += len;
        let at = loc(id, offset);
        let header = Header::read(&segment.data[offset..]);
        self.weighed += weight(&header);
        let segments = &self.segments;
        self.index.insert_unique(hash, at, |&at| {
            let (id, offset) = split(at);
            let entry = segments[id].as_ref().expect("a live segment id").at(offset);
            let h = Header::read(entry);
            ctx.hasher
                .hash_one((h.db, &entry[HEADER..HEADER + h.key_len as usize]))
        });
        Some(at)
    }

    /// Bytes the shard holds: its segments and its index.
    pub fn footprint(&self) -> u64 {
        self.allocated + self.index.allocation_size() as u64
    }

    /// A head segment with `len` bytes free: the current head; a new segment while the
    /// bound allows one (a regular one, or what is left of the bound, so that no share of
    /// it goes unused); else the oldest segment retired (see [`Shard::retire`]): compacted
    /// in place when it can hold the entry, freed when not. Segments are freed first while
    /// the shard is over its bound (its index grew).
    fn make_room(&mut self, ctx: &Ctx, len: usize) -> Option<usize> {
        while self.footprint() > ctx.capacity {
            let &oldest = self.order.front()?;
            self.retire(ctx, oldest, false);
        }
        let want = len.max(ctx.segment_bytes);
        loop {
            if let Some(&head) = self.order.back() {
                if self.segment(head).room() >= len {
                    return Some(head);
                }
            }
            let free = ctx.capacity.saturating_sub(self.footprint()) as usize;
            let rest = free & !(PAGE - 1);
            let size = if free >= want {
                Some(want)
            } else if rest >= len && rest >= ctx.segment_bytes / 4 {
                Some(rest)
            } else {
                None
            };
            if let Some(size) = size {
                self.add_segment(size);
                continue;
            }
            let &oldest = self.order.front()?;
            let reuse = self.segment(oldest).data.len() >= len;
            self.retire(ctx, oldest, reuse);
        }
    }

    /// Allocates a segment of `size` bytes as the new head.
    fn add_segment(&mut self, size: usize) {
        let id = self.free_ids.pop().unwrap_or(self.segments.len());
        if id == self.segments.len() {
            self.segments.push(None);
        }
        self.segments[id] = Some(Segment::new(size));
        self.allocated += size as u64;
        self.order.push_back(id);
    }

    /// Retires segment `id` (the oldest). With `reuse`, its entries read since they were
    /// written and not expired are kept (moved to its start, their bit cleared) and it
    /// becomes the head; every other live entry is evicted. Without, all its entries are
    /// evicted and its bytes freed.
    fn retire(&mut self, ctx: &Ctx, id: usize, reuse: bool) {
        let now = ctx.now();
        let mut segment = self.segments[id].take().expect("a live segment id");
        self.order.retain(|&s| s != id);
        let mut write = 0;
        let mut read = 0;
        while read < segment.used {
            let header = Header::read(&segment.data[read..]);
            let len = header.len();
            if header.flags & DEAD == 0 {
                let entry = &segment.data[read..];
                let key = &entry[HEADER..HEADER + header.key_len as usize];
                let hash = ctx.hasher.hash_one((header.db, key));
                let expired = header.expires <= now;
                let old = loc(id, read);
                if reuse && !expired && header.flags & ACCESSED != 0 {
                    Header::clear(&mut segment.data[read..], ACCESSED);
                    segment.data.copy_within(read..read + len, write);
                    if let Ok(mut found) = self.index.find_entry(hash, |&l| l == old) {
                        *found.get_mut() = loc(id, write);
                    }
                    write += len;
                } else {
                    if let Ok(found) = self.index.find_entry(hash, |&l| l == old) {
                        found.remove();
                    }
                    self.weighed -= weight(&header);
                    let cause = if expired { Cause::Expired } else { Cause::Size };
                    ctx.tell(&header, entry, hash, cause);
                }
            }
            read += len;
        }
        if reuse {
            segment.used = write;
            segment.data[write..].fill(0);
            self.segments[id] = Some(segment);
            self.order.push_back(id);
        } else {
            self.allocated -= segment.data.len() as u64;
            self.free_ids.push(id);
        }
    }

    /// Every live entry's location, header and bytes, segment by segment.
    pub fn live(&self) -> impl Iterator<Item = (Loc, Header, &[u8])> + '_ {
        self.order.iter().flat_map(move |&id| {
            let segment = self.segment(id);
            segment
                .entries()
                .filter(|(_, h)| h.flags & DEAD == 0)
                .map(move |(offset, h)| (loc(id, offset), h, segment.at(offset)))
        })
    }

    /// Segment ids in use, oldest first.
    pub fn segment_ids(&self) -> Vec<usize> {
        self.order.iter().copied().collect()
    }

    /// The live entries of segment `id`, if it is in use.
    pub fn live_in(&self, id: usize) -> impl Iterator<Item = (Header, &[u8])> + '_ {
        let segment = self.segments.get(id).and_then(Option::as_ref);
        segment.into_iter().flat_map(|segment| {
            segment
                .entries()
                .filter(|(_, h)| h.flags & DEAD == 0)
                .map(move |(offset, h)| (h, segment.at(offset)))
        })
    }

    /// Evicts everything (cause `Explicit`) and frees every segment and the index.
    pub fn clear(&mut self, ctx: &Ctx) {
        for (_, header, entry) in self.live() {
            let key = &entry[HEADER..HEADER + header.key_len as usize];
            let hash = ctx.hasher.hash_one((header.db, key));
            ctx.tell(&header, entry, hash, Cause::Explicit);
        }
        *self = Shard::default();
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.index.len()
    }
}

/// Whether an entry stores its value compressed.
pub fn compressed(header: &Header) -> bool {
    header.flags & COMPRESSED != 0
}

impl Ctx {
    /// Tells the listener that the entry `entry` (with `header`) left for `cause`.
    fn tell(&self, header: &Header, entry: &[u8], hash: u64, cause: Cause) {
        let key = &entry[HEADER..HEADER + header.key_len as usize];
        (self.listener)(&Removed {
            user: header.user,
            db: header.db,
            key,
            hash,
            weight: weight(header),
            compressed: compressed(header),
            cause,
        });
    }
}
