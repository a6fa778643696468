//! The REST/JSON API (docs/reference/api.md; `GET /openapi.json`): apply,
//! get and delete resources, proxy status, the catalog, external
//! registrations and locks. Every `/v1` call needs the admin token.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    apply::{self, ApplyError},
    http::{error, json, Body},
    keys, lock,
    registry::{Check, Registration, Source},
    replica::Replica,
    status::ProxyStatus,
    store::{Compare, Op, StoreError},
};

/// The OpenAPI document.
const OPENAPI: &str = include_str!("openapi.json");
/// Largest request body (an apply of a big file).
const MAX_BODY: usize = 16 << 20;

/// Serves the API on `listener` until the task is dropped.
pub(crate) async fn serve(listener: tokio::net::TcpListener, replica: Arc<Replica>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let replica = replica.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(replica.clone(), req));
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

async fn handle(
    replica: Arc<Replica>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let segments: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (req.method(), seg.as_slice()) {
        (&Method::GET, ["healthz"]) => {
            return Ok(json(
                StatusCode::OK,
                &json!({"status": "ok", "replica": replica.id, "leader": replica.is_leader(), "store": replica.store.describe()}),
            ))
        }
        (&Method::GET, ["openapi.json"]) => {
            let mut r = Response::new(Body::new(Bytes::from_static(OPENAPI.as_bytes())));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            return Ok(r);
        }
        _ => {}
    }
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !replica.tokens.admin_may(auth) {
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token: send `Authorization: Bearer TOKEN` with the admin token (DIR/admin.token)",
        ));
    }
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    Some((decode(k)?, decode(v)?))
                })
                .collect()
        })
        .unwrap_or_default();
    let method = req.method().clone();
    let source = req
        .headers()
        .get("x-sinew-source")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or("request")
        .to_owned();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Ok(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read the request body: {e}"),
            ))
        }
    };
    let r = &*replica;
    let response = match (&method, seg.as_slice()) {
        (&Method::POST, ["v1", "apply"]) => post_apply(r, &source, &body).await,
        (&Method::GET, ["v1", "resources", kind]) => list(r, kind, query.get("namespace")).await,
        (&Method::GET, ["v1", "resources", kind, ns, name]) => get_one(r, kind, ns, name).await,
        (&Method::DELETE, ["v1", "resources", kind, ns, name]) => delete(r, kind, ns, name).await,
        (&Method::GET, ["v1", "proxies"]) => proxies(r).await,
        (&Method::GET, ["v1", "trust-bundle"]) => match r.ca().await {
            Ok(ca) => {
                let mut resp = Response::new(Body::new(Bytes::from(ca.bundle_pem().to_owned())));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-pem-file"),
                );
                resp
            }
            Err(e) => store_error(&e),
        },
        (&Method::POST, ["v1", "ca", "rotate"]) => ca_rotate(r, &body).await,
        (&Method::POST, ["v1", "ca", "rotate", "finish"]) => {
            match crate::ca::Ca::finish_rotation(&*r.store).await {
                Ok(roots) => json(StatusCode::OK, &json!({"roots": roots})),
                Err(e) => error(StatusCode::CONFLICT, e),
            }
        }
        (&Method::GET, ["v1", "catalog", "services"]) => catalog(r).await,
        (&Method::GET, ["v1", "catalog", "services", ns, name]) => {
            catalog_service(r, ns, name, query.get("label")).await
        }
        (&Method::PUT, ["v1", "registry", ns, svc, id]) => register(r, ns, svc, id, &body).await,
        (&Method::PUT, ["v1", "registry", ns, svc, id, "heartbeat"]) => {
            heartbeat(r, ns, svc, id).await
        }
        (&Method::DELETE, ["v1", "registry", ns, svc, id]) => deregister(r, ns, svc, id).await,
        (&Method::POST, ["v1", "locks", name]) => lock_acquire(r, name, &body).await,
        (&Method::PUT, ["v1", "locks", name]) => lock_renew(r, name, &body).await,
        (&Method::DELETE, ["v1", "locks", name]) => lock_release(r, name, &query).await,
        (_, ["v1", ..]) => error(
            StatusCode::NOT_FOUND,
            format!("no API at {method} {path}; see GET /openapi.json"),
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no such path {path}")),
    };
    Ok(response)
}

fn decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn store_error(e: &StoreError) -> Response<Body> {
    error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

async fn post_apply(r: &Replica, source: &str, body: &[u8]) -> Response<Body> {
    let Ok(text) = std::str::from_utf8(body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not UTF-8 text");
    };
    match apply::apply(&*r.store, source, text).await {
        Ok((revision, results)) => json(
            StatusCode::OK,
            &json!({"revision": revision, "results": results}),
        ),
        Err(e) => apply_error(e),
    }
}

fn apply_error(e: ApplyError) -> Response<Body> {
    match e {
        ApplyError::Invalid(errors) => {
            let list: Vec<Value> = errors
                .iter()
                .map(|e| {
                    json!({"file": e.file, "line": e.line, "column": e.column, "field": e.field, "message": e.message})
                })
                .collect();
            let first = errors
                .iter()
                .next()
                .map(ToString::to_string)
                .unwrap_or_default();
            json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"error": format!("invalid resources; nothing was applied: {first}"), "errors": list}),
            )
        }
        ApplyError::BadRequest(m) => error(StatusCode::BAD_REQUEST, m),
        ApplyError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
        ApplyError::Conflict(m) => error(StatusCode::CONFLICT, m),
        ApplyError::Store(s) => store_error(&s),
    }
}

fn unknown_kind(kind: &str) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        format!("unknown kind `{kind}`; kinds are Service, Route, Proxy, Mesh, AuthorizationPolicy, Subscription"),
    )
}

async fn list(r: &Replica, kind: &str, namespace: Option<&String>) -> Response<Body> {
    let Some(kind) = apply::kind_from_path(kind) else {
        return unknown_kind(kind);
    };
    let prefix = match namespace {
        Some(ns) => format!("{}{ns}/", keys::resource_kind(kind)),
        None => keys::resource_kind(kind),
    };
    match r.store.range(&prefix).await {
        Ok((revision, kvs)) => {
            let items: Vec<Value> = kvs
                .iter()
                .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                .collect();
            json(
                StatusCode::OK,
                &json!({"revision": revision, "items": items}),
            )
        }
        Err(e) => store_error(&e),
    }
}

async fn get_one(r: &Replica, kind: &str, ns: &str, name: &str) -> Response<Body> {
    let Some(k) = apply::kind_from_path(kind) else {
        return unknown_kind(kind);
    };
    match r.store.get(&keys::resource(k, ns, name)).await {
        Ok(Some(kv)) => match serde_json::from_slice::<Value>(&kv.value) {
            Ok(v) => json(StatusCode::OK, &v),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("{k} {ns}/{name} does not exist"),
        ),
        Err(e) => store_error(&e),
    }
}

async fn delete(r: &Replica, kind: &str, ns: &str, name: &str) -> Response<Body> {
    let Some(k) = apply::kind_from_path(kind) else {
        return unknown_kind(kind);
    };
    match apply::delete(&*r.store, k, ns, name).await {
        Ok(revision) => json(StatusCode::OK, &json!({"revision": revision})),
        Err(e) => apply_error(e),
    }
}

async fn proxies(r: &Replica) -> Response<Body> {
    match r.store.range(keys::PROXIES).await {
        Ok((_, kvs)) => {
            let items: Vec<ProxyStatus> = kvs
                .iter()
                .filter_map(|kv| serde_json::from_slice(&kv.value).ok())
                .collect();
            json(StatusCode::OK, &json!({"items": items}))
        }
        Err(e) => store_error(&e),
    }
}

/// One endpoint as the catalog shows it.
fn endpoint_json(
    id: &str,
    address: &str,
    labels: &BTreeMap<String, String>,
    weight: u32,
    source: &str,
    healthy: bool,
    reports: Option<&(u32, u32)>,
) -> Value {
    let mut v = json!({"id": id, "address": address, "labels": labels, "weight": weight, "source": source, "healthy": healthy});
    if let Some((up, down)) = reports {
        v["reports"] = json!({"healthy": up, "unhealthy": down});
    }
    v
}

/// Every endpoint of every service: static ones from Service resources,
/// registered ones, with the sidecars' health reports folded in.
async fn endpoints(r: &Replica) -> Result<BTreeMap<(String, String), Vec<Value>>, StoreError> {
    let (_, services) = r
        .store
        .range(&keys::resource_kind(sinew_model::Kind::Service))
        .await?;
    let (_, registry) = r.store.range(keys::REGISTRY).await?;
    let (_, health) = r.store.range(keys::HEALTH).await?;
    // (ns, svc, address) -> (healthy reports, unhealthy reports)
    let mut reports: BTreeMap<(String, String, String), (u32, u32)> = BTreeMap::new();
    for kv in &health {
        let rest = kv.key.strip_prefix(keys::HEALTH).unwrap_or_default();
        if let Some(p) = keys::parts(rest, 4) {
            let e = reports
                .entry((p[0].to_owned(), p[1].to_owned(), p[2].to_owned()))
                .or_default();
            if kv.value == b"1" {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
    let judged = |ns: &str, svc: &str, addr: &str, own: bool| {
        let rep = reports.get(&(ns.to_owned(), svc.to_owned(), addr.to_owned()));
        // Unhealthy when every sidecar that probes it says so.
        let healthy = own && rep.is_none_or(|(up, down)| *up > 0 || *down == 0);
        (healthy, rep)
    };
    let mut out: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for kv in &services {
        let Ok(doc) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let ns = doc
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default");
        let name = doc
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let list = out.entry((ns.to_owned(), name.to_owned())).or_default();
        for e in doc
            .pointer("/spec/endpoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let address = e.get("address").and_then(Value::as_str).unwrap_or_default();
            let labels: BTreeMap<String, String> = e
                .get("labels")
                .and_then(|l| serde_json::from_value(l.clone()).ok())
                .unwrap_or_default();
            let weight = e.get("weight").and_then(Value::as_u64).unwrap_or(1);
            let (healthy, rep) = judged(ns, name, address, true);
            list.push(endpoint_json(
                address,
                address,
                &labels,
                u32::try_from(weight).unwrap_or(1),
                "static",
                healthy,
                rep,
            ));
        }
    }
    for kv in &registry {
        let rest = kv.key.strip_prefix(keys::REGISTRY).unwrap_or_default();
        let (Some(p), Ok(reg)) = (
            keys::parts(rest, 3),
            serde_json::from_slice::<Registration>(&kv.value),
        ) else {
            continue;
        };
        let address = reg.address.to_string();
        let (healthy, rep) = judged(p[0], p[1], &address, crate::registry::routable(&reg));
        let source = match reg.source {
            Source::Proxy => "proxy",
            Source::External => "external",
        };
        out.entry((p[0].to_owned(), p[1].to_owned()))
            .or_default()
            .push(endpoint_json(
                p[2],
                &address,
                &reg.labels,
                reg.weight,
                source,
                healthy,
                rep,
            ));
    }
    Ok(out)
}

async fn catalog(r: &Replica) -> Response<Body> {
    match endpoints(r).await {
        Ok(all) => {
            let items: Vec<Value> = all
                .iter()
                .map(|((ns, name), eps)| {
                    let healthy = eps.iter().filter(|e| e["healthy"] == Value::Bool(true)).count();
                    json!({"namespace": ns, "name": name, "endpoints": eps.len(), "healthy": healthy})
                })
                .collect();
            json(StatusCode::OK, &json!({"items": items}))
        }
        Err(e) => store_error(&e),
    }
}

async fn catalog_service(
    r: &Replica,
    ns: &str,
    name: &str,
    label: Option<&String>,
) -> Response<Body> {
    let filter = match label.map(|l| l.split_once('=')) {
        None => None,
        Some(Some((k, v))) => Some((k.to_owned(), v.to_owned())),
        Some(None) => return error(StatusCode::BAD_REQUEST, "`label` must be `key=value`"),
    };
    match endpoints(r).await {
        Ok(mut all) => match all.remove(&(ns.to_owned(), name.to_owned())) {
            Some(eps) => {
                let eps: Vec<Value> = eps
                    .into_iter()
                    .filter(|e| {
                        filter.as_ref().is_none_or(|(k, v)| {
                            e.pointer(&format!("/labels/{k}")).and_then(Value::as_str) == Some(v)
                        })
                    })
                    .collect();
                json(
                    StatusCode::OK,
                    &json!({"namespace": ns, "name": name, "endpoints": eps}),
                )
            }
            None => error(
                StatusCode::NOT_FOUND,
                format!("no service {ns}/{name} in the catalog"),
            ),
        },
        Err(e) => store_error(&e),
    }
}

/// `PUT /v1/registry/…` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    address: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    check: Option<CheckBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    ttl: Option<String>,
    http: Option<String>,
    tcp: Option<String>,
    interval: Option<String>,
    timeout: Option<String>,
}

fn duration_ms(field: &str, v: Option<&String>, default: u64) -> Result<u64, String> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse::<sinew_model::Duration>()
            .map(|d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX))
            .map_err(|e| format!("check.{field}: {e}")),
    }
}

fn parse_check(c: CheckBody) -> Result<Check, String> {
    let interval = duration_ms("interval", c.interval.as_ref(), 10_000)?;
    let timeout = duration_ms("timeout", c.timeout.as_ref(), 2_000)?;
    match (c.ttl, c.http, c.tcp) {
        (Some(ttl), None, None) => Ok(Check::Ttl {
            ttl_ms: duration_ms("ttl", Some(&ttl), 0)?.max(1),
        }),
        (None, Some(url), None) => Ok(Check::Http {
            url,
            interval_ms: interval.max(100),
            timeout_ms: timeout.max(10),
        }),
        (None, None, Some(address)) => Ok(Check::Tcp {
            address,
            interval_ms: interval.max(100),
            timeout_ms: timeout.max(10),
        }),
        _ => Err("`check` needs exactly one of `ttl`, `http`, `tcp`".to_owned()),
    }
}

async fn register(r: &Replica, ns: &str, svc: &str, id: &str, body: &[u8]) -> Response<Body> {
    for (what, v) in [("namespace", ns), ("service", svc), ("id", id)] {
        if !keys::valid_segment(v) {
            return error(StatusCode::BAD_REQUEST, format!("invalid {what} `{v}`"));
        }
    }
    let b: RegisterBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad registration: {e}")),
    };
    let Ok(address) = b.address.parse() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`address` must be ip:port, not `{}`", b.address),
        );
    };
    let check = match b.check.map(parse_check).transpose() {
        Ok(c) => c,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // A probed workload is unhealthy until its first check passes.
    let healthy = !matches!(check, Some(Check::Http { .. } | Check::Tcp { .. }));
    let reg = Registration {
        address,
        labels: b.labels,
        weight: b.weight.unwrap_or(1).max(1),
        source: Source::External,
        check,
        healthy,
        heartbeat_ms: keys::now_ms(),
        disconnected_ms: None,
        session: None,
        proxy: None,
    };
    let value = serde_json::to_vec(&reg).unwrap_or_default();
    match r
        .store
        .txn(
            Vec::new(),
            vec![Op::put(keys::registration(ns, svc, id), value)],
        )
        .await
    {
        Ok(o) => json(
            StatusCode::OK,
            &json!({"revision": o.revision, "registration": reg}),
        ),
        Err(e) => store_error(&e),
    }
}

async fn heartbeat(r: &Replica, ns: &str, svc: &str, id: &str) -> Response<Body> {
    let key = keys::registration(ns, svc, id);
    for _ in 0..5 {
        let kv = match r.store.get(&key).await {
            Ok(Some(kv)) => kv,
            Ok(None) => {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("{ns}/{svc}/{id} is not registered (expired or never registered)"),
                )
            }
            Err(e) => return store_error(&e),
        };
        let Ok(mut reg) = serde_json::from_slice::<Registration>(&kv.value) else {
            return error(StatusCode::INTERNAL_SERVER_ERROR, "unreadable registration");
        };
        reg.heartbeat_ms = keys::now_ms();
        reg.healthy = true;
        let value = serde_json::to_vec(&reg).unwrap_or_default();
        let guard = vec![Compare::ModRevision(key.clone(), kv.mod_revision)];
        match r.store.txn(guard, vec![Op::put(key.clone(), value)]).await {
            Ok(o) if o.succeeded => return json(StatusCode::OK, &json!({"revision": o.revision})),
            Ok(_) => continue,
            Err(e) => return store_error(&e),
        }
    }
    error(
        StatusCode::CONFLICT,
        "the registration kept changing; try again",
    )
}

async fn deregister(r: &Replica, ns: &str, svc: &str, id: &str) -> Response<Body> {
    match r
        .store
        .txn(
            Vec::new(),
            vec![Op::delete(keys::registration(ns, svc, id))],
        )
        .await
    {
        Ok(o) => json(StatusCode::OK, &json!({"revision": o.revision})),
        Err(e) => store_error(&e),
    }
}

/// `POST /v1/ca/rotate` body: the new CA, or nothing for a fresh root.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    cert_pem: String,
    key_pem: String,
    #[serde(default)]
    bundle_pem: Option<String>,
}

async fn ca_rotate(r: &Replica, body: &[u8]) -> Response<Body> {
    let next = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        match serde_json::from_slice::<RotateBody>(body) {
            Ok(b) => Some(crate::ca::UserCa {
                cert_pem: b.cert_pem,
                key_pem: b.key_pem,
                bundle_pem: b.bundle_pem,
            }),
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("bad rotation request: {e}"),
                )
            }
        }
    };
    match crate::ca::Ca::rotate(&*r.store, next.as_ref()).await {
        Ok(roots) => json(StatusCode::OK, &json!({"roots": roots})),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockBody {
    owner: String,
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    token: Option<u64>,
}

fn lock_error(e: lock::LockError) -> Response<Body> {
    let status = match &e {
        lock::LockError::Held { .. } | lock::LockError::Lost => StatusCode::CONFLICT,
        lock::LockError::Invalid(_) => StatusCode::BAD_REQUEST,
        lock::LockError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

fn lock_body(body: &[u8]) -> Result<LockBody, String> {
    serde_json::from_slice(body).map_err(|e| format!("bad lock request: {e}"))
}

async fn lock_acquire(r: &Replica, name: &str, body: &[u8]) -> Response<Body> {
    let b = match lock_body(body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let ttl = match duration_ms("ttl", b.ttl.as_ref(), 10_000) {
        Ok(ms) => Duration::from_millis(ms),
        Err(e) => return error(StatusCode::BAD_REQUEST, e.replace("check.", "")),
    };
    match lock::acquire(&*r.store, name, &b.owner, ttl).await {
        Ok(lease) => json(StatusCode::OK, &lease),
        Err(e) => lock_error(e),
    }
}

async fn lock_renew(r: &Replica, name: &str, body: &[u8]) -> Response<Body> {
    let b = match lock_body(body) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let Some(token) = b.token else {
        return error(StatusCode::BAD_REQUEST, "`token` is required to renew");
    };
    match lock::renew(&*r.store, name, &b.owner, token).await {
        Ok(lease) => json(StatusCode::OK, &lease),
        Err(e) => lock_error(e),
    }
}

async fn lock_release(r: &Replica, name: &str, q: &BTreeMap<String, String>) -> Response<Body> {
    let (Some(owner), Some(token)) = (q.get("owner"), q.get("token").and_then(|t| t.parse().ok()))
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "`owner` and `token` query parameters are required",
        );
    };
    match lock::release(&*r.store, name, owner, token).await {
        Ok(released) => json(StatusCode::OK, &json!({"released": released})),
        Err(e) => lock_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_documents_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.0.3");
        let paths = doc["paths"].as_object().expect("paths");
        for (path, methods) in [
            ("/healthz", &["get"][..]),
            ("/openapi.json", &["get"]),
            ("/v1/apply", &["post"]),
            ("/v1/resources/{kind}", &["get"]),
            (
                "/v1/resources/{kind}/{namespace}/{name}",
                &["get", "delete"],
            ),
            ("/v1/proxies", &["get"]),
            ("/v1/trust-bundle", &["get"]),
            ("/v1/ca/rotate", &["post"]),
            ("/v1/ca/rotate/finish", &["post"]),
            ("/v1/catalog/services", &["get"]),
            ("/v1/catalog/services/{namespace}/{name}", &["get"]),
            (
                "/v1/registry/{namespace}/{service}/{id}",
                &["put", "delete"],
            ),
            (
                "/v1/registry/{namespace}/{service}/{id}/heartbeat",
                &["put"],
            ),
            ("/v1/locks/{name}", &["post", "put", "delete"]),
        ] {
            for m in methods {
                assert!(paths[path][m].is_object(), "{m} {path} is not documented");
            }
        }
        // Every $ref resolves.
        let text = OPENAPI;
        for r in text.split("\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap_or_default();
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "dangling $ref {name}"
            );
        }
    }

    #[test]
    fn query_decoding() {
        assert_eq!(decode("a%20b+c").as_deref(), Some("a b c"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("50%").as_deref(), Some("50%"));
    }

    #[test]
    fn checks_parse_with_units() {
        let c = parse_check(CheckBody {
            ttl: None,
            http: Some("http://127.0.0.1:1/h".into()),
            tcp: None,
            interval: Some("2s".into()),
            timeout: Some("500ms".into()),
        })
        .expect("valid");
        assert_eq!(c.interval(), Some(Duration::from_secs(2)));
        let bad = parse_check(CheckBody {
            ttl: Some("5".into()),
            http: None,
            tcp: None,
            interval: None,
            timeout: None,
        });
        assert!(bad.is_err());
        let two = parse_check(CheckBody {
            ttl: Some("5s".into()),
            http: None,
            tcp: Some("127.0.0.1:1".into()),
            interval: None,
            timeout: None,
        });
        assert!(two.is_err());
    }
}
