//! Locks for apps: `/v1/locks/{name}` (the sidecar API forwards the same calls over gRPC).

use std::{collections::BTreeMap, time::Duration};

use http::{Response, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::duration_ms;
use crate::{
    http::{error, json, Body},
    lock,
    replica::Replica,
};

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

pub(super) async fn lock_acquire(r: &Replica, name: &str, body: &[u8]) -> Response<Body> {
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

pub(super) async fn lock_renew(r: &Replica, name: &str, body: &[u8]) -> Response<Body> {
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

pub(super) async fn lock_release(
    r: &Replica,
    name: &str,
    q: &BTreeMap<String, String>,
) -> Response<Body> {
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
