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
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use sinew_proto::{Event, PublishRequest};
use std::borrow::Cow;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
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
            let mut body = String::with_capacity(16 + 56 * results.len());
            body.push_str(r#"{"results":["#);
            for (i, p) in results.iter().enumerate() {
                let comma = if i == 0 { "" } else { "," };
                let _ = write!(
                    body,
                    r#"{comma}{{"partition":{},"offset":{},"duplicate":{}}}"#,
                    p.partition, p.offset, p.duplicate
                );
            }
            body.push_str("]}");
            super::respond(StatusCode::OK, "application/json", body)
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
            let one: Structured<'_> = from_json(&body).map_err(|e| format!("event: {e}"))?;
            Ok(vec![one
                .into_event(now)
                .map_err(|e| format!("event: {e}"))?])
        }
        "application/cloudevents-batch+json" => {
            let list = batch(&body)?;
            if list.is_empty() {
                return Err("the batch is empty".into());
            }
            list.into_iter()
                .enumerate()
                .map(|(i, one)| one.into_event(now).map_err(|e| format!("event [{i}]: {e}")))
                .collect()
        }
        _ => binary(headers, content_type, body, now).map(|e| vec![e]),
    }
}

/// Parses a JSON body; a syntax error says the body is not JSON, any
/// other says what in it is not an event.
fn from_json<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            e.to_string()
        } else {
            format!("the body is not valid JSON: {e}")
        }
    })
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

/// Structured mode: one event as a JSON object, parsed straight into its
/// attributes and data (no JSON tree is built: a batch of events costs
/// about a third of the sidecar's CPU less that way).
#[derive(Debug)]
struct Structured<'a> {
    /// Every member but the data, as text.
    attributes: BTreeMap<String, String>,
    /// `data`, as it was written.
    data: Option<&'a RawValue>,
    /// `data_base64`.
    data_base64: Option<String>,
}

impl<'de> Deserialize<'de> for Structured<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StructuredVisitor)
    }
}

/// Reads a [`Structured`] event.
struct StructuredVisitor;

impl<'de> Visitor<'de> for StructuredVisitor {
    type Value = Structured<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event, which must be a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event = Structured {
            attributes: BTreeMap::new(),
            data: None,
            data_base64: None,
        };
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            match &*name {
                "data" => event.data = Some(map.next_value()?),
                "data_base64" => {
                    let text = map
                        .next_value()
                        .map_err(|_| de::Error::custom("`data_base64` must be a string"))?;
                    event.data_base64 = Some(text);
                }
                _ => {
                    let Text(text) = map
                        .next_value()
                        .map_err(|e| de::Error::custom(format!("attribute `{name}`: {e}")))?;
                    event.attributes.insert(name.into_owned(), text);
                }
            }
        }
        Ok(event)
    }
}

impl Structured<'_> {
    /// The broker's event, once the attributes check out.
    fn into_event(mut self, now: u64) -> Result<Event, String> {
        for required in REQUIRED {
            if !self.attributes.contains_key(required) {
                return Err(format!("missing `{required}`"));
            }
        }
        let data = if let Some(text) = self.data_base64.take() {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("`data_base64`: {e}"))?
        } else if let Some(raw) = self.data {
            let is_json = self
                .attributes
                .get("datacontenttype")
                .is_none_or(|t| t.contains("json"));
            data_bytes(raw, is_json)?
        } else {
            Vec::new()
        };
        event(self.attributes, Bytes::from(data), now)
    }
}

/// `data` as bytes: the JSON value as written when the content type is
/// JSON (`is_json`), else a JSON string's text (any other value as
/// written).
fn data_bytes(raw: &RawValue, is_json: bool) -> Result<Vec<u8>, String> {
    let json = raw.get();
    if !is_json && json.starts_with('"') {
        let text: String = serde_json::from_str(json).map_err(|e| format!("`data`: {e}"))?;
        return Ok(text.into_bytes());
    }
    Ok(json.as_bytes().to_vec())
}

/// A batch: a JSON array of structured events. A mistake names the event
/// it is in.
fn batch(body: &[u8]) -> Result<Vec<Structured<'_>>, String> {
    let at = Cell::new(None);
    let mut json = serde_json::Deserializer::from_slice(body);
    let parsed = (&mut json)
        .deserialize_seq(BatchVisitor { at: &at })
        .and_then(|list| json.end().map(|()| list));
    parsed.map_err(|e| match at.get() {
        _ if !e.is_data() => format!("the body is not valid JSON: {e}"),
        Some(index) => format!("event [{index}]: {e}"),
        None => e.to_string(),
    })
}

/// Reads a batch, noting which event it is at.
struct BatchVisitor<'c> {
    /// The index of the event being read.
    at: &'c Cell<Option<usize>>,
}

impl<'de> Visitor<'de> for BatchVisitor<'_> {
    type Value = Vec<Structured<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a batch, which must be a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut list = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            self.at.set(Some(list.len()));
            match seq.next_element()? {
                Some(event) => list.push(event),
                None => return Ok(list),
            }
        }
    }
}

/// An attribute's value as text: a string, a number or a boolean.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

/// Reads a [`Text`].
struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
        Ok(Text(v))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
        // As a JSON number is written (1e+20, not 100000000000000000000).
        Ok(Text(
            serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string()),
        ))
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
    // Attributes are delivered as `ce-*` headers: a control character could
    // never be, and the event would only retry its way to the dead letters.
    for (name, value) in &attributes {
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(format!(
                "attribute `{name}`: control characters cannot be delivered (in a header)"
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
        // Numbers and booleans are attributes' text; JSON data stays as
        // written; a JSON string under a text type is its text, escapes
        // undone.
        let body = r#"[{"specversion":"1.0","id":"c","source":"/s","type":"t","n":7,"f":1e20,"ok":true,
                        "data":[1, {"y":"z"}]},
                       {"specversion":"1.0","id":"d","source":"/s","type":"t","datacontenttype":"text/plain","data":"a\"b\u00e9"}]"#;
        let e = events(&h, Bytes::from(body), 1).expect("valid");
        assert_eq!(e[0].headers["n"], "7");
        assert_eq!(e[0].headers["f"], "1e+20");
        assert_eq!(e[0].headers["ok"], "true");
        assert_eq!(e[0].data, &br#"[1, {"y":"z"}]"#[..]);
        assert_eq!(e[1].data, "a\"b\u{e9}".as_bytes());
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static str,
            &'static str,
        );
        let cases: [Case; 10] = [
            (
                &[("content-type", "application/cloudevents+json")],
                r#"{"specversion":"1.0","id":"a","source":"/s","type":"t","partitionkey":"a\nb"}"#,
                "attribute `partitionkey`: control characters",
            ),
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
            (
                &[("content-type", "application/cloudevents-batch+json")],
                r#"[{"specversion":"1.0","id":"a","source":"/s","type":"t"},{"id":"b","x":{}}]"#,
                "event [1]: attribute `x`: invalid type: map, expected a string, number or boolean",
            ),
            (
                &[("content-type", "application/cloudevents-batch+json")],
                r#"[{"specversion":"1.0","id":"a","source":"/s","type":"t"},{"id":"b","#,
                "the body is not valid JSON",
            ),
            (
                &[("content-type", "application/cloudevents-batch+json")],
                r#"{"id":"a"}"#,
                "must be a JSON array of events",
            ),
            (
                &[("content-type", "application/cloudevents-batch+json")],
                r#"[{"specversion":"1.0","id":"a","source":"/s","type":"t"},{"id":"b"}]"#,
                "event [1]: missing `source`",
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
