//! A subscription's consumer, black-box: a `start: latest` subscription
//! pins its first cursor at once, so events its first sidecar did not
//! finish are delivered by the next one (a restart, a partition handed
//! over) instead of being skipped by that one's own "latest"; an edited
//! subscription delivers nothing more under its old spec; a sidecar cut
//! off from the broker stops delivering before its partitions can move.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use sinew_testkit::{assert_eventually, serve_app, Control};

use crate::events::{inventory_subscribes, publish, sidecar};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latest_start_keeps_what_the_first_sidecar_did_not_deliver() {
    let control = Control::builder(SINEW).spawn().await;
    control
        .apply(&inventory_subscribes(
            "inventory-orders",
            "orders",
            "/events",
            "start: latest\nretry: {max_attempts: 1000, backoff: {base: 100ms, max: 200ms}}\n",
        ))
        .await;
    // Fails everything until told otherwise; counts what it took.
    let failing = Arc::new(AtomicBool::new(true));
    let (attempts, delivered) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let app = {
        let (failing, attempts, delivered) = (failing.clone(), attempts.clone(), delivered.clone());
        serve_app(move |_req| {
            attempts.fetch_add(1, Ordering::SeqCst);
            if failing.load(Ordering::SeqCst) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                delivered.fetch_add(1, Ordering::SeqCst);
                StatusCode::OK
            }
        })
        .await
    };
    let checkout = sidecar(&control, "checkout-1", "checkout", None).await;
    let mut first = sidecar(&control, "inventory-1", "inventory", Some(app)).await;
    // Publish until the first sidecar is consuming (it starts at "latest",
    // so events before its workers ran are not its to deliver).
    let mut i = 0;
    assert_eventually!(
        {
            i += 1;
            let (status, body) = publish(&checkout, "orders", &format!("e{i}"), "k").await;
            assert_eq!(status, StatusCode::OK, "{body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
            attempts.load(Ordering::SeqCst) > 0
        },
        Duration::from_secs(15),
        "the first sidecar never tried a delivery:\n{}",
        first.stderr_tail()
    );

    // It dies with the event unfinished; the next one takes over and the
    // app recovers: the event must still arrive.
    first.process_mut().kill().expect("kill the first sidecar");
    failing.store(false, Ordering::SeqCst);
    let second = sidecar(&control, "inventory-2", "inventory", Some(app)).await;
    assert_eventually!(
        delivered.load(Ordering::SeqCst) > 0,
        Duration::from_secs(20),
        "the undelivered event was skipped:\n{}",
        second.stderr_tail()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_subscription_stops_delivering_under_its_old_spec() {
    let control = Control::builder(SINEW).spawn().await;
    let subscription =
        |path: &str| inventory_subscribes("inventory-orders", "orders", path, "start: earliest\n");
    control.apply(&subscription("/old")).await;
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let app = {
        let seen = seen.clone();
        serve_app(move |req| {
            seen.lock().unwrap().push(req.uri.path().to_owned());
            StatusCode::OK
        })
        .await
    };
    let count = |path: &str| seen.lock().unwrap().iter().filter(|p| *p == path).count();
    let checkout = sidecar(&control, "checkout-1", "checkout", None).await;
    let inventory = sidecar(&control, "inventory-1", "inventory", Some(app)).await;
    let mut i = 0;
    let mut publish_one = || {
        i += 1;
        let id = format!("e{i}");
        let checkout = &checkout;
        async move {
            // Spread over keys, so every partition's worker has work.
            let (status, body) = publish(checkout, "orders", &id, &id).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    assert_eventually!(
        {
            publish_one().await;
            count("/old") > 0
        },
        Duration::from_secs(15),
        "no delivery under the first spec:\n{}",
        inventory.stderr_tail()
    );

    control.apply(&subscription("/new")).await;
    assert_eventually!(
        {
            publish_one().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            count("/new") > 0
        },
        Duration::from_secs(15),
        "no delivery under the edited spec:\n{}",
        inventory.stderr_tail()
    );
    // Once the new spec delivers, the old one's workers are gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let old = count("/old");
    for _ in 0..30 {
        publish_one().await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count("/old"),
        old,
        "deliveries under the old spec after the edit"
    );
    assert!(count("/new") >= 30, "{} under the new spec", count("/new"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_cut_off_from_the_broker_stops_delivering() {
    let mut control = Control::builder(SINEW).spawn().await;
    control
        .apply(&inventory_subscribes(
            "inventory-orders",
            "orders",
            "/events",
            "start: earliest\nretry: {max_attempts: 1000, backoff: {base: 50ms, max: 100ms}}\n",
        ))
        .await;
    // Fails everything: the one event is retried every 100 ms or so.
    let attempts = Arc::new(AtomicUsize::new(0));
    let app = {
        let attempts = attempts.clone();
        serve_app(move |_req| {
            attempts.fetch_add(1, Ordering::SeqCst);
            StatusCode::SERVICE_UNAVAILABLE
        })
        .await
    };
    let checkout = sidecar(&control, "checkout-1", "checkout", None).await;
    let inventory = sidecar(&control, "inventory-1", "inventory", Some(app)).await;
    let (status, body) = publish(&checkout, "orders", "e1", "k").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eventually!(
        attempts.load(Ordering::SeqCst) >= 3,
        Duration::from_secs(15),
        "retrying:\n{}",
        inventory.stderr_tail()
    );

    // The broker goes away: within its session timeout (3 s) another member
    // could own the partition, so this one stops trying before that.
    control.kill().await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stopped_at = attempts.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        stopped_at,
        "deliveries went on without the broker:\n{}",
        inventory.stderr_tail()
    );
}
