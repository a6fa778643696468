//! `LogConfig`: segment size and age, retention, index density.

use std::time::Duration;

use crate::error::{Error, Result};

/// The largest `segment_bytes` accepted. Index positions are `u32`, so a
/// segment can address 4 GiB; the cap leaves room for the last group commit
/// that crosses the threshold.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

/// How a [`PartitionLog`](crate::PartitionLog) lays out and ages its segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment before a write that would take the active one
    /// past this size (a single larger write still goes in whole). Default 64 MiB.
    pub segment_bytes: u64,
    /// Roll to a new segment before a write once the active one has been
    /// open this long in this process. Default 24 hours.
    pub segment_age: Duration,
    /// Delete the oldest closed segments while the log is larger than this.
    /// `None` (the default) keeps everything.
    pub retention_bytes: Option<u64>,
    /// Delete closed segments whose newest record is older than this.
    /// `None` (the default) keeps everything.
    pub retention_age: Option<Duration>,
    /// Bytes between entries of the in-memory sparse index. Default 4 KiB.
    pub index_interval_bytes: u32,
    /// At most this many bytes of zeros are written ahead of the records
    /// whenever an append grows the active segment, so later syncs flush
    /// data only: as many as the segment already holds, at least 64 KiB,
    /// never past `segment_bytes` (a quiet partition keeps little padding,
    /// a busy one this much). 0 turns it off. Default 1 MiB.
    pub preallocate_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
            segment_age: Duration::from_secs(24 * 60 * 60),
            retention_bytes: None,
            retention_age: None,
            index_interval_bytes: 4096,
            preallocate_bytes: 1024 * 1024,
        }
    }
}

impl LogConfig {
    /// Checks the bounds the log relies on.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes == 0 || self.segment_bytes > MAX_SEGMENT_BYTES {
            return Err(Error::InvalidConfig("segment_bytes must be in 1..=1 GiB"));
        }
        if self.preallocate_bytes > MAX_SEGMENT_BYTES {
            return Err(Error::InvalidConfig(
                "preallocate_bytes must be at most 1 GiB",
            ));
        }
        if self.index_interval_bytes == 0 {
            return Err(Error::InvalidConfig(
                "index_interval_bytes must be at least 1",
            ));
        }
        Ok(())
    }
}
