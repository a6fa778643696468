//! The event mesh's benchmark driver, run by `bench/events.sh` (which
//! starts the nats-servers and writes the report). Every mode prints one
//! JSON line.
//!
//! ```text
//! events_bench publish-sinew     --sinew BIN --dir DIR [--events SPEC] [-c C] [-s SECS] [--size B] [--partitions P] [--topic T]
//! events_bench publish-jetstream --url NATS_URL [-c C] [-s SECS] [--size B] [--partitions P]
//! events_bench publish-broker    --dir DIR [-c C] [-s SECS] [--size B] [--partitions P]
//! events_bench publish-remote    --sinew BIN --dir DIR [-c C] [-s SECS] [--size B] [--partitions P]
//! events_bench latency           --sinew BIN --dir DIR [--events SPEC] [--rate R] [-s SECS] [--partitions P]
//! ```
//!
//! Every throughput mode reports the CPU each process on the path spent per
//! acknowledged event (`cpu_us_per_event`, from `/proc`; the nats-server's,
//! for publish-jetstream or publish-sinew on JetStream, with
//! `--server-pid PID`).
//!
//! `--control-arg ARG` passes a further argument to `sinew control`
//! (repeat it, e.g. `--control-arg --workers --control-arg 1`).
//! `--partitions P` (default 8): the topic's partitions (`sinew control
//! --events-partitions`, or the library broker's), and for JetStream the
//! number of subjects its one stream spreads the messages over.
//!
//! - `publish-sinew`: a control plane (data in DIR, events on its embedded
//!   broker or SPEC) and one sidecar; C HTTP/1.1 connections each POST one
//!   CloudEvent at a time to `/v1/publish/T` (default `bench`; binary mode,
//!   64 keys) for SECS. The 200 comes once the event is fsynced (embedded
//!   broker). It also reports each process's CPU per event (control plane,
//!   sidecar, this load tool) from `/proc`.
//! - `publish-jetstream`: C tasks each publish one message at a time to a
//!   file-storage stream (P subjects) with async-nats
//!   and await its PubAck: the same load straight to JetStream.
//! - `publish-broker`: the embedded broker as a library in this process,
//!   the same publishers calling `Broker::publish` (fsync before it
//!   returns): the log's own ceiling, with no network or sidecar.
//! - `publish-remote`: `sinew broker` (data in DIR) in its own process,
//!   the same publishers calling it over one TLS gRPC connection with
//!   `sinew_events::remote` (the control plane's client of it): the
//!   broker's throughput to a network client, as nats-server's is to
//!   async-nats.
//! - `latency`: as publish-sinew plus a subscriber sidecar delivering to an
//!   app here (Subscription `ordering: key`, `max_in_flight: 64`); events are
//!   published at R per second (paced per connection) and each one's
//!   publish→delivery time is measured from just before its POST to its
//!   arrival at the app.

#![expect(
    clippy::print_stdout,
    reason = "the JSON line on stdout is the tool's output"
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};
use sinew_testkit::{resource, Control, HttpClient, Proxy, Request};

/// Partition keys the publishers cycle through.
const KEYS: usize = 64;

#[derive(Debug)]
struct Args {
    mode: String,
    sinew: PathBuf,
    dir: PathBuf,
    events: Option<String>,
    url: String,
    concurrency: usize,
    seconds: u64,
    size: usize,
    rate: u64,
    partitions: u32,
    /// The topic `publish-sinew` publishes to.
    topic: String,
    /// Further `sinew control` arguments (`--control-arg ARG`, repeated).
    control_args: Vec<String>,
    /// The nats-server's process, for its CPU per event (`--server-pid`).
    server_pid: Option<u32>,
    /// Events per publish (`--batch`): each publisher sends this many at a
    /// time and awaits all their acks before the next.
    batch: usize,
}

fn args() -> Args {
    let mut a = Args {
        mode: String::new(),
        sinew: PathBuf::from("target/release/sinew"),
        dir: std::env::temp_dir().join("sinew-events-bench"),
        events: None,
        url: "nats://127.0.0.1:4222".to_owned(),
        concurrency: 32,
        seconds: 10,
        size: 256,
        rate: 5000,
        partitions: 8,
        topic: "bench".to_owned(),
        control_args: Vec::new(),
        server_pid: None,
        batch: 1,
    };
    let mut it = std::env::args().skip(1);
    a.mode = it.next().unwrap_or_default();
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--sinew" => a.sinew = value().into(),
            "--dir" => a.dir = value().into(),
            "--events" => a.events = Some(value()),
            "--url" => a.url = value(),
            "-c" | "--concurrency" => a.concurrency = value().parse().expect("-c N"),
            "-s" | "--seconds" => a.seconds = value().parse().expect("-s SECS"),
            "--size" => a.size = value().parse().expect("--size BYTES"),
            "--rate" => a.rate = value().parse().expect("--rate N"),
            "--partitions" => a.partitions = value().parse().expect("--partitions N"),
            "--topic" => a.topic = value(),
            "--control-arg" => a.control_args.push(value()),
            "--server-pid" => a.server_pid = Some(value().parse().expect("--server-pid PID")),
            "--batch" => a.batch = value().parse::<usize>().expect("--batch N").max(1),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    match a.mode.as_str() {
        "publish-sinew" => publish_sinew(&a).await,
        "publish-jetstream" => publish_jetstream(&a).await,
        "publish-broker" => publish_broker(&a).await,
        "publish-remote" => publish_remote(&a).await,
        "latency" => latency(&a).await,
        _ => panic!(
            "mode: publish-sinew | publish-jetstream | publish-broker | publish-remote | latency"
        ),
    }
}

/// What one publisher of a throughput run did: acknowledged, failed, and
/// each acknowledged publish's round trip.
type Tally = (usize, usize, Vec<Duration>);

/// Starts `a.concurrency` publishers, each calling `publish(task, n)` for
/// its `n`th publish (of `a.batch` events), one at a time, until
/// `a.seconds` have passed; `publish` answers how many events were
/// acknowledged, 0 for a failed publish. Returns when they started, and a
/// [`CpuMeter`] of `processes` begun with them.
fn closed_loop<F, Fut>(
    a: &Args,
    processes: &[(&'static str, u32)],
    publish: F,
) -> ((Instant, CpuMeter), Vec<tokio::task::JoinHandle<Tally>>)
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = usize> + Send,
{
    let cpu = CpuMeter::start(processes);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    let tasks = (0..a.concurrency)
        .map(|task| {
            let publish = publish.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed, mut latencies) = (0usize, 0usize, Vec::new());
                let mut n = 0usize;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    match publish(task, n).await {
                        0 => failed += 1,
                        acked => {
                            ok += acked;
                            latencies.push(sent.elapsed());
                        }
                    }
                    n += 1;
                }
                (ok, failed, latencies)
            })
        })
        .collect();
    ((started, cpu), tasks)
}

/// Waits for the publishers started at `started`, then prints the run's
/// JSON line: `run`'s fields, the totals and rate, the latency quantiles,
/// the CPU per event.
async fn report(
    mut run: serde_json::Value,
    a: &Args,
    (started, cpu): (Instant, CpuMeter),
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
) {
    let tallies = join(tasks).await;
    run["cpu_us_per_event"] = cpu.per_event(tallies.iter().map(|t| t.0).sum());
    report_tallies(run, a, started, tallies);
}

/// The CPU time of the processes on a run's path, read when it starts, so
/// each one's CPU per acknowledged event can be told at the end: what bounds
/// a run on a machine they share.
struct CpuMeter {
    processes: Vec<(&'static str, u32, u64)>,
}

impl CpuMeter {
    /// Starts counting for `processes` (name, pid) and this load tool.
    fn start(processes: &[(&'static str, u32)]) -> Self {
        let load = [("load", std::process::id())];
        let processes = processes
            .iter()
            .chain(&load)
            .map(|&(name, pid)| (name, pid, cpu_ticks(pid)))
            .collect();
        Self { processes }
    }

    /// Microseconds of CPU per event of each process, as a JSON object.
    fn per_event(&self, acked: usize) -> serde_json::Value {
        let mut cpu = serde_json::Map::new();
        for &(name, pid, before) in &self.processes {
            // Clock ticks are 1/100 s (USER_HZ) on Linux.
            let us = cpu_ticks(pid).saturating_sub(before) as f64 * 1e4 / acked.max(1) as f64;
            cpu.insert(name.to_owned(), us.into());
        }
        cpu.into()
    }
}

/// Every publisher's tally, once all are done.
async fn join(tasks: Vec<tokio::task::JoinHandle<Tally>>) -> Vec<Tally> {
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        tallies.push(task.await.expect("publisher"));
    }
    tallies
}

/// Prints `run` with the throughput and latency of `tallies`, from `started`.
fn report_tallies(mut run: serde_json::Value, a: &Args, started: Instant, tallies: Vec<Tally>) {
    let (mut ok, mut failed, mut latencies) = (0, 0, Vec::new());
    for (o, f, l) in tallies {
        ok += o;
        failed += f;
        latencies.extend(l);
    }
    let elapsed = started.elapsed().as_secs_f64();
    run["concurrency"] = a.concurrency.into();
    run["batch"] = a.batch.into();
    run["size"] = a.size.into();
    run["partitions"] = a.partitions.into();
    run["acked"] = ok.into();
    run["failed"] = failed.into();
    run["per_s"] = (ok as f64 / elapsed).into();
    run["latency"] = quantiles(&mut latencies);
    println!("{run}");
}

/// Microsecond quantiles of `samples` (sorted here).
fn quantiles(samples: &mut [Duration]) -> serde_json::Value {
    samples.sort();
    let q = |p: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    serde_json::json!({
        "p50_us": q(0.5), "p90_us": q(0.9), "p99_us": q(0.99), "max_us": q(1.0),
    })
}

async fn control(a: &Args) -> Control {
    let _ = std::fs::remove_dir_all(&a.dir);
    std::fs::create_dir_all(&a.dir).expect("create the bench dir");
    let mut builder = Control::builder(&a.sinew)
        .dir(&a.dir)
        .arg("--events-partitions")
        .arg(&a.partitions.to_string());
    for arg in &a.control_args {
        builder = builder.arg(arg);
    }
    if let Some(events) = &a.events {
        builder = builder.events(events);
    }
    builder.spawn().await
}

async fn sidecar(a: &Args, control: &Control, name: &str, app: Option<SocketAddr>) -> Proxy {
    let mut b = Proxy::builder(&a.sinew)
        .name(name)
        .own_service(name.split('-').next().unwrap_or(name))
        .control_plane(control)
        .env("SINEW_LOG", "warn");
    if let Some(app) = app {
        b = b.app(app);
    }
    b.spawn().await
}

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

fn event(topic: &str, id: &str, key: usize, data: &Bytes) -> Request {
    Request::new(Method::POST, &format!("/v1/publish/{topic}"))
        .host("api")
        .header("ce-id", id)
        .header("ce-source", "/bench")
        .header("ce-type", "bench.event")
        .header("ce-specversion", "1.0")
        .header("ce-partitionkey", &format!("k{key}"))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
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

async fn publish_sinew(a: &Args) {
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

/// User plus system CPU clock ticks `pid` has used (`/proc/PID/stat`).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at `) `.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map_or("", |(_, rest)| rest)
        .split(' ')
        .collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime: the 14th and 15th fields, 12th and 13th after `) `.
    field(11) + field(12)
}

async fn publish_jetstream(a: &Args) {
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

async fn publish_remote(a: &Args) {
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

async fn publish_broker(a: &Args) {
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

async fn latency(a: &Args) {
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
