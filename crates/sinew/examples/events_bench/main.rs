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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Method;
use sinew_testkit::{Control, Proxy, Request};

mod cpu;
mod latency;
mod publish;

use cpu::CpuMeter;

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
        "publish-sinew" => publish::sinew(&a).await,
        "publish-jetstream" => publish::jetstream(&a).await,
        "publish-broker" => publish::broker(&a).await,
        "publish-remote" => publish::remote(&a).await,
        "latency" => latency::run(&a).await,
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
