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

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sinew_testkit::{
    assert_eventually, resource, Broker, ClientError, Control, HttpClient, Nats, Proxy, Request,
    TempDir,
};

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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = self.seen.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: http::Request<hyper::body::Incoming>| {
                            let seen = seen.clone();
                            async move {
                                let header = |n: &str| {
                                    req.headers()
                                        .get(n)
                                        .and_then(|v| v.to_str().ok())
                                        .unwrap_or_default()
                                        .to_owned()
                                };
                                let (id, key) = (header("ce-id"), header("ce-partitionkey"));
                                let _ = req.into_body().collect().await;
                                seen.lock().unwrap().push(Delivery {
                                    id,
                                    key,
                                    replica,
                                    at: Instant::now(),
                                });
                                Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                    Bytes::new(),
                                )))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        addr
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

/// A sidecar of `service` on `control` (with `app` when it has one).
async fn sidecar(control: &Control, name: &str, service: &str, app: Option<SocketAddr>) -> Proxy {
    let mut b = Proxy::builder(SINEW)
        .name(name)
        .own_service(service)
        .control_plane(control);
    if let Some(app) = app {
        b = b.app(app);
    }
    b.spawn().await
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

// ---------------------------------------------------------------------------
// 1. Control-plane crashes while publishing.

/// Events a crash run publishes: the acceptance number. A debug build
/// acknowledges about 1 500 a second here, so the run takes ~15 s;
/// `SINEW_EVENTS_CRASH_EVENTS` and `SINEW_EVENTS_CRASH_KILLS` make a longer
/// soak, `SINEW_EVENTS_CRASH_SEED` repeats a run's kill schedule.
const CRASH_EVENTS: usize = 20_000;
/// Control-plane SIGKILLs in a crash run.
const CRASH_KILLS: usize = 10;
/// Partition keys of a crash run.
const CRASH_KEYS: usize = 50;
/// Concurrent publishers (HTTP connections to the sidecar's api).
const CRASH_PUBLISHERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_control_plane_crashes() {
    crash_run(Store::Embedded).await;
}

/// The same with the events on a standalone broker (`sinew broker`): kills
/// alternate between the control plane and the broker, restarted on its
/// data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_broker_acknowledged_events_survive_broker_and_control_plane_crashes() {
    crash_run(Store::Broker(Broker::spawn(SINEW, &[]).await)).await;
}

/// The same on JetStream: kills alternate between the control plane and
/// nats-server (restarted on its store), so both the process serving the
/// sidecars and the one storing the events die mid-publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream_acknowledged_events_survive_broker_and_control_plane_crashes() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    crash_run(Store::Nats(nats)).await;
}

/// Where a crash run keeps its events.
enum Store {
    /// The control plane's embedded broker.
    Embedded,
    /// A nats-server's JetStream.
    Nats(Nats),
    /// A standalone `sinew broker`.
    Broker(Broker),
}

/// Publishes `events` (over [`CRASH_KEYS`] keys, [`CRASH_PUBLISHERS`] at a
/// time, each id retried until acknowledged) while the control plane is
/// SIGKILLed and restarted `kills` times (`SINEW_EVENTS_CRASH_EVENTS` and
/// `SINEW_EVENTS_CRASH_KILLS`, default [`CRASH_EVENTS`] and [`CRASH_KILLS`]); then checks nothing acknowledged
/// was lost, per-key order of first deliveries, and counts duplicates.
/// With the events on JetStream or a standalone broker, every other kill
/// is that process's instead of the control plane's.
async fn crash_run(mut store: Store) {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let events = env("SINEW_EVENTS_CRASH_EVENTS", CRASH_EVENTS);
    let kills = env("SINEW_EVENTS_CRASH_KILLS", CRASH_KILLS);
    let started = Instant::now();
    let seed = std::env::var("SINEW_EVENTS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let on = match &store {
        Store::Embedded => "the embedded broker",
        Store::Nats(_) => "JetStream",
        Store::Broker(_) => "a standalone broker",
    };
    eprintln!("crash run on {on}: {events} events, {kills} kills, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut builder = Control::builder(SINEW);
    match &store {
        Store::Embedded => {}
        Store::Nats(nats) => builder = builder.events(&format!("jetstream:{}", nats.url())),
        Store::Broker(broker) => builder = builder.on_broker(broker),
    }
    let mut control = builder.spawn().await;
    control.apply(&inventory_subscription()).await;
    let recorder = Recorder::default();
    let inventory = sidecar(
        &control,
        "inventory-1",
        "inventory",
        Some(recorder.app(0).await),
    )
    .await;
    let checkout = sidecar(&control, "checkout-1", "checkout", None).await;

    // Keys dealt to publishers: one key is always published by one task,
    // one event at a time, so its order is the order of its 200s.
    let per_key = events.div_ceil(CRASH_KEYS);
    let total = per_key * CRASH_KEYS;
    let tally = Arc::new(Tally::default());
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..CRASH_PUBLISHERS {
        let keys: Vec<String> = (task..CRASH_KEYS)
            .step_by(CRASH_PUBLISHERS)
            .map(|k| format!("key{k:02}"))
            .collect();
        let (tally, acked, api) = (tally.clone(), acked.clone(), checkout.api());
        tasks.push(tokio::spawn(async move {
            let mut publisher = Publisher::new(api);
            let mut acks = Vec::with_capacity(keys.len() * per_key);
            for n in 0..per_key {
                for key in &keys {
                    let id = format!("{key}-{n:05}");
                    acks.push(publish_until_acked(&mut publisher, &tally, &id, key).await);
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            acks
        }));
    }

    // Kills at random moments. Most come once about (i+1)/(kills+2) of the
    // events are acknowledged (± a quarter of that spacing) plus up to
    // 150 ms, with publishing in full swing; those are followed by a wait
    // for publishing to resume, which measures how long publishers saw
    // 503s. One in four instead comes 0-300 ms after the previous restart,
    // while sidecars reconnect and the broker rebuilds its de-dup window.
    // Down 50-600 ms each time.
    let spacing = total / (kills + 2);
    let mut outages = Vec::new();
    let mut restarts = Vec::new();
    let mut quick = false;
    for i in 0..kills {
        if quick {
            tokio::time::sleep(Duration::from_millis(rng.u64(0..300))).await;
        } else {
            let threshold = (i + 1) * spacing + rng.usize(0..=spacing / 2) - spacing / 4;
            assert_eventually!(
                acked.load(Ordering::Relaxed) >= threshold,
                Duration::from_secs(60),
                "publishing stalled at {} of {total} before kill {i}: {}\n--- checkout ---\n{}\n--- control ---\n{}",
                acked.load(Ordering::Relaxed),
                tally.report(),
                checkout.stderr_tail(),
                tail(&control.stderr())
            );
            tokio::time::sleep(Duration::from_millis(rng.u64(0..150))).await;
        }
        let killed = Instant::now();
        let before = acked.load(Ordering::Relaxed);
        let down = Duration::from_millis(rng.u64(50..600));
        let (victim, restarting) = match &mut store {
            Store::Nats(nats) if i % 2 == 1 => {
                nats.kill().await;
                tokio::time::sleep(down).await;
                let restarting = Instant::now();
                nats.restart().await;
                ("nats-server", restarting)
            }
            Store::Broker(broker) if i % 2 == 1 => {
                broker.kill().await;
                tokio::time::sleep(down).await;
                let restarting = Instant::now();
                broker.restart().await;
                ("sinew broker", restarting)
            }
            _ => {
                control.kill().await;
                tokio::time::sleep(down).await;
                let restarting = Instant::now();
                control.restart().await;
                ("control plane", restarting)
            }
        };
        let restart = restarting.elapsed();
        restarts.push(restart);
        quick = i + 1 < kills && rng.usize(0..4) == 0;
        if quick {
            eprintln!(
                "kill {i} ({victim}): at {before} acked, down {:?}, restart took {restart:?}; killing again during recovery",
                restarting - killed
            );
            continue;
        }
        // In-flight publishes may still land as the kill hits; the
        // outage ends with the first acknowledgement after the restart.
        let after_restart = acked.load(Ordering::Relaxed);
        assert_eventually!(
            acked.load(Ordering::Relaxed) > after_restart,
            Duration::from_secs(30),
            "no publish acknowledged within 30 s of restart {i}: {}\n--- checkout ---\n{}",
            tally.report(),
            checkout.stderr_tail()
        );
        outages.push(killed.elapsed());
        eprintln!(
            "kill {i} ({victim}): at {before} acked, down {:?}, restart took {restart:?}, publishing again after {:?}",
            restarting - killed,
            killed.elapsed()
        );
    }
    let mut acks_by_task = Vec::new();
    for task in tasks {
        acks_by_task.push(task.await.expect("publisher"));
    }
    let published_in = started.elapsed();
    let acks: Vec<Ack> = acks_by_task.iter().flatten().cloned().collect();
    assert_eq!(acks.len(), total);

    // Drain: every acknowledged id reaches the app.
    let want: HashSet<&str> = acks.iter().map(|a| a.id.as_str()).collect();
    let drain = Instant::now();
    assert_eventually!(
        {
            let got = recorder.ids();
            want.iter().all(|id| got.contains(*id))
        },
        Duration::from_secs(90),
        "{} of {total} acknowledged events delivered:\n--- inventory ---\n{}\n--- control ---\n{}",
        want.iter()
            .filter(|id| recorder.ids().contains(**id))
            .count(),
        inventory.stderr_tail(),
        tail(&control.stderr())
    );
    let drained_in = drain.elapsed();

    let seen = recorder.seen();
    let delivered: HashSet<&str> = seen.iter().map(|d| d.id.as_str()).collect();
    let lost = want.iter().filter(|id| !delivered.contains(**id)).count();
    let unknown = delivered.iter().filter(|id| !want.contains(**id)).count();
    let duplicates = seen.len() - delivered.len();

    // Per key, first deliveries in acknowledgement order.
    let mut first: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut once = HashSet::new();
    for d in &seen {
        if once.insert(d.id.as_str()) {
            first.entry(d.key.as_str()).or_default().push(d.id.as_str());
        }
    }
    let mut acked_order: HashMap<&str, Vec<&str>> = HashMap::new();
    for ack in acks_by_task.iter().flatten() {
        acked_order
            .entry(ack.key.as_str())
            .or_default()
            .push(ack.id.as_str());
    }
    let out_of_order: Vec<&str> = acked_order
        .iter()
        .filter(|(key, ids)| first.get(*key) != Some(*ids))
        .map(|(key, _)| *key)
        .collect();

    // What the broker stored: every 200 where it said, and ids stored twice.
    let stored = match &mut store {
        Store::Nats(_) => stored_via_api(&control).await,
        Store::Embedded => {
            control.kill().await;
            stored_events(&control.dir().join("events/topics").join(TOPIC_DIR))
        }
        Store::Broker(broker) => {
            broker.kill().await;
            stored_events(&broker.dir().join("events/topics").join(TOPIC_DIR))
        }
    };
    let stored_twice = check_stored(&stored, &acks);
    let acked_as_duplicate = acks.iter().filter(|a| a.duplicate).count();

    let max_outage = outages.iter().max().copied().unwrap_or_default();
    let max_restart = restarts.iter().max().copied().unwrap_or_default();
    eprintln!(
        "crash run: {total} events acknowledged in {published_in:?} ({:.0}/s) over {kills} kills \
         (restart ≤ {max_restart:?}, publishing resumed ≤ {max_outage:?} after a kill); attempts: {}",
        total as f64 / published_in.as_secs_f64(),
        tally.report()
    );
    eprintln!(
        "crash run: lost {lost}, deliveries {} ({duplicates} duplicates), unknown ids delivered {unknown}, \
         200s with duplicate:true {acked_as_duplicate}, ids stored twice {stored_twice}, keys out of order {}; \
         drained in {drained_in:?}, whole test {:?}",
        seen.len(),
        out_of_order.len(),
        started.elapsed()
    );
    assert_eq!(lost, 0, "acknowledged and never delivered");
    assert_eq!(unknown, 0, "delivered ids nobody published");
    assert!(
        out_of_order.is_empty(),
        "first deliveries out of acknowledgement order for keys {out_of_order:?}; e.g. {}: acked {:?}… delivered {:?}…",
        out_of_order[0],
        &acked_order[out_of_order[0]][..10.min(acked_order[out_of_order[0]].len())],
        first.get(out_of_order[0]).map(|v| &v[..10.min(v.len())])
    );
    assert_eq!(
        stored_twice, 0,
        "the broker de-duplicates republished ids across restarts"
    );
}

// ---------------------------------------------------------------------------
// 2. A subscriber replica dies: the survivors take its partitions.

/// Replicas of the subscribing service.
const REPLICAS: usize = 3;
/// How long a survivor may take to deliver a dead replica's partition: the
/// broker's session timeout (3 s), its expiry tick, a heartbeat (500 ms)
/// and a worker's start.
const FAILOVER_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_partitions_are_delivered_by_the_survivors_within_5s() {
    failover(&Control::builder(SINEW).spawn().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream_a_killed_replicas_partitions_are_delivered_by_the_survivors_within_5s() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let control = Control::builder(SINEW)
        .events(&format!("jetstream:{}", nats.url()))
        .spawn()
        .await;
    failover(&control).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_broker_a_killed_replicas_partitions_are_delivered_by_the_survivors_within_5s() {
    let broker = Broker::spawn(SINEW, &[]).await;
    let control = Control::builder(SINEW).on_broker(&broker).spawn().await;
    failover(&control).await;
}

async fn failover(control: &Control) {
    let started = Instant::now();
    control.apply(&inventory_subscription()).await;
    let recorder = Recorder::default();
    let mut replicas = Vec::new();
    for r in 0..REPLICAS {
        let app = recorder.app(r).await;
        let name = format!("inventory-{}", r + 1);
        replicas.push(sidecar(control, &name, "inventory", Some(app)).await);
    }
    let checkout = sidecar(control, "checkout-1", "checkout", None).await;

    // Steady publishing: two connections, 64 keys (every partition gets
    // events many times a second), a few hundred events a second.
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for task in 0..2 {
        let (stop, acks, tally, api) = (stop.clone(), acks.clone(), tally.clone(), checkout.api());
        tasks.push(tokio::spawn(async move {
            let mut publisher = Publisher::new(api);
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("key{:02}", (2 * n + task) % 64);
                let id = format!("e{task}-{n:06}");
                let ack = publish_until_acked(&mut publisher, &tally, &id, &key).await;
                acks.lock().unwrap().push(ack);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let partition_of = |acks: &Mutex<Vec<Ack>>| -> HashMap<String, u32> {
        acks.lock()
            .unwrap()
            .iter()
            .map(|a| (a.id.clone(), a.partition))
            .collect()
    };

    // Wait for a settled assignment: in the last second every partition
    // was delivered by exactly one replica, and every replica delivered.
    let settled = Instant::now();
    let owners = loop {
        let owners = settled_owners(&recorder.seen(), &partition_of(&acks));
        if !owners.is_empty() {
            break owners;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(30),
            "no settled assignment of partitions to the {REPLICAS} replicas; last second: {:?}",
            recent_owners(&recorder.seen(), &partition_of(&acks))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "failover: assignment settled after {:?}: {:?}",
        settled.elapsed(),
        sorted(&owners)
    );

    // SIGKILL the replica with the most partitions.
    let victim = (0..REPLICAS)
        .max_by_key(|r| owners.values().filter(|o| *o == r).count())
        .unwrap();
    let orphaned: Vec<u32> = {
        let mut p: Vec<u32> = owners
            .iter()
            .filter(|(_, o)| **o == victim)
            .map(|(p, _)| *p)
            .collect();
        p.sort_unstable();
        p
    };
    let killed = Instant::now();
    replicas[victim].process_mut().kill().expect("kill");
    assert!(
        replicas[victim]
            .wait_exit(Duration::from_secs(5))
            .await
            .is_some(),
        "the killed sidecar exits"
    );

    // From the kill to the first delivery by a survivor, per partition.
    let mut taken_over: HashMap<u32, Duration> = HashMap::new();
    assert_eventually!(
        {
            let partitions = partition_of(&acks);
            for d in recorder.seen() {
                if d.replica == victim || d.at < killed {
                    continue;
                }
                if let Some(p) = partitions.get(&d.id).filter(|p| orphaned.contains(p)) {
                    let after = d.at - killed;
                    let best = taken_over.entry(*p).or_insert(after);
                    *best = (*best).min(after);
                }
            }
            taken_over.len() == orphaned.len()
        },
        Duration::from_secs(20),
        "partitions {orphaned:?} of inventory-{} not delivered by a survivor within 20 s (so far {:?})\n--- control ---\n{}",
        victim + 1,
        taken_over,
        tail(&control.stderr())
    );
    let failover = taken_over.values().max().copied().unwrap_or_default();

    // Keep publishing a moment, then stop and drain.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("publisher");
    }
    let acks = acks.lock().unwrap().clone();
    let want: HashSet<&str> = acks.iter().map(|a| a.id.as_str()).collect();
    assert_eventually!(
        {
            let got = recorder.ids();
            want.iter().all(|id| got.contains(*id))
        },
        Duration::from_secs(20),
        "{} of {} acknowledged events delivered",
        want.iter()
            .filter(|id| recorder.ids().contains(**id))
            .count(),
        want.len()
    );
    let seen = recorder.seen();
    let delivered: HashSet<&str> = seen.iter().map(|d| d.id.as_str()).collect();
    let lost = want.iter().filter(|id| !delivered.contains(**id)).count();
    eprintln!(
        "failover: killed inventory-{} owning partitions {orphaned:?}; first survivor delivery per partition {:?}; \
         max {failover:?} (bound {FAILOVER_BOUND:?})",
        victim + 1,
        sorted(&taken_over),
    );
    eprintln!(
        "failover: {} events acknowledged ({}), {} deliveries ({} duplicates), lost {lost}; whole test {:?}",
        acks.len(),
        tally.report(),
        seen.len(),
        seen.len() - delivered.len(),
        started.elapsed()
    );
    assert_eq!(lost, 0, "acknowledged and never delivered");
    assert!(
        failover <= FAILOVER_BOUND,
        "a survivor took {failover:?} to deliver a dead replica's partition: {:?}",
        sorted(&taken_over)
    );
}

/// Per partition, the replicas that delivered its events in the last second.
fn recent_owners(
    seen: &[Delivery],
    partitions: &HashMap<String, u32>,
) -> HashMap<u32, HashSet<usize>> {
    let since = Instant::now() - Duration::from_secs(1);
    let mut owners: HashMap<u32, HashSet<usize>> = HashMap::new();
    for d in seen.iter().filter(|d| d.at >= since) {
        if let Some(p) = partitions.get(&d.id) {
            owners.entry(*p).or_default().insert(d.replica);
        }
    }
    owners
}

/// The owner of each partition, when the last second shows every partition
/// published to delivered by one replica only, and every replica owning
/// some; otherwise empty.
fn settled_owners(seen: &[Delivery], partitions: &HashMap<String, u32>) -> HashMap<u32, usize> {
    let published: HashSet<u32> = partitions.values().copied().collect();
    let recent = recent_owners(seen, partitions);
    let single = published.len() == 8
        && published
            .iter()
            .all(|p| recent.get(p).is_some_and(|r| r.len() == 1));
    let owners: HashMap<u32, usize> = recent
        .into_iter()
        .filter_map(|(p, r)| Some((p, r.into_iter().next()?)))
        .collect();
    let all_replicas = (0..REPLICAS).all(|r| owners.values().any(|o| *o == r));
    if single && all_replicas {
        owners
    } else {
        HashMap::new()
    }
}

/// A map's entries in key order, for printing.
fn sorted<V: Clone>(map: &HashMap<u32, V>) -> Vec<(u32, V)> {
    let mut entries: Vec<(u32, V)> = map.iter().map(|(k, v)| (*k, v.clone())).collect();
    entries.sort_by_key(|(k, _)| *k);
    entries
}

// ---------------------------------------------------------------------------
// 3. The broker's disk fills up.

/// A tmpfs mounted for a test in a temporary directory; unmounted (then
/// the directory removed) on drop.
struct Tmpfs {
    path: PathBuf,
    _parent: TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `8m`), or says why not.
    fn mount(size: &str) -> Result<Self, String> {
        let parent = TempDir::new("events-tmpfs");
        let path = parent.join("mnt");
        std::fs::create_dir_all(&path).map_err(|e| e.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Self {
            path,
            _parent: parent,
        })
    }

    /// `df` of the mount: used and available KiB.
    fn usage(&self) -> String {
        let out = std::process::Command::new("df")
            .args(["-k", "--output=used,avail"])
            .arg(&self.path)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let numbers: Vec<&str> = out
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        match numbers.as_slice() {
            [used, avail] => format!("{used} KiB used, {avail} KiB free"),
            _ => out,
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // A process killed on drop may still hold files for a moment.
        for _ in 0..40 {
            let unmounted = std::process::Command::new("umount")
                .arg(&self.path)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if unmounted {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// A mesh whose events are on an 8 MiB tmpfs (the control plane's data
/// directory, or a standalone broker's), published to until it is full.
struct FullDisk {
    control: Control,
    /// The standalone broker holding the events, if not the control plane.
    broker: Option<Broker>,
    recorder: Recorder,
    inventory: Proxy,
    checkout: Proxy,
    /// Events answered 200.
    acks: Vec<Ack>,
    /// Ids answered 507.
    refused: Vec<String>,
    /// The first 507's body.
    full: String,
    /// Last: unmounted once the processes above are gone.
    fs: Tmpfs,
}

impl FullDisk {
    /// The event topic's directory.
    fn topic_dir(&self) -> PathBuf {
        let root = match &self.broker {
            Some(broker) => broker.dir().to_path_buf(),
            None => self.control.dir().to_path_buf(),
        };
        root.join("events/topics").join(TOPIC_DIR)
    }
}

/// Starts the mesh with its events on a tmpfs (in the control plane, or
/// with `on_broker` in a standalone broker) and publishes 16 KiB events
/// until the sidecar answers 507, then 20 more (each must be 200 or 507);
/// `None` when no tmpfs can be mounted.
async fn fill_disk(on_broker: bool) -> Option<FullDisk> {
    let fs = match Tmpfs::mount("8m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: the full-disk test needs a tmpfs mount (root): {why}");
            return None;
        }
    };
    let (control, broker) = if on_broker {
        let broker = Broker::spawn_in(SINEW, fs.path.join("broker"), &[]).await;
        let control = Control::builder(SINEW).on_broker(&broker).spawn().await;
        (control, Some(broker))
    } else {
        let control = Control::builder(SINEW)
            .dir(fs.path.join("control"))
            .spawn()
            .await;
        (control, None)
    };
    control.apply(&inventory_subscription()).await;
    let on = if on_broker {
        "a standalone broker"
    } else {
        "the control plane"
    };
    eprintln!("full disk: {on} started on an 8 MiB tmpfs: {}", fs.usage());
    let recorder = Recorder::default();
    let app = recorder.app(0).await;
    let inventory = sidecar(&control, "inventory-1", "inventory", Some(app)).await;
    let checkout = sidecar(&control, "checkout-1", "checkout", None).await;

    let data = format!("{{\"pad\":\"{}\"}}", "x".repeat(16 * 1024));
    let mut publisher = Publisher::new(checkout.api());
    let (mut acks, mut refused, mut full) = (Vec::new(), Vec::new(), None);
    let mut n = 0usize;
    while refused.len() < 20 {
        assert!(n < 2_000, "8 MiB never filled up ({})", fs.usage());
        let id = format!("big-{n:05}");
        let key = format!("key{}", n % 8);
        n += 1;
        let answer = match publisher.publish(&id, &key, &data).await {
            Ok(a) => a,
            Err(e) => panic!(
                "publishing {id}: {e}\n--- checkout ---\n{}",
                checkout.stderr_tail()
            ),
        };
        match answer.status {
            StatusCode::OK => {
                let (partition, offset, duplicate) = answer.placed();
                acks.push(Ack {
                    id,
                    key,
                    partition,
                    offset,
                    duplicate,
                });
            }
            StatusCode::INSUFFICIENT_STORAGE => {
                full.get_or_insert(answer.text);
                refused.push(id);
            }
            other => panic!(
                "publishing {id}: {other} {}\n--- control ---\n{}",
                answer.text,
                tail(&control.stderr())
            ),
        }
    }
    let full = full.expect("a 507");
    eprintln!(
        "full disk: {} events of 16 KiB acknowledged, {} answered 507 ({}): {full}",
        acks.len(),
        refused.len(),
        fs.usage()
    );
    Some(FullDisk {
        control,
        broker,
        recorder,
        inventory,
        checkout,
        acks,
        refused,
        full,
        fs,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_loses_nothing_acknowledged() {
    full_disk_run(false).await;
}

/// The same with the events on a standalone broker whose disk fills: its
/// refusal crosses to the publisher as the same 507.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_broker_a_full_disk_answers_507_and_loses_nothing_acknowledged() {
    full_disk_run(true).await;
}

async fn full_disk_run(on_broker: bool) {
    let started = Instant::now();
    let Some(mut disk) = fill_disk(on_broker).await else {
        return;
    };
    assert!(
        disk.full.contains("No space left on device"),
        "the 507 names the storage problem: {}",
        disk.full
    );

    // The control plane is still up and serves its REST API.
    let health = disk.control.call(Method::GET, "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text());

    // Everything acknowledged is delivered.
    let want: HashSet<&str> = disk.acks.iter().map(|a| a.id.as_str()).collect();
    assert_eventually!(
        {
            let got = disk.recorder.ids();
            want.iter().all(|id| got.contains(*id))
        },
        Duration::from_secs(30),
        "{} of {} acknowledged events delivered\n--- inventory ---\n{}\n--- control ---\n{}",
        want.iter()
            .filter(|id| disk.recorder.ids().contains(**id))
            .count(),
        want.len(),
        disk.inventory.stderr_tail(),
        tail(&disk.control.stderr())
    );
    let seen = disk.recorder.seen();
    let delivered: HashSet<&str> = seen.iter().map(|d| d.id.as_str()).collect();
    let lost = want.iter().filter(|id| !delivered.contains(**id)).count();
    let refused_delivered = disk
        .refused
        .iter()
        .filter(|id| delivered.contains(id.as_str()))
        .count();

    // On disk: every 200 is stored where it said; no 507 left a record.
    let stored_twice = check_stored(&stored_events(&disk.topic_dir()), &disk.acks);
    let stored: HashSet<String> = stored_events(&disk.topic_dir()).into_values().collect();
    let refused_stored = disk
        .refused
        .iter()
        .filter(|id| stored.contains(*id))
        .count();
    eprintln!(
        "full disk: lost {lost}, deliveries {} ({} duplicates), refused {} (stored {refused_stored}, \
         delivered {refused_delivered}), stored twice {stored_twice}; disk at the end: {}; whole test {:?}",
        seen.len(),
        seen.len() - delivered.len(),
        disk.refused.len(),
        disk.fs.usage(),
        started.elapsed()
    );
    assert_eq!(lost, 0, "acknowledged and never delivered");
    assert_eq!(refused_stored, 0, "an event answered 507 was stored");
    assert_eq!(refused_delivered, 0, "an event answered 507 was delivered");
    assert_eq!(stored_twice, 0);
    disk.control.kill().await;
}

/// Writes zeros to `path` until the file system is full.
fn fill_up(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create filler");
    let chunk = [0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_restarted_on_a_full_disk_comes_back() {
    let Some(mut disk) = fill_disk(false).await else {
        return;
    };
    // Whatever space the broker left (cursor commits take it otherwise,
    // as deliveries go on) goes to another writer.
    fill_up(&disk.fs.path.join("filler"));
    // A crash while the disk is full: the control plane must come back
    // (config, certificates, REST), its broker answering 507 for publishes
    // and delivering what it stored.
    disk.control.kill().await;
    disk.control.restart().await;
    let health = disk.control.call(Method::GET, "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text());
    // Publishing answers clearly again once the sidecars reconnect: 507
    // while the disk is full, or 200 when the restart left room (then the
    // event must be delivered like the others) — never a silent drop.
    let mut publisher = Publisher::new(disk.checkout.api());
    let deadline = Instant::now() + Duration::from_secs(15);
    let stored_after_restart = loop {
        let status = publisher
            .publish("after-restart", "k", "{}")
            .await
            .map(|a| a.status)
            .ok();
        match status {
            Some(StatusCode::OK) => break true,
            Some(StatusCode::INSUFFICIENT_STORAGE) => break false,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "publishing after the restart answers 507 or 200 (last {status:?})\n--- control ---\n{}",
            tail(&disk.control.stderr())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut want: HashSet<&str> = disk.acks.iter().map(|a| a.id.as_str()).collect();
    if stored_after_restart {
        want.insert("after-restart");
    }
    assert_eventually!(
        {
            let got = disk.recorder.ids();
            want.iter().all(|id| got.contains(*id))
        },
        Duration::from_secs(30),
        "acknowledged events delivered after the restart"
    );
    disk.control.kill().await;
}

/// The last few KiB of a process's stderr.
fn tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(6000);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
