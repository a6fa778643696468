//! The latency mode: publish→delivery at a fixed rate, through both
//! sidecars to an app here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use sinew_testkit::{resource, HttpClient};

use super::{control, event, quantiles, sidecar, Args, KEYS};

/// An app recording when each event id arrives.
async fn app(arrived: Arc<Mutex<HashMap<String, Instant>>>) -> SocketAddr {
    sinew_testkit::serve_app(move |req| {
        let now = Instant::now();
        if let Some(id) = req.headers.get("ce-id").and_then(|v| v.to_str().ok()) {
            arrived
                .lock()
                .expect("lock")
                .entry(id.to_owned())
                .or_insert(now);
        }
        http::StatusCode::OK
    })
    .await
}

pub(crate) async fn run(a: &Args) {
    let control = control(a).await;
    control
        .apply(&format!(
            "{}{}",
            resource("Service", "inventory", "endpoints: []\n"),
            resource(
                "Subscription",
                "inventory-bench",
                "topic: latency\nservice: inventory\ndeliver: {path: /events}\nstart: earliest\nordering: key\nmax_in_flight: 64\n",
            ),
        ))
        .await;
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let app_addr = app(arrived.clone()).await;
    let _inventory = sidecar(a, &control, "inventory-1", Some(app_addr)).await;
    let checkout = sidecar(a, &control, "checkout-1", None).await;
    let data = Bytes::from(vec![b'x'; a.size]);

    // Warm up until deliveries flow.
    let mut client = HttpClient::http1(checkout.api()).await.expect("api");
    let warm_until = Instant::now() + Duration::from_secs(30);
    let mut w = 0;
    loop {
        let id = format!("warm-{w}");
        let _ = client.send(event("latency", &id, w % KEYS, &data)).await;
        w += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        if arrived.lock().expect("lock").len() >= 20 {
            break;
        }
        assert!(Instant::now() < warm_until, "no delivery within 30 s");
    }

    // Paced publishing: `conns` connections, each at rate/conns per second.
    let conns = 16usize;
    let interval = Duration::from_secs_f64(conns as f64 / a.rate as f64);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    let tasks: Vec<_> = (0..conns)
        .map(|task| {
            let (api, data) = (checkout.api(), data.clone());
            tokio::spawn(async move {
                let mut client = HttpClient::http1(api).await.expect("api");
                let mut sent = Vec::new();
                let mut next = started + interval.mul_f64(task as f64 / conns as f64);
                let mut n = 0usize;
                let mut failed = 0usize;
                while next < deadline {
                    tokio::time::sleep_until(next.into()).await;
                    let id = format!("t{task}-{n}");
                    let at = Instant::now();
                    match client
                        .send(event("latency", &id, (task * 7 + n) % KEYS, &data))
                        .await
                    {
                        Ok(r) if r.status == StatusCode::OK => sent.push((id, at)),
                        _ => failed += 1,
                    }
                    n += 1;
                    next += interval;
                }
                (sent, failed)
            })
        })
        .collect();
    let (mut sent, mut failed) = (Vec::new(), 0);
    for t in tasks {
        let (s, f) = t.await.expect("publisher");
        sent.extend(s);
        failed += f;
    }
    let published_in = started.elapsed().as_secs_f64();
    // Drain (bounded).
    let drain_until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < drain_until {
        let done = {
            let arrived = arrived.lock().expect("lock");
            sent.iter().all(|(id, _)| arrived.contains_key(id))
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let arrived = arrived.lock().expect("lock").clone();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, at)| arrived.get(id).map(|t| t.saturating_duration_since(*at)))
        .collect();
    let delivered = latencies.len();
    let mut out = serde_json::json!({
        "mode": "latency",
        "events": a.events.as_deref().unwrap_or("embedded"),
        "rate": a.rate, "size": a.size,
        "published": sent.len(), "failed": failed,
        "published_per_s": sent.len() as f64 / published_in,
        "delivered": delivered,
    });
    out["latency"] = quantiles(&mut latencies);
    println!("{out}");
}
