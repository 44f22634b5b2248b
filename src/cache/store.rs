//! What L1 does with a value before its table takes it: an exact-size copy when accepted,
//! zstd for large values (done by [`Install`]; off the upstream reader, by the [`Encoder`]
//! thread, when the fill runs there).

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{CacheKey, Cached, Fence, Generation};

/// zstd level for large values: fast, still a good ratio on text.
const ZSTD_LEVEL: i32 = 1;

/// A value as it goes into the table (which copies it into a segment).
pub(super) enum Stored {
    Plain(Bytes),
    Compressed { data: Vec<u8>, len: usize },
    Missing,
}

/// A fetched value accepted for L1 (enabled, not expired, not too large; key copied) that
/// still has to be encoded and installed if its generation is still current.
pub struct Install {
    pub(super) key: CacheKey,
    pub(super) taken: Generation,
    pub(super) value: Prepared,
    pub(super) expires_at: Instant,
    pub(super) fence: Fence,
}

/// A value copied to its own exact-size allocation by the thread that accepted it.
pub(super) enum Prepared {
    Missing,
    Plain(Bytes),
    /// A value at least `--l1-compress-min-bytes` long.
    Compress(Bytes),
}

impl Prepared {
    /// Copies `value` (a slice of a read buffer, which must not be pinned).
    pub(super) fn new(value: &Cached, compress_min_bytes: usize) -> Prepared {
        match value {
            Cached::Missing => Prepared::Missing,
            Cached::Value(bulk) if bulk.len() < compress_min_bytes => {
                Prepared::Plain(Bytes::copy_from_slice(bulk))
            }
            Cached::Value(bulk) => Prepared::Compress(Bytes::copy_from_slice(bulk)),
        }
    }

    /// Whether encoding it means running zstd.
    pub(super) fn compresses(&self) -> bool {
        matches!(self, Prepared::Compress(_))
    }

    /// The value compressed, if it is to be compressed and zstd shrinks it by more than an
    /// eighth. The buffer is the compressing thread's: [`Prepared::store`] copies it.
    pub(super) fn compress(&self) -> Option<Vec<u8>> {
        let Prepared::Compress(plain) = self else {
            return None;
        };
        thread_local! {
            static ZSTD: RefCell<Option<zstd::bulk::Compressor<'static>>> =
                const { RefCell::new(None) };
        }
        let compressed = ZSTD.with(|z| {
            let mut z = z.borrow_mut();
            if z.is_none() {
                *z = zstd::bulk::Compressor::new(ZSTD_LEVEL).ok();
            }
            z.as_mut()?.compress(plain).ok()
        })?;
        (compressed.len() < plain.len() - plain.len() / 8).then_some(compressed)
    }

    /// The stored form, given what [`Prepared::compress`] returned (the table copies it
    /// into a segment on the installing thread, see [`Encoder`]).
    pub(super) fn store(self, compressed: Option<Vec<u8>>) -> Stored {
        match (self, compressed) {
            (Prepared::Missing, _) => Stored::Missing,
            (Prepared::Compress(plain), Some(data)) => Stored::Compressed {
                data,
                len: plain.len(),
            },
            (Prepared::Plain(plain) | Prepared::Compress(plain), _) => Stored::Plain(plain),
        }
    }
}

/// The bulk reply a compressed entry holds.
pub(super) fn decompress(data: &[u8], len: usize) -> Option<Bytes> {
    zstd::bulk::decompress(data, len).ok().map(Bytes::from)
}

/// Values to encode and install, handed from the upstream reader to one encoder thread.
///
/// The encoder only compresses: what L1 keeps is allocated by the runtime's worker threads
/// (the value copied when accepted, the table's segments when an install needs one, see
/// [`super::L1::insert_later`]). Memory allocated by another thread sits in that thread's
/// allocator arena, which cannot reuse what evicted entries freed in the workers' arena:
/// with the blocking pool compressing and storing, 8 KiB values after a flush of small ones
/// took twice the bound in RSS. One thread keeps one zstd context for every compression.
pub(super) struct Encoder {
    queue: parking_lot::Mutex<Option<SyncSender<Job>>>,
    /// Jobs queued or running.
    pending: Arc<AtomicUsize>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Jobs waiting for the encoder at most; a fill beyond it is not cached (each job holds its
/// reply, up to [`super::MAX_ENTRY_BYTES`]).
const ENCODER_QUEUE: usize = 16;

impl Encoder {
    pub(super) fn new() -> Encoder {
        Encoder {
            queue: parking_lot::Mutex::new(None),
            pending: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Queues `job`; false (and `job` dropped) when the queue is full or no thread runs.
    pub(super) fn submit(&self, job: impl FnOnce() + Send + 'static) -> bool {
        let mut queue = self.queue.lock();
        if queue.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(ENCODER_QUEUE);
            let spawned = std::thread::Builder::new()
                .name("nearcache-encoder".into())
                .spawn(move || rx.into_iter().for_each(|job| job()));
            if spawned.is_err() {
                return false;
            }
            *queue = Some(tx);
        }
        let pending = self.pending.clone();
        pending.fetch_add(1, Relaxed);
        let job = Box::new(move || {
            job();
            pending.fetch_sub(1, Relaxed);
        });
        let sent = queue.as_ref().is_some_and(|tx| tx.try_send(job).is_ok());
        if !sent {
            self.pending.fetch_sub(1, Relaxed);
        }
        sent
    }

    /// Jobs queued or running.
    #[cfg(test)]
    pub(super) fn pending(&self) -> usize {
        self.pending.load(Relaxed)
    }
}
