//! Demo traffic: a few requests per second to the entry service through its
//! sidecar, counting successes, failures and which catalog version answered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::client;

/// Time between two demo requests (4 per second).
const EVERY: Duration = Duration::from_millis(250);
/// How long one demo request may take.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Counters shared between the traffic loop and the status line.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    ok: AtomicU64,
    failed: AtomicU64,
    events: AtomicU64,
    versions: Mutex<BTreeMap<String, u64>>,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Requests answered 2xx.
    pub(crate) ok: u64,
    /// Requests answered otherwise, or not at all.
    pub(crate) failed: u64,
    /// Answers per catalog version found in the bodies.
    pub(crate) versions: BTreeMap<String, u64>,
    /// Order events orders says it published (stored by the broker).
    pub(crate) events: u64,
}

impl Stats {
    /// Counts one outcome.
    pub(crate) fn record(&self, outcome: &Result<client::Reply, client::ClientError>) {
        let reply = match outcome {
            Ok(reply) => reply,
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let counter = if (200..300).contains(&reply.status) {
            &self.ok
        } else {
            &self.failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let published = serde_json::from_slice::<Value>(&reply.body)
            .ok()
            .is_some_and(|v| published(&v));
        if published {
            self.events.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(version) = answer_version(&reply.body, "catalog") {
            let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
            *versions.entry(version).or_default() += 1;
        }
    }

    /// The counters now.
    pub(crate) fn totals(&self) -> Totals {
        Totals {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            versions: self
                .versions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// Sends `GET /` with `Host: host` to `target` every [`EVERY`], forever (abort the task to stop).
pub(crate) async fn run(target: SocketAddr, host: &'static str, stats: Arc<Stats>) {
    let mut ticks = tokio::time::interval(EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = client::get(target, host, "/", TIMEOUT).await;
        if let Err(error) = &outcome {
            tracing::debug!(%error, "demo request failed");
        }
        stats.record(&outcome);
    }
}

/// The version of `service`'s answer nested anywhere in a demo app's JSON body.
/// Whether an answer (or one of its downstream answers) says it published
/// an event.
fn published(value: &Value) -> bool {
    value.get("published").and_then(Value::as_bool) == Some(true)
        || value
            .get("calls")
            .and_then(Value::as_array)
            .is_some_and(|calls| calls.iter().filter_map(|c| c.get("answer")).any(published))
}

pub(crate) fn answer_version(body: &[u8], service: &str) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    find_version(&value, service)
}

fn find_version(value: &Value, service: &str) -> Option<String> {
    if value.get("service").and_then(Value::as_str) == Some(service) {
        if let Some(version) = value.get("version").and_then(Value::as_str) {
            return Some(version.to_owned());
        }
    }
    value
        .get("calls")?
        .as_array()?
        .iter()
        .filter_map(|call| call.get("answer"))
        .find_map(|answer| find_version(answer, service))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const WEB: &str = r#"{"service":"web","version":"v1","calls":[{"service":"catalog","status":200,
        "answer":{"service":"catalog","version":"v2","calls":[{"service":"inventory","status":200,
        "answer":{"service":"inventory","version":"v1"}}]}}]}"#;

    fn reply(status: u16, body: &str) -> Result<client::Reply, client::ClientError> {
        Ok(client::Reply {
            status,
            body: Bytes::copy_from_slice(body.as_bytes()),
        })
    }

    #[test]
    fn finds_nested_versions() {
        assert_eq!(
            answer_version(WEB.as_bytes(), "catalog").as_deref(),
            Some("v2")
        );
        assert_eq!(
            answer_version(WEB.as_bytes(), "inventory").as_deref(),
            Some("v1")
        );
        assert_eq!(answer_version(WEB.as_bytes(), "web").as_deref(), Some("v1"));
        assert_eq!(answer_version(WEB.as_bytes(), "payments"), None);
        assert_eq!(answer_version(b"not json", "catalog"), None);
    }

    #[test]
    fn counts_outcomes_and_versions() {
        let stats = Stats::default();
        stats.record(&reply(200, WEB));
        stats.record(&reply(502, WEB));
        stats.record(&reply(
            503,
            r#"{"service":"web","error":"injected failure"}"#,
        ));
        stats.record(&Err(client::ClientError::Timeout));
        let totals = stats.totals();
        assert_eq!((totals.ok, totals.failed), (1, 3));
        assert_eq!(totals.versions, BTreeMap::from([("v2".to_owned(), 2)]));
    }
}
