//! Moving a message body from one socket to another under its framing,
//! through the connection's buffer, without copying it anywhere else.

use super::chunked::Chunked;
use super::head::Framing;
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
/// removed (for HTTP/1.0 clients).
pub(crate) async fn copy<R, W>(
    progress: &mut Progress,
    src: &mut R,
    buf: &mut BytesMut,
    dst: &mut W,
    decode: bool,
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
            let n = src.read_buf(buf).await.map_err(BodyError::Source)?;
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
            dst.write_all(&decoded).await.map_err(BodyError::Sink)?;
            n
        } else {
            let n = progress.take(buf, None)?;
            dst.write_all(&buf[..n]).await.map_err(BodyError::Sink)?;
            n
        };
        copied += n as u64;
        buf.advance(n);
    }
    Ok(copied)
}
