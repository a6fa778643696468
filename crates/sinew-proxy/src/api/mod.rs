//! The sidecar's loopback API: `/live`, `/ready`, `/metrics`, `/config`,
//! `/endpoints`, `POST /shutdown`, and the lock calls `/v1/locks/{name}`
//! (`locks.rs`). Served on its own listener, off the data path.

mod locks;
mod publish;

pub use locks::http_status;

use crate::control::Control;
use crate::server::Shared;
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::{convert::Infallible, sync::Arc, time::Duration};
use tokio::net::TcpListener;

/// How long `/ready` waits for the application to accept a connection.
const APP_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Serves the API on `listener` until the process exits (static mode).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    serve_with_control(listener, shared, None).await;
}

/// Serves the API on `listener` until the process exits; with `control`,
/// `/ready` waits for the control plane's first config and the lock calls
/// are forwarded to it.
pub async fn serve_with_control(
    listener: TcpListener,
    shared: Arc<Shared>,
    control: Option<Arc<Control>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let (shared, control) = (shared.clone(), control.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (shared, control) = (shared.clone(), control.clone());
                async move { Ok::<_, Infallible>(route(&shared, control.as_ref(), req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

async fn route(
    shared: &Arc<Shared>,
    control: Option<&Arc<Control>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    const TEXT: &str = "text/plain; charset=utf-8";
    const JSON: &str = "application/json";
    if req.uri().path().starts_with(locks::PREFIX) {
        return locks::handle(control, req).await;
    }
    if req.uri().path().starts_with(publish::PREFIX) {
        let namespace = shared.runtime().config.proxy.metadata.namespace.clone();
        return publish::handle(control, &namespace, &shared.metrics, req).await;
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/live") => respond(StatusCode::OK, TEXT, "live\n"),
        (&Method::GET, "/ready") => {
            if shared.is_draining() {
                respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "draining\n")
            } else if control.is_some_and(|c| !c.is_ready()) {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "waiting for the control plane\n",
                )
            } else if shared.tls().current().is_none() && shared.runtime().needs_certificate() {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "waiting for a workload certificate (mTLS)\n",
                )
            } else if app_answers(shared).await {
                respond(StatusCode::OK, TEXT, "ready\n")
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    "application not reachable\n",
                )
            }
        }
        (&Method::GET, "/identity") => match control.and_then(|c| c.identity()) {
            Some(identity) => respond(StatusCode::OK, JSON, identity.describe().to_string()),
            None => respond(
                StatusCode::NOT_FOUND,
                TEXT,
                "no workload certificate (static mode, or not issued yet)\n",
            ),
        },
        (&Method::GET, "/metrics") => {
            let mut text = String::with_capacity(16 * 1024);
            shared.metrics().render(&mut text);
            respond(StatusCode::OK, crate::telemetry::CONTENT_TYPE, text)
        }
        (&Method::GET, "/config") => {
            let runtime = shared.runtime();
            let body = serde_json::json!({
                "version": runtime.version,
                "digest": runtime.config.snapshot.digest(),
                "proxy": runtime.config.proxy,
                "snapshot": runtime.config.snapshot,
            });
            respond(StatusCode::OK, JSON, body.to_string())
        }
        (&Method::GET, "/endpoints") => {
            let runtime = shared.runtime();
            let clusters: Vec<serde_json::Value> = runtime
                .clusters()
                .iter()
                .map(crate::config::Cluster::describe)
                .collect();
            let body = serde_json::json!({"version": runtime.version, "clusters": clusters});
            respond(StatusCode::OK, JSON, body.to_string())
        }
        (&Method::GET, "/explain") => explain(shared, req.uri().query().unwrap_or(""), None),
        (&Method::POST, "/explain") => {
            // The body: the callee's AuthorizationPolicies (YAML or JSON,
            // multi-document), which a sidecar in control mode does not hold
            // (each proxy gets only the policies of its own service).
            let query = req.uri().query().unwrap_or("").to_owned();
            let body = match http_body_util::Limited::new(req.into_body(), 1 << 20)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    return respond(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        TEXT,
                        "the body is over 1 MiB\n",
                    )
                }
            };
            let text = String::from_utf8_lossy(&body);
            match sinew_model::parse_str("request", &text) {
                Ok(resources) => {
                    let policies = resources
                        .into_iter()
                        .filter_map(|r| match r {
                            sinew_model::Resource::AuthorizationPolicy(p) => Some(p),
                            _ => None,
                        })
                        .collect();
                    explain(shared, &query, Some(policies))
                }
                Err(errors) => respond(
                    StatusCode::BAD_REQUEST,
                    JSON,
                    serde_json::json!({"error": errors.to_string()}).to_string(),
                ),
            }
        }
        (&Method::POST, "/shutdown") => {
            shared.start_drain();
            respond(StatusCode::ACCEPTED, TEXT, "draining\n")
        }
        (
            _,
            "/live" | "/ready" | "/metrics" | "/config" | "/endpoints" | "/explain" | "/shutdown",
        ) => respond(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n"),
        _ => respond(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    }
}

/// `GET /explain?url=URL[&method=M][&header=Name:%20value…]`: how this
/// sidecar would route the request (see [`crate::explain`]).
fn explain(
    shared: &Shared,
    query: &str,
    policies: Option<Vec<sinew_model::AuthorizationPolicy>>,
) -> Response<Full<Bytes>> {
    const JSON: &str = "application/json";
    let bad = |message: String| {
        respond(
            StatusCode::BAD_REQUEST,
            JSON,
            serde_json::json!({ "error": message }).to_string(),
        )
    };
    let (mut url, mut method, mut headers) = (None, "GET".to_owned(), http::HeaderMap::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let Some(v) = locks::percent_decode(v) else {
            return bad(format!("query `{k}`: bad % escape"));
        };
        match k {
            "url" => url = Some(v),
            "method" => method = v.to_ascii_uppercase(),
            "header" => {
                let Some((name, value)) = v.split_once(':') else {
                    return bad(format!("header `{v}`: expected `Name: value`"));
                };
                let name = match http::HeaderName::from_bytes(name.trim().as_bytes()) {
                    Ok(name) => name,
                    Err(_) => return bad(format!("header name `{}` is not valid", name.trim())),
                };
                let Ok(value) = http::HeaderValue::from_str(value.trim()) else {
                    return bad(format!("the value of header `{name}` is not valid"));
                };
                headers.append(name, value);
            }
            other => {
                return bad(format!(
                    "unknown parameter `{other}`: use url, method, header"
                ))
            }
        }
    }
    let Some(url) = url else {
        return bad("give the request as url=http://HOST/PATH".to_owned());
    };
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or(&url);
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    if authority.is_empty() {
        return bad(format!("`{url}` has no host"));
    }
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    let path = if path.is_empty() { "/" } else { path };
    if !headers.contains_key(http::header::HOST) {
        if let Ok(host) = http::HeaderValue::from_str(authority) {
            headers.insert(http::header::HOST, host);
        }
    }
    let runtime = shared.runtime();
    let identity = shared.tls().current().map(|m| m.identity().to_string());
    let question = crate::explain::Question {
        method: &method,
        authority,
        path,
        query,
        headers: &headers,
    };
    let answer = crate::explain::explain(
        &runtime,
        &question,
        identity.as_deref(),
        policies.as_deref(),
    );
    respond(StatusCode::OK, JSON, answer.to_string())
}

/// Ready means the config is loaded (it always is once serving) and the
/// application, if the proxy has one, accepts connections.
async fn app_answers(shared: &Shared) -> bool {
    let Some(app) = shared.runtime().config.proxy.spec.app else {
        return true;
    };
    matches!(
        tokio::time::timeout(APP_PROBE_TIMEOUT, tokio::net::TcpStream::connect(app)).await,
        Ok(Ok(_))
    )
}
