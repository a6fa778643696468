//! Crash recovery at open: torn and damaged tails of the last segment are
//! truncated; damage in an earlier segment refuses to open.

mod common;

use std::path::Path;

use common::{append_samples, assert_sample, read_all, segment_files, small_segments, TempDir};
use sinew_events::{Error, ErrorKind, LogConfig, PartitionLog};

/// A log of `count` records over several small segments whose last segment
/// ends with one more record, appended alone. Returns the last segment's
/// bytes and where its last record starts.
fn log_with_last_record(dir: &Path, count: u64) -> (Vec<u8>, usize) {
    {
        let mut log = PartitionLog::open(dir, small_segments()).expect("open");
        append_samples(&mut log, 0..count - 1, 3);
        assert!(log.segment_count() > 2);
    }
    // Reopened with large segments, so the last record joins the last segment.
    let last = segment_files(dir).pop().expect("a segment");
    let before = std::fs::metadata(&last).expect("stat").len() as usize;
    let mut log = PartitionLog::open(dir, LogConfig::default()).expect("reopen");
    append_samples(&mut log, count - 1..count, 1);
    drop(log);
    assert_eq!(segment_files(dir).pop().as_ref(), Some(&last));
    (std::fs::read(&last).expect("read"), before)
}

/// Opens the log and checks it holds exactly records `0..count`, with the
/// last segment file cut back to `file_len` bytes, then that the next append
/// (`sample(count)`, into the same last segment) gets offset `count` and
/// survives another reopen.
fn assert_recovers_to(dir: &Path, count: u64, file_len: usize) {
    let mut log = PartitionLog::open(dir, LogConfig::default()).expect("open");
    let last = segment_files(dir).pop().expect("a segment");
    assert_eq!(
        std::fs::metadata(&last).expect("stat").len(),
        file_len as u64
    );
    assert_eq!(log.next_offset(), count);
    let records = read_all(&log);
    assert_eq!(records.len() as u64, count);
    for (record, i) in records.iter().zip(0..) {
        assert_sample(record, i);
    }
    append_samples(&mut log, count..count + 1, 1);
    drop(log);
    let log = PartitionLog::open(dir, LogConfig::default()).expect("reopen");
    assert_eq!(log.next_offset(), count + 1);
    assert_sample(&log.read(count, usize::MAX).expect("read")[0], count);
}

#[test]
fn a_tail_torn_at_any_byte_is_truncated_to_the_previous_record() {
    let dir = TempDir::new("torn");
    let count = 40;
    let (pristine, last_start) = log_with_last_record(dir.path(), count);
    let last = segment_files(dir.path()).pop().expect("a segment");
    // Every length the file can have mid-way through its last record.
    for cut in last_start..pristine.len() {
        std::fs::write(&last, &pristine[..cut]).expect("write torn file");
        assert_recovers_to(dir.path(), count - 1, last_start);
        // Recovery cut exactly the torn bytes: the record appended again
        // (same content, same offset) rebuilt the file byte for byte.
        assert_eq!(
            std::fs::read(&last).expect("read"),
            pristine,
            "cut at {cut}"
        );
    }
}

#[test]
fn a_flipped_byte_anywhere_in_the_last_record_truncates_it() {
    let dir = TempDir::new("flip");
    let count = 40;
    let (pristine, last_start) = log_with_last_record(dir.path(), count);
    let last = segment_files(dir.path()).pop().expect("a segment");
    for at in last_start..pristine.len() {
        let mut damaged = pristine.clone();
        damaged[at] ^= 0x01;
        std::fs::write(&last, &damaged).expect("write damaged file");
        assert_recovers_to(dir.path(), count - 1, last_start);
        assert_eq!(
            std::fs::read(&last).expect("read"),
            pristine,
            "flip at {at}"
        );
    }
}

#[test]
fn garbage_after_the_last_record_is_truncated() {
    let dir = TempDir::new("garbage");
    let count = 40;
    let (pristine, _) = log_with_last_record(dir.path(), count);
    let last = segment_files(dir.path()).pop().expect("a segment");
    // Zeros (a file extended by the file system before its data landed), an
    // absurd length, and random-looking bytes.
    let tails: [&[u8]; 3] = [
        &[0; 4096],
        &[0xff, 0xff, 0xff, 0x7f, 1, 2, 3],
        b"not a frame at all",
    ];
    for tail in tails {
        let mut file = pristine.clone();
        file.extend_from_slice(tail);
        std::fs::write(&last, &file).expect("write");
        assert_recovers_to(dir.path(), count, pristine.len());
    }
}

/// Corruption in the middle of the last segment cannot be told apart from a
/// torn tail by the scan: a frame boundary after a bad frame is not
/// trustworthy. The log truncates from the first bad frame, dropping the
/// records after it, and says how many bytes it cut (tracing warn).
#[test]
fn damage_in_the_middle_of_the_last_segment_truncates_from_there() {
    let dir = TempDir::new("middle");
    {
        let mut log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open");
        append_samples(&mut log, 0..20, 1);
    }
    let path = segment_files(dir.path()).pop().expect("a segment");
    let mut bytes = std::fs::read(&path).expect("read");
    // Find record 10's frame by walking the length fields.
    let mut pos = 0;
    for _ in 0..10 {
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        pos += len + 4;
    }
    bytes[pos + 20] ^= 0xff; // inside its timestamp: the CRC no longer matches
    std::fs::write(&path, &bytes).expect("write");
    let log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open");
    assert_eq!(log.next_offset(), 10);
    assert_eq!(std::fs::metadata(&path).expect("stat").len(), pos as u64);
    drop(log);
    assert_recovers_to(dir.path(), 10, pos);
}

#[test]
fn damage_in_an_earlier_segment_refuses_to_open_and_changes_nothing() {
    let dir = TempDir::new("earlier");
    {
        let mut log = PartitionLog::open(dir.path(), small_segments()).expect("open");
        append_samples(&mut log, 0..60, 2);
    }
    let files = segment_files(dir.path());
    assert!(files.len() > 2);
    let mut bytes = std::fs::read(&files[0]).expect("read");
    let at = bytes.len() - 3;
    bytes[at] ^= 0x10;
    std::fs::write(&files[0], &bytes).expect("write");
    let error = PartitionLog::open(dir.path(), small_segments()).expect_err("corrupt");
    assert_eq!(error.kind(), ErrorKind::Corrupt);
    match error {
        Error::Corrupt { path, position, .. } => {
            assert_eq!(path, files[0]);
            assert!(position < at as u64);
        }
        other => panic!("unexpected error {other}"),
    }
    // Nothing was truncated: an operator decides what to do with the file.
    assert_eq!(std::fs::read(&files[0]).expect("read"), bytes);
    let torn_len = bytes.len() as u64 - 5;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&files[0])
        .and_then(|f| f.set_len(torn_len))
        .expect("truncate");
    let error = PartitionLog::open(dir.path(), small_segments()).expect_err("torn earlier");
    assert!(matches!(error, Error::Corrupt { .. }), "{error}");
}

/// The segment files of `dir` copied into `to` as they are on disk now: the
/// state a crash at this moment would leave (every append returned, so
/// every byte of them was synced).
fn crash_copy(dir: &Path, to: &Path) {
    for path in segment_files(dir) {
        std::fs::copy(&path, to.join(path.file_name().expect("a file name"))).expect("copy");
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").len()
}

#[test]
fn appends_overwrite_preallocated_zeros_and_a_crash_leaves_only_padding_to_trim() {
    let dir = TempDir::new("prealloc");
    let config = LogConfig {
        preallocate_bytes: 64 * 1024,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config.clone()).expect("open");
    append_samples(&mut log, 0..1, 1);
    let path = segment_files(dir.path()).pop().expect("a segment");
    let first = file_len(&path);
    assert!(
        first > 64 * 1024,
        "the first append preallocates: {first} bytes"
    );
    // Later appends land in the zeros: the file does not grow, so their
    // syncs have no size change to commit.
    append_samples(&mut log, 1..200, 7);
    assert_eq!(file_len(&path), first);
    let records_len = log.size_bytes();
    assert!(records_len < first);

    // A crash now: the copy has the records and then zeros; opening it trims
    // the zeros (no record lost, none invented) and appends go on.
    let crashed = TempDir::new("prealloc-crashed");
    crash_copy(dir.path(), crashed.path());
    let copy = PartitionLog::open(crashed.path(), config.clone()).expect("open the crash copy");
    let copied = segment_files(crashed.path()).pop().expect("a segment");
    assert_eq!(file_len(&copied), records_len);
    assert_eq!(copy.next_offset(), 200);
    for (record, i) in read_all(&copy).iter().zip(0..) {
        assert_sample(record, i);
    }
    drop(copy);
    assert_recovers_to(crashed.path(), 200, records_len as usize);

    // A clean close trims too.
    drop(log);
    assert_eq!(file_len(&path), records_len);
}

#[test]
fn a_torn_write_into_preallocated_zeros_is_truncated_to_the_previous_record() {
    let dir = TempDir::new("prealloc-torn");
    let count = 40;
    let (pristine, last_start) = log_with_last_record(dir.path(), count);
    let last = segment_files(dir.path()).pop().expect("a segment");
    // The last record partly on disk, the rest of the file still the zeros
    // written ahead of it.
    for cut in [
        last_start,
        last_start + 1,
        last_start + 9,
        pristine.len() - 1,
    ] {
        let mut file = pristine[..cut].to_vec();
        file.resize(pristine.len() + 64 * 1024, 0);
        std::fs::write(&last, &file).expect("write torn file");
        assert_recovers_to(dir.path(), count - 1, last_start);
    }
}

#[test]
fn a_closed_segment_left_with_padding_opens() {
    let dir = TempDir::new("prealloc-closed");
    {
        let mut log = PartitionLog::open(dir.path(), small_segments()).expect("open");
        append_samples(&mut log, 0..60, 2);
    }
    // A crash after a roll, before the old segment's trim reached the disk.
    let files = segment_files(dir.path());
    let first = &files[0];
    let len = file_len(first);
    let mut bytes = std::fs::read(first).expect("read");
    bytes.resize(bytes.len() + 4096, 0);
    std::fs::write(first, &bytes).expect("pad");
    let log = PartitionLog::open(dir.path(), small_segments()).expect("open with padding");
    assert_eq!(file_len(first), len);
    assert_eq!(log.next_offset(), 60);
    for (record, i) in read_all(&log).iter().zip(0..) {
        assert_sample(record, i);
    }
}

#[test]
fn preallocation_can_be_turned_off() {
    let dir = TempDir::new("prealloc-off");
    let config = LogConfig {
        preallocate_bytes: 0,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config).expect("open");
    append_samples(&mut log, 0..50, 3);
    let path = segment_files(dir.path()).pop().expect("a segment");
    assert_eq!(file_len(&path), log.size_bytes());
}

#[test]
fn after_a_torn_tail_is_cut_appends_preallocate_again() {
    let dir = TempDir::new("prealloc-after-torn");
    let count = 40;
    let (pristine, last_start) = log_with_last_record(dir.path(), count);
    let last = segment_files(dir.path()).pop().expect("a segment");
    let mut torn = pristine[..pristine.len() - 3].to_vec();
    torn.extend_from_slice(&[0xab; 5000]);
    std::fs::write(&last, &torn).expect("write torn file");
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open");
    assert_eq!(file_len(&last), last_start as u64);
    append_samples(&mut log, count - 1..count + 5, 2);
    assert!(
        file_len(&last) > log.size_bytes() + 32 * 1024,
        "zeros written ahead again: {} bytes for {} of records",
        file_len(&last),
        log.size_bytes()
    );
}

#[test]
fn a_quiet_partition_keeps_little_padding_and_a_busy_one_up_to_the_configured_bytes() {
    let dir = TempDir::new("prealloc-adaptive");
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open");
    append_samples(&mut log, 0..20, 1);
    let path = segment_files(dir.path()).pop().expect("a segment");
    let padding = file_len(&path) - log.size_bytes();
    assert!(
        (1..=64 * 1024).contains(&padding),
        "a small log keeps at most 64 KiB of zeros: {padding}"
    );
    // 3 MiB more: the padding grows with the segment, up to 1 MiB.
    let mut most = 0;
    for i in 20..20 + 768u64 {
        log.append(&[sinew_events::NewRecord::new(i, vec![7u8; 4096])])
            .expect("append");
        most = most.max(file_len(&path) - log.size_bytes());
    }
    assert!(
        (1000 * 1024..=1024 * 1024).contains(&most),
        "a busy log keeps up to 1 MiB of zeros: at most {most}"
    );
}
