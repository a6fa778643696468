//! `fanout`: the load tool of the control-plane benchmark (`bench/control.sh`).
//!
//! `watch` opens N `Control.Stream` sessions in one process as simulated
//! proxies (`fanout-0000`, `fanout-0001`, … of service `fanout`, registering no
//! endpoint of their own; each ACKs every update as a proxy does), waits for
//! their full updates, then makes R endpoint changes: each round registers the
//! external endpoint `fanout` of service `target` at a new address
//! (`PUT /v1/registry/{ns}/target/fanout`) and times, per stream, from just
//! before the PUT is sent to the receipt of the `Update` whose `Service`
//! document carries that address. By default every stream has its own tonic
//! channel, hence its own TCP and HTTP/2 connection, as real proxies do;
//! `--connections C` shares C connections round-robin instead.
//!
//! `load` applies S `Service`s with E static endpoints each
//! (`POST /v1/apply`, B per request) and times it.
//!
//! Both print one line of JSON on stdout. The client runs on one thread (a
//! current-thread runtime), so it can be pinned to a CPU apart from the
//! control plane.
//!
//! ```text
//! cargo run --profile bench -p sinew-control --example fanout -- watch \
//!     --http 127.0.0.1:7700 --grpc 127.0.0.1:7701 --token-file DIR/admin.token
//! ```

use std::{
    collections::BTreeMap,
    io::Write as _,
    net::SocketAddr,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use sinew_proto::{
    control_client::ControlClient, control_message, proxy_message, Ack, Hello, ProxyMessage, Update,
};
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};

const USAGE: &str = "\
Usage: fanout watch --http ADDR --grpc ADDR --token-file FILE [options]
       fanout load  --http ADDR --token-file FILE [options]

watch: open N streams as simulated proxies, wait for their full updates, then
       time R endpoint changes of service `target` to every stream
  --streams N            streams (default 1000)
  --connections C        HTTP/2 connections shared round-robin; 0 = one per stream (default 0)
  --rounds R             endpoint changes (default 20)
  --gap-ms MS            pause between a round's last arrival and the next PUT (default 200)
  --round-timeout-ms MS  give up on a round's missing arrivals after this (default 10000)
  --connect-timeout-ms MS  give up on streams without a full update after this (default 120000)
  --service NAME         the changed service (default target)
  --namespace NS         namespace of everything (default default)
  --hold                 after printing the summary keep the streams open until SIGTERM or SIGINT

load: apply S Services with E static endpoints each, in batches
  --services S           (default 10000)
  --endpoints E          (default 10)
  --batch B              Services per POST /v1/apply (default 500)
  --prefix P             names P-00000, P-00001, ... (default svc)
  --namespace NS         (default default)

Both print one line of JSON on stdout; progress goes to stderr.";

/// Registered endpoints of the changed service are 127.0.0.2:(PORT_BASE + round).
const MARK_IP: &str = "127.0.0.2";
const PORT_BASE: u32 = 10_000;
/// The registration id the rounds move around.
const REGISTRATION_ID: &str = "fanout";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        eprintln!("{USAGE}");
        std::process::exit(if args.is_empty() { 2 } else { 0 });
    }
    let result = Options::parse(&args[1..]).and_then(|options| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        match args[0].as_str() {
            "watch" => runtime.block_on(watch(options)),
            "load" => runtime.block_on(load(options)),
            other => Err(format!("unknown command `{other}`\n{USAGE}")),
        }
    });
    if let Err(error) = result {
        eprintln!("fanout: {error}");
        std::process::exit(1);
    }
}

// ------------------------------------------------------------------ options

#[derive(Debug)]
struct Options {
    http: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
    token: String,
    streams: usize,
    connections: usize,
    rounds: u32,
    gap: Duration,
    round_timeout: Duration,
    connect_timeout: Duration,
    service: String,
    namespace: String,
    hold: bool,
    services: usize,
    endpoints: usize,
    batch: usize,
    prefix: String,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            http: None,
            grpc: None,
            token: String::new(),
            streams: 1000,
            connections: 0,
            rounds: 20,
            gap: Duration::from_millis(200),
            round_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(120),
            service: "target".into(),
            namespace: "default".into(),
            hold: false,
            services: 10_000,
            endpoints: 10,
            batch: 500,
            prefix: "svc".into(),
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--hold" {
                o.hold = true;
                continue;
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
            let num = |v: &str| v.parse::<u64>().map_err(|e| bad(&e));
            match flag.as_str() {
                "--http" => o.http = Some(value.parse().map_err(|e| bad(&e))?),
                "--grpc" => o.grpc = Some(value.parse().map_err(|e| bad(&e))?),
                "--token-file" => {
                    o.token = std::fs::read_to_string(value)
                        .map_err(|e| bad(&e))?
                        .trim()
                        .to_owned();
                }
                "--streams" => o.streams = usize::try_from(num(value)?).map_err(|e| bad(&e))?,
                "--connections" => {
                    o.connections = usize::try_from(num(value)?).map_err(|e| bad(&e))?
                }
                "--rounds" => o.rounds = u32::try_from(num(value)?).map_err(|e| bad(&e))?,
                "--gap-ms" => o.gap = Duration::from_millis(num(value)?),
                "--round-timeout-ms" => o.round_timeout = Duration::from_millis(num(value)?),
                "--connect-timeout-ms" => o.connect_timeout = Duration::from_millis(num(value)?),
                "--service" => o.service.clone_from(value),
                "--namespace" => o.namespace.clone_from(value),
                "--services" => o.services = usize::try_from(num(value)?).map_err(|e| bad(&e))?,
                "--endpoints" => o.endpoints = usize::try_from(num(value)?).map_err(|e| bad(&e))?,
                "--batch" => o.batch = usize::try_from(num(value)?).map_err(|e| bad(&e))?.max(1),
                "--prefix" => o.prefix.clone_from(value),
                _ => return Err(format!("unknown option {flag}\n{USAGE}")),
            }
        }
        if o.token.is_empty() {
            return Err("--token-file is required (the admin token, DIR/admin.token)".into());
        }
        if o.http.is_none() {
            return Err("--http is required (the REST address)".into());
        }
        Ok(o)
    }
}

// ------------------------------------------------------------------ REST client

/// One keep-alive HTTP/1.1 connection to the REST API, opened before anything is timed.
#[derive(Debug)]
struct Rest {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    authority: String,
    bearer: String,
}

impl Rest {
    async fn connect(addr: SocketAddr, token: &str) -> Result<Rest, String> {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to the REST API at {addr}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Rest {
            sender,
            authority: addr.to_string(),
            bearer: format!("Bearer {token}"),
        })
    }

    /// Sends one request; returns the status and the body, or an error naming the call.
    async fn call(
        &mut self,
        method: http::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Bytes), String> {
        let request = http::Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::HOST, &self.authority)
            .header(http::header::AUTHORIZATION, &self.bearer)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?
            .to_bytes();
        Ok((status, body))
    }

    /// Registers the moving endpoint of the changed service at the address of `round`.
    async fn register(&mut self, o: &Options, round: u32) -> Result<(), String> {
        let path = format!(
            "/v1/registry/{}/{}/{REGISTRATION_ID}",
            o.namespace, o.service
        );
        let body = json!({"address": round_address(round)})
            .to_string()
            .into_bytes();
        match self.call(http::Method::PUT, &path, body).await? {
            (200, _) => Ok(()),
            (status, body) => Err(format!(
                "PUT {path}: {status} {}",
                String::from_utf8_lossy(&body)
            )),
        }
    }
}

fn round_address(round: u32) -> String {
    format!("{MARK_IP}:{}", PORT_BASE + round)
}

// ------------------------------------------------------------------ watch

/// What a simulated proxy tells the driver.
#[derive(Debug)]
enum Event {
    /// Its first (full) update arrived: when, how many documents and JSON bytes.
    Full {
        stream: usize,
        at: Instant,
        documents: usize,
        bytes: usize,
    },
    /// An update carrying the changed service at `round`'s address arrived.
    Arrived {
        stream: usize,
        round: u32,
        at: Instant,
    },
    /// An attempt to open the stream failed before its full update; it tries again.
    Retried { error: String },
    /// The stream failed or ended.
    Ended { stream: usize, error: String },
}

/// Everything the simulated proxies reported.
#[derive(Debug)]
struct Tally {
    full: Vec<Option<Instant>>,
    documents: (usize, usize),
    bytes: (usize, usize),
    ended: Vec<bool>,
    failures: BTreeMap<String, usize>,
    retries: BTreeMap<String, usize>,
    /// `arrivals[round][stream]`.
    arrivals: Vec<Vec<Option<Instant>>>,
}

impl Tally {
    fn new(streams: usize, rounds: u32) -> Tally {
        Tally {
            full: vec![None; streams],
            documents: (usize::MAX, 0),
            bytes: (usize::MAX, 0),
            ended: vec![false; streams],
            failures: BTreeMap::new(),
            retries: BTreeMap::new(),
            arrivals: vec![vec![None; streams]; rounds as usize + 1],
        }
    }

    fn record(&mut self, event: Event) {
        match event {
            Event::Full {
                stream,
                at,
                documents,
                bytes,
            } => {
                self.full[stream] = Some(at);
                self.documents = (
                    self.documents.0.min(documents),
                    self.documents.1.max(documents),
                );
                self.bytes = (self.bytes.0.min(bytes), self.bytes.1.max(bytes));
            }
            Event::Arrived { stream, round, at } => {
                if let Some(slot) = self
                    .arrivals
                    .get_mut(round as usize)
                    .and_then(|r| r.get_mut(stream))
                {
                    *slot = Some(at);
                }
            }
            Event::Retried { error } => *self.retries.entry(error).or_default() += 1,
            Event::Ended { stream, error } => {
                self.ended[stream] = true;
                *self.failures.entry(error).or_default() += 1;
            }
        }
    }

    /// Streams still connecting.
    fn connecting(&self) -> usize {
        (0..self.full.len())
            .filter(|&i| self.full[i].is_none() && !self.ended[i])
            .count()
    }

    /// Live streams with a full update that have not received `round` yet.
    fn waiting(&self, round: u32) -> usize {
        let arrived = &self.arrivals[round as usize];
        (0..self.full.len())
            .filter(|&i| self.full[i].is_some() && !self.ended[i] && arrived[i].is_none())
            .count()
    }

    fn connected(&self) -> usize {
        self.full.iter().flatten().count()
    }
}

/// The highest round whose address the changed service's document carries, if it is in `update`.
fn round_in(update: &Update, o: &Options) -> Option<u32> {
    let doc = update.upserts.iter().find(|d| {
        d.key.as_ref().is_some_and(|k| {
            k.kind == "Service" && k.name == o.service && k.namespace == o.namespace
        })
    })?;
    let value: Value = serde_json::from_slice(&doc.json).ok()?;
    value
        .pointer("/spec/endpoints")?
        .as_array()?
        .iter()
        .filter_map(|e| {
            e.get("address")?
                .as_str()?
                .strip_prefix(MARK_IP)?
                .strip_prefix(':')?
                .parse::<u32>()
                .ok()
        })
        .filter_map(|port| port.checked_sub(PORT_BASE))
        .max()
}

async fn channel(addr: SocketAddr) -> Result<Channel, String> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| e.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))
}

/// Attempts a simulated proxy makes to open its stream and get its full update.
const ATTEMPTS: u32 = 3;

/// One simulated proxy: like a real one, it tries again (after 200 ms, then
/// 400 ms) when its stream fails before the full update arrives; a failure
/// after that ends it.
async fn proxy(
    stream: usize,
    grpc: SocketAddr,
    shared: Option<Channel>,
    o: std::sync::Arc<Options>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut attempt = 1;
    loop {
        let channel = match shared.clone() {
            Some(c) => Ok(c),
            None => channel(grpc).await,
        };
        let (got_full, error) = match channel {
            Ok(channel) => session(stream, channel, &o, &events).await,
            Err(error) => (false, error),
        };
        if got_full || attempt == ATTEMPTS {
            let _ = events.send(Event::Ended { stream, error });
            return;
        }
        let _ = events.send(Event::Retried { error });
        tokio::time::sleep(Duration::from_millis(200 << (attempt - 1))).await;
        attempt += 1;
    }
}

/// One stream: Hello, then ACK every update and report what arrived. Returns
/// whether the full update arrived, and why the stream ended.
async fn session(
    stream: usize,
    channel: Channel,
    o: &Options,
    events: &mpsc::UnboundedSender<Event>,
) -> (bool, String) {
    let (tx, rx) = mpsc::channel::<ProxyMessage>(64);
    let hello = Hello {
        proxy: format!("fanout-{stream:04}"),
        namespace: o.namespace.clone(),
        service: "fanout".into(),
        ..Hello::default()
    };
    let _ = tx.try_send(ProxyMessage {
        message: Some(proxy_message::Message::Hello(hello)),
    });
    let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    match format!("Bearer {}", o.token).parse() {
        Ok(v) => {
            request.metadata_mut().insert(sinew_proto::AUTHORIZATION, v);
        }
        Err(_) => return (false, "the token is not a valid header value".into()),
    }
    let status_text = |s: &tonic::Status| format!("{:?}: {}", s.code(), s.message());
    let mut client = ControlClient::new(channel).max_decoding_message_size(usize::MAX);
    let mut inbound = match client.stream(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => return (false, status_text(&status)),
    };
    let mut got_full = false;
    // The first version arrives in parts (`more`): it counts as received
    // once its last part is in, with every part's documents.
    let (mut full_docs, mut full_bytes) = (0usize, 0usize);
    let mut seen: Option<u32> = None;
    loop {
        let message = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return (got_full, "the control plane ended the stream".into()),
            Err(status) => return (got_full, status_text(&status)),
        };
        let at = Instant::now();
        let Some(control_message::Message::Update(update)) = message.message else {
            continue;
        };
        if !got_full {
            full_docs += update.upserts.len();
            full_bytes += update.upserts.iter().map(|d| d.json.len()).sum::<usize>();
            if !update.more {
                got_full = true;
                let _ = events.send(Event::Full {
                    stream,
                    at,
                    documents: full_docs,
                    bytes: full_bytes,
                });
            }
        }
        if let Some(round) = round_in(&update, o) {
            if seen.is_none_or(|s| round > s) {
                seen = Some(round);
                let _ = events.send(Event::Arrived { stream, round, at });
            }
        }
        if update.more {
            continue; // a proxy answers a version once, after its last part
        }
        let ack = ProxyMessage {
            message: Some(proxy_message::Message::Ack(Ack {
                version: update.version,
            })),
        };
        if tx.send(ack).await.is_err() {
            return (got_full, "the request stream closed".into());
        }
    }
}

/// p-th percentile (nearest rank) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn summary(values: &mut [f64]) -> Value {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return json!({"n": 0});
    }
    let r = |v: f64| (v * 1000.0).round() / 1000.0;
    json!({
        "n": values.len(),
        "min": r(values[0]),
        "p50": r(percentile(values, 50.0)),
        "p90": r(percentile(values, 90.0)),
        "p99": r(percentile(values, 99.0)),
        "max": r(values[values.len() - 1]),
        "mean": r(values.iter().sum::<f64>() / values.len() as f64),
    })
}

fn emit(value: &Value) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")
        .and_then(|()| out.flush())
        .map_err(|e| e.to_string())
}

async fn watch(o: Options) -> Result<(), String> {
    let grpc = o.grpc.ok_or("--grpc is required (the gRPC address)")?;
    let o = std::sync::Arc::new(o);
    let http = o.http.ok_or("--http is required (the REST address)")?;
    let mut rest = Rest::connect(http, &o.token).await?;
    rest.register(&o, 0).await?;

    // Connect: every stream at once, as a fleet reconnecting would.
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let start = Instant::now();
    let shared: Vec<Channel> = if o.connections > 0 {
        let mut v = Vec::with_capacity(o.connections);
        for _ in 0..o.connections {
            v.push(channel(grpc).await?);
        }
        v
    } else {
        Vec::new()
    };
    for i in 0..o.streams {
        let events = events_tx.clone();
        let o = o.clone();
        let shared = shared.get(i % shared.len().max(1)).cloned();
        tokio::spawn(proxy(i, grpc, shared, o, events));
    }
    drop(events_tx);
    let mut tally = Tally::new(o.streams, o.rounds);
    let deadline = tokio::time::Instant::now() + o.connect_timeout;
    while tally.connecting() > 0 {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else {
            break;
        };
        tally.record(event);
    }
    let connected = tally.connected();
    let last_full = tally.full.iter().flatten().max().copied().unwrap_or(start);
    let connect_ms = ms(last_full - start);
    let mut fulls: Vec<f64> = tally
        .full
        .iter()
        .flatten()
        .map(|at| ms(*at - start))
        .collect();
    eprintln!(
        "fanout: {connected} of {} streams got their full update in {connect_ms} ms ({} ended)",
        o.streams,
        tally.ended.iter().filter(|e| **e).count()
    );
    let connect = json!({
        "streams_with_full_update": connected,
        "all_full_ms": connect_ms,
        "per_stream_full_ms": summary(&mut fulls),
        "full_update_documents": [tally.documents.0.min(tally.documents.1), tally.documents.1],
        "full_update_json_bytes": [tally.bytes.0.min(tally.bytes.1), tally.bytes.1],
    });

    // Rounds: PUT a new address, wait until every live stream has it.
    let mut samples: Vec<f64> = Vec::new();
    let mut per_round = Vec::new();
    let mut missing = 0usize;
    let mut put_ms: Vec<f64> = Vec::new();
    for round in 1..=o.rounds {
        let sent = Instant::now();
        rest.register(&o, round).await?;
        let put = ms(sent.elapsed());
        put_ms.push(put);
        let deadline = tokio::time::Instant::from_std(sent + o.round_timeout);
        while tally.waiting(round) > 0 {
            let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else {
                break;
            };
            tally.record(event);
        }
        // A stream that got a later view first (it skipped this one) has no sample; counted missing.
        let mut lat: Vec<f64> = tally.arrivals[round as usize]
            .iter()
            .flatten()
            .map(|at| ms(*at - sent))
            .collect();
        missing += connected.saturating_sub(lat.len());
        samples.extend_from_slice(&lat);
        let s = summary(&mut lat);
        eprintln!("fanout: round {round}: PUT {put} ms; latency {s}");
        per_round.push(json!({"round": round, "put_ms": put, "latency_ms": s}));
        tokio::time::sleep(o.gap).await;
    }

    let failed = tally.ended.iter().filter(|e| **e).count();
    let report = json!({
        "command": "watch",
        "streams": o.streams,
        "connections": if o.connections == 0 { o.streams } else { o.connections },
        "connection_mode": if o.connections == 0 { "one HTTP/2 connection per stream" } else { "streams share connections round-robin" },
        "connect": connect,
        "rounds": o.rounds,
        "latency_ms": summary(&mut samples),
        "missing_samples": missing,
        "put_ms": summary(&mut put_ms),
        "per_round": per_round,
        "failed_streams": failed,
        "failures": tally.failures,
        "connect_retries": tally.retries,
    });
    emit(&report)?;

    if o.hold {
        eprintln!("fanout: holding the streams open until SIGTERM or SIGINT");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| e.to_string())?;
        // Keep receiving so that stream failures while held are reported.
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                event = events.recv() => match event {
                    Some(Event::Ended { error, .. }) => eprintln!("fanout: a held stream ended: {error}"),
                    Some(_) => {}
                    None => break,
                },
            }
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ load

/// `count` Services from `first`, each with `o.endpoints` static endpoints, as YAML documents.
fn services_yaml(o: &Options, first: usize, count: usize) -> String {
    let mut text = String::new();
    for i in first..first + count {
        let endpoints: Vec<String> = (0..o.endpoints)
            .map(|j| {
                format!(
                    "{{address: 10.{}.{}.{}:8080}}",
                    (i >> 8) & 255,
                    i & 255,
                    j + 1
                )
            })
            .collect();
        text.push_str(&format!(
            "apiVersion: {}\nkind: Service\nmetadata: {{name: {}-{i:05}, namespace: {}}}\nspec:\n  endpoints: [{}]\n---\n",
            sinew_model::API_VERSION,
            o.prefix,
            o.namespace,
            endpoints.join(", ")
        ));
    }
    text
}

async fn load(o: Options) -> Result<(), String> {
    let http = o.http.ok_or("--http is required")?;
    let mut rest = Rest::connect(http, &o.token).await?;
    let start = Instant::now();
    let mut batch_ms = Vec::new();
    let mut bytes = 0usize;
    let mut first = 0;
    while first < o.services {
        let count = o.batch.min(o.services - first);
        let body = services_yaml(&o, first, count).into_bytes();
        bytes += body.len();
        let t = Instant::now();
        let (status, reply) = rest.call(http::Method::POST, "/v1/apply", body).await?;
        if status != 200 {
            return Err(format!(
                "POST /v1/apply: {status} {}",
                String::from_utf8_lossy(&reply)
            ));
        }
        batch_ms.push(ms(t.elapsed()));
        first += count;
        eprintln!(
            "fanout: applied {first} of {} Services ({} ms)",
            o.services,
            batch_ms[batch_ms.len() - 1]
        );
    }
    let total = ms(start.elapsed());
    let first_ms = batch_ms.first().copied().unwrap_or(0.0);
    let last_ms = batch_ms.last().copied().unwrap_or(0.0);
    emit(&json!({
        "command": "load",
        "services": o.services,
        "endpoints_each": o.endpoints,
        "batch": o.batch,
        "batches": batch_ms.len(),
        "yaml_bytes": bytes,
        "total_ms": total,
        "first_batch_ms": first_ms,
        "last_batch_ms": last_ms,
        "batch_ms": summary(&mut batch_ms),
    }))
}
