//! `sinew explain [--from SERVICE | --api ADDR] URL [-X METHOD] [-H 'Name: value']…`:
//! asks a sidecar (`GET /explain` on its api listener) how it would route a
//! request now — the Route rules tried and why each earlier one did not
//! match, the backends and their weights, the callee's authorization for
//! this caller, the endpoints eligible (health, ejection) and the one the
//! balancer picks — and prints it.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::client::{self, ServerArgs};
use super::get::print_out;

/// Explain how a sidecar routes a request.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The request, e.g. `http://catalog/items?id=3` (the host is what the app sends as `Host`).
    url: String,
    /// Ask a sidecar of this service (found through the control plane's `/v1/proxies`).
    #[arg(long, conflicts_with = "api")]
    from: Option<String>,
    /// Ask the sidecar whose api listener is at this address instead.
    #[arg(long)]
    api: Option<SocketAddr>,
    /// The namespace of `--from`.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// The request method.
    #[arg(short = 'X', long = "request", default_value = "GET")]
    method: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Print the sidecar's JSON answer as is.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    client::block_on(async {
        // With --from, the control plane also gives the namespace's
        // AuthorizationPolicies: the sidecar holds only its own service's,
        // and the callee's decide the request.
        let (api, proxy, policies) = match (args.api, &args.from) {
            (Some(api), _) => (api, None, None),
            (None, Some(service)) => {
                let (api, proxy) = find_sidecar(&args, service).await?;
                (api, proxy, Some(namespace_policies(&args).await?))
            }
            (None, None) => {
                return Err(
                    "say which sidecar routes the request: --from SERVICE (through the control plane) or --api ADDR"
                        .into(),
                )
            }
        };
        let mut query = format!(
            "url={}&method={}",
            client::segment(&args.url),
            client::segment(&args.method)
        );
        for header in &args.headers {
            if !header.contains(':') {
                return Err(format!("-H `{header}`: expected `Name: value`"));
            }
            query.push_str(&format!("&header={}", client::segment(header)));
        }
        let answer = call(api, &format!("/explain?{query}"), policies).await?;
        if args.json {
            let mut text = serde_json::to_string_pretty(&answer).unwrap_or_default();
            text.push('\n');
            print_out(&text)?;
        } else {
            print_out(&render(&answer, proxy.as_deref()))?;
        }
        Ok(())
    })
}

/// The api address of a connected sidecar of `service`, and its name.
async fn find_sidecar(args: &Args, service: &str) -> Result<(SocketAddr, Option<String>), String> {
    let control = args.server.client()?;
    let reply = control.get("/v1/proxies").await?;
    if reply.status.as_u16() != 200 {
        return Err(reply.unexpected());
    }
    let items = reply.body["items"].as_array().cloned().unwrap_or_default();
    let mine: Vec<&Value> = items
        .iter()
        .filter(|p| p["service"] == service && p["namespace"] == args.namespace.as_str())
        .collect();
    if mine.is_empty() {
        return Err(format!(
            "no proxy of service `{service}` in namespace `{}` is known to {}",
            args.namespace,
            control.server()
        ));
    }
    let proxy = mine
        .iter()
        .find(|p| p["connected"] == true && p["api"].as_str().is_some_and(|a| !a.is_empty()))
        .ok_or_else(|| {
            format!("no connected proxy of `{service}` has told the control plane its api address (give --api ADDR)")
        })?;
    let api = proxy["api"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .ok_or("the proxy's api address is not ip:port")?;
    Ok((api, proxy["name"].as_str().map(str::to_owned)))
}

/// The namespace's AuthorizationPolicies as stored, one JSON document each.
async fn namespace_policies(args: &Args) -> Result<String, String> {
    let control = args.server.client()?;
    let path = format!(
        "/v1/resources/AuthorizationPolicy?namespace={}",
        client::segment(&args.namespace)
    );
    let reply = control.get(&path).await?;
    if reply.status.as_u16() != 200 {
        return Err(reply.unexpected());
    }
    Ok(reply.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("---\n{p}\n"))
        .collect())
}

/// `GET path` on the sidecar's api, or `POST` with `policies` as the body.
async fn call(api: SocketAddr, path: &str, policies: Option<String>) -> Result<Value, String> {
    let http: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let (method, body) = match policies {
        Some(text) => (http::Method::POST, Bytes::from(text)),
        None => (http::Method::GET, Bytes::new()),
    };
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{api}{path}"))
        .header(http::header::CONTENT_TYPE, "application/yaml")
        .body(Full::new(body))
        .map_err(|e| format!("bad request: {e}"))?;
    let call = async {
        let response = http
            .request(request)
            .await
            .map_err(|e| format!("cannot reach the sidecar's api at {api}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("the sidecar at {api} broke off its answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(10), call)
        .await
        .map_err(|_| format!("the sidecar at {api} did not answer within 10 s"))??;
    let value: Value = serde_json::from_slice(&body).map_err(|_| {
        format!(
            "the sidecar at {api} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        )
    })?;
    if !status.is_success() {
        return Err(value["error"]
            .as_str()
            .map_or_else(|| format!("the sidecar answered {status}"), str::to_owned));
    }
    Ok(value)
}

/// `90` for 90.0, `33.3` otherwise.
fn percent(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}")
    } else {
        format!("{p:.1}")
    }
}

/// The answer as text for a person.
fn render(a: &Value, proxy: Option<&str>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let req = &a["request"];
    let _ = writeln!(
        out,
        "{} http://{}{}{}  as seen by {}{} (config version {})",
        req["method"].as_str().unwrap_or("GET"),
        req["authority"].as_str().unwrap_or(""),
        req["normalized_path"]
            .as_str()
            .or(req["path"].as_str())
            .unwrap_or("/"),
        req["query"]
            .as_str()
            .map(|q| format!("?{q}"))
            .unwrap_or_default(),
        proxy.or(a["proxy"].as_str()).unwrap_or("the sidecar"),
        a["identity"]
            .as_str()
            .map(|i| format!(" ({i})"))
            .unwrap_or_default(),
        a["config_version"]
    );
    if let Some(names) = a["virtual_host"].as_array() {
        let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
        let _ = writeln!(
            out,
            "host: answered by the Route hosts {}",
            names.join(", ")
        );
    }
    for rule in a["rules"].as_array().into_iter().flatten() {
        let name = format!(
            "{} rule {}",
            rule["route"].as_str().unwrap_or("?"),
            rule["rule"]
        );
        if rule["matched"] == true {
            let _ = writeln!(out, "  ✓ {name}: matches");
        } else {
            let why: Vec<&str> = rule["why_not"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let _ = writeln!(out, "  ✗ {name}: {}", why.join("; "));
        }
    }
    if let Some(n) = a["rules_not_reached"].as_u64() {
        let _ = writeln!(out, "  ({n} later rule(s) not tried)");
    }
    for b in a["backends"].as_array().into_iter().flatten() {
        let subset = b["subset"]
            .as_str()
            .map(|s| format!(" subset {s}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "backend {}{subset}: weight {} ({}% of requests)",
            b["service"].as_str().unwrap_or("?"),
            b["weight"],
            percent(b["share_percent"].as_f64().unwrap_or(0.0))
        );
        let authz = &b["authorization"];
        let _ = writeln!(
            out,
            "  authorization: {}",
            authz["why"].as_str().unwrap_or("?")
        );
        let cluster = &b["cluster"];
        let endpoints = cluster["endpoints"].as_array().cloned().unwrap_or_default();
        let _ = writeln!(
            out,
            "  endpoints ({}; {} usable of {}):",
            cluster["balancer"].as_str().unwrap_or("?"),
            cluster["usable"],
            endpoints.len()
        );
        let picks = cluster["picks"].as_str();
        for e in &endpoints {
            let address = e["address"].as_str().unwrap_or("?");
            let mut state = Vec::new();
            if e["ejected"] == true {
                state.push("ejected (outlier detection)".to_owned());
            }
            match e["health"]["healthy"].as_bool() {
                Some(true) => state.push("healthy".to_owned()),
                Some(false) => state.push(format!(
                    "unhealthy ({})",
                    e["health"]["last_error"]
                        .as_str()
                        .unwrap_or("failing checks")
                )),
                None => {}
            }
            if e["usable"] == false && state.is_empty() {
                state.push("not usable".to_owned());
            }
            if state.is_empty() {
                state.push("usable".to_owned());
            }
            let pick = if picks == Some(address) {
                "  ← the balancer picks this one now"
            } else {
                ""
            };
            let _ = writeln!(out, "    {address}  {}{pick}", state.join(", "));
        }
        if endpoints.is_empty() {
            let _ = writeln!(out, "    none: 503 no_endpoint (or the rule's fallback)");
        }
    }
    if let Some(verdict) = a["verdict"].as_str() {
        let _ = writeln!(out, "verdict: {verdict}");
    } else {
        let denied = a["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b["authorization"]["allowed"] == false);
        let _ = writeln!(
            out,
            "verdict: {}",
            if denied {
                "forwarded, then refused by the callee (403) where its authorization denies"
            } else {
                "forwarded"
            }
        );
    }
    out
}
