//! `/v1/locks/{name}`: the sidecar's lock calls, forwarded to the control
//! plane on the proxy's session (`control::Control`).
//!
//! | call | control plane | answer |
//! |---|---|---|
//! | `POST` `{"owner","ttl":"10s"}` | `AcquireLock` | `200 {"name","owner","token","ttl_ms"}` |
//! | `PUT` `{"owner","token","ttl"?}` | `RenewLock` | `200` lease |
//! | `DELETE ?owner=&token=` | `ReleaseLock` | `200 {"released": bool}` |
//!
//! Errors are `{"error": "…"}` with the status [`http_status`] maps from
//! the gRPC code; a static proxy (no control plane) answers `503`.

use crate::control::Control;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use sinew_proto::{AcquireLockRequest, LockLease, ReleaseLockRequest, RenewLockRequest};
use std::sync::Arc;
use tonic::Code;

/// The path prefix these calls live under.
pub(super) const PREFIX: &str = "/v1/locks/";

/// Largest request body read.
const MAX_BODY: usize = 64 * 1024;

/// The HTTP status for a control plane's gRPC status code.
///
/// ```
/// use sinew_proxy::api::http_status;
/// assert_eq!(http_status(tonic::Code::FailedPrecondition), http::StatusCode::CONFLICT);
/// assert_eq!(http_status(tonic::Code::Internal), http::StatusCode::BAD_GATEWAY);
/// ```
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::FailedPrecondition | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_GATEWAY,
    }
}

/// Serves one `/v1/locks/…` request.
pub(super) async fn handle(
    control: Option<&Arc<Control>>,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let name = req.uri().path()[PREFIX.len()..].to_owned();
    if name.is_empty() || name.contains('/') {
        return error(StatusCode::NOT_FOUND, "expected /v1/locks/{name}");
    }
    let method = req.method().clone();
    if !matches!(method, Method::POST | Method::PUT | Method::DELETE) {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed (POST acquires, PUT renews, DELETE releases)",
        );
    }
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = if method == Method::DELETE {
        Value::Null
    } else {
        match read_json(req.into_body()).await {
            Ok(body) => body,
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        }
    };
    let call = match parse(&method, name, &body, &query) {
        Ok(call) => call,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let Some(control) = control else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "locks need a control plane; this proxy runs in static mode",
        );
    };
    let result = match call {
        Call::Acquire(r) => control.acquire_lock(r).await.map(lease),
        Call::Renew(r) => control.renew_lock(r).await.map(lease),
        Call::Release(r) => control
            .release_lock(r)
            .await
            .map(|reply| json!({"released": reply.released})),
    };
    match result {
        Ok(body) => respond(StatusCode::OK, &body),
        Err(status) => error(http_status(status.code()), status.message()),
    }
}

/// A lock call, checked.
#[derive(Debug, PartialEq)]
enum Call {
    Acquire(AcquireLockRequest),
    Renew(RenewLockRequest),
    Release(ReleaseLockRequest),
}

fn parse(method: &Method, name: String, body: &Value, query: &str) -> Result<Call, String> {
    match *method {
        Method::POST => Ok(Call::Acquire(AcquireLockRequest {
            name,
            owner: owner(body.get("owner"))?,
            ttl_ms: ttl(body.get("ttl"))?.ok_or("`ttl` is required (e.g. \"10s\")")?,
        })),
        Method::PUT => Ok(Call::Renew(RenewLockRequest {
            name,
            owner: owner(body.get("owner"))?,
            token: token(body.get("token"))?,
            ttl_ms: ttl(body.get("ttl"))?.unwrap_or(0),
        })),
        _ => {
            let (mut owner_param, mut token_param) = (None, None);
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_decode(v).ok_or_else(|| format!("query `{k}`: bad % escape"))?;
                match k {
                    "owner" => owner_param = Some(Value::String(v)),
                    "token" => {
                        let n = v
                            .parse::<u64>()
                            .map_err(|_| "`token` must be a non-negative integer".to_owned())?;
                        token_param = Some(Value::from(n));
                    }
                    _ => {}
                }
            }
            Ok(Call::Release(ReleaseLockRequest {
                name,
                owner: owner(owner_param.as_ref())?,
                token: token(token_param.as_ref())?,
            }))
        }
    }
}

fn owner(value: Option<&Value>) -> Result<String, String> {
    match value {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) | None => Err("`owner` is required".into()),
        Some(_) => Err("`owner` must be a string".into()),
    }
}

fn token(value: Option<&Value>) -> Result<u64, String> {
    match value {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| "`token` must be a non-negative integer".to_owned()),
        None => Err("`token` is required".into()),
    }
}

/// `ttl` as milliseconds: a duration with units (`10s`, `1m30s`).
fn ttl(value: Option<&Value>) -> Result<Option<u64>, String> {
    let Some(value) = value else {
        return Ok(None);
    };
    let text = value
        .as_str()
        .ok_or("`ttl` must be a duration string with a unit, e.g. \"10s\"")?;
    let duration: sinew_model::Duration = text.parse().map_err(|e| format!("`ttl`: {e}"))?;
    let ms = u64::try_from(duration.0.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return Err("`ttl` must be at least 1ms".into());
    }
    Ok(Some(ms))
}

async fn read_json(body: Incoming) -> Result<Value, String> {
    let bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|_| format!("cannot read the body (at most {MAX_BODY} bytes)"))?
        .to_bytes();
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    if value.is_object() {
        Ok(value)
    } else {
        Err("the body must be a JSON object".into())
    }
}

/// `%XX` and `+` decoded; `None` on a bad escape or non-UTF-8.
pub(super) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
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

fn lease(lease: LockLease) -> Value {
    json!({
        "name": lease.name,
        "owner": lease.owner,
        "token": lease.token,
        "ttl_ms": lease.ttl_ms,
    })
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    super::respond(status, "application/json", body.to_string())
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    respond(status, &json!({"error": message}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or(Value::Null)
    }

    #[test]
    fn grpc_codes_map_to_http_statuses() {
        for (code, status) in [
            (Code::FailedPrecondition, 409),
            (Code::AlreadyExists, 409),
            (Code::NotFound, 404),
            (Code::InvalidArgument, 400),
            (Code::Unavailable, 503),
            (Code::Unauthenticated, 502),
            (Code::DeadlineExceeded, 502),
        ] {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
        }
    }

    #[test]
    fn acquire_needs_an_owner_and_a_ttl_with_unit() {
        assert_eq!(
            parse(
                &Method::POST,
                "l".into(),
                &body(r#"{"owner":"a","ttl":"1m30s"}"#),
                ""
            ),
            Ok(Call::Acquire(AcquireLockRequest {
                name: "l".into(),
                owner: "a".into(),
                ttl_ms: 90_000,
            }))
        );
        let err = |text: &str| parse(&Method::POST, "l".into(), &body(text), "").unwrap_err();
        assert_eq!(err(r#"{"ttl":"1s"}"#), "`owner` is required");
        assert_eq!(err(r#"{"owner":"a"}"#), "`ttl` is required (e.g. \"10s\")");
        assert!(err(r#"{"owner":"a","ttl":"10"}"#).starts_with("`ttl`: "));
        assert_eq!(err(r#"{"owner":7,"ttl":"1s"}"#), "`owner` must be a string");
    }

    #[test]
    fn renew_needs_a_token_and_keeps_the_ttl_when_absent() {
        assert_eq!(
            parse(
                &Method::PUT,
                "l".into(),
                &body(r#"{"owner":"a","token":4}"#),
                ""
            ),
            Ok(Call::Renew(RenewLockRequest {
                name: "l".into(),
                owner: "a".into(),
                token: 4,
                ttl_ms: 0,
            }))
        );
        assert_eq!(
            parse(
                &Method::PUT,
                "l".into(),
                &body(r#"{"owner":"a","token":"4"}"#),
                ""
            ),
            Err("`token` must be a non-negative integer".into())
        );
    }

    #[test]
    fn release_reads_the_query() {
        assert_eq!(
            parse(
                &Method::DELETE,
                "l".into(),
                &Value::Null,
                "owner=worker%201&token=9"
            ),
            Ok(Call::Release(ReleaseLockRequest {
                name: "l".into(),
                owner: "worker 1".into(),
                token: 9,
            }))
        );
        assert!(parse(&Method::DELETE, "l".into(), &Value::Null, "owner=a").is_err());
        assert!(parse(
            &Method::DELETE,
            "l".into(),
            &Value::Null,
            "owner=%zz&token=1"
        )
        .is_err());
    }
}
