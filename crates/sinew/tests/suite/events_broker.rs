//! `sinew broker`, the event broker alone, reached directly and as a
//! control plane's event store: its token, batched publishes from its
//! client, and its admin listener. Delivery, failover and crash runs on it
//! are the `on_broker_*` tests of `events` and `events_durability`.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use sinew_testkit::{assert_eventually, Broker, Control, HttpClient, Request};

use crate::events::{publish, sidecar};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// The standalone broker refuses a caller without its token, and a control
/// plane given a wrong one answers publishers 503, never 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_broker_refuses_a_wrong_token() {
    let broker = Broker::spawn(SINEW, &[]).await;
    let wrong = sinew_testkit::TempDir::new("wrong-token");
    std::fs::write(wrong.join("token"), "not-the-token\n").unwrap();
    let control = Control::builder(SINEW)
        .events(&format!("broker:{}", broker.url()))
        .arg("--broker-token-file")
        .arg(&wrong.join("token").display().to_string())
        .arg("--broker-cert")
        .arg(&broker.cert_file().display().to_string())
        .spawn()
        .await;
    let checkout = sidecar(&control, "checkout-1", "checkout", None).await;
    assert_eventually!(
        publish(&checkout, "orders", "o-1", "k").await.0 == StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(5),
        "a refused broker call is a 503:\n{}",
        checkout.stderr_tail()
    );
    let (_, body) = publish(&checkout, "orders", "o-2", "k").await;
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("token")),
        "{body}"
    );
    // Nothing was stored.
    assert!(!broker.dir().join("events/topics/default.orders").exists());
    // Without the flags the control plane does not start.
    let refused = tokio::process::Command::new(SINEW)
        .args(["control", "--events", &format!("broker:{}", broker.url())])
        .output()
        .await
        .expect("run sinew control");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--broker-token-file"), "{stderr}");
}

/// A client of `sinew broker` (the control plane's `--events broker:`
/// store) batches concurrent publishes into shared calls: one publish's bad
/// event still fails only that publish, and every good one is stored once,
/// in order per caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_to_a_standalone_broker_are_stored_once_and_a_bad_one_fails_alone() {
    use sinew_events::remote::{RemoteBroker, RemoteConfig};
    use sinew_events::{ErrorKind, Event};
    let broker = Broker::spawn(SINEW, &["--partitions", "1"]).await;
    let remote = RemoteBroker::connect(RemoteConfig {
        url: broker.url(),
        token: std::fs::read_to_string(broker.token_file()).unwrap(),
        cert_pem: std::fs::read_to_string(broker.cert_file()).unwrap(),
    })
    .expect("connect");
    let mut tasks = Vec::new();
    for caller in 0..16 {
        let remote = remote.clone();
        tasks.push(tokio::spawn(async move {
            let mut offsets = Vec::new();
            for n in 0..20 {
                let id = if caller == 7 && n == 10 {
                    String::new() // no ce-id: refused
                } else {
                    format!("c{caller}-{n}")
                };
                let result = remote
                    .publish("default.orders", vec![Event::new(id, "{}")])
                    .await;
                offsets.push(result.map(|p| p[0].offset).map_err(|e| e.kind()));
            }
            offsets
        }));
    }
    let mut stored = Vec::new();
    for (caller, task) in tasks.into_iter().enumerate() {
        let offsets = task.await.unwrap();
        for (n, result) in offsets.iter().enumerate() {
            if caller == 7 && n == 10 {
                assert_eq!(*result, Err(ErrorKind::InvalidInput));
            } else {
                let offset = result.unwrap_or_else(|e| panic!("c{caller}-{n}: {e:?}"));
                stored.push(offset);
            }
        }
        // One caller's events are stored in its order.
        let own: Vec<u64> = offsets.iter().filter_map(|r| r.ok()).collect();
        assert!(own.windows(2).all(|w| w[0] < w[1]), "c{caller}: {own:?}");
    }
    stored.sort_unstable();
    stored.dedup();
    assert_eq!(stored.len(), 16 * 20 - 1, "every good event stored once");
    assert_eq!(
        remote.offsets("default.orders", 0).await.unwrap(),
        0..(16 * 20 - 1)
    );
    standalone_broker_admin_shows(&broker, 16 * 20 - 1).await;
}

/// The broker's admin listener: live, and its metrics count the `stored`
/// events of `default.orders` (one partition), made durable by fewer syncs
/// than events (the publishes were batched).
async fn standalone_broker_admin_shows(broker: &Broker, stored: u64) {
    let mut admin = HttpClient::http1(broker.admin()).await.expect("admin");
    let live = admin.get("localhost", "/live").await.expect("/live");
    assert_eq!(live.status, StatusCode::OK, "{}", live.text());
    let post = admin
        .send(Request::post("/metrics", Bytes::new()))
        .await
        .expect("POST");
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    let metrics = admin.get("localhost", "/metrics").await.expect("/metrics");
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    assert_eq!(value("sinew_broker_records_total"), stored, "{text}");
    assert_eq!(
        value("sinew_topic_next_offset{namespace=\"default\",topic=\"orders\",partition=\"0\"}"),
        stored
    );
    let syncs = value("sinew_broker_syncs_total");
    assert!(
        (1..stored).contains(&syncs),
        "{syncs} syncs for {stored} events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_broker_keeps_its_admin_listener_on_loopback() {
    let dir = sinew_testkit::TempDir::new("broker-admin");
    let out = tokio::process::Command::new(SINEW)
        .args([
            "broker",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .await
        .expect("run sinew broker");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--admin-allow-non-loopback"), "{stderr}");
}
