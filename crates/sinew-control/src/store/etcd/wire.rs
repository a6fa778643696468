//! The JSON shapes of etcd's gRPC gateway: base64 keys and values, int64
//! fields as strings, proto3 defaults left out (so every field defaults).

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde::{de, Deserialize, Deserializer};
use serde_json::{json, Value};

use super::super::{prefix_end, Compare, Event, KeyValue, LeaseId, Op, Revision, StoreError};

/// etcd's error texts: the same strings its own Go client maps errors by
/// (`rpctypes.ErrGRPC*`), since several share one gRPC code.
const NO_SPACE: &str = "database space exceeded";
const LEASE_NOT_FOUND: &str = "requested lease not found";
const COMPACTED: &str = "required revision has been compacted";
const TOO_MANY_REQUESTS: &str = "too many requests";
/// gRPC `UNAVAILABLE` and `DEADLINE_EXCEEDED`: no leader, timed out, stopping.
const CODE_UNAVAILABLE: i32 = 14;
const CODE_DEADLINE_EXCEEDED: i32 = 4;

/// Base64 of raw bytes, as the gateway wants `bytes` fields.
pub(super) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// `key` and `range_end` covering every key under `prefix` (all keys for "").
pub(super) fn prefix_range(prefix: &str) -> Value {
    // etcd refuses an empty key; "\0" to "\0" is its spelling of "every key".
    let key: &[u8] = if prefix.is_empty() {
        &[0]
    } else {
        prefix.as_bytes()
    };
    json!({ "key": b64(key), "range_end": b64(&prefix_end(prefix)) })
}

/// A `TxnRequest` body. etcd refuses a key written twice in one txn, so only
/// the last op on each key is sent: the end state is the same.
pub(super) fn txn_request(compares: &[Compare], ops: &[Op]) -> Value {
    let compare: Vec<Value> = compares
        .iter()
        .map(|c| match c {
            // etcd compares an absent key's revisions as 0, but "absent" is
            // asked most plainly as "created at revision 0".
            Compare::ModRevision(key, 0) => json!({
                "result": "EQUAL", "target": "CREATE", "key": b64(key.as_bytes()),
                "create_revision": "0",
            }),
            Compare::ModRevision(key, rev) => json!({
                "result": "EQUAL", "target": "MOD", "key": b64(key.as_bytes()),
                "mod_revision": rev.to_string(),
            }),
            // etcd never matches a value compare on an absent key.
            Compare::Value(key, value) => json!({
                "result": "EQUAL", "target": "VALUE", "key": b64(key.as_bytes()),
                "value": b64(value),
            }),
        })
        .collect();
    let success: Vec<Value> = last_op_per_key(ops)
        .into_iter()
        .map(|op| match op {
            Op::Put { key, value, lease } => json!({ "request_put": {
                "key": b64(key.as_bytes()), "value": b64(value), "lease": lease.to_string(),
            }}),
            Op::Delete { key } => json!({ "request_delete_range": { "key": b64(key.as_bytes()) } }),
        })
        .collect();
    json!({ "compare": compare, "success": success })
}

fn last_op_per_key(ops: &[Op]) -> Vec<&Op> {
    fn key(op: &Op) -> &str {
        match op {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<&Op> = ops.iter().rev().filter(|op| seen.insert(key(op))).collect();
    out.reverse();
    out
}

/// An int64 (a JSON string) or uint64 field.
fn int<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match Value::deserialize(d)? {
        Value::String(s) => s.parse().map_err(de::Error::custom),
        Value::Number(n) => n.to_string().parse().map_err(de::Error::custom),
        other => Err(de::Error::custom(format!(
            "expected an integer, got {other}"
        ))),
    }
}

/// A `bytes` field (base64).
fn bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let text = String::deserialize(d)?;
    STANDARD.decode(text).map_err(de::Error::custom)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Header {
    #[serde(deserialize_with = "int")]
    pub(super) revision: Revision,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WireKv {
    #[serde(deserialize_with = "bytes")]
    key: Vec<u8>,
    #[serde(deserialize_with = "bytes")]
    value: Vec<u8>,
    #[serde(deserialize_with = "int")]
    create_revision: Revision,
    #[serde(deserialize_with = "int")]
    mod_revision: Revision,
    #[serde(deserialize_with = "int")]
    lease: LeaseId,
}

fn utf8_key(key: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(key).map_err(|e| StoreError::Internal(format!("etcd key is not UTF-8: {e}")))
}

impl WireKv {
    pub(super) fn into_key_value(self) -> Result<KeyValue, StoreError> {
        Ok(KeyValue {
            key: utf8_key(self.key)?,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            lease: self.lease,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RangeResponse {
    pub(super) header: Header,
    pub(super) kvs: Vec<WireKv>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct TxnResponse {
    pub(super) header: Header,
    pub(super) succeeded: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LeaseResponse {
    #[serde(rename = "ID", deserialize_with = "int")]
    pub(super) id: LeaseId,
    #[serde(rename = "TTL", deserialize_with = "int")]
    pub(super) ttl: i64,
    pub(super) error: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WatchResponse {
    pub(super) header: Header,
    pub(super) created: bool,
    pub(super) canceled: bool,
    #[serde(deserialize_with = "int")]
    pub(super) compact_revision: Revision,
    pub(super) cancel_reason: String,
    pub(super) events: Vec<WireEvent>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WireEvent {
    /// `PUT` is the default and so left out; `DELETE` otherwise.
    #[serde(rename = "type")]
    kind: String,
    kv: WireKv,
}

impl WatchResponse {
    /// The events, one batch per revision (a response may carry several).
    pub(super) fn batches(self) -> Result<Vec<Vec<Event>>, StoreError> {
        let mut out: Vec<Vec<Event>> = Vec::new();
        for e in self.events {
            let event = Event {
                revision: e.kv.mod_revision,
                key: utf8_key(e.kv.key)?,
                value: (e.kind != "DELETE").then_some(e.kv.value),
            };
            match out.last_mut() {
                Some(batch) if batch[0].revision == event.revision => batch.push(event),
                _ => out.push(vec![event]),
            }
        }
        Ok(out)
    }
}

/// One message of a streaming endpoint (`/v3/watch`, `/v3/lease/keepalive`).
#[derive(Debug, Deserialize)]
pub(super) struct StreamLine<T> {
    pub(super) result: Option<T>,
    pub(super) error: Option<GatewayError>,
}

/// The gateway's error body: a gRPC status.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct GatewayError {
    pub(super) code: i32,
    pub(super) message: String,
    error: String,
}

impl GatewayError {
    fn text(&self) -> &str {
        if self.message.is_empty() {
            &self.error
        } else {
            &self.message
        }
    }

    /// The store error this is; `lease` names the lease of the call, if any.
    ///
    /// Several errors share one gRPC code, so the message tells them apart,
    /// as etcd's Go client does.
    pub(super) fn into_store_error(self, lease: LeaseId) -> StoreError {
        let text = self.text().to_owned();
        let lower = text.to_ascii_lowercase();
        if lower.contains(NO_SPACE)
            || lower.contains("quota")
            || lower.contains("read-only")
            || lower.contains("read only")
        {
            StoreError::Rejected(text)
        } else if lower.contains(LEASE_NOT_FOUND) {
            StoreError::LeaseNotFound(lease)
        } else if lower.contains(COMPACTED) {
            // A read at a compacted revision; etcd does not say which is oldest.
            StoreError::Compacted { oldest: 0 }
        } else if self.code == CODE_UNAVAILABLE
            || self.code == CODE_DEADLINE_EXCEEDED
            || lower.contains(TOO_MANY_REQUESTS)
        {
            StoreError::Unavailable(text)
        } else {
            StoreError::Internal(format!("etcd: {text} (code {})", self.code))
        }
    }
}
