//! The event mesh end to end, black-box: a control plane hosting the
//! embedded broker, a publishing sidecar (`POST /v1/publish/{topic}` on its
//! api) and a subscribing sidecar delivering to its app — per-key order, a
//! poison key dead-lettered after `max_attempts` while the other keys keep
//! flowing (the publish API's refusals are `events_publish`). The
//! delivery tests run twice: on the embedded broker and on a real
//! nats-server's JetStream (`--events jetstream:URL`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use sinew_testkit::{
    assert_eventually, resource, serve_app, Broker, Control, HttpClient, Nats, Proxy, Request,
};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// One delivery the app saw.
#[derive(Debug, Clone)]
struct Delivered {
    path: String,
    id: String,
    key: String,
    attempts: Option<String>,
    reason: Option<String>,
    at: Instant,
}

/// An app that records deliveries and fails every event of key `poison`.
#[derive(Clone, Default)]
struct App {
    seen: Arc<Mutex<Vec<Delivered>>>,
}

impl App {
    async fn spawn(&self) -> SocketAddr {
        let seen = self.seen.clone();
        serve_app(move |req| {
            let header = |n: &str| {
                req.headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let d = Delivered {
                path: req.uri.path().to_owned(),
                id: header("ce-id").unwrap_or_default(),
                key: header("ce-partitionkey").unwrap_or_default(),
                attempts: header("ce-deliveryattempts"),
                reason: header("ce-deadletterreason"),
                at: Instant::now(),
            };
            let fail = d.key == "poison" && d.path == "/events/orders";
            seen.lock().unwrap().push(d);
            if fail {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        })
        .await
    }

    fn seen(&self) -> Vec<Delivered> {
        self.seen.lock().unwrap().clone()
    }
}

/// A sidecar of `service` on `control` (with `app` when it has one).
pub(crate) async fn sidecar(
    control: &Control,
    name: &str,
    service: &str,
    app: Option<SocketAddr>,
) -> Proxy {
    let mut b = Proxy::builder(SINEW)
        .name(name)
        .own_service(service)
        .control_plane(control);
    if let Some(app) = app {
        b = b.app(app);
    }
    b.spawn().await
}

/// Publishes one binary-mode event through `proxy`'s api.
pub(crate) async fn publish(
    proxy: &Proxy,
    topic: &str,
    id: &str,
    key: &str,
) -> (StatusCode, serde_json::Value) {
    let mut c = HttpClient::http1(proxy.api()).await.expect("api");
    let mut req = Request::new(Method::POST, &format!("/v1/publish/{topic}"))
        .host("api")
        .header("ce-id", id)
        .header("ce-source", "/checkout")
        .header("ce-type", "order.created")
        .header("ce-specversion", "1.0")
        .header("content-type", "application/json")
        .body(format!("{{\"id\":\"{id}\"}}"));
    if !key.is_empty() {
        req = req.header("ce-partitionkey", key);
    }
    let r = c.send(req).await.expect("an answer");
    let json = serde_json::from_slice(&r.body).unwrap_or_default();
    (r.status, json)
}

/// The `inventory` service and its Subscription `name` to `topic`,
/// delivered to `path`, with the spec lines in `extra` (`start` among them).
pub(crate) fn inventory_subscribes(name: &str, topic: &str, path: &str, extra: &str) -> String {
    format!(
        "{}{}",
        resource("Service", "inventory", "endpoints: []\n"),
        resource(
            "Subscription",
            name,
            &format!("topic: {topic}\nservice: inventory\ndeliver: {{path: {path}}}\n{extra}"),
        ),
    )
}

fn subscription(name: &str, topic: &str, path: &str, extra: &str) -> String {
    resource(
        "Subscription",
        name,
        &format!("topic: {topic}\nservice: inventory\ndeliver: {{path: {path}}}\nstart: earliest\n{extra}"),
    )
}

/// A control plane whose events are on a fresh nats-server's JetStream
/// (kept alive with it), or `None` when nats-server is not installed.
pub(crate) async fn on_jetstream() -> Option<(Control, Nats)> {
    let nats = Nats::start().await?;
    let control = Control::builder(SINEW)
        .events(&format!("jetstream:{}", nats.url()))
        .spawn()
        .await;
    Some((control, nats))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_the_subscriber_in_key_order_and_a_poison_key_is_dead_lettered() {
    key_order_and_dead_letters(&Control::builder(SINEW).spawn().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream_events_reach_the_subscriber_in_key_order_and_a_poison_key_is_dead_lettered() {
    let Some((control, _nats)) = on_jetstream().await else {
        return;
    };
    key_order_and_dead_letters(&control).await;
}

/// The same on a standalone broker (`sinew broker`): the control plane
/// keeps its events there (`--events broker:URL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_broker_events_reach_the_subscriber_in_key_order_and_a_poison_key_is_dead_lettered() {
    let broker = Broker::spawn(SINEW, &[]).await;
    let control = Control::builder(SINEW).on_broker(&broker).spawn().await;
    key_order_and_dead_letters(&control).await;
    // The topics live in the broker's own log.
    assert!(broker.dir().join("events/topics/default.orders").is_dir());
}

async fn key_order_and_dead_letters(control: &Control) {
    control
        .apply(&format!(
            "{}{}{}",
            resource("Service", "inventory", "endpoints: []\n"),
            subscription(
                "inventory-orders",
                "orders",
                "/events/orders",
                // Full jitter draws each retry's delay from 0 up to the
                // backoff, so the poison key's three events can be
                // dead-lettered within a few hundred ms: the base leaves the
                // other keys' 60 publishes time to land first on a loaded
                // machine (a full `cargo test --workspace` on 2 CPUs).
                "max_in_flight: 8\nretry: {max_attempts: 3, backoff: {base: 300ms, max: 1s}}\n",
            ),
            subscription("inventory-dlq", "orders.dlq", "/dlq", ""),
        ))
        .await;
    let app = App::default();
    let app_addr = app.spawn().await;
    let inventory = sidecar(control, "inventory-1", "inventory", Some(app_addr)).await;
    let checkout = sidecar(control, "checkout-1", "checkout", None).await;

    // 3 keys × 20 events, plus 3 events of the poison key.
    let mut published = 0;
    for i in 0..20 {
        for key in ["a", "b", "c"] {
            let (status, body) = publish(&checkout, "orders", &format!("{key}-{i}"), key).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            published += 1;
        }
        if i < 3 {
            let (status, _) = publish(&checkout, "orders", &format!("poison-{i}"), "poison").await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    // A republished id is not stored again.
    let (_, body) = publish(&checkout, "orders", "a-0", "a").await;
    assert_eq!(body["results"][0]["duplicate"], true, "{body}");

    let delivered = |app: &App| {
        app.seen()
            .into_iter()
            .filter(|d| d.path == "/events/orders" && d.key != "poison")
            .count()
    };
    assert_eventually!(
        delivered(&app) >= published,
        Duration::from_secs(15),
        "{} of {published} delivered:\n{}",
        delivered(&app),
        inventory.stderr_tail()
    );
    let seen = app.seen();
    // Per key, in publish order, each once.
    for key in ["a", "b", "c"] {
        let ids: Vec<String> = seen
            .iter()
            .filter(|d| d.path == "/events/orders" && d.key == key)
            .map(|d| d.id.clone())
            .collect();
        let want: Vec<String> = (0..20).map(|i| format!("{key}-{i}")).collect();
        assert_eq!(ids, want, "key {key}");
    }
    // The poison key: 3 attempts each, spaced by backoff, then the DLQ,
    // with the reason and the attempt count.
    assert_eventually!(
        app.seen().iter().filter(|d| d.path == "/dlq").count() == 3,
        Duration::from_secs(20),
        "poison events dead-lettered:\n{}",
        inventory.stderr_tail()
    );
    let seen = app.seen();
    let tries: Vec<&Delivered> = seen
        .iter()
        .filter(|d| d.path == "/events/orders" && d.id == "poison-0")
        .collect();
    assert_eq!(tries.len(), 3, "max_attempts");
    let gaps: Vec<Duration> = tries.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(
        gaps.iter().all(|g| *g <= Duration::from_millis(1500)),
        "{gaps:?}"
    );
    let dead: Vec<&Delivered> = seen.iter().filter(|d| d.path == "/dlq").collect();
    let ids: Vec<&str> = dead.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["poison-0", "poison-1", "poison-2"], "in key order");
    assert!(dead.iter().all(|d| d.attempts.as_deref() == Some("3")));
    assert!(dead[0].reason.as_deref().is_some_and(|r| r.contains("503")));
    // The poison key held back only itself: the other keys were all
    // delivered before its last event was dead-lettered.
    let last_other = seen
        .iter()
        .filter(|d| d.path == "/events/orders" && d.key != "poison")
        .map(|d| d.at)
        .max()
        .unwrap();
    assert!(
        last_other < dead[2].at,
        "other keys flowed while the poison key retried"
    );

    let published = checkout.metrics().await;
    assert!(
        published.contains("sinew_events_published_total{topic=\"orders\",result=\"ok\"} 64"),
        "{published}"
    );
    let metrics = inventory.metrics().await;
    assert!(
        metrics.contains("sinew_events_lag{subscription=\"inventory-orders\",partition="),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "sinew_events_total{subscription=\"inventory-orders\",outcome=\"dead_lettered\"} 3"
        ),
        "{metrics}"
    );
    let by_id: HashMap<&str, usize> = seen.iter().fold(HashMap::new(), |mut m, d| {
        *m.entry(d.id.as_str()).or_default() += 1;
        m
    });
    assert_eq!(
        by_id.get("a-0"),
        Some(&1),
        "the republished id was delivered once"
    );

    // The control plane's metrics: the dead-letter depth and what each
    // partition holds.
    let metrics = control.call(Method::GET, "/metrics", None).await.text();
    assert!(
        metrics.contains("sinew_events_dlq_depth{namespace=\"default\",topic=\"orders\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("sinew_topic_events{namespace=\"default\",topic=\"orders\",partition=\"0\"}"),
        "{metrics}"
    );
    // With the embedded broker, its log's work too: fewer syncs than events.
    if metrics.contains("sinew_events_store{backend=\"embedded\"} 1") {
        let value = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
        };
        let (records, syncs) = (
            value("sinew_broker_records_total"),
            value("sinew_broker_syncs_total"),
        );
        assert!(records > 0 && syncs > 0 && syncs <= records, "{metrics}");
    }

    // The operator's view: topics, a key's history, the dead letters, replay.
    let topics = cli(control, &["events", "topics"]).await;
    assert!(
        topics.contains("default  orders  8  63") && topics.contains("orders.dlq"),
        "{topics}"
    );
    let history = cli(control, &["events", "history", "orders", "--key", "b"]).await;
    let ids: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("id=")))
        .collect();
    let want: Vec<String> = (0..20).map(|i| format!("b-{i}")).collect();
    assert_eq!(ids, want, "{history}");
    let dead = cli(control, &["events", "dlq", "list", "orders"]).await;
    assert_eq!(dead.lines().count(), 3, "{dead}");
    assert!(
        dead.contains("deliveryattempts=3") && dead.contains("deadletterreason="),
        "{dead}"
    );
    let replayed = cli(
        control,
        &["events", "dlq", "replay", "orders", "--id", "poison-1"],
    )
    .await;
    assert!(replayed.contains("replayed 1 event"), "{replayed}");
    assert_eventually!(
        app.seen()
            .iter()
            .any(|d| d.path == "/events/orders" && d.id.starts_with("poison-1.replay.")),
        Duration::from_secs(5),
        "the replayed event is delivered again"
    );
}

/// Runs `sinew ARGS` against `control` (admin token); returns stdout.
async fn cli(control: &Control, args: &[&str]) -> String {
    let output = tokio::process::Command::new(SINEW)
        .args(args)
        .env("SINEW_SERVER", format!("http://{}", control.http()))
        .env("SINEW_TOKEN", control.token())
        .env_remove("SINEW_TOKEN_FILE")
        .output()
        .await
        .expect("run sinew");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "sinew {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `sinew control --events-partitions N` sets the partitions of the topics
/// created after it starts, on either backend; a count outside 1..=1024 is
/// refused at start, naming the flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_topics_get_the_configured_partition_count() {
    let control = Control::builder(SINEW)
        .arg("--events-partitions")
        .arg("3")
        .spawn()
        .await;
    topic_partitions(&control, 3).await;

    let refused = tokio::process::Command::new(SINEW)
        .args(["control", "--events-partitions", "0"])
        .output()
        .await
        .expect("run sinew control");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--events-partitions"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_broker_new_topics_get_the_broker_partition_count() {
    let broker = Broker::spawn(SINEW, &["--partitions", "4"]).await;
    let control = Control::builder(SINEW).on_broker(&broker).spawn().await;
    topic_partitions(&control, 4).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream_new_topics_get_the_configured_partition_count() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let control = Control::builder(SINEW)
        .events(&format!("jetstream:{}", nats.url()))
        .arg("--events-partitions")
        .arg("2")
        .spawn()
        .await;
    topic_partitions(&control, 2).await;
}

/// Publishes to a new topic through a sidecar and checks its partition count.
async fn topic_partitions(control: &Control, want: u64) {
    let checkout = sidecar(control, "checkout-1", "checkout", None).await;
    assert_eventually!(
        publish(&checkout, "payments", "p-1", "k").await.0 == StatusCode::OK,
        Duration::from_secs(5),
        "checkout may publish:\n{}",
        checkout.stderr_tail()
    );
    let topics = control.call(Method::GET, "/v1/topics", None).await.json();
    let payments = topics["items"]
        .as_array()
        .and_then(|items| items.iter().find(|t| t["topic"] == "payments"))
        .unwrap_or_else(|| panic!("payments in {topics}"));
    assert_eq!(payments["partitions"].as_u64(), Some(want), "{payments}");
}

/// The latency of the other keys' deliveries with a poison key in the topic
/// stays close to the latency without one: a failing key holds back only
/// its own events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_key_does_not_slow_the_other_keys() {
    poison_key_latency(&Control::builder(SINEW).spawn().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream_a_poison_key_does_not_slow_the_other_keys() {
    let Some((control, _nats)) = on_jetstream().await else {
        return;
    };
    poison_key_latency(&control).await;
}

async fn poison_key_latency(control: &Control) {
    control
        .apply(&format!(
            "{}{}",
            resource("Service", "inventory", "endpoints: []\n"),
            subscription(
                "inventory-orders",
                "orders",
                "/events/orders",
                "max_in_flight: 8\nretry: {max_attempts: 6, backoff: {base: 200ms, max: 1s}}\n",
            ),
        ))
        .await;
    let app = App::default();
    let app_addr = app.spawn().await;
    let _inventory = sidecar(control, "inventory-1", "inventory", Some(app_addr)).await;
    let checkout = sidecar(control, "checkout-1", "checkout", None).await;

    // Publishes 10 good keys × `rounds` (every 10 ms), with a poison event
    // every round when `poison`; returns each good id's publish time.
    let run = |phase: &'static str, poison: bool| {
        let checkout = &checkout;
        async move {
            let mut sent = HashMap::new();
            for round in 0..30 {
                for key in 0..10 {
                    let id = format!("{phase}-{key}-{round}");
                    let at = Instant::now();
                    let (status, _) = publish(checkout, "orders", &id, &format!("k{key}")).await;
                    assert_eq!(status, StatusCode::OK);
                    sent.insert(id, at);
                }
                if poison {
                    let id = format!("{phase}-poison-{round}");
                    let (status, _) = publish(checkout, "orders", &id, "poison").await;
                    assert_eq!(status, StatusCode::OK);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            sent
        }
    };
    let latencies = |app: &App, sent: &HashMap<String, Instant>| -> Vec<Duration> {
        let seen = app.seen();
        let mut out: Vec<Duration> = sent
            .iter()
            .filter_map(|(id, at)| {
                seen.iter()
                    .find(|d| &d.id == id)
                    .map(|d| d.at.saturating_duration_since(*at))
            })
            .collect();
        out.sort();
        out
    };
    let quantile = |v: &[Duration], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];

    // Warm up: the consumer has joined and delivers before measuring.
    let (status, _) = publish(&checkout, "orders", "warm-up", "k0").await;
    assert_eq!(status, StatusCode::OK);
    assert_eventually!(
        app.seen().iter().any(|d| d.id == "warm-up"),
        Duration::from_secs(10),
        "the consumer delivers"
    );
    let clean = run("clean", false).await;
    assert_eventually!(
        latencies(&app, &clean).len() == clean.len(),
        Duration::from_secs(15),
        "the clean phase delivered"
    );
    let with_poison = run("poisoned", true).await;
    assert_eventually!(
        latencies(&app, &with_poison).len() == with_poison.len(),
        Duration::from_secs(15),
        "the good keys delivered while the poison key retries"
    );
    let (a, b) = (latencies(&app, &clean), latencies(&app, &with_poison));
    eprintln!(
        "other keys' publish→delivery latency: without a poison key p50 {:?} p99 {:?}; with one p50 {:?} p99 {:?}",
        quantile(&a, 0.5),
        quantile(&a, 0.99),
        quantile(&b, 0.5),
        quantile(&b, 0.99)
    );
    // Generous bounds for a shared 2-core machine: the poison key's retries
    // (up to 1 s apart) must not show up in the other keys' delivery times.
    assert!(
        quantile(&b, 0.99) < quantile(&a, 0.99) * 3 + Duration::from_millis(100),
        "p99 with a poison key {:?} vs without {:?}",
        quantile(&b, 0.99),
        quantile(&a, 0.99)
    );
    let last_good = app
        .seen()
        .iter()
        .filter(|d| with_poison.contains_key(&d.id))
        .map(|d| d.at)
        .max()
        .unwrap();
    let poison_tries = app
        .seen()
        .iter()
        .filter(|d| d.key == "poison" && d.at <= last_good)
        .count();
    assert!(
        poison_tries >= 2,
        "the poison key was being retried meanwhile ({poison_tries} tries)"
    );
}
