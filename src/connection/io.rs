//! The client I/O stage: the client's stream, the input read from it and the parser
//! resuming a partly received request, writing what [`Replies`] has ready (large replies
//! from their own bytes), and the graceful close. The pooled path and the pinned relay
//! both read and write the client through it.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::replies::Replies;
use super::{ClientStream, BUFFER, LARGE_REPLY, MAX_IDLE_BUFFER};
use crate::protocol::{Limits, Request, RequestError, RequestParser};

/// One client's stream, input and output state.
pub(super) struct ClientIo<S> {
    pub(super) stream: S,
    /// Bytes read and not parsed yet.
    pub(super) input: BytesMut,
    /// Parses the requests in `input`, resuming a partly received one where it stopped.
    pub(super) parser: RequestParser,
    /// A direct write of a large reply failed: the next flush reports it.
    write_failed: Option<std::io::Error>,
}

impl<S: ClientStream> ClientIo<S> {
    /// A client's stream, with small buffers (thousands of idle clients are normal).
    pub(super) fn new(stream: S) -> ClientIo<S> {
        ClientIo {
            stream,
            input: BytesMut::with_capacity(BUFFER),
            parser: RequestParser::default(),
            write_failed: None,
        }
    }

    /// Reads what the client sent into the input (0: it closed).
    pub(super) async fn read(&mut self) -> std::io::Result<usize> {
        self.stream.read_buf(&mut self.input).await
    }

    /// The next complete request in the input, if any.
    #[inline]
    pub(super) fn next_request(
        &mut self,
        limits: &Limits,
    ) -> Result<Option<Request>, RequestError> {
        self.parser.next(&mut self.input, limits)
    }

    /// Writes an upstream reply frame as the oldest owed reply; a large one is written
    /// from its own bytes after what is buffered (same order, no copy).
    pub(super) async fn write_frame(&mut self, replies: &mut Replies, frame: &Bytes) {
        if self.write_failed.is_some() {
            // The client is gone (the next flush says so): nothing more is kept for it.
            return;
        }
        if frame.len() < LARGE_REPLY || replies.muted_now() {
            // (A muted reply goes where the dropped ones are: never sent.)
            return replies.oldest_out().extend_from_slice(frame);
        }
        let written = match self.flush(replies).await {
            Ok(()) => self.stream.write_all(frame).await,
            Err(e) => Err(e),
        };
        if let Err(e) = written {
            self.write_failed = Some(e);
        }
    }

    /// Flushes the output mid-drain; a failure is reported by the next [`ClientIo::flush`].
    pub(super) async fn flush_or_fail(&mut self, replies: &mut Replies) {
        if let Err(e) = self.flush(replies).await {
            self.write_failed = Some(e);
        }
    }

    /// Writes the bytes ready for the socket (or reports a failed direct write).
    pub(super) async fn flush(&mut self, replies: &mut Replies) -> std::io::Result<()> {
        if let Some(e) = self.write_failed.take() {
            return Err(e);
        }
        let out = replies.sendable();
        if out.is_empty() {
            return Ok(());
        }
        self.stream.write_all(out).await?;
        replies.sent();
        Ok(())
    }

    /// Gives back memory after a large request or reply, and keeps room to read into.
    pub(super) fn size_buffers(&mut self, replies: &mut Replies) {
        if self.input.is_empty() && self.input.capacity() > MAX_IDLE_BUFFER {
            self.input = BytesMut::with_capacity(BUFFER);
        }
        replies.shrink(MAX_IDLE_BUFFER, BUFFER);
        if self.input.capacity() - self.input.len() < 1024 {
            // Grows with a large request in flight, so it arrives in few reads.
            self.input.reserve(BUFFER.max(self.input.len()));
        }
    }

    /// Shutdown: every request read so far has been answered and flushed; what the client
    /// sent after it is not read. Shut down the write side (the client sees its replies,
    /// then end of stream), then read and discard the input until the client closes or
    /// `deadline`: closing a socket with unread input makes the kernel send a reset, which
    /// can destroy replies the client has not read yet.
    pub(super) async fn close_gracefully(&mut self, deadline: tokio::time::Instant) {
        let _ = self.stream.shutdown().await;
        let mut sink = [0u8; 16 * 1024];
        let drain = async { while let Ok(1..) = self.stream.read(&mut sink).await {} };
        let _ = tokio::time::timeout_at(deadline, drain).await;
    }
}
