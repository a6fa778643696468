//! The REST/JSON API (docs/reference/api.md; `GET /openapi.json`): routing
//! and authentication, resources (apply, get, delete), proxy status and the
//! CA here; the catalog and external registrations in `catalog`, locks in
//! `locks`, the event store in `events`. Every `/v1` call needs the admin
//! token.

use std::{collections::BTreeMap, convert::Infallible, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    apply::{self, ApplyError},
    http::{error, json, Body},
    keys,
    replica::Replica,
    status::ProxyStatus,
    store::StoreError,
};

mod catalog;
mod events;
mod locks;

use catalog::{catalog, catalog_service, deregister, heartbeat, register};
pub(crate) use events::topic_metrics;
use locks::{lock_acquire, lock_release, lock_renew};

/// The OpenAPI document.
const OPENAPI: &str = include_str!("../openapi.json");
/// The dashboard: one page, its styles and script inline (no assets to serve).
const DASHBOARD: &str = include_str!("../dashboard.html");
/// Largest request body (an apply of a big file).
const MAX_BODY: usize = 16 << 20;

/// Serves the API on `listener` until the task is dropped.
pub(crate) async fn serve(listener: tokio::net::TcpListener, replica: Arc<Replica>) {
    crate::http::serve(listener, move |req| handle(replica.clone(), req)).await;
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
        // The dashboard page: no data in it; its calls carry the admin token.
        (&Method::GET, [] | ["dashboard"]) => {
            if seg.is_empty() {
                let mut r = Response::new(Body::new(Bytes::new()));
                *r.status_mut() = StatusCode::FOUND;
                r.headers_mut().insert(
                    http::header::LOCATION,
                    http::HeaderValue::from_static("/dashboard"),
                );
                return Ok(r);
            }
            let mut r = Response::new(Body::new(Bytes::from_static(DASHBOARD.as_bytes())));
            let headers = r.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            headers.insert(
                http::header::CONTENT_SECURITY_POLICY,
                http::HeaderValue::from_static(
                    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
                ),
            );
            headers.insert(
                http::header::REFERRER_POLICY,
                http::HeaderValue::from_static("no-referrer"),
            );
            headers.insert(
                http::header::X_FRAME_OPTIONS,
                http::HeaderValue::from_static("DENY"),
            );
            return Ok(r);
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
        (&Method::GET, ["v1", "topics"]) => events::topics(r).await,
        (&Method::GET, ["v1", "subscriptions"]) => events::subscriptions(r).await,
        (&Method::GET, ["metrics"]) => events::metrics(r).await,
        (&Method::GET, ["v1", "stats"]) => {
            match duration_ms("window", query.get("window"), 30_000) {
                Ok(ms) if (1..=crate::stats::KEEP.as_millis() as u64).contains(&ms) => json(
                    StatusCode::OK,
                    &r.stats.summary(std::time::Duration::from_millis(ms)),
                ),
                Ok(_) => error(
                    StatusCode::BAD_REQUEST,
                    "window: between 1ms and 10m (the reports kept)",
                ),
                Err(message) => error(StatusCode::BAD_REQUEST, message),
            }
        }
        (&Method::GET, ["v1", "topics", ns, topic, "events"]) => {
            events::events(r, ns, topic, &query).await
        }
        (&Method::POST, ["v1", "topics", ns, topic, "dlq", "replay"]) => {
            events::replay(r, ns, topic, &query).await
        }
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

pub(super) fn duration_ms(field: &str, v: Option<&String>, default: u64) -> Result<u64, String> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse::<sinew_model::Duration>()
            .map(|d| u64::try_from(d.0.as_millis()).unwrap_or(u64::MAX))
            .map_err(|e| format!("check.{field}: {e}")),
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
            ("/v1/topics", &["get"]),
            ("/v1/subscriptions", &["get"]),
            ("/dashboard", &["get"]),
            ("/metrics", &["get"]),
            ("/v1/stats", &["get"]),
            ("/v1/topics/{namespace}/{topic}/events", &["get"]),
            ("/v1/topics/{namespace}/{topic}/dlq/replay", &["post"]),
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
}
