//! A full disk: the append (and the broker's publish) fails as
//! `StorageFull` (the publish API's 507), nothing of it is acknowledged or
//! left behind, and the log appends again once retention frees space.
//!
//! Needs a small file system: as root the test mounts a 1 MiB tmpfs (and
//! unmounts it after); otherwise it prints `SKIPPED` and passes. The error
//! classification itself is always tested (`error.rs`, a simulated `ENOSPC`).

use sinew_events::{Broker, BrokerConfig, ErrorKind, Event, LogConfig, NewRecord, PartitionLog};
use sinew_testkit::Tmpfs;

#[test]
fn a_full_disk_is_storage_full_and_recoverable() {
    let fs = match Tmpfs::mount("1m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: a full-disk test needs a tmpfs mount (root): {why}");
            return;
        }
    };
    let config = LogConfig {
        segment_bytes: 128 * 1024,
        retention_bytes: Some(256 * 1024),
        ..LogConfig::default()
    };
    let log_dir = fs.path().join("p0");
    let mut log = PartitionLog::open(&log_dir, config.clone()).expect("open");
    let record = |i: u64| NewRecord::new(i, vec![(i % 251) as u8; 10_000]);
    let mut appended = 0u64;
    let error = loop {
        match log.append(&[record(appended)]) {
            Ok(offsets) => {
                assert_eq!(offsets.start, appended);
                appended += 1;
                assert!(appended < 200, "1 MiB tmpfs never filled");
            }
            Err(error) => break error,
        }
    };
    assert_eq!(error.kind(), ErrorKind::StorageFull, "{error}");
    assert!(error.is_storage_full());
    // The failed append was undone, not poisoned: same next offset, a usable log.
    assert!(!log.is_poisoned());
    assert_eq!(log.next_offset(), appended);
    assert!(log.append(&[record(appended)]).is_err(), "still full");
    // Retention frees closed segments; appends continue at the same offset.
    let freed = log
        .enforce_retention(std::time::SystemTime::now())
        .expect("retention");
    assert!(freed.segments > 0);
    let offsets = log
        .append(&[record(appended)])
        .expect("append after freeing space");
    assert_eq!(offsets, appended..appended + 1);
    let first = log.first_offset();
    drop(log);
    // Nothing torn was left behind by the failed writes.
    let log = PartitionLog::open(&log_dir, config).expect("reopen");
    assert_eq!(
        (log.first_offset(), log.next_offset()),
        (first, appended + 1)
    );
    let records = log.read(first, usize::MAX).expect("read");
    assert_eq!(records.len() as u64, appended + 1 - first);
    for (got, i) in records.iter().zip(first..) {
        assert_eq!(got.value, record(i).value, "record {i}");
    }
    drop(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_a_full_disk_is_storage_full() {
    let fs = match Tmpfs::mount("1m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: a full-disk test needs a tmpfs mount (root): {why}");
            return;
        }
    };
    let config = BrokerConfig {
        partitions: 1,
        log: LogConfig {
            segment_bytes: 128 * 1024,
            retention_bytes: Some(256 * 1024),
            ..LogConfig::default()
        },
        ..BrokerConfig::default()
    };
    let broker = Broker::open(fs.path().join("broker"), config)
        .await
        .expect("open");
    let event = |i: u64| Event::new(format!("e-{i}"), vec![(i % 251) as u8; 10_000]);
    let mut published = 0u64;
    let error = loop {
        match broker.publish("orders", vec![event(published)]).await {
            Ok(answer) => {
                assert_eq!(answer[0].offset, published);
                published += 1;
                assert!(published < 200, "1 MiB tmpfs never filled");
            }
            Err(error) => break error,
        }
    };
    assert_eq!(error.kind(), ErrorKind::StorageFull, "{error}");
    // The failed id was not taken by the window: once retention frees
    // space, publishing it again writes it, at the next offset.
    assert!(
        broker
            .enforce_retention()
            .await
            .expect("retention")
            .segments
            > 0
    );
    let again = broker
        .publish("orders", vec![event(published)])
        .await
        .expect("publish after freeing space");
    assert_eq!((again[0].offset, again[0].duplicate), (published, false));
    let earlier = broker
        .publish("orders", vec![event(published - 1)])
        .await
        .expect("republish");
    assert!(earlier[0].duplicate);
    broker.close().await.expect("close");
}
