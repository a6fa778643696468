//! The event mesh's durability, black-box, with real processes: events a
//! sidecar acknowledged survive control-plane crashes (SIGKILL, restart)
//! and reach the subscriber in per-key order; a subscriber replica killed
//! mid-stream has its partitions delivered by the survivors within the
//! broker's session timeout; a full disk answers 507 and loses nothing it
//! acknowledged.
//!
//! Each test prints what it measured (`--nocapture` shows it). Where a test
//! checks what the broker stored, it reads the partition logs from the
//! control plane's data directory (`events/topics/<ns>.<topic>/<p>/*.log`,
//! the frame format of `sinew_events::record`).
//!
//! - The crash run publishes 20 000 events through 10 kills by default;
//!   `SINEW_EVENTS_CRASH_EVENTS`, `SINEW_EVENTS_CRASH_KILLS` make a soak,
//!   `SINEW_EVENTS_CRASH_SEED` repeats a kill schedule. A SIGKILL leaves the
//!   page cache alone: this is the process crashing, not the machine (the
//!   log's own tests cover torn and unsynced tails).
//! - The full-disk tests mount a tmpfs, so they need root; otherwise they
//!   print `SKIPPED` and pass.
//!
//! `crash`, `failover` and `full_disk` are the three scenarios; this module
//! holds what they share: the recording app, the publisher, the tally of
//! acknowledgements and the readers of the stored logs.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use sinew_testkit::{
    assert_eventually, resource, serve_app, Broker, ClientError, Control, HttpClient, Nats, Proxy,
    Request,
};

use crate::events::sidecar;

mod crash;
mod failover;
mod full_disk;

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// The topic every test publishes to, and its directory in the broker.
const TOPIC: &str = "orders";
const TOPIC_DIR: &str = "default.orders";

// ---------------------------------------------------------------------------
// The app: records every delivery.

/// One delivery an app saw.
#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    key: String,
    /// Which replica's app (an index into the test's sidecars).
    replica: usize,
    at: Instant,
}

/// Apps that record deliveries into one shared list; always answer 200.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Delivery>>>,
}

impl Recorder {
    /// Starts an app for replica `replica`; returns its address.
    async fn app(&self, replica: usize) -> SocketAddr {
        let seen = self.seen.clone();
        serve_app(move |req| {
            let header = |n: &str| {
                req.headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            seen.lock().unwrap().push(Delivery {
                id: header("ce-id"),
                key: header("ce-partitionkey"),
                replica,
                at: Instant::now(),
            });
            StatusCode::OK
        })
        .await
    }

    fn seen(&self) -> Vec<Delivery> {
        self.seen.lock().unwrap().clone()
    }

    /// The distinct ids delivered so far.
    fn ids(&self) -> HashSet<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.id.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------
// The mesh: a control plane, sidecars, publishing.

/// The Service `inventory` and its Subscription on [`TOPIC`], from the start,
/// one key at a time.
fn inventory_subscription() -> String {
    format!(
        "{}{}",
        resource("Service", "inventory", "endpoints: []\n"),
        resource(
            "Subscription",
            "inventory-orders",
            &format!(
                "topic: {TOPIC}\nservice: inventory\ndeliver: {{path: /events/orders}}\nstart: earliest\nordering: key\n"
            ),
        )
    )
}

/// What one publish came to.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    body: serde_json::Value,
    text: String,
}

impl Answer {
    /// `(partition, offset, duplicate)` of the single event of a 200.
    fn placed(&self) -> (u32, u64, bool) {
        let r = &self.body["results"][0];
        let partition = r["partition"].as_u64().expect("partition") as u32;
        (
            partition,
            r["offset"].as_u64().expect("offset"),
            r["duplicate"].as_bool().expect("duplicate"),
        )
    }
}

/// A keep-alive connection to a sidecar's api, reopened after a failure.
struct Publisher {
    api: SocketAddr,
    client: Option<HttpClient>,
}

impl Publisher {
    fn new(api: SocketAddr) -> Self {
        Self { api, client: None }
    }

    /// Publishes one binary-mode event with id `id` and key `key`.
    async fn publish(&mut self, id: &str, key: &str, data: &str) -> Result<Answer, ClientError> {
        let client = match &mut self.client {
            Some(c) => c,
            None => self.client.insert(HttpClient::http1(self.api).await?),
        };
        let req = Request::new(Method::POST, &format!("/v1/publish/{TOPIC}"))
            .host("api")
            .header("ce-id", id)
            .header("ce-source", "/checkout")
            .header("ce-type", "order.created")
            .header("ce-specversion", "1.0")
            .header("ce-partitionkey", key)
            .header("content-type", "application/json")
            .body(data.to_owned());
        match client.send(req).await {
            Ok(r) => Ok(Answer {
                status: r.status,
                body: serde_json::from_slice(&r.body).unwrap_or_default(),
                text: r.text(),
            }),
            Err(e) => {
                self.client = None;
                Err(e)
            }
        }
    }
}

/// An event the sidecar acknowledged with 200.
#[derive(Debug, Clone)]
struct Ack {
    id: String,
    key: String,
    partition: u32,
    offset: u64,
    /// The broker said it had the id already (an earlier try was stored).
    duplicate: bool,
}

/// How publish attempts were answered.
#[derive(Debug, Default)]
struct Tally {
    ok: AtomicU64,
    unavailable: AtomicU64,
    storage_full: AtomicU64,
    other: AtomicU64,
    transport: AtomicU64,
}

impl Tally {
    fn count(&self, result: &Result<Answer, ClientError>) {
        let counter = match result {
            Ok(a) if a.status == StatusCode::OK => &self.ok,
            Ok(a) if a.status == StatusCode::SERVICE_UNAVAILABLE => &self.unavailable,
            Ok(a) if a.status == StatusCode::INSUFFICIENT_STORAGE => &self.storage_full,
            Ok(_) => &self.other,
            Err(_) => &self.transport,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self) -> String {
        format!(
            "200: {}, 503: {}, 507: {}, other: {}, transport errors: {}",
            self.ok.load(Ordering::Relaxed),
            self.unavailable.load(Ordering::Relaxed),
            self.storage_full.load(Ordering::Relaxed),
            self.other.load(Ordering::Relaxed),
            self.transport.load(Ordering::Relaxed),
        )
    }
}

/// Publishes `id` until the sidecar answers 200 (same id every time: the
/// broker de-duplicates a try that was stored but not acknowledged).
/// Panics on an answer other than 200 or 503.
async fn publish_until_acked(publisher: &mut Publisher, tally: &Tally, id: &str, key: &str) -> Ack {
    let data = format!("{{\"id\":\"{id}\"}}");
    let started = Instant::now();
    loop {
        let result = publisher.publish(id, key, &data).await;
        tally.count(&result);
        match result {
            Ok(a) if a.status == StatusCode::OK => {
                let (partition, offset, duplicate) = a.placed();
                return Ack {
                    id: id.to_owned(),
                    key: key.to_owned(),
                    partition,
                    offset,
                    duplicate,
                };
            }
            Ok(a) if a.status == StatusCode::SERVICE_UNAVAILABLE => {}
            Ok(a) => panic!("publishing {id}: {} {}", a.status, a.text),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{id} not acknowledged within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// What the broker stored: its partition logs, read from disk.

/// Every `(partition, offset) → ce-id` in `topic_dir`'s partition logs.
/// Reads whole frames only (a torn tail is where a file ends mid-frame).
fn stored_events(topic_dir: &Path) -> HashMap<(u32, u64), String> {
    let mut stored = HashMap::new();
    let Ok(partitions) = std::fs::read_dir(topic_dir) else {
        return stored;
    };
    for entry in partitions.flatten() {
        let Some(partition) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let mut segments: Vec<PathBuf> = std::fs::read_dir(entry.path())
            .expect("partition dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        segments.sort();
        for segment in segments {
            let bytes = std::fs::read(&segment).expect("segment");
            for (offset, id) in frames(&bytes) {
                stored.insert((partition, offset), id);
            }
        }
    }
    stored
}

/// `(offset, ce-id)` of each whole frame in a segment:
/// `len u32 | crc u32 | offset u64 | ts u64 | key_len u32 | key | n u16 |
/// (name_len u16 | name | value_len u32 | value)* | value`, little-endian.
fn frames(mut bytes: &[u8]) -> Vec<(u64, String)> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (b.get(..n)?, b.get(n..)?);
        *b = rest;
        Some(head)
    }
    fn uint(b: &mut &[u8], n: usize) -> Option<u64> {
        let mut le = [0u8; 8];
        le[..n].copy_from_slice(take(b, n)?);
        Some(u64::from_le_bytes(le))
    }
    let mut out = Vec::new();
    while let Some(len) = uint(&mut bytes, 4) {
        let Some(mut frame) = take(&mut bytes, len as usize) else {
            break;
        };
        let parsed = (|| {
            take(&mut frame, 4)?; // crc
            let offset = uint(&mut frame, 8)?;
            take(&mut frame, 8)?; // timestamp
            let key_len = uint(&mut frame, 4)? as usize;
            take(&mut frame, key_len)?;
            let headers = uint(&mut frame, 2)?;
            for _ in 0..headers {
                let name_len = uint(&mut frame, 2)? as usize;
                let name = take(&mut frame, name_len)?;
                let value_len = uint(&mut frame, 4)? as usize;
                let value = take(&mut frame, value_len)?;
                if name == b"ce-id" {
                    return Some((offset, String::from_utf8_lossy(value).into_owned()));
                }
            }
            None
        })();
        match parsed {
            Some(found) => out.push(found),
            None => break,
        }
    }
    out
}

/// What a control plane's event store holds for the test topic, read
/// through its REST API (`/v1/topics/…/events`, every partition from its
/// first offset): (partition, offset) → ce-id. For backends whose files the
/// test cannot read (JetStream).
async fn stored_via_api(control: &Control) -> HashMap<(u32, u64), String> {
    let mut stored = HashMap::new();
    for partition in 0..8u32 {
        let mut from = 0u64;
        loop {
            let path = format!(
                "/v1/topics/default/{TOPIC}/events?partition={partition}&from={from}&limit=5000"
            );
            let r = control.call(Method::GET, &path, None).await;
            assert!(r.status.is_success(), "{path}: {}", r.text());
            let json = r.json();
            let events = json["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                break;
            }
            for e in &events {
                let offset = e["offset"].as_u64().expect("an offset");
                let id = e["id"].as_str().expect("an id").to_owned();
                stored.insert((partition, offset), id);
            }
            from = json["next"].as_u64().expect("next");
        }
    }
    stored
}

/// Checks every acknowledgement against the logs: the id is stored at the
/// partition and offset the 200 named. Returns how many ids are stored
/// more than once.
fn check_stored(stored: &HashMap<(u32, u64), String>, acks: &[Ack]) -> usize {
    let mut missing = Vec::new();
    for ack in acks {
        if stored.get(&(ack.partition, ack.offset)) != Some(&ack.id) {
            missing.push(ack);
        }
    }
    assert!(
        missing.is_empty(),
        "{} acknowledged events are not stored where the 200 said (of {} stored), e.g. {:?}",
        missing.len(),
        stored.len(),
        &missing[..missing.len().min(5)]
    );
    let mut copies: HashMap<&str, usize> = HashMap::new();
    for id in stored.values() {
        *copies.entry(id).or_default() += 1;
    }
    copies.values().filter(|n| **n > 1).count()
}

/// The last few KiB of a process's stderr.
fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(6000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
