//! The broker's publish and fetch: topics created on first use, key →
//! partition, every event once and in per-key order, ce-id de-duplication
//! (also across a reopen, and not past its window, and when the publisher
//! stops waiting), long-poll fetch, and offsets lost to retention.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{read_partition, TempDir};
use sinew_events::{
    event_id, split_event_headers, Broker, BrokerConfig, Error, ErrorKind, Event, Header,
    LogConfig, ID_HEADER,
};

/// Event `i`: id `e-i`, key `k-(i % 20)`, value `v-i`.
fn event(i: u64) -> Event {
    Event::new(format!("e-{i}"), format!("v-{i}"))
        .with_key(format!("k-{}", i % 20))
        .with_header("ce-type", "test")
}

/// A config with `partitions` partitions.
fn partitions(partitions: u32) -> BrokerConfig {
    BrokerConfig {
        partitions,
        ..BrokerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_fetched_once_in_per_key_order() {
    let dir = TempDir::new("broker-publish");
    let broker = Broker::open(dir.path(), BrokerConfig::default())
        .await
        .expect("open");
    assert!(broker.topics().is_empty());
    let mut acked = HashMap::new();
    for call in 0..8u64 {
        let events: Vec<Event> = (call * 50..call * 50 + 50).map(event).collect();
        let published = broker.publish("orders", events).await.expect("publish");
        assert_eq!(published.len(), 50);
        // One append per partition and call: a partition's events of one
        // call have consecutive offsets, in call order.
        let mut by_partition: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        for (i, p) in (call * 50..).zip(&published) {
            assert!(!p.duplicate);
            by_partition.entry(p.partition).or_default().push(p.offset);
            acked.insert(format!("e-{i}"), (p.partition, p.offset));
        }
        for offsets in by_partition.values() {
            assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
        }
    }
    assert_eq!(broker.topics(), [("orders".to_owned(), 8)]);
    assert_eq!(broker.partitions("orders").await.expect("partitions"), 8);
    let mut seen = HashMap::new();
    let mut key_partition: HashMap<String, u32> = HashMap::new();
    for partition in 0..8 {
        let mut last_of_key: HashMap<String, u64> = HashMap::new();
        for record in read_partition(&broker, "orders", partition).await {
            let id = event_id(&record)
                .expect("every record has its ce-id")
                .to_owned();
            assert_eq!(record.headers[0].name, ID_HEADER);
            assert_eq!(record.headers[1].name, "ce-type");
            let (split_id, rest) = split_event_headers(&record.headers);
            assert_eq!(split_id, id);
            assert_eq!(rest, [("ce-type".to_owned(), "test".to_owned())]);
            let i: u64 = id["e-".len()..].parse().expect("id number");
            assert_eq!(record.value, format!("v-{i}").as_bytes());
            let key = String::from_utf8(record.key.to_vec()).expect("key");
            assert_eq!(key, format!("k-{}", i % 20));
            // Same key, same partition; within it, publish order.
            assert_eq!(
                *key_partition.entry(key.clone()).or_insert(partition),
                partition
            );
            if let Some(last) = last_of_key.insert(key, i) {
                assert!(last < i, "key order: {last} before {i}");
            }
            assert_eq!(acked[&id], (partition, record.offset));
            assert!(seen.insert(id, record.offset).is_none(), "fetched twice");
        }
    }
    assert_eq!(seen.len(), 400);
    assert!(
        key_partition
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1
    );
    // Without a key, events spread by id.
    let spread: Vec<Event> = (0..64)
        .map(|i| Event::new(format!("nokey-{i}"), "x"))
        .collect();
    let published = broker.publish("orders", spread).await.expect("publish");
    let used: std::collections::HashSet<u32> = published.iter().map(|p| p.partition).collect();
    assert!(used.len() > 4, "{used:?}");
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republished_ids_are_duplicates_across_a_reopen() {
    let dir = TempDir::new("broker-dedup");
    let broker = Broker::open(dir.path(), BrokerConfig::default())
        .await
        .expect("open");
    let first = broker
        .publish("orders", (0..10).map(event).collect())
        .await
        .expect("publish");
    let ends = |broker: Arc<Broker>| async move {
        let mut ends = Vec::new();
        for p in 0..8 {
            ends.push(broker.offsets("orders", p).await.expect("offsets").end);
        }
        ends
    };
    let before = ends(Arc::clone(&broker)).await;
    // The same ten, an id repeated within the call, and one new id.
    let mut again: Vec<Event> = (0..10).map(event).collect();
    again.push(event(10));
    again.push(event(10));
    let second = broker.publish("orders", again).await.expect("republish");
    for (a, b) in first.iter().zip(&second) {
        assert!(b.duplicate);
        assert_eq!((a.partition, a.offset), (b.partition, b.offset));
    }
    assert!(!second[10].duplicate);
    assert!(second[11].duplicate);
    assert_eq!(
        (second[11].partition, second[11].offset),
        (second[10].partition, second[10].offset)
    );
    let after = ends(Arc::clone(&broker)).await;
    let written: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    assert_eq!(written, 1, "only the new id was written");
    broker.close().await.expect("close");
    drop(broker);

    // After a reopen the window is rebuilt from the logs.
    let broker = Broker::open(dir.path(), BrokerConfig::default())
        .await
        .expect("reopen");
    let third = broker
        .publish("orders", (0..11).map(event).collect())
        .await
        .expect("republish after reopen");
    for (a, b) in second.iter().zip(&third) {
        assert!(b.duplicate);
        assert_eq!((a.partition, a.offset), (b.partition, b.offset));
    }
    assert_eq!(
        ends(Arc::clone(&broker)).await,
        after,
        "nothing new written"
    );
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_not_duplicates_after_the_window() {
    let dir = TempDir::new("broker-window");
    let config = BrokerConfig {
        dedup_window: Duration::from_millis(500),
        ..BrokerConfig::default()
    };
    let broker = Broker::open(dir.path(), config.clone())
        .await
        .expect("open");
    let first = broker
        .publish("orders", vec![event(1)])
        .await
        .expect("publish");
    assert!(
        broker
            .publish("orders", vec![event(1)])
            .await
            .expect("again")[0]
            .duplicate
    );
    // The window is the time passing: nothing to await but the clock.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let later = broker
        .publish("orders", vec![event(1)])
        .await
        .expect("after the window");
    assert!(!later[0].duplicate);
    assert_eq!(later[0].partition, first[0].partition);
    assert_eq!(later[0].offset, first[0].offset + 1);
    broker.close().await.expect("close");
    drop(broker);
    // Rebuilt after the window has passed: not a duplicate either.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let broker = Broker::open(dir.path(), config).await.expect("reopen");
    let reopened = broker
        .publish("orders", vec![event(1)])
        .await
        .expect("after reopen");
    assert!(!reopened[0].duplicate);
    assert_eq!(reopened[0].offset, first[0].offset + 2);
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_of_one_id_write_it_once() {
    let dir = TempDir::new("broker-race");
    let broker = Broker::open(dir.path(), BrokerConfig::default())
        .await
        .expect("open");
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let broker = Arc::clone(&broker);
        tasks.push(tokio::spawn(async move {
            broker
                .publish("orders", vec![event(7)])
                .await
                .expect("publish")[0]
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    assert_eq!(answers.iter().filter(|p| !p.duplicate).count(), 1);
    let original = answers.iter().find(|p| !p.duplicate).expect("one writer");
    assert!(answers
        .iter()
        .all(|p| (p.partition, p.offset) == (original.partition, original.offset)));
    let records = read_partition(&broker, "orders", original.partition).await;
    assert_eq!(records.len(), 1);
    broker.close().await.expect("close");
}

/// A publisher that stops waiting once its events are queued does not
/// stop them: they are written, their ids settle as written (so the same
/// id published again is a duplicate, stored once), and a fetch waiting
/// on the partition wakes for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_whose_caller_gives_up_still_settles_its_ids() {
    let dir = TempDir::new("broker-give-up");
    let broker = Broker::open(dir.path(), partitions(1)).await.expect("open");
    // The topic exists, so the next publish queues its append on its
    // first poll.
    broker
        .publish("orders", vec![event(0)])
        .await
        .expect("publish");
    let waiter = tokio::spawn({
        let broker = Arc::clone(&broker);
        async move {
            broker
                .fetch("orders", 0, 1, 1 << 20, Duration::from_secs(10))
                .await
                .expect("fetch")
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut given_up = Box::pin(broker.publish("orders", vec![event(1)]));
    tokio::select! {
        biased;
        _ = &mut given_up => panic!("an fsync'ed publish cannot finish on its first poll"),
        () = std::future::ready(()) => {}
    }
    drop(given_up);
    let again = broker
        .publish("orders", vec![event(1)])
        .await
        .expect("publish again");
    assert!(
        again[0].duplicate,
        "the first write of e-1 settled: {again:?}"
    );
    assert_eq!(again[0].offset, 1);
    let woken = waiter.await.expect("fetch");
    assert_eq!(woken.len(), 1);
    assert_eq!(event_id(&woken[0]), Some("e-1"));
    assert_eq!(read_partition(&broker, "orders", 0).await.len(), 2);
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_on_publish_and_times_out_empty() {
    let dir = TempDir::new("broker-poll");
    let broker = Broker::open(dir.path(), partitions(1)).await.expect("open");
    broker
        .publish("orders", vec![event(0)])
        .await
        .expect("publish");
    let waiter = tokio::spawn({
        let broker = Arc::clone(&broker);
        async move {
            let started = Instant::now();
            let records = broker
                .fetch("orders", 0, 1, 1 << 20, Duration::from_secs(10))
                .await
                .expect("fetch");
            (records, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the fetch waits for an append");
    broker
        .publish("orders", vec![event(1)])
        .await
        .expect("publish");
    let (records, waited) = waiter.await.expect("fetch task");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].offset, 1);
    assert_eq!(event_id(&records[0]), Some("e-1"));
    assert!(
        waited < Duration::from_secs(5),
        "woke after {waited:?} of a 10 s wait"
    );
    // Nothing published: empty after the wait.
    let started = Instant::now();
    let records = broker
        .fetch("orders", 0, 2, 1 << 20, Duration::from_millis(300))
        .await
        .expect("fetch");
    assert!(records.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(300));
    // Records already there come back at once.
    let started = Instant::now();
    let records = broker
        .fetch("orders", 0, 0, 1 << 20, Duration::from_secs(10))
        .await
        .expect("fetch");
    assert_eq!(records.len(), 2);
    assert!(started.elapsed() < Duration::from_secs(5));
    // Closing the broker ends a long poll.
    let waiter = tokio::spawn({
        let broker = Arc::clone(&broker);
        async move {
            broker
                .fetch("orders", 0, 2, 1 << 20, Duration::from_secs(30))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    broker.close().await.expect("close");
    let error = waiter.await.expect("fetch task").expect_err("closed");
    assert!(matches!(error, Error::Closed), "{error}");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_deleted_by_retention_are_out_of_range() {
    let dir = TempDir::new("broker-retention");
    let config = BrokerConfig {
        partitions: 1,
        log: LogConfig {
            segment_bytes: 512,
            retention_bytes: Some(2048),
            ..LogConfig::default()
        },
        ..BrokerConfig::default()
    };
    let broker = Broker::open(dir.path(), config).await.expect("open");
    for i in 0..200 {
        broker
            .publish("orders", vec![event(i)])
            .await
            .expect("publish");
    }
    let deleted = broker.enforce_retention().await.expect("retention");
    assert!(deleted.segments > 0);
    let offsets = broker.offsets("orders", 0).await.expect("offsets");
    assert!(offsets.start > 0);
    assert_eq!(offsets.end, 200);
    let error = broker
        .fetch("orders", 0, 0, 1 << 20, Duration::ZERO)
        .await
        .expect_err("deleted offset");
    assert_eq!(error.kind(), ErrorKind::OutOfRange);
    match error {
        Error::OffsetOutOfRange {
            requested,
            first,
            next,
        } => assert_eq!((requested, first, next), (0, offsets.start, 200)),
        other => panic!("unexpected error {other}"),
    }
    let records = broker
        .fetch("orders", 0, offsets.start, usize::MAX, Duration::ZERO)
        .await
        .expect("fetch from first");
    assert_eq!(records.len() as u64, 200 - offsets.start);
    // Past the end is out of range too.
    let error = broker
        .fetch("orders", 0, 201, 1 << 20, Duration::ZERO)
        .await
        .expect_err("past next");
    assert_eq!(error.kind(), ErrorKind::OutOfRange);
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_input_writes_nothing() {
    let dir = TempDir::new("broker-invalid");
    let invalid = BrokerConfig {
        partitions: 0,
        ..BrokerConfig::default()
    };
    let error = Broker::open(dir.path(), invalid)
        .await
        .expect_err("0 partitions");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    let broker = Broker::open(dir.path(), BrokerConfig::default())
        .await
        .expect("open");
    // A second broker on the same directory is refused.
    let error = Broker::open(dir.path(), BrokerConfig::default())
        .await
        .expect_err("locked");
    assert_eq!(error.kind(), ErrorKind::Unavailable);
    for bad in ["", "Orders", "a/b", "..", &"x".repeat(250)] {
        let error = broker.publish(bad, vec![event(0)]).await.expect_err(bad);
        assert!(
            matches!(error, Error::InvalidName { what: "topic", .. }),
            "{error}"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
    }
    let cases = [
        Event::new("", "no id"),
        Event::new("x".repeat(257), "long id"),
        Event::new("ok", "x").with_header("CE-ID", "smuggled"),
    ];
    for bad in cases {
        let events = vec![event(0), bad];
        let error = broker
            .publish("orders", events)
            .await
            .expect_err("bad event");
        assert!(
            matches!(error, Error::InvalidEvent { index: 1, .. }),
            "{error}"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
    }
    let huge = Event::new("huge", vec![0u8; 17 << 20]);
    let error = broker
        .publish("orders", vec![huge])
        .await
        .expect_err("huge");
    assert!(
        matches!(error, Error::InvalidRecord { index: 0, .. }),
        "{error}"
    );
    // Nothing was written: not even the topic was created.
    assert!(broker.topics().is_empty());
    let error = broker
        .fetch("orders", 8, 0, 1024, Duration::ZERO)
        .await
        .expect_err("no partition 8");
    assert!(matches!(
        error,
        Error::UnknownPartition {
            partition: 8,
            partitions: 8,
            ..
        }
    ));
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    let header = Header {
        name: "x".into(),
        value: "y".into(),
    };
    let with_header = Event {
        headers: vec![header],
        ..event(0)
    };
    assert!(broker.publish("orders", vec![with_header]).await.is_ok());
    broker.close().await.expect("close");
    let error = broker
        .publish("orders", vec![event(1)])
        .await
        .expect_err("closed");
    assert!(matches!(error, Error::Closed));
    // Closing released the directory.
    let broker = Broker::open(dir.path(), BrokerConfig::default())
        .await
        .expect("reopen after close");
    broker.close().await.expect("close");
}

/// The broker's futures can be held across `.await` in a multi-threaded
/// server (tonic needs `Send`).
#[test]
fn futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let broker: Option<Arc<Broker>> = None;
    if let Some(b) = broker {
        send(&Broker::open("x", BrokerConfig::default()));
        send(&b.publish("t", Vec::new()));
        send(&b.partitions("t"));
        send(&b.fetch("t", 0, 0, 0, Duration::ZERO));
        send(&b.offsets("t", 0));
        send(&b.offset_for_time("t", 0, 0));
        send(&b.heartbeat("g", "t", "m"));
        send(&b.leave("g", "t", "m"));
        send(&b.committed("g", "t", 0));
        send(&b.commit("g", "t", 0, 0, "m", 0));
        send(&b.reset_cursor("g", "t", 0, 0));
        send(&b.enforce_retention());
        send(&b.close());
    }
}
