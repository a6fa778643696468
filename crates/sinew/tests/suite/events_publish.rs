//! The publish API's refusals and limits, black-box: by workload identity
//! (403 naming the policy), a malformed event (400 saying what is wrong), a
//! static sidecar with no broker (503), a bad event among many concurrent
//! good ones (only its publisher is refused), and an event at the 4 MiB
//! body limit, stored and delivered across every gRPC hop.

use std::time::Duration;

use http::{Method, StatusCode};
use sinew_testkit::{assert_eventually, resource, Backend, Control, HttpClient, Proxy, Request};

use super::events::{inventory_subscribes, on_jetstream, publish, sidecar};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_is_refused_clearly() {
    let control = Control::builder(SINEW).spawn().await;
    control
        .apply(&resource(
            "AuthorizationPolicy",
            "orders-writers",
            "topic: orders\naction: allow\nrules:\n  - from: {identities: [\"spiffe://sinew.local/ns/default/svc/checkout\"]}\n    to: {operations: [publish]}\n",
        ))
        .await;
    let checkout = sidecar(&control, "checkout-1", "checkout", None).await;
    let ads = sidecar(&control, "ads-1", "ads", None).await;
    // Allowed by identity (once the sidecar holds its certificate).
    assert_eventually!(
        publish(&checkout, "orders", "o-1", "k").await.0 == StatusCode::OK,
        Duration::from_secs(5),
        "checkout may publish:\n{}",
        checkout.stderr_tail()
    );
    // Another workload: 403, naming the policy.
    assert_eventually!(
        publish(&ads, "orders", "o-2", "k").await.0 == StatusCode::FORBIDDEN,
        Duration::from_secs(5),
        "ads may not publish to orders"
    );
    let (_, body) = publish(&ads, "orders", "o-3", "k").await;
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("default-deny")),
        "{body}"
    );
    // A malformed event: 400 saying what is missing.
    let mut c = HttpClient::http1(checkout.api()).await.unwrap();
    let r = c
        .send(
            Request::new(Method::POST, "/v1/publish/orders")
                .host("api")
                .header("ce-id", "x")
                .body("{}"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("ce-source"), "{}", r.text());

    // A static sidecar has no broker: 503.
    let app = Backend::http().spawn().await;
    let lone = Proxy::builder(SINEW).app(app.addr()).spawn().await;
    let (status, body) = publish(&lone, "orders", "s-1", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

/// An id with a control character (which JetStream would refuse, and
/// which could never be delivered as a header) is refused by the sidecar
/// itself, with 400 naming it, while 24 good events are published
/// concurrently through the same sidecar: only its publisher fails, and
/// every good event is stored, over 8 rounds. (A store's refusal of one
/// event in a call shared by many publishers is retried publisher by
/// publisher: `sinew_proto::coalesce`'s `one_bad_event_fails_only_its_caller`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream_a_refused_event_fails_only_its_publisher() {
    let Some((control, _nats)) = on_jetstream().await else {
        return;
    };
    let checkout = sidecar(&control, "checkout-1", "checkout", None).await;
    assert_eventually!(
        publish(&checkout, "orders", "warm-up", "k").await.0 == StatusCode::OK,
        Duration::from_secs(10),
        "checkout may publish:\n{}",
        checkout.stderr_tail()
    );
    for round in 0..8 {
        let good: Vec<_> = (0..24)
            .map(|i| {
                let api = checkout.api();
                tokio::spawn(async move {
                    let mut c = HttpClient::http1(api).await.expect("api");
                    let id = format!("r{round}-{i}");
                    let r = c
                        .send(
                            Request::new(Method::POST, "/v1/publish/orders")
                                .host("api")
                                .header("ce-id", &id)
                                .header("ce-source", "/checkout")
                                .header("ce-type", "order.created")
                                .header("ce-specversion", "1.0")
                                .header("ce-partitionkey", &format!("k{i}"))
                                .body(id.clone()),
                        )
                        .await
                        .expect("an answer");
                    (id, r.status, r.text())
                })
            })
            .collect();
        let mut c = HttpClient::http1(checkout.api()).await.expect("api");
        let bad = c
            .send(
                Request::new(Method::POST, "/v1/publish/orders")
                    .host("api")
                    .header("content-type", "application/cloudevents+json")
                    .body(format!(
                        r#"{{"specversion":"1.0","id":"bad-{round}\u0001","source":"/s","type":"t"}}"#
                    )),
            )
            .await
            .expect("an answer");
        assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text());
        assert!(bad.text().contains("control characters"), "{}", bad.text());
        for publisher in good {
            let (id, status, body) = publisher.await.expect("publisher");
            assert_eq!(status, StatusCode::OK, "{id}: {body}");
            let reply: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(reply["results"][0]["duplicate"], false, "{id}: {body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_at_the_body_limit_is_stored_and_delivered() {
    let control = Control::builder(SINEW).spawn().await;
    control
        .apply(&inventory_subscribes(
            "inventory-big",
            "big",
            "/big",
            "start: earliest\n",
        ))
        .await;
    let sizes: std::sync::Arc<std::sync::Mutex<Vec<usize>>> = Default::default();
    let app = {
        let sizes = sizes.clone();
        sinew_testkit::serve_app(move |req| {
            let length = req
                .headers
                .get("content-length")
                .and_then(|v| v.to_str().ok()?.parse().ok());
            sizes.lock().unwrap().push(length.unwrap_or(0));
            StatusCode::OK
        })
        .await
    };
    let checkout = sidecar(&control, "checkout-1", "checkout", None).await;
    let inventory = sidecar(&control, "inventory-1", "inventory", Some(app)).await;
    // The whole body may be 4 MiB, and in binary mode it is the data: the
    // publish and the fetch carry a little more than 4 MiB.
    let data = vec![b'x'; 4 << 20];
    let mut c = HttpClient::http1(checkout.api()).await.expect("api");
    let r = c
        .send(
            Request::new(Method::POST, "/v1/publish/big")
                .host("api")
                .header("ce-id", "big-1")
                .header("ce-source", "/checkout")
                .header("ce-type", "blob")
                .header("ce-specversion", "1.0")
                .header("content-type", "application/octet-stream")
                .body(data.clone()),
        )
        .await
        .expect("an answer");
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eventually!(
        sizes.lock().unwrap().contains(&data.len()),
        Duration::from_secs(15),
        "not delivered whole: {:?}\n{}",
        sizes.lock().unwrap(),
        inventory.stderr_tail()
    );
}
