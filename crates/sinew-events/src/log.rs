//! `PartitionLog`: one partition's directory of segments.
//!
//! Segments `s0 … sN` hold consecutive offsets; `sN` is the active one and
//! the only one written. Phases of an append, in order:
//!
//! ```text
//! stage (encode into one buffer, assign offsets) ─ roll? (new segment, fsync dir)
//!   ─ write (one pwrite at the end of the active file; zeros ahead of it if
//!     it grew the file, see `segment.rs`) ─ sync_data ─ index ─ ack
//! ```
//!
//! Recovery at [`PartitionLog::open`]: every segment is scanned and checked.
//! A bad frame in the **last** segment is a torn tail (a crash between write
//! and sync, or mid-write): it and everything after it are truncated, because
//! a frame boundary after a bad length cannot be trusted and no later record
//! was acknowledged before an earlier one. A bad frame in an **earlier**
//! segment cannot come from a crash (a segment is closed only after its last
//! write was synced), so it is media damage or tampering: `open` fails with
//! [`Error::Corrupt`] naming the file and byte, rather than silently drop
//! acknowledged records or leave a hole in the offsets.

use std::collections::VecDeque;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{debug, error, info};

use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::files;
use crate::record::{self, Corruption, NewRecord, Record};
use crate::segment::{Segment, Staged, Tail, WriteError, SEGMENT_LIMIT};

/// Read size for time lookups.
const TIME_CHUNK: usize = 64 * 1024;

/// Least and most a read fetches from a file at once.
const READ_CHUNK: Range<usize> = 64 * 1024..8 * 1024 * 1024;

/// The least a preallocation writes ahead (when one is configured).
const MIN_PREALLOCATE: u64 = 64 * 1024;

/// A staging buffer that grew past this is given back after the commit.
const KEEP_STAGING_BYTES: usize = 4 * 1024 * 1024;

/// What [`PartitionLog::enforce_retention`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Segments deleted.
    pub segments: usize,
    /// Bytes deleted.
    pub bytes: u64,
}

/// A durable, segmented, append-only log of one topic partition.
///
/// Single owner: appends take `&mut self`. [`crate::Committer`] shares one
/// log between many async callers.
#[derive(Debug)]
pub struct PartitionLog {
    /// The partition's directory.
    dir: PathBuf,
    /// Sizes and ages.
    config: LogConfig,
    /// Closed segments, oldest first; never written again.
    closed: VecDeque<Segment>,
    /// The segment appends go to.
    active: Segment,
    /// Encoded frames of staged records, written at the next commit.
    staged: Vec<u8>,
    /// Where each staged record sits in `staged`.
    staged_records: Vec<Staged>,
    /// Successful `sync_data` calls (one per commit).
    syncs: u64,
    /// Set when a sync (or the undo of a failed write) failed.
    poisoned: bool,
    /// Holds the directory's lock while the log is open.
    _lock: fs::File,
}

impl PartitionLog {
    /// Opens (creating if needed) the log in `dir`, recovering as described
    /// in the module doc. Fails with [`Error::Locked`] if it is already open.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Self> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(|e| Error::io("create_dir", &dir, e))?;
            // The new directory's own entry must survive a crash too (its
            // parent's; directories above that are the caller's).
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                files::sync_dir(parent)?;
            }
        }
        let lock = files::lock_dir(&dir)?;
        let interval = config.index_interval_bytes;
        let bases = files::list_segments(&dir)?;
        let mut closed = VecDeque::with_capacity(bases.len());
        let mut active = None;
        for (i, &base) in bases.iter().enumerate() {
            if let Some(previous) = closed.back().map(Segment::next_offset) {
                if previous != base {
                    return Err(Error::Gap {
                        path: files::segment_path(&dir, base),
                        expected: previous,
                        found: base,
                    });
                }
            }
            if i + 1 < bases.len() {
                closed.push_back(Segment::open(&dir, base, interval, Tail::Refuse)?);
            } else {
                active = Some(Segment::open(&dir, base, interval, Tail::Truncate)?);
            }
        }
        let active = match active {
            Some(active) => active,
            None => {
                let segment = Segment::create(&dir, 0, interval)?;
                files::sync_dir(&dir)?;
                segment
            }
        };
        let log = Self {
            dir,
            config,
            closed,
            active,
            staged: Vec::new(),
            staged_records: Vec::new(),
            syncs: 0,
            poisoned: false,
            _lock: lock,
        };
        info!(
            dir = %log.dir.display(),
            segments = log.segment_count(),
            first_offset = log.first_offset(),
            next_offset = log.next_offset(),
            "partition log open"
        );
        Ok(log)
    }

    /// Appends `batch` and returns the offsets it got, only after its bytes
    /// were written with one write and made durable with one `sync_data`.
    ///
    /// All or nothing: a record that cannot be encoded fails the append
    /// before anything is written. An empty batch returns an empty range.
    pub fn append(&mut self, batch: &[NewRecord]) -> Result<Range<u64>> {
        let offsets = self.stage(batch)?;
        self.commit()?;
        Ok(offsets)
    }

    /// Encodes `batch` after whatever is already staged and assigns its
    /// offsets; nothing is written until [`Self::commit`]. On error nothing
    /// of `batch` stays staged.
    pub(crate) fn stage(&mut self, batch: &[NewRecord]) -> Result<Range<u64>> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        let first = self.active.next_offset() + self.staged_records.len() as u64;
        let mark = (self.staged.len(), self.staged_records.len());
        for (index, record) in batch.iter().enumerate() {
            let buf_pos = self.staged.len() as u64;
            if self.active.size() + buf_pos > SEGMENT_LIMIT {
                self.unstage(mark);
                return Err(Error::BatchTooLarge {
                    bytes: self.active.size() + buf_pos,
                });
            }
            let offset = first + index as u64;
            if let Err(source) = record::encode(offset, record, &mut self.staged) {
                self.unstage(mark);
                return Err(Error::InvalidRecord { index, source });
            }
            self.staged_records.push(Staged {
                offset,
                buf_pos: buf_pos as u32,
                timestamp_ms: record.timestamp_ms,
            });
        }
        if mark.1 == 0 && !self.staged_records.is_empty() {
            // The first staged records of a write decide whether it goes to
            // a new segment; the whole write then goes to one segment.
            if let Err(error) = self.maybe_roll(self.staged.len() as u64) {
                self.unstage(mark);
                return Err(error);
            }
        }
        let end = self.active.size() + self.staged.len() as u64;
        if end > SEGMENT_LIMIT {
            self.unstage(mark);
            return Err(Error::BatchTooLarge { bytes: end });
        }
        Ok(first..first + batch.len() as u64)
    }

    /// Drops what was staged after `mark` (buffer length, record count).
    fn unstage(&mut self, mark: (usize, usize)) {
        self.staged.truncate(mark.0);
        self.staged_records.truncate(mark.1);
    }

    /// Starts a new segment if the active one is non-empty and would grow
    /// past `segment_bytes` by `incoming` bytes, or is older than `segment_age`.
    fn maybe_roll(&mut self, incoming: u64) -> Result<()> {
        let size = self.active.size();
        if size == 0 {
            return Ok(());
        }
        let full = size + incoming > self.config.segment_bytes;
        let old = self.active.opened().elapsed() >= self.config.segment_age;
        if !full && !old {
            return Ok(());
        }
        let base = self.active.next_offset();
        let segment = Segment::create(&self.dir, base, self.config.index_interval_bytes)?;
        // The new file's directory entry must be durable before any record
        // in it is acknowledged.
        files::sync_dir(&self.dir)?;
        let mut previous = std::mem::replace(&mut self.active, segment);
        if let Err(e) = previous.trim() {
            // Zeros after its records are harmless (recovery skips them).
            debug!(error = %e, "could not trim a closed segment's preallocation");
        }
        debug!(
            path = %self.active.path().display(),
            closed_bytes = previous.size(),
            full,
            "rolled to a new segment"
        );
        self.closed.push_back(previous);
        Ok(())
    }

    /// Writes everything staged in one write and one `sync_data`.
    ///
    /// On error nothing staged is acknowledged and the staging is cleared.
    /// A failed write that could be undone leaves the log usable (a full
    /// disk can recover once space is freed); a failed sync poisons it.
    pub(crate) fn commit(&mut self) -> Result<()> {
        if self.staged_records.is_empty() {
            return Ok(());
        }
        let end = self.active.size() + self.staged.len() as u64;
        // As much ahead as the segment holds (at least MIN_PREALLOCATE, at
        // most the configured bytes): a quiet partition keeps little padding.
        let ahead = self
            .config
            .preallocate_bytes
            .min(self.active.size().max(MIN_PREALLOCATE));
        let preallocate_to = end
            .saturating_add(ahead)
            .min(self.config.segment_bytes.max(end));
        let result = self
            .active
            .append(&self.staged, &self.staged_records, preallocate_to);
        self.staged.clear();
        self.staged_records.clear();
        if self.staged.capacity() > KEEP_STAGING_BYTES {
            self.staged.shrink_to(KEEP_STAGING_BYTES);
        }
        match result {
            Ok(()) => {
                self.syncs += 1;
                Ok(())
            }
            Err(WriteError::Clean(error)) => Err(error),
            Err(WriteError::Unknown(e)) => {
                error!(error = %e, dir = %self.dir.display(), "log poisoned: reopen to recover");
                self.poisoned = true;
                Err(e)
            }
        }
    }

    /// Records from `from_offset` on, across segments, until their encoded
    /// size would pass `max_bytes` (at least one record when any is there).
    ///
    /// `from_offset == next_offset()` gives an empty list; an offset outside
    /// `first_offset()..=next_offset()` is [`Error::OffsetOutOfRange`].
    pub fn read(&self, from_offset: u64, max_bytes: usize) -> Result<Vec<Record>> {
        let (first, next) = (self.first_offset(), self.next_offset());
        if from_offset < first || from_offset > next {
            return Err(Error::OffsetOutOfRange {
                requested: from_offset,
                first,
                next,
            });
        }
        let hint = max_bytes
            .saturating_add(self.config.index_interval_bytes as usize)
            .clamp(READ_CHUNK.start, READ_CHUNK.end);
        let start = self
            .closed
            .partition_point(|s| s.next_offset() <= from_offset);
        let mut out = Vec::new();
        let mut used = 0usize;
        for segment in self.segments().skip(start) {
            let mut cursor = segment.cursor_at_offset(from_offset, hint);
            while let Some((position, frame)) =
                cursor.next_frame().map_err(|e| segment.read_error(e))?
            {
                if record::peek_offset(&frame) < from_offset {
                    continue;
                }
                if !out.is_empty() && used + frame.len() > max_bytes {
                    return Ok(out);
                }
                let record =
                    record::decode(&frame).map_err(|reason| segment.corrupt(position, reason))?;
                let expected = from_offset + out.len() as u64;
                if record.offset != expected {
                    let reason = Corruption::OffsetMismatch {
                        expected,
                        found: record.offset,
                    };
                    return Err(segment.corrupt(position, reason));
                }
                used += frame.len();
                out.push(record);
                if used >= max_bytes {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// The offset of the first record whose timestamp is at or after
    /// `timestamp_ms`, `None` when there is none (consume from `next_offset`).
    pub fn offset_for_time(&self, timestamp_ms: u64) -> Result<Option<u64>> {
        for segment in self.segments() {
            if segment.max_timestamp().is_none_or(|max| max < timestamp_ms) {
                continue;
            }
            let mut cursor = segment.cursor_at_time(timestamp_ms, TIME_CHUNK);
            while let Some((position, frame)) =
                cursor.next_frame().map_err(|e| segment.read_error(e))?
            {
                let meta =
                    record::verify(&frame).map_err(|reason| segment.corrupt(position, reason))?;
                if meta.timestamp_ms >= timestamp_ms {
                    return Ok(Some(meta.offset));
                }
            }
        }
        Ok(None)
    }

    /// Deletes whole closed segments from the oldest on while the log is
    /// larger than `retention_bytes` or the segment's newest record is older
    /// than `retention_age` at `now`. The active segment is never deleted.
    ///
    /// Deletion stops at the first segment that is kept, so offsets stay
    /// contiguous. A deleted file that reappears after a crash (its removal
    /// not yet durable) is only an older segment again, and harmless.
    pub fn enforce_retention(&mut self, now: SystemTime) -> Result<Retention> {
        let now_ms = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let max_age_ms = self
            .config
            .retention_age
            .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX));
        let mut total = self.size_bytes();
        let mut done = Retention::default();
        while let Some(oldest) = self.closed.front() {
            let over_size = self.config.retention_bytes.is_some_and(|max| total > max);
            let expired = max_age_ms.is_some_and(|max_age| {
                oldest
                    .max_timestamp()
                    .is_none_or(|newest| now_ms.saturating_sub(newest) > max_age)
            });
            if !over_size && !expired {
                break;
            }
            oldest.delete()?;
            let size = oldest.size();
            info!(path = %oldest.path().display(), bytes = size, over_size, expired, "retention deleted a segment");
            self.closed.pop_front();
            total -= size;
            done.segments += 1;
            done.bytes += size;
        }
        Ok(done)
    }

    /// The first offset still in the log (`next_offset()` when it is empty).
    pub fn first_offset(&self) -> u64 {
        self.closed.front().unwrap_or(&self.active).base()
    }

    /// The offset the next appended record will get.
    pub fn next_offset(&self) -> u64 {
        self.active.next_offset()
    }

    /// Bytes of records in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments().map(Segment::size).sum()
    }

    /// How many segment files the log has.
    pub fn segment_count(&self) -> usize {
        self.closed.len() + 1
    }

    /// Successful `sync_data` calls since open: one per commit.
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// Whether a failed sync made the log refuse appends (reopen to recover).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every segment, oldest first.
    fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.closed.iter().chain(std::iter::once(&self.active))
    }
}

impl Drop for PartitionLog {
    /// A clean close leaves the active file at its records' length (a crash
    /// leaves the zeros, which the next open trims).
    fn drop(&mut self) {
        if !self.poisoned {
            if let Err(e) = self.active.trim() {
                debug!(error = %e, "could not trim the active segment's preallocation");
            }
        }
    }
}
