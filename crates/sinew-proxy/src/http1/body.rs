//! Moving a message body from one socket to another under its framing,
//! through the connection's buffer, without copying it anywhere else.

use super::chunked::Chunked;
use super::head::Framing;
use super::idle::Stall;
use bytes::{Buf, BytesMut};
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Read size for body transfers.
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Where a body transfer stands.
#[derive(Debug)]
pub(crate) enum Progress {
    Length(u64),
    Chunked(Chunked),
    UntilClose,
    Done,
}

/// A body's framing was violated.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Reading the source failed or it closed early.
    Source(io::Error),
    /// Writing the destination failed.
    Sink(io::Error),
    /// Malformed chunked framing.
    Framing,
}

impl Progress {
    pub(crate) fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => Progress::Done,
            Framing::Length(n) => Progress::Length(n),
            Framing::Chunked => Progress::Chunked(Chunked::default()),
            Framing::UntilClose => Progress::UntilClose,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Progress::Done)
    }

    /// How many bytes at the front of `available` belong to the body; with
    /// `decoded`, chunked data is decoded into it instead.
    pub(crate) fn take(
        &mut self,
        available: &[u8],
        decoded: Option<&mut Vec<u8>>,
    ) -> Result<usize, BodyError> {
        match self {
            Progress::Done => Ok(0),
            Progress::Length(remaining) => {
                let n = (*remaining).min(available.len() as u64);
                *remaining -= n;
                if *remaining == 0 {
                    *self = Progress::Done;
                }
                if let Some(out) = decoded {
                    out.extend_from_slice(&available[..n as usize]);
                }
                Ok(n as usize)
            }
            Progress::Chunked(c) => {
                let n = c.scan(available, decoded).map_err(|_| BodyError::Framing)?;
                if c.is_done() {
                    *self = Progress::Done;
                }
                Ok(n)
            }
            Progress::UntilClose => {
                if let Some(out) = decoded {
                    out.extend_from_slice(available);
                }
                Ok(available.len())
            }
        }
    }
}

/// Copies the rest of a body from `src` to `dst`. `buf` holds bytes already
/// read from `src` (the body's start has already been taken from it); bytes
/// past the body's end stay in `buf`. With `decode`, chunked framing is
/// removed (for HTTP/1.0 clients). A read or write that makes no progress
/// within the stall bound fails with `TimedOut`.
///
/// Cancel-safe as to framing: bytes `progress` has counted are out of `buf`
/// before their write is awaited, so a copy dropped mid-write (a request
/// timeout) never leaves body bytes in `buf` to be read as the next request.
pub(crate) async fn copy<R, W>(
    progress: &mut Progress,
    src: &mut R,
    buf: &mut BytesMut,
    dst: &mut W,
    decode: bool,
    stall: &mut Stall<'_>,
) -> Result<u64, BodyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut copied = 0u64;
    let mut decoded = Vec::new();
    while !progress.is_done() {
        if buf.is_empty() {
            buf.reserve(READ_CHUNK);
            let n = stall
                .within(None, src.read_buf(buf))
                .await
                .map_err(BodyError::Source)?;
            if n == 0 {
                if matches!(progress, Progress::UntilClose) {
                    *progress = Progress::Done;
                    break;
                }
                return Err(BodyError::Source(io::ErrorKind::UnexpectedEof.into()));
            }
        }
        let n = if decode {
            decoded.clear();
            let n = progress.take(buf, Some(&mut decoded))?;
            buf.advance(n);
            stall
                .within(None, dst.write_all(&decoded))
                .await
                .map_err(BodyError::Sink)?;
            n
        } else {
            let n = progress.take(buf, None)?;
            let taken = buf.split_to(n);
            stall
                .within(None, dst.write_all(&taken))
                .await
                .map_err(BodyError::Sink)?;
            n
        };
        copied += n as u64;
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use std::time::Duration;

    /// A destination that never takes a byte.
    struct Stuck;

    impl AsyncWrite for Stuck {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_copy_dropped_mid_write_leaves_only_the_next_request_in_the_buffer() {
        // The body's last bytes and a pipelined request arrived together; the
        // write of those last bytes never finishes and the copy is dropped (a
        // request timeout). What stays in the buffer must be the next
        // request, not body bytes that would be parsed as one.
        let next = b"GET /next HTTP/1.1\r\nHost: be\r\n\r\n";
        let mut buf = BytesMut::from(&b"hello"[..]);
        buf.extend_from_slice(next);
        let mut progress = Progress::Length(5);
        let mut src = tokio::io::empty();
        let mut stuck = Stuck;
        let timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(timer);
        let mut stall = Stall {
            timer: timer.as_mut(),
            idle: Duration::from_secs(60),
        };
        let copy = copy(
            &mut progress,
            &mut src,
            &mut buf,
            &mut stuck,
            false,
            &mut stall,
        );
        let dropped = tokio::time::timeout(Duration::from_millis(20), copy).await;
        assert!(dropped.is_err(), "the write never finishes");
        assert!(progress.is_done());
        assert_eq!(&buf[..], &next[..]);
    }

    #[tokio::test]
    async fn a_destination_that_takes_nothing_fails_at_the_idle_timeout() {
        let mut buf = BytesMut::from(&b"hello"[..]);
        let mut progress = Progress::Length(5);
        let mut src = tokio::io::empty();
        let timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(timer);
        let mut stall = Stall {
            timer: timer.as_mut(),
            idle: Duration::from_millis(20),
        };
        let result = copy(
            &mut progress,
            &mut src,
            &mut buf,
            &mut Stuck,
            false,
            &mut stall,
        )
        .await;
        assert!(
            matches!(result, Err(BodyError::Sink(ref e)) if e.kind() == io::ErrorKind::TimedOut),
            "{result:?}"
        );
    }
}
