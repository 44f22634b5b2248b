//! One segment: a fixed block of bytes holding entries appended as `[header][key][value]`,
//! and the header's layout (no padding, read and written with `from_le_bytes`).

/// Bytes of an entry's header.
pub const HEADER: usize = 32;

/// Longest key a header can describe (24 bits).
pub const MAX_KEY: usize = (1 << 24) - 1;

/// Header flag: the key does not exist upstream (no value bytes).
pub const MISSING: u8 = 1;
/// Header flag: the value is zstd-compressed, its first four bytes the original length.
pub const COMPRESSED: u8 = 2;
/// Header flag: read since it was written (or last given a second chance).
pub const ACCESSED: u8 = 4;
/// Header flag: replaced or removed; its bytes come back when the segment is retired.
pub const DEAD: u8 = 8;

// Field offsets: [key_len:24 | flags:8][value_len][expires µs: u64][fence: 12][user: u16]
// [db: u16] (an entry of a user id or database past 65535 is not held: see `fits`).
const LENS: usize = 0;
const VALUE_LEN: usize = 4;
const EXPIRES: usize = 8;
const FENCE: usize = 16;
const USER: usize = 28;
const DB: usize = 30;

/// Whether an entry of `user` in `db` can be described by a header.
#[inline]
pub fn fits(user: u32, db: u32) -> bool {
    user <= u32::from(u16::MAX) && db <= u32::from(u16::MAX)
}

/// An entry's header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub key_len: u32,
    pub flags: u8,
    /// Bytes after the key (for a compressed value, its length prefix included).
    pub value_len: u32,
    /// Expiry in microseconds since the table's epoch.
    pub expires: u64,
    pub fence: [u8; 12],
    pub user: u32,
    pub db: u32,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u16_at(b: &[u8], at: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl Header {
    /// Decodes the header that starts `entry`.
    #[inline]
    pub fn read(entry: &[u8]) -> Header {
        let lens = u32_at(entry, LENS);
        let mut fence = [0u8; 12];
        fence.copy_from_slice(&entry[FENCE..FENCE + 12]);
        Header {
            key_len: lens & 0x00ff_ffff,
            flags: (lens >> 24) as u8,
            value_len: u32_at(entry, VALUE_LEN),
            expires: u64_at(entry, EXPIRES),
            fence,
            user: u16_at(entry, USER),
            db: u16_at(entry, DB),
        }
    }

    /// Encodes it into the first [`HEADER`] bytes of `entry`.
    pub fn write(&self, entry: &mut [u8]) {
        let lens = self.key_len | u32::from(self.flags) << 24;
        entry[LENS..LENS + 4].copy_from_slice(&lens.to_le_bytes());
        entry[VALUE_LEN..VALUE_LEN + 4].copy_from_slice(&self.value_len.to_le_bytes());
        entry[EXPIRES..EXPIRES + 8].copy_from_slice(&self.expires.to_le_bytes());
        entry[FENCE..FENCE + 12].copy_from_slice(&self.fence);
        entry[USER..USER + 2].copy_from_slice(&(self.user as u16).to_le_bytes());
        entry[DB..DB + 2].copy_from_slice(&(self.db as u16).to_le_bytes());
    }

    /// The whole entry's length.
    #[inline]
    pub fn len(&self) -> usize {
        HEADER + self.key_len as usize + self.value_len as usize
    }

    /// Whether the entry at the start of `entry` is (user, db, key), read without decoding
    /// the rest of the header (the index's comparison).
    #[inline]
    pub fn is(entry: &[u8], user: u32, db: u32, key: &[u8]) -> bool {
        let key_len = (u32_at(entry, LENS) & 0x00ff_ffff) as usize;
        key_len == key.len()
            && u16_at(entry, USER) == user
            && u16_at(entry, DB) == db
            && &entry[HEADER..HEADER + key_len] == key
    }

    /// The flags of the entry at the start of `entry`.
    #[inline]
    pub fn flags(entry: &[u8]) -> u8 {
        entry[LENS + 3]
    }

    /// Sets `flag` on the entry at the start of `entry`.
    #[inline]
    pub fn set(entry: &mut [u8], flag: u8) {
        entry[LENS + 3] |= flag;
    }

    /// Clears `flag` on the entry at the start of `entry`.
    #[inline]
    pub fn clear(entry: &mut [u8], flag: u8) {
        entry[LENS + 3] &= !flag;
    }
}

/// A block of entries, written from its start; `used` bytes are taken.
pub struct Segment {
    pub data: Box<[u8]>,
    pub used: usize,
}

impl Segment {
    /// An empty segment of `bytes` bytes.
    pub fn new(bytes: usize) -> Segment {
        Segment {
            data: vec![0u8; bytes].into_boxed_slice(),
            used: 0,
        }
    }

    /// Bytes still free at its end.
    #[inline]
    pub fn room(&self) -> usize {
        self.data.len() - self.used
    }

    /// The entry at `offset` (from its header to the end of the segment).
    #[inline]
    pub fn at(&self, offset: usize) -> &[u8] {
        &self.data[offset..]
    }

    /// The offsets and headers of every entry written, dead ones included, in order.
    pub fn entries(&self) -> impl Iterator<Item = (usize, Header)> + '_ {
        let mut offset = 0;
        std::iter::from_fn(move || {
            if offset >= self.used {
                return None;
            }
            let header = Header::read(&self.data[offset..]);
            let at = offset;
            offset += header.len();
            Some((at, header))
        })
    }
}
