//! `POST /v1/publish/{topic}`: the app publishes CloudEvents 1.0 through its
//! sidecar; the sidecar forwards them to the broker on its control-plane
//! session (under its workload identity) and answers once they are durable.
//!
//! | body | mode |
//! |---|---|
//! | any, with `ce-id`, `ce-source`, `ce-type`, `ce-specversion` headers | binary: the body is the data, `content-type` its type |
//! | `application/cloudevents+json` | structured: one event as JSON (`data` or `data_base64`) |
//! | `application/cloudevents-batch+json` | a JSON array of structured events, published together |
//!
//! `ce-partitionkey` (the `partitionkey` extension) orders events: the same
//! key always lands in the same partition, in publish order. An event whose
//! `id` was published within the broker's window is not stored again
//! (`"duplicate": true`).
//!
//! Answers: `200 {"results":[{"partition","offset","duplicate"}]}`; `400` for
//! a malformed event (the reason says which attribute); `403` when a topic
//! policy refuses this workload; `507` when the broker's storage is full;
//! `503` when no broker is reachable — never a silent drop.

use crate::control::Control;
use bytes::Bytes;
use http::{header, HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};
use sinew_proto::{Event, PublishRequest};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tonic::Code;

/// The path prefix these calls live under.
pub(super) const PREFIX: &str = "/v1/publish/";

/// Largest request body read (one event, or one batch).
const MAX_BODY: usize = 4 << 20;

/// Attributes every CloudEvent carries.
const REQUIRED: [&str; 4] = ["id", "source", "type", "specversion"];

/// The HTTP status for a broker's gRPC status code.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::ResourceExhausted => StatusCode::INSUFFICIENT_STORAGE,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::BAD_GATEWAY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Serves one `POST /v1/publish/{topic}`.
pub(super) async fn handle(
    control: Option<&Arc<Control>>,
    namespace: &str,
    metrics: &crate::telemetry::Metrics,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let topic = req.uri().path()[PREFIX.len()..].to_owned();
    let response = publish(control, namespace, &topic, req).await;
    // Only well-formed topic names become a label (bounded by the app's topics).
    if !topic.is_empty() && topic.len() <= 249 && !topic.contains('/') {
        let result = match response.status() {
            StatusCode::OK => "ok",
            s if s.is_client_error() => "refused",
            _ => "failed",
        };
        metrics.events_published(&topic, result).inc();
    }
    response
}

async fn publish(
    control: Option<&Arc<Control>>,
    namespace: &str,
    topic: &str,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if topic.is_empty() || topic.contains('/') {
        return error(StatusCode::NOT_FOUND, "expected /v1/publish/{topic}");
    }
    if req.method() != http::Method::POST {
        return error(StatusCode::METHOD_NOT_ALLOWED, "publish with POST");
    }
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is over {MAX_BODY} bytes or could not be read"),
            )
        }
    };
    let now = now_ms();
    let parsed = match events(&parts.headers, body.clone(), now) {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let Some(control) = control else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "publishing needs a control plane (its event broker); this proxy runs in static mode",
        );
    };
    let request = PublishRequest {
        topic: topic.to_owned(),
        events: parsed,
        namespace: namespace.to_owned(),
    };
    // The same events once more, for a retry alone (see
    // sinew_proto::coalesce): the body parsed again, not a copy kept.
    let headers = parts.headers;
    let again = move || events(&headers, body, now).unwrap_or_default();
    match control.publish_coalesced(request, again).await {
        Ok(results) => {
            let results: Vec<Value> = results
                .iter()
                .map(|p| json!({"partition": p.partition, "offset": p.offset, "duplicate": p.duplicate}))
                .collect();
            respond(StatusCode::OK, &json!({ "results": results }))
        }
        Err(status) => error(http_status(status.code()), status.message()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The events a request carries, by its mode.
fn events(headers: &HeaderMap, body: Bytes, now: u64) -> Result<Vec<Event>, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/cloudevents+json" => {
            let value: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the body is not valid JSON: {e}"))?;
            Ok(vec![
                structured(value, now).map_err(|e| format!("event: {e}"))?
            ])
        }
        "application/cloudevents-batch+json" => {
            let value: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the body is not valid JSON: {e}"))?;
            let Value::Array(list) = value else {
                return Err("a batch must be a JSON array of events".into());
            };
            if list.is_empty() {
                return Err("the batch is empty".into());
            }
            list.into_iter()
                .enumerate()
                .map(|(i, v)| structured(v, now).map_err(|e| format!("event [{i}]: {e}")))
                .collect()
        }
        _ => binary(headers, content_type, body, now).map(|e| vec![e]),
    }
}

/// Binary mode: `ce-*` headers are the attributes, the body the data.
fn binary(headers: &HeaderMap, content_type: &str, body: Bytes, now: u64) -> Result<Event, String> {
    let mut attributes = BTreeMap::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| format!("header `{name}` is not text"))?;
        attributes.insert(attribute.to_owned(), value.to_owned());
    }
    for required in REQUIRED {
        if !attributes.contains_key(required) {
            return Err(format!(
                "missing `ce-{required}`: binary mode needs ce-id, ce-source, ce-type and ce-specversion (or send application/cloudevents+json)"
            ));
        }
    }
    if !content_type.is_empty() {
        attributes.insert("datacontenttype".into(), content_type.to_owned());
    }
    event(attributes, body, now)
}

/// Structured mode: one event as a JSON object (its strings are moved, not
/// copied, into the event).
fn structured(value: Value, now: u64) -> Result<Event, String> {
    let Value::Object(object) = value else {
        return Err("must be a JSON object".into());
    };
    let is_json = object
        .get("datacontenttype")
        .and_then(Value::as_str)
        .is_none_or(|t| t.contains("json"));
    let mut attributes = BTreeMap::new();
    let mut data = Vec::new();
    for (name, v) in object {
        match name.as_str() {
            "data" => data = data_bytes(v, is_json),
            "data_base64" => {
                use base64::Engine;
                let text = v.as_str().ok_or("`data_base64` must be a string")?;
                data = base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| format!("`data_base64`: {e}"))?;
            }
            _ => {
                let text = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(format!(
                            "attribute `{name}` must be a string, number or boolean"
                        ))
                    }
                };
                attributes.insert(name, text);
            }
        }
    }
    for required in REQUIRED {
        if !attributes.contains_key(required) {
            return Err(format!("missing `{required}`"));
        }
    }
    event(attributes, Bytes::from(data), now)
}

/// `data` as bytes: a JSON string as its text when the content type is not
/// JSON (`is_json` false), else the JSON value itself.
fn data_bytes(v: Value, is_json: bool) -> Vec<u8> {
    match v {
        Value::String(s) if !is_json => s.into_bytes(),
        other => other.to_string().into_bytes(),
    }
}

/// Checks the attributes and builds the broker's event.
fn event(mut attributes: BTreeMap<String, String>, data: Bytes, now: u64) -> Result<Event, String> {
    if attributes.get("specversion").map(String::as_str) != Some("1.0") {
        return Err("`specversion` must be \"1.0\"".into());
    }
    for name in attributes.keys() {
        if name.is_empty()
            || name.len() > 20
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(format!(
                "attribute `{name}`: CloudEvents attribute names are 1-20 lowercase letters or digits"
            ));
        }
    }
    let id = attributes.remove("id").unwrap_or_default();
    if id.is_empty() || id.len() > 256 {
        return Err("`id` must be 1-256 characters".into());
    }
    for required in ["source", "type"] {
        if attributes.get(required).is_none_or(String::is_empty) {
            return Err(format!("`{required}` must not be empty"));
        }
    }
    let key = attributes.remove("partitionkey").unwrap_or_default();
    Ok(Event {
        id,
        key: Bytes::from(key),
        timestamp_ms: now,
        headers: attributes,
        data,
    })
}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    super::respond(status, "application/json", body.to_string())
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    respond(status, &json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    header::HeaderName::from_static(k),
                    header::HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn binary_mode_takes_ce_headers_and_the_body() {
        let h = headers(&[
            ("ce-id", "e-1"),
            ("ce-source", "/orders"),
            ("ce-type", "order.created"),
            ("ce-specversion", "1.0"),
            ("ce-partitionkey", "customer-7"),
            ("content-type", "application/json"),
        ]);
        let e = events(&h, Bytes::from_static(b"{\"n\":1}"), 42).expect("valid");
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].id, "e-1");
        assert_eq!(e[0].key, &b"customer-7"[..]);
        assert_eq!(e[0].data, &b"{\"n\":1}"[..]);
        assert_eq!(e[0].timestamp_ms, 42);
        assert_eq!(e[0].headers["type"], "order.created");
        assert_eq!(e[0].headers["datacontenttype"], "application/json");
        assert!(!e[0].headers.contains_key("id") && !e[0].headers.contains_key("partitionkey"));
    }

    #[test]
    fn structured_and_batch_modes() {
        let h = headers(&[("content-type", "application/cloudevents+json")]);
        let body = r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","partitionkey":"k","data":{"x":1}}"#;
        let e = events(&h, Bytes::from(body), 1).expect("valid");
        assert_eq!(e[0].data, &br#"{"x":1}"#[..]);
        assert_eq!(e[0].key, &b"k"[..]);
        let h = headers(&[("content-type", "application/cloudevents-batch+json")]);
        let body = r#"[{"specversion":"1.0","id":"a","source":"/s","type":"t","datacontenttype":"text/plain","data":"hi"},
                       {"specversion":"1.0","id":"b","source":"/s","type":"t","data_base64":"AAEC"}]"#;
        let e = events(&h, Bytes::from(body), 1).expect("valid");
        assert_eq!(e[0].data, &b"hi"[..]);
        assert_eq!(e[1].data, &[0u8, 1, 2][..]);
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static str,
            &'static str,
        );
        let cases: [Case; 5] = [
            (&[("ce-id", "a")], "", "missing `ce-source`"),
            (
                &[
                    ("ce-id", "a"),
                    ("ce-source", "/s"),
                    ("ce-type", "t"),
                    ("ce-specversion", "0.3"),
                ],
                "",
                "specversion",
            ),
            (
                &[("content-type", "application/cloudevents+json")],
                "[1]",
                "must be a JSON object",
            ),
            (
                &[("content-type", "application/cloudevents-batch+json")],
                "[]",
                "empty",
            ),
            (
                &[("content-type", "application/cloudevents+json")],
                r#"{"specversion":"1.0","id":"","source":"/s","type":"t"}"#,
                "`id` must be",
            ),
        ];
        for (h, body, want) in cases {
            let err = events(&headers(h), Bytes::from(body), 1).expect_err(want);
            assert!(err.contains(want), "{err} should say {want}");
        }
        assert_eq!(
            http_status(Code::ResourceExhausted),
            StatusCode::INSUFFICIENT_STORAGE
        );
        assert_eq!(
            http_status(Code::Unavailable),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(http_status(Code::PermissionDenied), StatusCode::FORBIDDEN);
    }
}
