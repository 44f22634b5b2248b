//! The one stream type of every upstream connection: plain TCP (`redis://`) or TLS over TCP
//! (`rediss://`), readable and writable as one and split into owned halves. The plain
//! variant is the socket itself and its halves tokio's owned halves: no lock, no copy on
//! the plain path; only the TLS halves share the session through tokio's split.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// An upstream connection, plain or TLS.
#[derive(Debug)]
pub enum UpstreamStream {
    /// `redis://`: the socket itself.
    Plain(TcpStream),
    /// `rediss://`: a TLS session over the socket (boxed: the session state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

/// The reading half of an [`UpstreamStream`].
#[derive(Debug)]
pub enum ReadHalf {
    /// Tokio's owned half of a plain socket.
    Plain(OwnedReadHalf),
    /// The reading side of a TLS session.
    Tls(tokio::io::ReadHalf<TlsStream<TcpStream>>),
}

/// The writing half of an [`UpstreamStream`].
#[derive(Debug)]
pub enum WriteHalf {
    /// Tokio's owned half of a plain socket.
    Plain(OwnedWriteHalf),
    /// The writing side of a TLS session.
    Tls(tokio::io::WriteHalf<TlsStream<TcpStream>>),
}

impl UpstreamStream {
    /// The socket under the stream.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            UpstreamStream::Plain(s) => s,
            UpstreamStream::Tls(s) => s.get_ref().0,
        }
    }

    /// Sets `TCP_NODELAY` on the socket.
    pub fn set_nodelay(&self, nodelay: bool) -> std::io::Result<()> {
        self.tcp().set_nodelay(nodelay)
    }

    /// Writes all of `bytes` and flushes them (a TLS session holds written data until
    /// flushed; a plain socket's flush does nothing).
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes).await?;
        self.flush().await
    }

    /// Splits into owned halves that may go to different tasks.
    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            UpstreamStream::Plain(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Plain(r), WriteHalf::Plain(w))
            }
            UpstreamStream::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (ReadHalf::Tls(r), WriteHalf::Tls(w))
            }
        }
    }

    /// Whether the connection is still open with nothing unread (a plain socket), or at
    /// least not closed (TLS: the server may send session records at any time, so bytes
    /// waiting there are no sign of a broken connection).
    pub fn alive(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => {
                let mut byte = [0u8; 1];
                matches!(s.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
            UpstreamStream::Tls(s) => {
                let mut byte = [0u8; 1];
                let mut buf = ReadBuf::new(&mut byte);
                let mut cx = Context::from_waker(std::task::Waker::noop());
                match s.get_ref().0.poll_peek(&mut cx, &mut buf) {
                    Poll::Pending => true,
                    Poll::Ready(Ok(n)) => n > 0,
                    Poll::Ready(Err(_)) => false,
                }
            }
        }
    }
}

impl WriteHalf {
    /// Writes all of `bytes` and flushes them (see [`UpstreamStream::send`]).
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.write_all(bytes).await?;
        self.flush().await
    }
}

macro_rules! forward_read {
    ($ty:ident) => {
        impl AsyncRead for $ty {
            #[inline]
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_read(cx, buf),
                    $ty::Tls(s) => Pin::new(s).poll_read(cx, buf),
                }
            }
        }
    };
}

macro_rules! forward_write {
    ($ty:ident) => {
        impl AsyncWrite for $ty {
            #[inline]
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_write(cx, buf),
                    $ty::Tls(s) => Pin::new(s).poll_write(cx, buf),
                }
            }

            #[inline]
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[IoSlice<'_>],
            ) -> Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                    $ty::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
                }
            }

            #[inline]
            fn is_write_vectored(&self) -> bool {
                match self {
                    $ty::Plain(s) => s.is_write_vectored(),
                    $ty::Tls(s) => s.is_write_vectored(),
                }
            }

            #[inline]
            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_flush(cx),
                    $ty::Tls(s) => Pin::new(s).poll_flush(cx),
                }
            }

            #[inline]
            fn poll_shutdown(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $ty::Plain(s) => Pin::new(s).poll_shutdown(cx),
                    $ty::Tls(s) => Pin::new(s).poll_shutdown(cx),
                }
            }
        }
    };
}

forward_read!(UpstreamStream);
forward_write!(UpstreamStream);
forward_read!(ReadHalf);
forward_write!(WriteHalf);
