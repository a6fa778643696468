//! `sinew demo-app`: a small HTTP/1.1 service that names itself and calls its
//! downstream services through its sidecar's outbound listener.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::up::client;

/// How long one downstream call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// Run the built-in demo application.
#[derive(Debug, Clone, clap::Args)]
// `--version` names the app's version here, not sinew's.
#[command(disable_version_flag = true)]
pub(crate) struct Args {
    /// The service this instance belongs to (named in every answer).
    #[arg(long)]
    name: String,
    /// Address to serve HTTP/1.1 on.
    #[arg(long)]
    listen: SocketAddr,
    /// Version named in answers (e.g. v1, v2).
    #[arg(long, default_value = "v1")]
    version: String,
    /// Instance name included in answers (default: SERVICE@LISTEN).
    #[arg(long)]
    instance: Option<String>,
    /// A downstream to call on each `GET /`: SERVICE=OUTBOUND_ADDR (the sidecar's
    /// outbound listener; the call carries `Host: SERVICE`). Repeatable.
    #[arg(long = "call", value_name = "SERVICE=ADDR")]
    calls: Vec<Call>,
    /// Publish an event to TOPIC through the sidecar API at ADDR on each
    /// `GET /` (`TOPIC=ADDR`): an `order.created` CloudEvent keyed by one of
    /// 50 customers.
    #[arg(long = "publish", value_name = "TOPIC=ADDR")]
    publish: Option<Publish>,
    /// Share of `GET /` requests answered 503 on purpose (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = ratio)]
    fail_ratio: f64,
    /// Also stop when standard input closes (`sinew up` holds it open, so an
    /// instance never outlives a killed `sinew up`).
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
}

/// Where events are published: the topic and the sidecar's API address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Publish {
    topic: String,
    api: SocketAddr,
}

impl FromStr for Publish {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (topic, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected TOPIC=ADDR"))?;
        let api = addr
            .parse()
            .map_err(|e| format!("`{s}`: bad address {addr}: {e}"))?;
        Ok(Publish {
            topic: topic.to_owned(),
            api,
        })
    }
}

/// Events this instance received (`POST /events/…`), for its answers.
static RECEIVED: AtomicU64 = AtomicU64::new(0);

/// One downstream: its service name and the outbound listener to reach it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Call {
    service: String,
    outbound: SocketAddr,
}

impl FromStr for Call {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (service, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not SERVICE=ADDR"))?;
        if service.is_empty() {
            return Err(format!("`{s}` names no service"));
        }
        let outbound = addr
            .parse()
            .map_err(|e| format!("`{addr}` is not an address like 127.0.0.1:4140: {e}"))?;
        Ok(Call {
            service: service.to_owned(),
            outbound,
        })
    }
}

fn ratio(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a ratio between 0 and 1")),
    }
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    crate::logging::init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let listener = TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
        tracing::info!(service = %args.name, version = %args.version, listen = %args.listen,
            calls = args.calls.len(), fail_ratio = args.fail_ratio, "demo app serving");
        let stdin_closed = args.exit_on_stdin_eof.then(stdin_eof);
        let stop = async move {
            match stdin_closed {
                Some(closed) => tokio::select! {
                    () = stop_signal() => {}
                    _ = closed => tracing::info!("standard input closed; stopping"),
                },
                None => stop_signal().await,
            }
        };
        serve(listener, args, stop).await;
        tracing::info!("demo app stopped");
        Ok(())
    })
}

/// Resolves once standard input reaches end of file (read on a plain thread).
fn stdin_eof() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = tx.send(());
    });
    rx
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Serves connections on `listener` until `stop` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    args: Args,
    stop: impl std::future::Future<Output = ()>,
) {
    let app = Arc::new(args);
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            () = &mut stop => return,
        };
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = Arc::clone(&app);
                async move { Ok::<_, Infallible>(handle(&app, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(app: &Args, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => respond(StatusCode::OK, json!({"status": "ok"})),
        (&Method::GET, "/") => answer(app).await,
        (&Method::POST, path) if path.starts_with("/events/") => {
            let _ = req.into_body().collect().await;
            RECEIVED.fetch_add(1, Ordering::Relaxed);
            respond(StatusCode::OK, json!({"status": "SUCCESS"}))
        }
        (_, "/" | "/healthz") => respond(
            StatusCode::METHOD_NOT_ALLOWED,
            json!({"error": "method not allowed"}),
        ),
        _ => respond(StatusCode::NOT_FOUND, json!({"error": "not found"})),
    }
}

/// `GET /`: name this instance and include each downstream's answer.
async fn answer(app: &Args) -> Response<Full<Bytes>> {
    if app.fail_ratio > 0.0 && fastrand::f64() < app.fail_ratio {
        let body =
            json!({"service": app.name, "version": app.version, "error": "injected failure"});
        return respond(StatusCode::SERVICE_UNAVAILABLE, body);
    }
    let mut calls = Vec::with_capacity(app.calls.len());
    let mut all_ok = true;
    for call in &app.calls {
        let (entry, ok) = call_downstream(call).await;
        all_ok &= ok;
        calls.push(entry);
    }
    let mut body = json!({"service": app.name, "version": app.version, "instance": instance(app)});
    if !calls.is_empty() {
        body["calls"] = Value::Array(calls);
    }
    if let Some(publish) = &app.publish {
        body["published"] = Value::Bool(publish_order(app, publish).await);
    }
    let received = RECEIVED.load(Ordering::Relaxed);
    if received > 0 {
        body["events_received"] = json!(received);
    }
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_GATEWAY
    };
    respond(status, body)
}

fn instance(app: &Args) -> String {
    app.instance
        .clone()
        .unwrap_or_else(|| format!("{}@{}", app.name, app.listen))
}

/// Calls one downstream through the outbound listener; the entry and whether it answered 2xx.
async fn call_downstream(call: &Call) -> (Value, bool) {
    match client::get(call.outbound, &call.service, "/", CALL_TIMEOUT).await {
        Ok(reply) => {
            let answer = serde_json::from_slice::<Value>(&reply.body).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&reply.body).into_owned())
            });
            let ok = (200..300).contains(&reply.status);
            if !ok {
                tracing::debug!(service = %call.service, status = reply.status, "downstream failed");
            }
            (
                json!({"service": call.service, "status": reply.status, "answer": answer}),
                ok,
            )
        }
        Err(error) => {
            tracing::debug!(service = %call.service, %error, "downstream call failed");
            (
                json!({"service": call.service, "error": error.to_string()}),
                false,
            )
        }
    }
}

/// Publishes one `order.created` event; whether the broker stored it.
async fn publish_order(app: &Args, publish: &Publish) -> bool {
    let customer = fastrand::u32(0..50);
    let id = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let headers = [
        ("ce-id", id),
        ("ce-specversion", "1.0".to_owned()),
        ("ce-type", "order.created".to_owned()),
        ("ce-source", format!("/{}", instance(app))),
        ("ce-partitionkey", format!("customer-{customer}")),
        ("content-type", "application/json".to_owned()),
    ];
    let body = json!({"customer": customer, "from": instance(app)}).to_string();
    let path = format!("/v1/publish/{}", publish.topic);
    match client::post(
        publish.api,
        &path,
        &headers,
        Bytes::from(body),
        CALL_TIMEOUT,
    )
    .await
    {
        Ok(reply) => reply.status == 200,
        Err(error) => {
            tracing::debug!(%error, "cannot publish");
            false
        }
    }
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, version: &str, calls: Vec<Call>, fail_ratio: f64) -> Args {
        Args {
            name: name.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            version: version.to_owned(),
            instance: None,
            calls,
            fail_ratio,
            publish: None,
            exit_on_stdin_eof: false,
        }
    }

    /// Serves `args` on a free loopback port until the returned sender is dropped.
    async fn spawn(mut args: Args) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        args.listen = addr;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, args, async {
            let _ = rx.await;
        }));
        (addr, tx)
    }

    async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
        let reply = client::get(addr, "demo", path, Duration::from_secs(5))
            .await
            .expect("reply");
        (
            reply.status,
            serde_json::from_slice(&reply.body).expect("JSON body"),
        )
    }

    #[test]
    fn command_line_parses_under_a_versioned_parent() {
        use clap::{Args as _, FromArgMatches as _};
        let command = clap::Command::new("sinew")
            .version("0.0.0")
            .propagate_version(true)
            .subcommand(Args::augment_args(clap::Command::new("demo-app")));
        let argv = [
            "sinew",
            "demo-app",
            "--name",
            "catalog",
            "--listen",
            "127.0.0.1:8080",
            "--version",
            "v2",
            "--call",
            "inventory=127.0.0.1:4140",
            "--fail-ratio",
            "0.2",
            "--instance",
            "catalog-v2",
        ];
        let matches = command.try_get_matches_from(argv).expect("parses");
        let sub = matches.subcommand_matches("demo-app").expect("subcommand");
        let args = Args::from_arg_matches(sub).expect("args");
        assert_eq!(args.name, "catalog");
        assert_eq!(args.version, "v2");
        assert_eq!(args.fail_ratio, 0.2);
        assert_eq!(args.calls.len(), 1);
        assert_eq!(instance(&args), "catalog-v2");
    }

    #[test]
    fn call_flag_parses_service_and_address() {
        let call: Call = "catalog=127.0.0.1:4140".parse().expect("valid");
        assert_eq!(call.service, "catalog");
        assert_eq!(call.outbound, SocketAddr::from(([127, 0, 0, 1], 4140)));
        assert!("catalog".parse::<Call>().is_err());
        assert!("=127.0.0.1:1".parse::<Call>().is_err());
        assert!("catalog=nowhere".parse::<Call>().is_err());
        assert!(ratio("1.5").is_err());
        assert_eq!(ratio("0.2"), Ok(0.2));
    }

    #[tokio::test]
    async fn root_names_service_and_version_and_healthz_is_ok() {
        let (addr, _stop) = spawn(args("inventory", "v3", vec![], 0.0)).await;
        let (status, body) = get_json(addr, "/").await;
        assert_eq!(status, 200);
        assert_eq!(body["service"], "inventory");
        assert_eq!(body["version"], "v3");
        assert_eq!(body["instance"], format!("inventory@{addr}"));
        assert!(body.get("calls").is_none());
        assert_eq!(get_json(addr, "/healthz").await.0, 200);
        assert_eq!(get_json(addr, "/nope").await.0, 404);
    }

    #[tokio::test]
    async fn includes_downstream_answers() {
        let (inventory, _a) = spawn(args("inventory", "v1", vec![], 0.0)).await;
        let call = Call {
            service: "inventory".into(),
            outbound: inventory,
        };
        let (catalog, _b) = spawn(args("catalog", "v2", vec![call], 0.0)).await;
        let (status, body) = get_json(catalog, "/").await;
        assert_eq!(status, 200);
        assert_eq!(body["service"], "catalog");
        assert_eq!(body["calls"][0]["service"], "inventory");
        assert_eq!(body["calls"][0]["status"], 200);
        assert_eq!(body["calls"][0]["answer"]["service"], "inventory");
    }

    #[tokio::test]
    async fn failing_downstream_makes_a_bad_gateway() {
        let (flaky, _a) = spawn(args("inventory", "v1", vec![], 1.0)).await;
        let call = Call {
            service: "inventory".into(),
            outbound: flaky,
        };
        let (catalog, _b) = spawn(args("catalog", "v1", vec![call], 0.0)).await;
        let (status, body) = get_json(catalog, "/").await;
        assert_eq!(status, 502);
        assert_eq!(body["calls"][0]["status"], 503);
        assert_eq!(body["calls"][0]["answer"]["error"], "injected failure");
        // The flaky instance stays healthy: only `GET /` fails.
        assert_eq!(get_json(flaky, "/healthz").await.0, 200);
    }
}
