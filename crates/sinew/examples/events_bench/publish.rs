//! The throughput modes: the same closed-loop publishers against the
//! sidecar API, JetStream, the broker library and `sinew broker`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use sinew_testkit::{HttpClient, Request};

use super::{
    closed_loop, control, event, join, report, report_tallies, sidecar, Args, CpuMeter, Tally, KEYS,
};

/// A publish of `batch` events: binary mode for one, else a structured
/// batch (`application/cloudevents-batch+json`) of them.
fn publish_request(topic: &str, task: usize, n: usize, batch: usize, data: &Bytes) -> Request {
    if batch == 1 {
        return event(topic, &format!("t{task}-{n}"), (task + n) % KEYS, data);
    }
    let text = String::from_utf8_lossy(data);
    let events: Vec<_> = (0..batch)
        .map(|i| {
            serde_json::json!({
                "specversion": "1.0", "id": format!("t{task}-{n}-{i}"), "source": "/bench",
                "type": "bench.event", "partitionkey": format!("k{}", (task + n + i) % KEYS),
                "datacontenttype": "text/plain", "data": text,
            })
        })
        .collect();
    Request::new(Method::POST, &format!("/v1/publish/{topic}"))
        .host("api")
        .header("content-type", "application/cloudevents-batch+json")
        .body(serde_json::Value::from(events).to_string())
}

/// Publishes through the sidecar until the deadline; acks and latencies.
async fn publish_loop(
    api: SocketAddr,
    topic: Arc<str>,
    task: usize,
    deadline: Instant,
    data: Bytes,
    batch: usize,
) -> Tally {
    let mut client = HttpClient::http1(api)
        .await
        .expect("connect to the sidecar api");
    let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
    let mut n = 0usize;
    while Instant::now() < deadline {
        let sent = Instant::now();
        match client
            .send(publish_request(&topic, task, n, batch, &data))
            .await
        {
            Ok(r) if r.status == StatusCode::OK => {
                ok += batch;
                latencies.push(sent.elapsed());
            }
            Ok(_) => failed += 1,
            Err(_) => {
                failed += 1;
                client = HttpClient::http1(api).await.expect("reconnect");
            }
        }
        n += 1;
    }
    (ok, failed, latencies)
}

pub(crate) async fn sinew(a: &Args) {
    let control = control(a).await;
    let checkout = sidecar(a, &control, "checkout-1", None).await;
    let data = Bytes::from(vec![b'x'; a.size]);
    // Warm up: the topic exists, the sidecar holds its certificate.
    let warm = Instant::now() + Duration::from_secs(1);
    let topic: Arc<str> = a.topic.as_str().into();
    // Its publisher number is one the run's publishers do not use.
    publish_loop(
        checkout.api(),
        topic.clone(),
        a.concurrency,
        warm,
        data.clone(),
        a.batch,
    )
    .await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    // CPU per event of each process on the path: what bounds it on a
    // machine they share.
    // With --events jetstream:URL, --server-pid names the nats-server.
    let mut processes = vec![
        ("control", control.process().pid()),
        ("sidecar", checkout.process().pid()),
    ];
    processes.extend(a.server_pid.map(|pid| ("server", pid)));
    let cpu = CpuMeter::start(&processes);
    let tasks: Vec<_> = (0..a.concurrency)
        .map(|t| {
            let (topic, data) = (topic.clone(), data.clone());
            tokio::spawn(publish_loop(
                checkout.api(),
                topic,
                t,
                deadline,
                data,
                a.batch,
            ))
        })
        .collect();
    let mut run = serde_json::json!({
        "mode": "publish-sinew",
        "events": a.events.as_deref().unwrap_or("embedded"),
    });
    let tallies = join(tasks).await;
    run["cpu_us_per_event"] = cpu.per_event(tallies.iter().map(|t| t.0).sum());
    report_tallies(run, a, started, tallies);
}

pub(crate) async fn jetstream(a: &Args) {
    use async_nats::jetstream::{self, stream};
    let client = async_nats::connect(a.url.as_str())
        .await
        .expect("connect to nats");
    let js = jetstream::new(client);
    let _ = js.delete_stream("bench").await;
    js.create_stream(stream::Config {
        name: "bench".to_owned(),
        subjects: vec!["bench.>".to_owned()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .expect("create the stream");
    let data = Bytes::from(vec![b'x'; a.size]);
    let subjects = a.partitions as usize;
    let server: Vec<_> = a
        .server_pid
        .map(|pid| ("server", pid))
        .into_iter()
        .collect();
    let batch = a.batch;
    let (started, tasks) = closed_loop(a, &server, move |task, n| {
        let (js, data) = (js.clone(), data.clone());
        async move {
            // A batch is published asynchronously, then its acks awaited
            // (`nats bench --js` publishes so, in batches of 100).
            let mut acks = Vec::with_capacity(batch);
            for i in 0..batch {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("t{task}-{n}-{i}").as_str());
                let subject = format!("bench.{}", (task + n + i) % subjects);
                match js
                    .publish_with_headers(subject, headers, data.clone())
                    .await
                {
                    Ok(ack) => acks.push(ack),
                    Err(_) => return 0,
                }
            }
            let mut acked = 0;
            for ack in acks {
                if ack.await.is_err() {
                    return 0;
                }
                acked += 1;
            }
            acked
        }
    });
    let run = serde_json::json!({"mode": "publish-jetstream", "url": a.url});
    report(run, a, started, tasks).await;
}

/// Publisher `task`'s `n`th publish's events for the library and remote runs.
fn bench_events(task: usize, n: usize, batch: usize, data: &Bytes) -> Vec<sinew_events::Event> {
    (0..batch)
        .map(|i| {
            sinew_events::Event::new(format!("t{task}-{n}-{i}"), data.clone())
                .with_key(format!("k{}", (task + n + i) % KEYS))
        })
        .collect()
}

pub(crate) async fn remote(a: &Args) {
    use sinew_events::remote::{RemoteBroker, RemoteConfig};
    let _ = std::fs::remove_dir_all(&a.dir);
    let listen = sinew_testkit::free_port();
    let mut child = tokio::process::Command::new(&a.sinew)
        .arg("broker")
        .arg("--data-dir")
        .arg(&a.dir)
        .arg("--listen")
        .arg(listen.to_string())
        .arg("--partitions")
        .arg(a.partitions.to_string())
        .arg("--admin-listen")
        .arg(sinew_testkit::free_port().to_string())
        .env("SINEW_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("start sinew broker");
    let token_file = a.dir.join("broker.token");
    let serving = Instant::now();
    while tokio::net::TcpStream::connect(listen).await.is_err() || !token_file.exists() {
        assert!(
            serving.elapsed() < Duration::from_secs(20),
            "sinew broker did not serve"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let remote = RemoteBroker::connect(RemoteConfig {
        url: format!("https://{listen}"),
        token: std::fs::read_to_string(&token_file).expect("the token"),
        cert_pem: std::fs::read_to_string(a.dir.join("broker.pem")).expect("the certificate"),
    })
    .expect("connect to the broker");
    let data = Bytes::from(vec![b'x'; a.size]);
    let broker = [("broker", child.id().expect("the broker's pid"))];
    let batch = a.batch;
    let (started, tasks) = closed_loop(a, &broker, move |task, n| {
        let (remote, events) = (remote.clone(), bench_events(task, n, batch, &data));
        async move { remote.publish("bench", events).await.map_or(0, |_| batch) }
    });
    report(
        serde_json::json!({"mode": "publish-remote"}),
        a,
        started,
        tasks,
    )
    .await;
    let _ = child.kill().await;
}

pub(crate) async fn broker(a: &Args) {
    use sinew_events::{Broker, BrokerConfig};
    let _ = std::fs::remove_dir_all(&a.dir);
    let config = BrokerConfig {
        partitions: a.partitions,
        ..BrokerConfig::default()
    };
    let broker = Broker::open(&a.dir, config).await.expect("open the broker");
    let data = Bytes::from(vec![b'x'; a.size]);
    let publisher = broker.clone();
    let batch = a.batch;
    let (started, tasks) = closed_loop(a, &[], move |task, n| {
        let (broker, events) = (publisher.clone(), bench_events(task, n, batch, &data));
        async move { broker.publish("bench", events).await.map_or(0, |_| batch) }
    });
    report(
        serde_json::json!({"mode": "publish-broker"}),
        a,
        started,
        tasks,
    )
    .await;
    let _ = broker.close().await;
}
