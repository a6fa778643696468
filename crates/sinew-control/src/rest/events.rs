//! The event store over REST, for operators and the `sinew events` CLI
//! (admin token): topics, a partition's events (`tail`), a key's history
//! (event sourcing), and dead-letter replay.
//!
//! | call | answer |
//! |---|---|
//! | `GET /v1/topics` | `{"items":[{"namespace","topic","partitions","events","offsets":[[first,next],…]}]}` |
//! | `GET /v1/topics/{ns}/{topic}/events?partition=P&from=N&limit=L&wait=MS` | `{"events":[…],"next":N}`: one partition from `from` (default: its first offset) |
//! | `GET /v1/topics/{ns}/{topic}/events?key=K&limit=L` | the key's events, oldest first (its partition, scanned from the start) |
//! | `POST /v1/topics/{ns}/{topic}/dlq/replay?id=ID` | republishes the dead-lettered events of `{topic}.dlq` (all, or those with `id`) to `{topic}` under new ids; `{"replayed": N}` |

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http::StatusCode;
use serde_json::{json, Value};
use sinew_events::{EventStore, Record};

use crate::http::{error, json, prometheus, Body};
use crate::replica::Replica;

/// Most events one call returns.
const MAX_LIMIT: usize = 10_000;
/// Longest a `wait` may be.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Bytes fetched per read while scanning.
const SCAN_BYTES: usize = 1 << 20;

/// A response that ends a call early (boxed: responses are large).
type Refusal = Box<http::Response<Body>>;

fn broker(r: &Replica) -> Result<&EventStore, Refusal> {
    r.broker.get().ok_or_else(|| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no event store: run the control plane with the embedded store or `--events jetstream:URL`",
        ))
    })
}

fn broker_error(e: &sinew_events::Error) -> http::Response<Body> {
    let status = match e.kind() {
        sinew_events::ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        sinew_events::ErrorKind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, e.to_string())
}

/// An event as JSON: its position, id, key, time, attributes and data
/// (text when it is UTF-8, else `data_base64`).
fn event_json(partition: u32, r: &Record) -> Value {
    let (id, attributes) = sinew_events::split_event_headers(&r.headers);
    let mut v = json!({
        "partition": partition,
        "offset": r.offset,
        "id": id,
        "key": String::from_utf8_lossy(&r.key),
        "timestamp_ms": r.timestamp_ms,
        "attributes": attributes.into_iter().collect::<BTreeMap<_, _>>(),
    });
    match std::str::from_utf8(&r.value) {
        Ok(text) => v["data"] = json!(text),
        Err(_) => {
            v["data_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(&r.value))
        }
    }
    v
}

fn number<T: std::str::FromStr>(
    query: &BTreeMap<String, String>,
    name: &str,
) -> Result<Option<T>, Refusal> {
    query
        .get(name)
        .map(|v| {
            v.parse().map_err(|_| {
                Box::new(error(
                    StatusCode::BAD_REQUEST,
                    format!("`{name}` must be a non-negative integer"),
                ))
            })
        })
        .transpose()
}

/// `GET /metrics`: the event store's topics as Prometheus gauges, and the
/// proxy sessions this replica started.
pub(super) async fn metrics(r: &Replica) -> http::Response<Body> {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP sinew_control_sessions_total Proxy sessions this replica has started.\n# TYPE sinew_control_sessions_total counter\nsinew_control_sessions_total {}",
        r.sessions_started()
    );
    if let Some(store) = r.broker.get() {
        if let Err(e) = topic_metrics(store, &mut out).await {
            return broker_error(&e);
        }
    }
    prometheus(out)
}

/// Appends the store's metrics to `out`: with the embedded broker, its
/// log's appends, records and syncs; then events retained and next offset
/// per partition, dead-letter depth per topic, and the backend. Shared with
/// `sinew broker`'s own `/metrics`.
pub(crate) async fn topic_metrics(
    store: &EventStore,
    out: &mut String,
) -> Result<(), sinew_events::Error> {
    use std::fmt::Write;
    if let EventStore::Embedded(broker) = store {
        let stats = broker.commit_stats();
        for (name, help, value) in [
            (
                "appends",
                "Appends the log acknowledged (one per partition a publish call touched).",
                stats.appends,
            ),
            ("records", "Events the log made durable.", stats.records),
            (
                "syncs",
                "fdatasync calls (group commits): records per sync is the batching.",
                stats.syncs,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP sinew_broker_{name}_total {help}\n# TYPE sinew_broker_{name}_total counter\nsinew_broker_{name}_total {value}"
            );
        }
    }
    let topics = store.topics().await?;
    let mut retained = String::new();
    let mut next = String::new();
    let mut dlq = String::new();
    for (name, partitions) in &topics {
        let (namespace, topic) = name.split_once('.').unwrap_or(("", name));
        let (namespace, topic) = (label(namespace), label(topic));
        let mut total = 0;
        for p in 0..*partitions {
            let Ok(range) = store.offsets(name, p).await else {
                continue;
            };
            total += range.end - range.start;
            let labels = format!("namespace=\"{namespace}\",topic=\"{topic}\",partition=\"{p}\"");
            let _ = writeln!(
                retained,
                "sinew_topic_events{{{labels}}} {}",
                range.end - range.start
            );
            let _ = writeln!(next, "sinew_topic_next_offset{{{labels}}} {}", range.end);
        }
        if let Some(source) = topic.strip_suffix(".dlq") {
            let _ = writeln!(
                dlq,
                "sinew_events_dlq_depth{{namespace=\"{namespace}\",topic=\"{source}\"}} {total}"
            );
        }
    }
    let _ = write!(
        out,
        "# HELP sinew_topic_events Events retained in a topic partition.\n# TYPE sinew_topic_events gauge\n{retained}\
         # HELP sinew_topic_next_offset The offset a partition's next event gets: events ever stored in it.\n# TYPE sinew_topic_next_offset gauge\n{next}\
         # HELP sinew_events_dlq_depth Events retained in a topic's dead-letter topic ({{topic}}.dlq).\n# TYPE sinew_events_dlq_depth gauge\n{dlq}"
    );
    let _ = writeln!(
        out,
        "# HELP sinew_events_store The event store's backend.\n# TYPE sinew_events_store gauge\nsinew_events_store{{backend=\"{}\"}} 1",
        store.backend()
    );
    Ok(())
}

/// A label value escaped for the text format.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `GET /v1/subscriptions`: each Subscription with its consumer group's
/// lag (events stored after its cursors, over partitions with a cursor)
/// and the events in its dead-letter topic.
pub(super) async fn subscriptions(r: &Replica) -> http::Response<Body> {
    let kvs = match r
        .store
        .range(&crate::keys::resource_kind(sinew_model::Kind::Subscription))
        .await
    {
        Ok((_, kvs)) => kvs,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let store = r.broker.get();
    let mut items = Vec::new();
    for kv in kvs {
        let Ok(doc) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let namespace = doc["metadata"]["namespace"].as_str().unwrap_or("default");
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        let topic = doc["spec"]["topic"].as_str().unwrap_or_default();
        let dead_letter = doc["spec"]["dead_letter"]
            .as_str()
            .map_or_else(|| format!("{topic}.dlq"), str::to_owned);
        let (mut lag, mut dead) = (Value::Null, Value::Null);
        if let Some(store) = store {
            let key = format!("{namespace}.{topic}");
            if let Ok(partitions) = store.partitions(&key).await {
                let mut total = 0u64;
                for p in 0..partitions {
                    let (Ok(range), Ok(Some(at))) = (
                        store.offsets(&key, p).await,
                        store.committed(name, &key, p).await,
                    ) else {
                        continue;
                    };
                    total += range.end.saturating_sub(at.max(range.start));
                }
                lag = json!(total);
            }
            let dlq = format!("{namespace}.{dead_letter}");
            if let Ok(partitions) = store.partitions(&dlq).await {
                let mut total = 0u64;
                for p in 0..partitions {
                    if let Ok(range) = store.offsets(&dlq, p).await {
                        total += range.end - range.start;
                    }
                }
                dead = json!(total);
            }
        }
        items.push(json!({
            "namespace": namespace, "name": name, "topic": topic,
            "service": doc["spec"]["service"], "dead_letter": dead_letter,
            "lag": lag, "dead_letters": dead,
        }));
    }
    json(StatusCode::OK, &json!({ "items": items }))
}

/// `GET /v1/topics`.
pub(super) async fn topics(r: &Replica) -> http::Response<Body> {
    let broker = match broker(r) {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let topics = match broker.topics().await {
        Ok(topics) => topics,
        Err(e) => return broker_error(&e),
    };
    let mut items = Vec::new();
    for (name, partitions) in topics {
        let mut events = 0u64;
        let mut offsets = Vec::new();
        for p in 0..partitions {
            if let Ok(range) = broker.offsets(&name, p).await {
                events += range.end - range.start;
                offsets.push(json!([range.start, range.end]));
            }
        }
        let (namespace, topic) = name.split_once('.').unwrap_or(("", &name));
        items.push(json!({"namespace": namespace, "topic": topic, "partitions": partitions, "events": events, "offsets": offsets}));
    }
    json(StatusCode::OK, &json!({ "items": items }))
}

/// `GET /v1/topics/{ns}/{topic}/events`.
pub(super) async fn events(
    r: &Replica,
    ns: &str,
    topic: &str,
    query: &BTreeMap<String, String>,
) -> http::Response<Body> {
    let broker = match broker(r) {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let name = format!("{ns}.{topic}");
    let limit = match number::<usize>(query, "limit") {
        Ok(l) => l.unwrap_or(100).clamp(1, MAX_LIMIT),
        Err(resp) => return *resp,
    };
    if let Some(key) = query.get("key") {
        return history(broker, &name, key.as_bytes(), limit).await;
    }
    let (partition, from, wait) = match (
        number::<u32>(query, "partition"),
        number::<u64>(query, "from"),
        number::<u64>(query, "wait"),
    ) {
        (Ok(p), Ok(f), Ok(w)) => (
            p.unwrap_or(0),
            f,
            Duration::from_millis(w.unwrap_or(0)).min(MAX_WAIT),
        ),
        (Err(resp), _, _) | (_, Err(resp), _) | (_, _, Err(resp)) => return *resp,
    };
    let from = match from {
        Some(f) => f,
        None => match broker.offsets(&name, partition).await {
            Ok(range) => range.start,
            Err(e) => return broker_error(&e),
        },
    };
    match broker.fetch(&name, partition, from, SCAN_BYTES, wait).await {
        Ok(records) => {
            let next = records.last().map_or(from, |r| r.offset + 1);
            let events: Vec<Value> = records
                .iter()
                .take(limit)
                .map(|r| event_json(partition, r))
                .collect();
            let next = if records.len() > limit {
                from + limit as u64
            } else {
                next
            };
            json(StatusCode::OK, &json!({"events": events, "next": next}))
        }
        Err(sinew_events::Error::OffsetOutOfRange { first, next, .. }) => error(
            StatusCode::RANGE_NOT_SATISFIABLE,
            format!("offset {from} is outside the partition's events [{first}, {next})"),
        ),
        Err(e) => broker_error(&e),
    }
}

/// A key's events, oldest first: its partition read from the start.
async fn history(
    broker: &EventStore,
    name: &str,
    key: &[u8],
    limit: usize,
) -> http::Response<Body> {
    let partition = match broker.partition_of(name, key).await {
        Ok(p) => p,
        Err(e) => return broker_error(&e),
    };
    let range = match broker.offsets(name, partition).await {
        Ok(r) => r,
        Err(e) => return broker_error(&e),
    };
    let mut out = Vec::new();
    let mut at = range.start;
    while at < range.end && out.len() < limit {
        let records = match broker
            .fetch(name, partition, at, SCAN_BYTES, Duration::ZERO)
            .await
        {
            Ok(records) if !records.is_empty() => records,
            Ok(_) => break,
            Err(e) => return broker_error(&e),
        };
        at = records.last().map_or(range.end, |r| r.offset + 1);
        out.extend(
            records
                .iter()
                .filter(|r| r.key.as_ref() == key)
                .map(|r| event_json(partition, r)),
        );
    }
    out.truncate(limit);
    json(
        StatusCode::OK,
        &json!({"events": out, "partition": partition}),
    )
}

/// `POST /v1/topics/{ns}/{topic}/dlq/replay`.
pub(super) async fn replay(
    r: &Replica,
    ns: &str,
    topic: &str,
    query: &BTreeMap<String, String>,
) -> http::Response<Body> {
    let broker = match broker(r) {
        Ok(b) => b,
        Err(resp) => return *resp,
    };
    let dlq = format!("{ns}.{topic}.dlq");
    let target = format!("{ns}.{topic}");
    let only = query.get("id");
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let partitions = match broker.partitions(&dlq).await {
        Ok(p) => p,
        Err(e) => return broker_error(&e),
    };
    let mut replayed = 0usize;
    for partition in 0..partitions {
        let range = match broker.offsets(&dlq, partition).await {
            Ok(r) => r,
            Err(e) => return broker_error(&e),
        };
        let mut at = range.start;
        while at < range.end {
            let records = match broker
                .fetch(&dlq, partition, at, SCAN_BYTES, Duration::ZERO)
                .await
            {
                Ok(records) if !records.is_empty() => records,
                Ok(_) => break,
                Err(e) => return broker_error(&e),
            };
            at = records.last().map_or(range.end, |r| r.offset + 1);
            let mut batch = Vec::new();
            for record in &records {
                let (id, attributes) = sinew_events::split_event_headers(&record.headers);
                if only.is_some_and(|want| *want != id) {
                    continue;
                }
                // A new id: the original may still be inside the
                // de-duplication window, and the app sees a fresh delivery.
                let mut event =
                    sinew_events::Event::new(format!("{id}.replay.{stamp}"), record.value.clone());
                if !record.key.is_empty() {
                    event = event.with_key(record.key.clone());
                }
                for (name, value) in attributes {
                    if matches!(
                        name.as_str(),
                        "deadletterreason" | "deliveryattempts" | "deadlettertopic"
                    ) {
                        continue;
                    }
                    event = event.with_header(name, Bytes::from(value));
                }
                batch.push(event.with_header("replayof", Bytes::from(id)));
            }
            if batch.is_empty() {
                continue;
            }
            replayed += batch.len();
            if let Err(e) = broker.publish(&target, batch).await {
                return broker_error(&e);
            }
        }
    }
    json(StatusCode::OK, &json!({ "replayed": replayed }))
}
