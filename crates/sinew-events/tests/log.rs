//! `PartitionLog` on real files: appends, segments, reads, time lookups,
//! retention, and the errors a caller classifies.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{
    append_samples, assert_sample, read_all, sample, segment_files, small_segments, TempDir,
};
use sinew_events::record::MAX_RECORD_LEN;
use sinew_events::{Error, ErrorKind, LogConfig, NewRecord, PartitionLog};

#[test]
fn round_trip_across_segments_and_reopen() {
    let dir = TempDir::new("round-trip");
    let total = 300;
    {
        let mut log = PartitionLog::open(dir.path(), small_segments()).expect("open");
        assert_eq!((log.first_offset(), log.next_offset()), (0, 0));
        // Batches of 1 to 7 records.
        let mut i = 0;
        let mut size = 1;
        while i < total {
            let end = (i + size).min(total);
            let batch: Vec<_> = (i..end).map(sample).collect();
            assert_eq!(log.append(&batch).expect("append"), i..end);
            i = end;
            size = size % 7 + 1;
        }
        assert_eq!(log.next_offset(), total);
        assert!(log.segment_count() > 10, "{} segments", log.segment_count());
        assert_eq!(segment_files(dir.path()).len(), log.segment_count());
    }
    let mut log = PartitionLog::open(dir.path(), small_segments()).expect("reopen");
    assert_eq!((log.first_offset(), log.next_offset()), (0, total));
    // Every starting offset reads exactly the records from there to the end,
    // crossing every segment boundary after it.
    for from in 0..=total {
        let records = log.read(from, usize::MAX).expect("read");
        assert_eq!(records.len() as u64, total - from, "from {from}");
        for (record, i) in records.iter().zip(from..) {
            assert_sample(record, i);
        }
    }
    // Appends continue after the last recovered offset.
    append_samples(&mut log, total..total + 20, 3);
    let records = read_all(&log);
    assert_eq!(records.len() as u64, total + 20);
    for (record, i) in records.iter().zip(0..) {
        assert_sample(record, i);
    }
}

#[test]
fn reads_stop_at_max_bytes_but_return_at_least_one_record() {
    let dir = TempDir::new("max-bytes");
    let mut log = PartitionLog::open(dir.path(), small_segments()).expect("open");
    append_samples(&mut log, 0..50, 5);
    let one = log.read(10, 1).expect("read");
    assert_eq!(one.len(), 1);
    assert_sample(&one[0], 10);
    // A budget of about five records' frames, across segment boundaries.
    for from in 0..45 {
        let records = log.read(from, 5 * 70).expect("read");
        assert!(
            !records.is_empty() && records.len() <= 6,
            "from {from}: {}",
            records.len()
        );
        for (record, i) in records.iter().zip(from..) {
            assert_sample(record, i);
        }
    }
}

#[test]
fn reads_outside_the_log_are_out_of_range() {
    let dir = TempDir::new("out-of-range");
    let mut log = PartitionLog::open(dir.path(), small_segments()).expect("open");
    append_samples(&mut log, 0..5, 5);
    assert_eq!(log.read(5, 1024).expect("read at next").len(), 0);
    let error = log.read(6, 1024).expect_err("past next");
    assert_eq!(error.kind(), ErrorKind::OutOfRange);
    assert!(matches!(
        error,
        Error::OffsetOutOfRange {
            requested: 6,
            first: 0,
            next: 5
        }
    ));
}

#[test]
fn offset_for_time_finds_the_first_record_at_or_after() {
    let dir = TempDir::new("time");
    // Timestamps that mostly rise but jump back now and then, across segments.
    let timestamps: Vec<u64> = (0..200u64)
        .map(|i| 10_000 + i * 10 - if i % 7 == 3 { 55 } else { 0 })
        .collect();
    {
        let mut log = PartitionLog::open(dir.path(), small_segments()).expect("open");
        for (i, ts) in timestamps.iter().enumerate() {
            let offsets = log
                .append(&[NewRecord::new(*ts, format!("r{i}"))])
                .expect("append");
            assert_eq!(offsets.start, i as u64);
        }
        check_time_lookups(&log, &timestamps);
    }
    // The time index is rebuilt by the scan at open.
    let log = PartitionLog::open(dir.path(), small_segments()).expect("reopen");
    check_time_lookups(&log, &timestamps);
}

/// Compares `offset_for_time` with a linear search for many targets.
fn check_time_lookups(log: &PartitionLog, timestamps: &[u64]) {
    let max = timestamps.iter().max().copied().unwrap_or(0);
    for target in (0..=max + 20).step_by(3) {
        let expected = timestamps
            .iter()
            .position(|ts| *ts >= target)
            .map(|i| i as u64);
        assert_eq!(
            log.offset_for_time(target).expect("lookup"),
            expected,
            "target {target}"
        );
    }
}

#[test]
fn segments_roll_by_size_and_by_age() {
    let dir = TempDir::new("roll");
    {
        let mut log = PartitionLog::open(dir.path(), small_segments()).expect("open");
        append_samples(&mut log, 0..40, 1);
        // 512-byte segments hold a handful of ~70-byte records each; none
        // grows past the threshold (each write fits or starts a new segment).
        for path in segment_files(dir.path()) {
            let len = std::fs::metadata(&path).expect("stat").len();
            assert!(len <= 512, "{} is {len} bytes", path.display());
        }
    }
    let aged = TempDir::new("roll-age");
    let config = LogConfig {
        segment_age: Duration::ZERO,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(aged.path(), config).expect("open");
    append_samples(&mut log, 0..5, 1);
    // Every append after the first finds the active segment too old.
    assert_eq!(log.segment_count(), 5);
    let young = TempDir::new("roll-young");
    let mut log = PartitionLog::open(young.path(), LogConfig::default()).expect("open");
    append_samples(&mut log, 0..5, 1);
    assert_eq!(log.segment_count(), 1);
}

#[test]
fn retention_by_size_deletes_oldest_closed_segments() {
    let dir = TempDir::new("retention-size");
    let config = LogConfig {
        retention_bytes: Some(2048),
        ..small_segments()
    };
    let mut log = PartitionLog::open(dir.path(), config).expect("open");
    append_samples(&mut log, 0..200, 2);
    let before = (log.size_bytes(), log.segment_count());
    let done = log.enforce_retention(SystemTime::now()).expect("retention");
    assert!(done.segments > 0);
    assert_eq!(log.size_bytes(), before.0 - done.bytes);
    assert_eq!(log.segment_count(), before.1 - done.segments);
    assert!(log.size_bytes() <= 2048, "{} bytes left", log.size_bytes());
    // The oldest kept segment would have brought it back over the limit.
    assert!(log.size_bytes() + 512 > 2048);
    let first = log.first_offset();
    assert!(first > 0);
    assert_eq!(segment_files(dir.path()).len(), log.segment_count());
    let error = log.read(first - 1, 1024).expect_err("deleted offset");
    assert_eq!(error.kind(), ErrorKind::OutOfRange);
    let records = read_all(&log);
    assert_eq!(records.len() as u64, 200 - first);
    for (record, i) in records.iter().zip(first..) {
        assert_sample(record, i);
    }
    // A second pass has nothing to do, and a reopen agrees.
    assert_eq!(
        log.enforce_retention(SystemTime::now())
            .expect("again")
            .segments,
        0
    );
    drop(log);
    let log = PartitionLog::open(dir.path(), small_segments()).expect("reopen");
    assert_eq!((log.first_offset(), log.next_offset()), (first, 200));
}

#[test]
fn retention_never_deletes_the_active_segment() {
    let dir = TempDir::new("retention-active");
    let config = LogConfig {
        retention_bytes: Some(0),
        retention_age: Some(Duration::ZERO),
        ..small_segments()
    };
    let mut log = PartitionLog::open(dir.path(), config).expect("open");
    append_samples(&mut log, 0..100, 4);
    let far_future = SystemTime::now() + Duration::from_secs(365 * 24 * 3600);
    log.enforce_retention(far_future).expect("retention");
    assert_eq!(log.segment_count(), 1);
    let records = read_all(&log);
    assert!(!records.is_empty());
    assert_eq!(records.last().map(|r| r.offset), Some(99));
    append_samples(&mut log, 100..101, 1);
}

#[test]
fn retention_by_age_deletes_segments_whose_newest_record_is_old() {
    let dir = TempDir::new("retention-age");
    let hour = 3_600_000;
    let config = LogConfig {
        retention_age: Some(Duration::from_secs(24 * 3600)),
        ..small_segments()
    };
    let mut log = PartitionLog::open(dir.path(), config).expect("open");
    // Records 0..60 are 48 h old, 60..120 are 1 h old, relative to `now`.
    let now_ms = 1_800_000_000_000u64;
    for i in 0..120u64 {
        let age = if i < 60 { 48 * hour } else { hour };
        log.append(&[NewRecord::new(now_ms - age, format!("r{i}"))])
            .expect("append");
    }
    let now = UNIX_EPOCH + Duration::from_millis(now_ms);
    let done = log.enforce_retention(now).expect("retention");
    assert!(done.segments > 0);
    // Every segment wholly older than a day is gone; the one holding record
    // 59 (and maybe some young records) stays only if it also holds young ones.
    let first = log.first_offset();
    assert!(first <= 60, "first offset {first} deleted young records");
    let records = read_all(&log);
    let old_left = records
        .iter()
        .filter(|r| r.timestamp_ms == now_ms - 48 * hour)
        .count();
    assert!(
        old_left < 10,
        "{old_left} old records left: only a segment shared with young records keeps them"
    );
    // Nothing is old at an earlier `now`.
    let earlier = UNIX_EPOCH + Duration::from_millis(now_ms - 47 * hour);
    assert_eq!(
        log.enforce_retention(earlier).expect("retention").segments,
        0
    );
}

#[test]
fn an_invalid_record_fails_the_whole_append_and_writes_nothing() {
    let dir = TempDir::new("invalid");
    let mut log = PartitionLog::open(dir.path(), small_segments()).expect("open");
    append_samples(&mut log, 0..3, 3);
    let size = log.size_bytes();
    let batch = vec![sample(3), NewRecord::new(0, vec![0u8; MAX_RECORD_LEN])];
    let error = log.append(&batch).expect_err("too large");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    assert!(
        matches!(error, Error::InvalidRecord { index: 1, .. }),
        "{error}"
    );
    assert_eq!((log.next_offset(), log.size_bytes()), (3, size));
    assert_eq!(log.append(&[]).expect("empty append"), 3..3);
    append_samples(&mut log, 3..6, 3);
    assert_eq!(read_all(&log).len(), 6);
}

#[test]
fn a_directory_is_opened_by_one_log_at_a_time() {
    let dir = TempDir::new("lock");
    let log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open");
    let error = PartitionLog::open(dir.path(), LogConfig::default()).expect_err("second open");
    assert!(matches!(error, Error::Locked { .. }), "{error}");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    drop(log);
    PartitionLog::open(dir.path(), LogConfig::default()).expect("open after close");
}

#[test]
fn a_missing_middle_segment_is_a_gap_not_silent_loss() {
    let dir = TempDir::new("gap");
    {
        let mut log = PartitionLog::open(dir.path(), small_segments()).expect("open");
        append_samples(&mut log, 0..60, 2);
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    std::fs::remove_file(&files[1]).expect("remove");
    let error = PartitionLog::open(dir.path(), small_segments()).expect_err("gap");
    assert!(matches!(error, Error::Gap { .. }), "{error}");
    assert_eq!(error.kind(), ErrorKind::Corrupt);
}

#[test]
fn invalid_configs_are_refused() {
    let dir = TempDir::new("config");
    for config in [
        LogConfig {
            segment_bytes: 0,
            ..LogConfig::default()
        },
        LogConfig {
            segment_bytes: 2 << 30,
            ..LogConfig::default()
        },
        LogConfig {
            index_interval_bytes: 0,
            ..LogConfig::default()
        },
    ] {
        let error = PartitionLog::open(dir.path(), config).expect_err("invalid");
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
    }
}
