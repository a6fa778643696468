//! One connection type for every codec: plain TCP, or TLS (accepted from a
//! peer sidecar or opened to one). The HTTP engines read and write through
//! it without knowing which.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::{client, server};

/// A downstream or upstream connection.
#[derive(Debug)]
pub(crate) enum Conn {
    /// Plaintext.
    Plain(TcpStream),
    /// mTLS accepted on the inbound listener.
    Server(Box<server::TlsStream<TcpStream>>),
    /// mTLS opened to a meshed endpoint, with the identity it proved.
    Client(Box<client::TlsStream<TcpStream>>, Arc<str>),
}

impl From<TcpStream> for Conn {
    fn from(stream: TcpStream) -> Self {
        Conn::Plain(stream)
    }
}

impl Conn {
    /// The TCP socket underneath.
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            Conn::Server(s) => s.get_ref().0,
            Conn::Client(s, _) => s.get_ref().0,
        }
    }

    /// The identity an upstream TLS connection proved (none for plaintext).
    pub(crate) fn upstream_identity(&self) -> Option<&Arc<str>> {
        match self {
            Conn::Client(_, id) => Some(id),
            _ => None,
        }
    }

    /// Whether an idle pooled connection has nothing to read: no EOF, no
    /// stray bytes, no TLS alert. Costs no syscall in the common case: a
    /// connection the upstream closed has been marked readable by the reactor.
    pub(crate) fn is_quiet(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.tcp().poll_read_ready(&mut cx) {
            Poll::Pending => return true,
            Poll::Ready(Err(_)) => return false,
            Poll::Ready(Ok(())) => {}
        }
        // Readiness can be stale after a read that filled the buffer exactly;
        // try one read to tell EOF (or a close_notify) from a spurious wake-up.
        let mut probe = [0u8; 1];
        let mut buf = ReadBuf::new(&mut probe);
        matches!(Pin::new(self).poll_read(&mut cx, &mut buf), Poll::Pending)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Server(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Conn::Client(s, _) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Server(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Conn::Client(s, _) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Server(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            Conn::Client(s, _) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Server(s) => s.is_write_vectored(),
            Conn::Client(s, _) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Server(s) => Pin::new(&mut **s).poll_flush(cx),
            Conn::Client(s, _) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Server(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Conn::Client(s, _) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
