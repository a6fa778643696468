//! `Cursor`: whole frames out of a segment file, read a chunk at a time.
//!
//! The cursor frames records by their length field (bounds-checked by
//! `record::frame_len`) and hands each frame out as a slice of a shared
//! chunk; checking the frame's contents is the caller's job. A frame that
//! runs past `end` is reported as torn, with its position, so the open-time
//! scan knows where to cut.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use bytes::{Bytes, BytesMut};

use crate::record::{self, Corruption};

/// Why the cursor stopped.
#[derive(Debug)]
pub(crate) enum CursorError {
    /// Reading the file failed.
    Io(io::Error),
    /// The frame at `position` is damaged or torn.
    Corrupt {
        /// Byte position of the frame.
        position: u64,
        /// What is wrong with it.
        reason: Corruption,
    },
}

/// Reads frames forward from a position up to a fixed end.
#[derive(Debug)]
pub(crate) struct Cursor<'a> {
    /// The segment file.
    file: &'a File,
    /// Position of the next frame.
    pos: u64,
    /// Bytes past this position are not part of the segment.
    end: u64,
    /// File bytes from `chunk_start`.
    chunk: Bytes,
    /// Position of `chunk`'s first byte.
    chunk_start: u64,
    /// How much to read at once (at least one whole frame is read).
    hint: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over `file` from `pos` to `end`, reading `hint` bytes at a time.
    pub(crate) fn new(file: &'a File, pos: u64, end: u64, hint: usize) -> Self {
        Self {
            file,
            pos,
            end,
            chunk: Bytes::new(),
            chunk_start: pos,
            hint: hint.max(record::MIN_RECORD_LEN),
        }
    }

    /// The position of the next frame (after the last one returned).
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// The next whole frame and its position, or `None` at the end.
    pub(crate) fn next_frame(&mut self) -> Result<Option<(u64, Bytes)>, CursorError> {
        let remaining = self.end.saturating_sub(self.pos);
        if remaining == 0 {
            return Ok(None);
        }
        if self.buffered() < 4 {
            self.fill(4)?;
        }
        let at = (self.pos - self.chunk_start) as usize;
        let corrupt = |reason| CursorError::Corrupt {
            position: self.pos,
            reason,
        };
        let len = match record::frame_len(&self.chunk[at..]) {
            Ok(Some(len)) => len,
            Ok(None) => {
                return Err(corrupt(Corruption::Torn {
                    needed: 4,
                    available: remaining,
                }))
            }
            Err(reason) => return Err(corrupt(reason)),
        };
        if len as u64 > remaining {
            return Err(corrupt(Corruption::Torn {
                needed: len as u64,
                available: remaining,
            }));
        }
        if self.buffered() < len as u64 {
            self.fill(len)?;
        }
        let at = (self.pos - self.chunk_start) as usize;
        let frame = self.chunk.slice(at..at + len);
        let position = self.pos;
        self.pos += len as u64;
        Ok(Some((position, frame)))
    }

    /// Bytes of the chunk at and after `pos`.
    fn buffered(&self) -> u64 {
        (self.chunk_start + self.chunk.len() as u64).saturating_sub(self.pos)
    }

    /// Replaces the chunk with file bytes from `pos`: at least `need` (or up
    /// to the end) and up to `hint`.
    fn fill(&mut self, need: usize) -> Result<(), CursorError> {
        let want = (need.max(self.hint) as u64).min(self.end - self.pos) as usize;
        let mut buf = BytesMut::zeroed(want);
        self.file
            .read_exact_at(&mut buf, self.pos)
            .map_err(CursorError::Io)?;
        self.chunk = buf.freeze();
        self.chunk_start = self.pos;
        Ok(())
    }
}
