//! Helpers shared by the integration tests: temporary directories, a tmpfs,
//! sample records, segment files, reading a broker's partitions.
// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use sinew_events::{Broker, LogConfig, NewRecord, PartitionLog, Record};

/// A directory under `std::env::temp_dir()`, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name starts with `name`.
    pub(crate) fn new(name: &str) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("sinew-events-{name}-{}-{n}", std::process::id()));
        // A leftover of an earlier run with the same pid is stale.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The sample record number `i`: timestamp, key, a header and a value all
/// derived from `i`, so a read can be checked against its offset.
pub(crate) fn sample(i: u64) -> NewRecord {
    NewRecord::new(
        1_000_000 + i,
        format!("value-{i}-{}", "x".repeat((i % 13) as usize)),
    )
    .with_key(format!("key-{i}"))
    .with_header("seq", i.to_string())
}

/// Asserts `record` is [`sample`]`(i)` stored at offset `i`.
pub(crate) fn assert_sample(record: &Record, i: u64) {
    let expected = sample(i);
    assert_eq!(record.offset, i, "offset");
    assert_eq!(
        record.timestamp_ms, expected.timestamp_ms,
        "timestamp of {i}"
    );
    assert_eq!(record.key, expected.key, "key of {i}");
    assert_eq!(record.headers, expected.headers, "headers of {i}");
    assert_eq!(record.value, expected.value, "value of {i}");
}

/// Small segments (512 bytes) and a dense index, so a few hundred records
/// span many segments and many index entries.
pub(crate) fn small_segments() -> LogConfig {
    LogConfig {
        segment_bytes: 512,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

/// Appends `sample(i)` for `range`, one batch of up to `batch` records at a
/// time, checking the offsets each batch gets.
pub(crate) fn append_samples(log: &mut PartitionLog, range: std::ops::Range<u64>, batch: u64) {
    let mut i = range.start;
    while i < range.end {
        let end = (i + batch).min(range.end);
        let records: Vec<_> = (i..end).map(sample).collect();
        let offsets = log.append(&records).expect("append");
        assert_eq!(offsets, i..end);
        i = end;
    }
}

/// Every record of the log, read from its first offset.
pub(crate) fn read_all(log: &PartitionLog) -> Vec<Record> {
    log.read(log.first_offset(), usize::MAX).expect("read all")
}

/// The segment files in `dir`, in offset order.
pub(crate) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
        .collect();
    files.sort();
    files
}

/// A value as bytes.
pub(crate) fn bytes(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Every record of `topic`/`partition`, from its first retained offset.
pub(crate) async fn read_partition(broker: &Broker, topic: &str, partition: u32) -> Vec<Record> {
    let offsets = broker.offsets(topic, partition).await.expect("offsets");
    broker
        .fetch(
            topic,
            partition,
            offsets.start,
            usize::MAX,
            std::time::Duration::ZERO,
        )
        .await
        .expect("fetch")
}
