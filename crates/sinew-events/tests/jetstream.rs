//! The JetStream backend against a real nats-server (`SKIPPED` when it is
//! not installed): the store contract the embedded broker's tests check —
//! offsets, de-duplication, long-poll fetch, time lookup, fenced
//! forward-only cursors, epochs across restarts — and a full store
//! answering "storage full".

use std::time::{Duration, Instant};

use sinew_events::jetstream::{JetStream, JetStreamConfig};
use sinew_events::{event_id, ErrorKind, Event, EventStore};
use sinew_testkit::Nats;

async fn store(nats: &Nats) -> EventStore {
    let js = JetStream::connect(JetStreamConfig::new(nats.url()))
        .await
        .expect("connect");
    EventStore::JetStream(js)
}

fn event(id: &str, key: &str) -> Event {
    Event::new(id, format!("data of {id}"))
        .with_key(key.to_owned())
        .with_header("ce-type", "order.placed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_fetch_and_offsets_follow_the_store_contract() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let store = store(&nats).await;
    assert_eq!(store.backend(), "jetstream");
    let events: Vec<Event> = (0..10).map(|i| event(&format!("e{i}"), "k1")).collect();
    let published = store.publish("shop.orders", events).await.unwrap();
    let partition = store.partition_of("shop.orders", b"k1").await.unwrap();
    // One key, one partition, dense offsets from 0.
    assert!(published
        .iter()
        .all(|p| p.partition == partition && !p.duplicate));
    let offsets: Vec<u64> = published.iter().map(|p| p.offset).collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    assert_eq!(
        store.offsets("shop.orders", partition).await.unwrap(),
        0..10
    );

    // A republished id is a duplicate pointing at the original.
    let again = store
        .publish("shop.orders", vec![event("e3", "k1")])
        .await
        .unwrap();
    assert!(again[0].duplicate);
    assert_eq!((again[0].partition, again[0].offset), (partition, 3));
    assert_eq!(
        store.offsets("shop.orders", partition).await.unwrap(),
        0..10
    );

    // Fetch gives the records back: ids, keys, headers, payloads.
    let records = store
        .fetch("shop.orders", partition, 4, 1 << 20, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(records.len(), 6);
    assert_eq!(records[0].offset, 4);
    assert_eq!(event_id(&records[0]), Some("e4"));
    assert_eq!(&records[0].key[..], b"k1");
    assert_eq!(&records[0].value[..], b"data of e4");
    assert!(records[0]
        .headers
        .iter()
        .any(|h| h.name == "ce-type" && &h.value[..] == b"order.placed"));

    // Out of range names the range; the end waits for an append.
    let err = store
        .fetch("shop.orders", partition, 11, 1024, Duration::ZERO)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfRange);
    let waiting = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = store
                .fetch("shop.orders", partition, 10, 1024, Duration::from_secs(10))
                .await
                .unwrap();
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    store
        .publish("shop.orders", vec![event("e10", "k1")])
        .await
        .unwrap();
    let (got, waited) = waiting.await.unwrap();
    assert_eq!(got.len(), 1, "the long poll returns the append");
    assert!(
        waited < Duration::from_secs(5),
        "woken by the append, not the timeout: {waited:?}"
    );

    // Time lookup: the first event stored at or after a moment.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(
        store
            .offset_for_time("shop.orders", partition, 0)
            .await
            .unwrap(),
        Some(0)
    );
    assert_eq!(
        store
            .offset_for_time("shop.orders", partition, now_ms + 60_000)
            .await
            .unwrap(),
        None
    );

    // Topics are listed with their partition counts.
    let topics = store.topics().await.unwrap();
    assert_eq!(topics, vec![("shop.orders".to_owned(), 8)]);

    // Bad input is refused as such.
    let bad = store
        .publish("shop.orders", vec![event("x", "line\nbreak")])
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);
    let bad = store
        .publish("Bad/Topic", vec![event("x", "k")])
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::InvalidInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_are_fenced_forward_only_and_survive_a_new_epoch() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let store = store(&nats).await;
    let events: Vec<Event> = (0..5).map(|i| event(&format!("e{i}"), "k")).collect();
    let p = store.publish("orders", events).await.unwrap()[0].partition;

    let a = store.heartbeat("g", "orders", "a").await.unwrap();
    assert_eq!(a.partitions.len(), 8, "a lone member owns every partition");
    assert_eq!(store.committed("g", "orders", p).await.unwrap(), None);
    store
        .commit("g", "orders", p, 3, "a", a.generation)
        .await
        .unwrap();
    assert_eq!(store.committed("g", "orders", p).await.unwrap(), Some(3));
    // A lower commit changes nothing; past the end is refused.
    store
        .commit("g", "orders", p, 1, "a", a.generation)
        .await
        .unwrap();
    assert_eq!(store.committed("g", "orders", p).await.unwrap(), Some(3));
    let err = store
        .commit("g", "orders", p, 6, "a", a.generation)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    // A non-owner is fenced.
    let err = store
        .commit("g", "orders", p, 4, "b", a.generation)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced);
    // A second member takes half; the old generation of a moved partition is fenced.
    let b = store.heartbeat("g", "orders", "b").await.unwrap();
    assert!(b.generation > a.generation);
    assert_eq!(b.partitions.len(), 4);
    let moved = b.partitions[0];
    let err = store
        .commit("g", "orders", moved, 0, "a", a.generation)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Fenced, "the old owner of {moved}");
    // Reset moves it back (replay).
    store.reset_cursor("g", "orders", p, 0).await.unwrap();
    assert_eq!(store.committed("g", "orders", p).await.unwrap(), Some(0));

    // A second store (a restarted control plane) sees the cursor and
    // deals generations from a higher epoch, so the old ones stay fenced.
    let restarted = self::store(&nats).await;
    assert_eq!(
        restarted.committed("g", "orders", p).await.unwrap(),
        Some(0)
    );
    let c = restarted.heartbeat("g", "orders", "a").await.unwrap();
    assert!(c.generation >> 32 > a.generation >> 32, "a new epoch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_answers_storage_full_and_keeps_what_it_acknowledged() {
    let Some(nats) = Nats::start_with(Some(256 * 1024)).await else {
        return;
    };
    let store = store(&nats).await;
    let payload = "x".repeat(8 * 1024);
    let mut acked = Vec::new();
    let mut full = None;
    for i in 0..200 {
        let e = Event::new(format!("big-{i}"), payload.clone()).with_key("k".to_owned());
        match store.publish("orders", vec![e]).await {
            Ok(p) => acked.push((format!("big-{i}"), p[0])),
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let full = full.expect("a 256 KiB store fills up");
    assert_eq!(full.kind(), ErrorKind::StorageFull, "{full}");
    assert!(!acked.is_empty());
    // Everything acknowledged is there, where the ack said.
    let p = acked[0].1.partition;
    let records = store
        .fetch("orders", p, 0, 64 << 20, Duration::ZERO)
        .await
        .unwrap();
    let mut stored: Vec<(String, u64)> = Vec::new();
    let mut from = 0;
    let mut batch = records;
    loop {
        if batch.is_empty() {
            break;
        }
        for r in &batch {
            stored.push((event_id(r).unwrap().to_owned(), r.offset));
            from = r.offset + 1;
        }
        batch = store
            .fetch("orders", p, from, 64 << 20, Duration::ZERO)
            .await
            .unwrap();
    }
    for (id, published) in &acked {
        assert!(
            stored.contains(&(id.clone(), published.offset)),
            "{id} acknowledged at {} but not stored",
            published.offset
        );
    }
}
