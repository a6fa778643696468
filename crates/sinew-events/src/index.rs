//! The sparse in-memory index of one segment: offset → position, time → position.
//!
//! One entry every `interval` bytes (and one for the first record), each
//! 16 bytes: a 64 MiB segment at 4 KiB costs at most 256 KiB. An entry also
//! holds the largest timestamp of the records before it, which never
//! decreases along the index, so "where can the first record at or after
//! time T be?" is a binary search even when timestamps are not monotonic.
//! The index is rebuilt by the scan at open; it is never written to disk.

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Offset of the record, relative to the segment's base.
    rel_offset: u32,
    /// Byte position of the record's frame in the segment file.
    position: u32,
    /// The largest timestamp among the records before this one (0 if none).
    max_ts_before: u64,
}

/// The sparse index of one segment.
#[derive(Debug)]
pub(crate) struct SparseIndex {
    /// Entries in offset (and position) order.
    entries: Vec<Entry>,
    /// Minimum bytes between entries.
    interval: u32,
    /// The largest timestamp of any record noted.
    max_timestamp: Option<u64>,
}

impl SparseIndex {
    /// An empty index taking an entry every `interval` bytes.
    pub(crate) fn new(interval: u32) -> Self {
        Self {
            entries: Vec::new(),
            interval,
            max_timestamp: None,
        }
    }

    /// Notes a record appended at `position`, in order.
    pub(crate) fn note(&mut self, rel_offset: u32, position: u32, timestamp_ms: u64) {
        let due = self
            .entries
            .last()
            .is_none_or(|last| position - last.position >= self.interval);
        if due {
            self.entries.push(Entry {
                rel_offset,
                position,
                max_ts_before: self.max_timestamp.unwrap_or(0),
            });
        }
        self.max_timestamp = Some(
            self.max_timestamp
                .map_or(timestamp_ms, |max| max.max(timestamp_ms)),
        );
    }

    /// The position of the last indexed record at or before `rel_offset`: a
    /// scan from there reaches it.
    pub(crate) fn position_for_offset(&self, rel_offset: u32) -> u32 {
        let after = self
            .entries
            .partition_point(|entry| entry.rel_offset <= rel_offset);
        after
            .checked_sub(1)
            .map_or(0, |at| self.entries[at].position)
    }

    /// A position no later than the first record with a timestamp at or
    /// after `timestamp_ms`: every record before it is older.
    pub(crate) fn position_for_time(&self, timestamp_ms: u64) -> u32 {
        let older = self
            .entries
            .partition_point(|entry| entry.max_ts_before < timestamp_ms);
        older
            .checked_sub(1)
            .map_or(0, |at| self.entries[at].position)
    }

    /// The largest timestamp in the segment, `None` when it is empty.
    pub(crate) fn max_timestamp(&self) -> Option<u64> {
        self.max_timestamp
    }

    /// How many entries the index holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten 1 KiB records at offsets 0..10 with the given timestamps.
    fn index_of(timestamps: &[u64]) -> SparseIndex {
        let mut index = SparseIndex::new(4096);
        for (i, ts) in timestamps.iter().enumerate() {
            index.note(i as u32, i as u32 * 1024, *ts);
        }
        index
    }

    #[test]
    fn entries_every_interval() {
        let index = index_of(&[0; 10]);
        // Records at 0, 4096 and 8192 bytes.
        assert_eq!(index.len(), 3);
        assert_eq!(index.position_for_offset(0), 0);
        assert_eq!(index.position_for_offset(3), 0);
        assert_eq!(index.position_for_offset(4), 4096);
        assert_eq!(index.position_for_offset(9), 8192);
    }

    #[test]
    fn time_lookup_never_skips_an_eligible_record() {
        let timestamps = [10, 30, 20, 40, 15, 50, 60, 5, 70, 80];
        let index = index_of(&timestamps);
        for target in 0..=90 {
            let start = index.position_for_time(target) / 1024;
            let first = timestamps.iter().position(|ts| *ts >= target);
            if let Some(first) = first {
                assert!(
                    start as usize <= first,
                    "target {target}: start {start} after {first}"
                );
            }
        }
        assert_eq!(index.max_timestamp(), Some(80));
        assert_eq!(SparseIndex::new(1).max_timestamp(), None);
    }
}
