//! `Segment`: one segment file and its sparse index.
//!
//! Opening scans the whole file, verifying each frame's checksum, layout and
//! offset (the segment's base, then one more per record), and rebuilds the
//! index. What happens at the first bad frame is the caller's choice
//! ([`Tail`]): the active segment truncates it and everything after it
//! (crash recovery of a torn tail); an older segment refuses to open.
//!
//! **Preallocation.** When an append grows the file, the segment also
//! writes zeros after it (how many the log decides, up to its
//! `preallocate_bytes`), so the appends that follow overwrite blocks the
//! file already has. Their `sync_data` then flushes data only: with no file
//! size or extent changed there is no metadata to write first (a journal
//! commit on ext4 with a journal, the inode block on ext4 without one, as
//! on this project's bench disk, where a sync takes about 80 µs instead of
//! 150, and less CPU). Zeros can never be a frame (a frame's length is at
//! least [`record::MIN_RECORD_LEN`]), so a scan that meets a bad frame
//! followed only by zeros has found the end of the records, not damage: it
//! trims the padding without a warning, in either [`Tail`] mode. A roll
//! and a clean close trim the padding too. If the zeros cannot be written
//! (a full disk), the segment stops preallocating and appends as before;
//! the data is always written first.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tracing::{debug, warn};

use crate::cursor::{Cursor, CursorError};
use crate::error::{Error, Result};
use crate::files;
use crate::index::SparseIndex;
use crate::record::{self, Corruption};

/// Zeros to preallocate with (in `.bss`: costs no memory until read).
static ZEROS: [u8; 256 * 1024] = [0; 256 * 1024];

/// The most bytes a segment file may hold: index positions are `u32`.
pub(crate) const SEGMENT_LIMIT: u64 = u32::MAX as u64;

/// How much the open-time scan reads at once.
const SCAN_CHUNK: usize = 1024 * 1024;

/// What opening does with a bad frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Truncate the file at the first bad frame (the active segment).
    Truncate,
    /// Fail with [`Error::Corrupt`] (a closed segment).
    Refuse,
}

/// One record staged for a write: where it sits in the write buffer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Staged {
    /// The record's offset.
    pub(crate) offset: u64,
    /// Its frame's position in the write buffer.
    pub(crate) buf_pos: u32,
    /// Its timestamp.
    pub(crate) timestamp_ms: u64,
}

/// Why a write failed, and whether the file is still as it was.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The file is back at its previous length; the segment is usable.
    Clean(Error),
    /// The file's state is unknown (sync or undo failed).
    Unknown(Error),
}

/// One segment file.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of its first record.
    base: u64,
    /// The file's path.
    path: PathBuf,
    /// The file, open for reading and writing.
    file: File,
    /// Bytes of whole, verified records.
    size: u64,
    /// The file's length: `size` plus zeros written ahead (preallocation).
    allocated: u64,
    /// Set when writing zeros ahead failed (a full disk): no more tries.
    no_prealloc: bool,
    /// The offset after its last record.
    next_offset: u64,
    /// Offset and time index.
    index: SparseIndex,
    /// When this process created or opened it (for `segment_age`).
    opened: Instant,
}

impl Segment {
    /// Creates an empty segment at `base`. The caller syncs the directory.
    pub(crate) fn create(dir: &Path, base: u64, interval: u32) -> Result<Self> {
        let path = files::segment_path(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            // A file left by a roll that failed before its directory sync
            // holds nothing acknowledged: start it afresh.
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        Ok(Self {
            base,
            path,
            file,
            size: 0,
            allocated: 0,
            no_prealloc: false,
            next_offset: base,
            index: SparseIndex::new(interval),
            opened: Instant::now(),
        })
    }

    /// Opens the segment at `base`, verifying every record; see [`Tail`].
    pub(crate) fn open(dir: &Path, base: u64, interval: u32, tail: Tail) -> Result<Self> {
        let path = files::segment_path(dir, base);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        let file_len = file
            .metadata()
            .map_err(|e| Error::io("stat", &path, e))?
            .len();
        let mut segment = Self {
            base,
            path,
            file,
            size: 0,
            allocated: file_len,
            no_prealloc: false,
            next_offset: base,
            index: SparseIndex::new(interval),
            opened: Instant::now(),
        };
        let bad = segment.scan(file_len.min(SEGMENT_LIMIT))?;
        let bad = match bad {
            None if file_len > SEGMENT_LIMIT => Some((
                SEGMENT_LIMIT,
                Corruption::Malformed("segment file is longer than 4 GiB"),
            )),
            other => other,
        };
        if let Some((position, reason)) = bad {
            if segment.zeros_from(segment.size, file_len)? {
                // Preallocated zeros after the last record: not damage.
                segment.trim()?;
                return Ok(segment);
            }
            match tail {
                Tail::Refuse => {
                    return Err(Error::Corrupt {
                        path: segment.path,
                        position,
                        reason,
                    })
                }
                Tail::Truncate => segment.truncate_tail(file_len, &reason)?,
            }
        }
        Ok(segment)
    }

    /// Reads every frame up to `end`, indexing the good ones; returns where
    /// and why it stopped early, if it did.
    fn scan(&mut self, end: u64) -> Result<Option<(u64, Corruption)>> {
        let mut cursor = Cursor::new(&self.file, 0, end, SCAN_CHUNK);
        loop {
            let (position, frame) = match cursor.next_frame() {
                Ok(Some(next)) => next,
                Ok(None) => return Ok(None),
                Err(CursorError::Io(e)) => return Err(Error::io("read", &self.path, e)),
                Err(CursorError::Corrupt { position, reason }) => {
                    return Ok(Some((position, reason)))
                }
            };
            let meta = match record::verify(&frame) {
                Ok(meta) => meta,
                Err(reason) => return Ok(Some((position, reason))),
            };
            if meta.offset != self.next_offset {
                let reason = Corruption::OffsetMismatch {
                    expected: self.next_offset,
                    found: meta.offset,
                };
                return Ok(Some((position, reason)));
            }
            self.index.note(
                (meta.offset - self.base) as u32,
                position as u32,
                meta.timestamp_ms,
            );
            self.next_offset += 1;
            self.size = cursor.position();
        }
    }

    /// Cuts the file back to its verified records and makes that durable.
    fn truncate_tail(&mut self, file_len: u64, reason: &Corruption) -> Result<()> {
        let cut = file_len - self.size;
        warn!(
            path = %self.path.display(),
            position = self.size,
            cut_bytes = cut,
            %reason,
            "truncating a torn or corrupt tail"
        );
        self.file
            .set_len(self.size)
            .map_err(|e| Error::io("truncate", &self.path, e))?;
        self.allocated = self.size;
        self.file
            .sync_all()
            .map_err(|e| Error::io("sync_all", &self.path, e))
    }

    /// Writes `buf` (the frames of `staged`) at the end in one call; if
    /// that grew the file, writes zeros ahead up to `preallocate_to`; then
    /// `sync_data`. Indexes the records only once the write and the sync
    /// succeeded.
    pub(crate) fn append(
        &mut self,
        buf: &[u8],
        staged: &[Staged],
        preallocate_to: u64,
    ) -> Result<(), WriteError> {
        if let Err(e) = self.file.write_all_at(buf, self.size) {
            let error = Error::io("write", &self.path, e);
            // Undo a partial write so the next append starts on a frame
            // boundary; if even that fails, nothing about the file is known.
            return match self.file.set_len(self.size) {
                Ok(()) => {
                    self.allocated = self.size;
                    Err(WriteError::Clean(error))
                }
                Err(_) => Err(WriteError::Unknown(error)),
            };
        }
        let end = self.size + buf.len() as u64;
        if end > self.allocated {
            self.allocated = end;
            self.preallocate(preallocate_to);
        }
        // After a failed fsync the kernel may have dropped the dirty pages
        // and marked them clean: retrying would "succeed" without the data.
        self.file
            .sync_data()
            .map_err(|e| WriteError::Unknown(Error::io("sync_data", &self.path, e)))?;
        for record in staged {
            let position = self.size + u64::from(record.buf_pos);
            self.index.note(
                (record.offset - self.base) as u32,
                position as u32,
                record.timestamp_ms,
            );
        }
        self.size += buf.len() as u64;
        self.next_offset += staged.len() as u64;
        Ok(())
    }

    /// Writes zeros from the end of the file up to `to`, best effort: on a
    /// failure (a full disk) the file is cut back and preallocation stops.
    fn preallocate(&mut self, to: u64) {
        if self.no_prealloc || to <= self.allocated {
            return;
        }
        let mut at = self.allocated;
        while at < to {
            let n = (to - at).min(ZEROS.len() as u64) as usize;
            if let Err(e) = self.file.write_all_at(&ZEROS[..n], at) {
                debug!(path = %self.path.display(), error = %e, "no preallocation in this segment");
                self.no_prealloc = true;
                // Zeros left behind would be harmless; the space is not.
                if self.file.set_len(self.allocated).is_err() {
                    self.allocated = at;
                }
                return;
            }
            at += n as u64;
        }
        self.allocated = to;
    }

    /// Cuts preallocated zeros off the file. Nothing needs syncing: either
    /// length holds the same records.
    pub(crate) fn trim(&mut self) -> Result<()> {
        if self.allocated > self.size {
            self.file
                .set_len(self.size)
                .map_err(|e| Error::io("truncate", &self.path, e))?;
            self.allocated = self.size;
        }
        Ok(())
    }

    /// Whether the file holds only zeros from `from` to `to`.
    fn zeros_from(&self, from: u64, to: u64) -> Result<bool> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut at = from;
        while at < to {
            let n = (to - at).min(buf.len() as u64) as usize;
            self.file
                .read_exact_at(&mut buf[..n], at)
                .map_err(|e| Error::io("read", &self.path, e))?;
            if buf[..n].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += n as u64;
        }
        Ok(true)
    }

    /// A cursor from the indexed record at or before `offset`.
    pub(crate) fn cursor_at_offset(&self, offset: u64, hint: usize) -> Cursor<'_> {
        let rel = offset.saturating_sub(self.base).min(u64::from(u32::MAX)) as u32;
        let position = self.index.position_for_offset(rel);
        Cursor::new(&self.file, u64::from(position), self.size, hint)
    }

    /// A cursor from a position before the first record at or after `timestamp_ms`.
    pub(crate) fn cursor_at_time(&self, timestamp_ms: u64, hint: usize) -> Cursor<'_> {
        let position = self.index.position_for_time(timestamp_ms);
        Cursor::new(&self.file, u64::from(position), self.size, hint)
    }

    /// Deletes the file.
    pub(crate) fn delete(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &self.path, e)),
        }
    }

    /// The error for a cursor that stopped while reading this segment.
    pub(crate) fn read_error(&self, error: CursorError) -> Error {
        match error {
            CursorError::Io(e) => Error::io("read", &self.path, e),
            CursorError::Corrupt { position, reason } => self.corrupt(position, reason),
        }
    }

    /// A corruption error at `position` in this segment.
    pub(crate) fn corrupt(&self, position: u64, reason: Corruption) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            position,
            reason,
        }
    }

    /// Offset of its first record (or of the next one, while empty).
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// The offset after its last record.
    pub(crate) fn next_offset(&self) -> u64 {
        self.next_offset
    }

    /// Bytes of records.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The largest record timestamp, `None` when empty.
    pub(crate) fn max_timestamp(&self) -> Option<u64> {
        self.index.max_timestamp()
    }

    /// When this process created or opened the segment.
    pub(crate) fn opened(&self) -> Instant {
        self.opened
    }
}
