//! Group commit: many concurrent appends share writes and syncs, every one
//! is answered with its own dense range of offsets.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use common::{assert_sample, sample, small_segments, TempDir};
use sinew_events::{
    Committer, CommitterConfig, Error, ErrorKind, LogConfig, NewRecord, PartitionLog,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_appends_share_fewer_syncs() {
    let dir = TempDir::new("group");
    let log = PartitionLog::open(dir.path(), LogConfig::default()).expect("open");
    // A queue shorter than the callers: some wait to enqueue (backpressure).
    let config = CommitterConfig {
        queue_depth: 64,
        ..CommitterConfig::default()
    };
    let committer = Arc::new(Committer::spawn(log, config));
    let mut tasks = Vec::new();
    for caller in 0..1000u64 {
        let committer = Arc::clone(&committer);
        tasks.push(tokio::spawn(async move {
            let offsets = committer
                .append(vec![sample(caller)])
                .await
                .expect("append");
            (caller, offsets)
        }));
    }
    let mut by_offset = Vec::new();
    for task in tasks {
        let (caller, offsets) = task.await.expect("task");
        assert_eq!(offsets.end - offsets.start, 1);
        by_offset.push((offsets.start, caller));
    }
    by_offset.sort_unstable();
    let offsets: Vec<u64> = by_offset.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(
        offsets,
        (0..1000).collect::<Vec<_>>(),
        "offsets unique and dense"
    );
    let stats = committer.stats();
    assert_eq!((stats.appends, stats.records), (1000, 1000));
    assert!(
        stats.syncs < 1000,
        "{} syncs for 1000 appends: no group formed",
        stats.syncs
    );
    // Each caller's record is at the offset it was told.
    let records = committer.read(0, usize::MAX).await.expect("read");
    for (offset, caller) in by_offset {
        let record = &records[offset as usize];
        let expected = sample(caller);
        assert_eq!((record.offset, &record.value), (offset, &expected.value));
    }
    let committer = Arc::into_inner(committer).expect("last handle");
    let log = committer.close().await.expect("close");
    assert_eq!(log.sync_count(), stats.syncs);
    assert_eq!(log.next_offset(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_append_in_a_group_fails_alone() {
    let dir = TempDir::new("group-bad");
    let log = PartitionLog::open(dir.path(), small_segments()).expect("open");
    let committer = Arc::new(Committer::spawn(log, CommitterConfig::default()));
    let mut tasks = Vec::new();
    for caller in 0..200u64 {
        let committer = Arc::clone(&committer);
        tasks.push(tokio::spawn(async move {
            let mut batch = vec![sample(caller), sample(caller)];
            if caller % 10 == 0 {
                // A header name past u16::MAX bytes cannot be encoded.
                batch.push(NewRecord::default().with_header("n".repeat(70_000), ""));
            }
            (caller, committer.append(batch).await)
        }));
    }
    let mut taken = BTreeSet::new();
    for task in tasks {
        let (caller, result) = task.await.expect("task");
        if caller % 10 == 0 {
            let error = result.expect_err("too large");
            assert_eq!(error.kind(), ErrorKind::InvalidInput);
        } else {
            let offsets = result.expect("append");
            assert_eq!(offsets.end - offsets.start, 2);
            assert!(taken.insert(offsets.start) && taken.insert(offsets.start + 1));
        }
    }
    // 180 good appends of two records: offsets 0..360, no hole left by the bad ones.
    assert_eq!(taken, (0..360).collect());
    assert_eq!(committer.offsets().await.expect("offsets"), 0..360);
}

#[tokio::test]
async fn queries_go_through_the_committer_in_order() {
    let dir = TempDir::new("committer-queries");
    let log = PartitionLog::open(dir.path(), small_segments()).expect("open");
    let committer = Committer::spawn(
        log,
        CommitterConfig {
            queue_depth: 1,
            ..CommitterConfig::default()
        },
    );
    for i in 0..50 {
        assert_eq!(
            committer.append(vec![sample(i)]).await.expect("append"),
            i..i + 1
        );
    }
    let records = committer.read(20, usize::MAX).await.expect("read");
    assert_eq!(records.len(), 30);
    for (record, i) in records.iter().zip(20..) {
        assert_sample(record, i);
    }
    assert_eq!(
        committer
            .offset_for_time(sample(7).timestamp_ms)
            .await
            .expect("time"),
        Some(7)
    );
    assert_eq!(
        committer.offset_for_time(u64::MAX).await.expect("time"),
        None
    );
    let error = committer.read(51, 1).await.expect_err("past the end");
    assert!(
        matches!(error, Error::OffsetOutOfRange { next: 50, .. }),
        "{error}"
    );
    let retained = committer
        .enforce_retention(SystemTime::now())
        .await
        .expect("retention");
    assert_eq!(retained.segments, 0, "no retention configured");
    let log = committer.close().await.expect("close");
    assert_eq!(log.next_offset(), 50);
}
