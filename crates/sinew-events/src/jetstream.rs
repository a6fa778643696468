//! `JetStream`: the event store on a NATS JetStream server (async-nats),
//! with the same API as [`Broker`](crate::Broker): topics of partitions,
//! ce-id de-duplication, long-poll fetch, consumer groups and fenced
//! cursors. Works with nats-server 2.9 and later.
//!
//! ```text
//! topic      ─ KV `sinew-topics`: hex(topic) → partition count (created once, never changed)
//! partition  ─ one stream `sinew-<topic, '.'→'~'>-<p>`, subject `sinew.<topic, '.'→'~'>.<p>`
//!              (offset = stream sequence − 1: dense, as a stream holds one partition)
//! publish    ─ key → partition (murmur2, as the embedded broker) ─ publish with
//!              Nats-Msg-Id = ce-id (JetStream's duplicate window) ─ await every PubAck
//! fetch      ─ stream state (first..next) ─ nothing at `from`? wait for a message on the
//!              partition's subject (one core subscription `sinew.>`) ─ direct gets, pipelined
//! groups     ─ in this process, as the embedded broker's (generations from a KV epoch)
//! cursors    ─ KV `sinew-cursors`: forward-only compare-and-set on the entry's revision
//! ```
//!
//! # Differences from the embedded broker
//!
//! - **Durability is JetStream's.** A PubAck means the server stored the
//!   message; with its default `sync_interval` (2 minutes) that is not yet
//!   `fsync`ed, so a power loss (not a process crash) can lose acknowledged
//!   events. Run nats-server with `jetstream { sync_interval: always }` for
//!   the embedded broker's guarantee.
//! - **A publish of several events to one partition is not one append**:
//!   each is its own JetStream message. On an error some may be stored;
//!   retrying with the same ids de-duplicates those.
//! - **De-duplication is per partition** (each partition is a stream): the
//!   same ce-id published with two different keys is stored twice.
//! - **Consumer groups live in the control-plane process** serving them:
//!   with several control-plane replicas in front of one JetStream, each
//!   replica deals partitions to the members connected to it, so a
//!   partition may be delivered by two members at once (duplicates, never
//!   losses: cursors only move forward, by compare-and-set).
//! - **Keys and header values are text** (NATS headers): a key or value
//!   with control characters is refused as an invalid event.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_nats::header::HeaderMap;
use async_nats::jetstream::{self, kv, stream};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{watch, OnceCell};
use tracing::info;

use crate::broker::group::Groups;
use crate::broker::layout::check_topic;
use crate::broker::partitioner::partition_for;
use crate::broker::publish::check_event;
use crate::broker::{lock, now_ms, read, write, Event, Published};
use crate::error::{Error, Result};

mod cursors;
mod names;
mod read;

use names::{hex, parse_count, parse_offset, stream_name, subject, unhex};

/// The header JetStream de-duplicates by.
const MSG_ID: &str = "Nats-Msg-Id";
/// The header carrying an event's partition key.
const KEY_HEADER: &str = "Sinew-Key";
/// The header carrying an event's timestamp (ms since the Unix epoch).
const TIME_HEADER: &str = "Sinew-Time";
/// Most messages one fetch reads (pipelined direct gets).
/// JetStream's error code for "insufficient resources" (the account's or
/// server's storage limit reached).
const INSUFFICIENT_RESOURCES: u64 = 10023;
/// JetStream's error code for "insufficient storage resources available".
const STORAGE_EXCEEDED: u64 = 10047;
/// JetStream's error code for "stream store failed" (the disk refused).
const STORE_FAILED: u64 = 10077;

/// How a [`JetStream`] store creates streams and runs groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// The server, e.g. `nats://127.0.0.1:4222` (user and password may be
    /// in the URL; `tls://` for TLS).
    pub url: String,
    /// Partitions of a topic created implicitly. Default 8.
    pub partitions: u32,
    /// Each partition stream's `duplicate_window`. Default 2 minutes.
    pub dedup_window: Duration,
    /// A group member with no heartbeat for this long leaves its group. Default 3 s.
    pub session_timeout: Duration,
    /// Each stream's `max_age`; `None` keeps events forever.
    pub retention_age: Option<Duration>,
    /// Each stream's `max_bytes`; `None` for no limit.
    pub retention_bytes: Option<u64>,
    /// Each stream's replicas (a JetStream cluster). Default 1.
    pub replicas: usize,
}

impl JetStreamConfig {
    /// The defaults, for the server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            partitions: 8,
            dedup_window: Duration::from_secs(120),
            session_timeout: Duration::from_secs(3),
            retention_age: None,
            retention_bytes: None,
            replicas: 1,
        }
    }
}

/// The event store on a JetStream server; see the module doc.
pub struct JetStream {
    config: JetStreamConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    /// Buckets, the epoch and the groups: set up on first use, so a control
    /// plane starts (and answers 503 for events) while NATS is down.
    ready: OnceCell<Ready>,
    /// Topics known to this process.
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Per partition subject, a counter bumped by every message seen on it:
    /// what long-polling fetches wait on.
    wakers: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
    /// The core subscription feeding `wakers`.
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// What the first call sets up.
struct Ready {
    topics: kv::Store,
    cursors: kv::Store,
    groups: Mutex<Groups>,
}

/// A topic's partition streams.
struct Topic {
    name: String,
    partitions: Vec<Partition>,
}

/// One partition: its stream and subject.
struct Partition {
    stream: stream::Stream,
    subject: String,
}

impl fmt::Debug for JetStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStream")
            .field("url", &self.config.url)
            .field("connection", &self.client.connection_state())
            .finish_non_exhaustive()
    }
}

impl JetStream {
    /// Connects to the server (retrying in the background while it is
    /// down) and starts listening for appends. Fails only on a bad URL or
    /// configuration.
    pub async fn connect(config: JetStreamConfig) -> Result<Arc<JetStream>> {
        if config.partitions == 0 || config.partitions > crate::MAX_PARTITIONS {
            return Err(Error::InvalidConfig("partitions must be in 1..=1024"));
        }
        if config.session_timeout.is_zero() {
            return Err(Error::InvalidConfig("session_timeout must be positive"));
        }
        let client = async_nats::ConnectOptions::new()
            .name("sinew-control")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .request_timeout(Some(Duration::from_secs(5)))
            .connect(config.url.as_str())
            .await
            .map_err(|e| remote("connect", &e))?;
        let js = jetstream::new(client.clone());
        let store = Arc::new(JetStream {
            config,
            client,
            js,
            ready: OnceCell::new(),
            topics: RwLock::new(HashMap::new()),
            wakers: Arc::default(),
            listener: Mutex::new(None),
        });
        let subscriber = store
            .client
            .subscribe("sinew.>")
            .await
            .map_err(|e| remote("subscribe", &e))?;
        let wakers = store.wakers.clone();
        let task = tokio::spawn(async move {
            let mut subscriber = subscriber;
            while let Some(message) = subscriber.next().await {
                let wakers = lock(&wakers);
                if let Some(waker) = wakers.get(message.subject.as_str()) {
                    waker.send_modify(|n| *n = n.wrapping_add(1));
                }
            }
        });
        *lock(&store.listener) = Some(task);
        Ok(store)
    }

    /// The buckets, epoch and groups, set up on first use.
    async fn ready(&self) -> Result<&Ready> {
        self.ready
            .get_or_try_init(|| async {
                let topics = self.bucket("sinew-topics").await?;
                let cursors = self.bucket("sinew-cursors").await?;
                let meta = self.bucket("sinew-meta").await?;
                let epoch = bump_epoch(&meta).await?;
                info!(url = %self.config.url, epoch, "event store on JetStream ready");
                Ok(Ready {
                    topics,
                    cursors,
                    groups: Mutex::new(Groups::new(epoch)),
                })
            })
            .await
    }

    /// The key-value bucket `name` (history 1), created if absent. Its
    /// stream is made here as the KV convention lays it out, rather than by
    /// `create_key_value`, whose account query nats-server 2.9 does not
    /// answer in the shape async-nats now expects.
    async fn bucket(&self, name: &str) -> Result<kv::Store> {
        if let Ok(store) = self.js.get_key_value(name).await {
            return Ok(store);
        }
        let config = stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_bytes: -1,
            max_messages: -1,
            max_message_size: -1,
            storage: stream::StorageType::File,
            num_replicas: self.config.replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        };
        self.js
            .get_or_create_stream(config)
            .await
            .map_err(|e| remote("create bucket", &e))?;
        self.js
            .get_key_value(name)
            .await
            .map_err(|e| remote("open bucket", &e))
    }

    /// The topic, creating it (and its streams) if absent.
    async fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        check_topic(name)?;
        if let Some(topic) = read(&self.topics).get(name) {
            return Ok(topic.clone());
        }
        let ready = self.ready().await?;
        let key = hex(name);
        let count = match ready.topics.get(&key).await {
            Ok(Some(value)) => parse_count(&value)?,
            Ok(None) => {
                let wanted = self.config.partitions.to_string();
                match ready.topics.create(&key, Bytes::from(wanted)).await {
                    Ok(_) => self.config.partitions,
                    // Another control plane created it first.
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                        let value = ready
                            .topics
                            .get(&key)
                            .await
                            .map_err(|e| remote("read topic", &e))?
                            .ok_or_else(|| Error::Remote {
                                op: "read topic",
                                message: format!("topic {name} vanished while created"),
                                storage_full: false,
                            })?;
                        parse_count(&value)?
                    }
                    Err(e) => return Err(remote("create topic", &e)),
                }
            }
            Err(e) => return Err(remote("read topic", &e)),
        };
        let mut partitions = Vec::with_capacity(count as usize);
        for p in 0..count {
            let stream_name = stream_name(name, p);
            let subject = subject(name, p);
            let config = stream::Config {
                name: stream_name.clone(),
                subjects: vec![subject.clone()],
                storage: stream::StorageType::File,
                num_replicas: self.config.replicas,
                duplicate_window: self.config.dedup_window,
                max_age: self.config.retention_age.unwrap_or_default(),
                max_bytes: self
                    .config
                    .retention_bytes
                    .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
                allow_direct: true,
                ..Default::default()
            };
            let stream = self
                .js
                .get_or_create_stream(config)
                .await
                .map_err(|e| remote("create stream", &e))?;
            partitions.push(Partition { stream, subject });
        }
        let topic = Arc::new(Topic {
            name: name.to_owned(),
            partitions,
        });
        info!(topic = name, partitions = count, "topic open on JetStream");
        Ok(write(&self.topics)
            .entry(name.to_owned())
            .or_insert(topic)
            .clone())
    }

    /// See [`Broker::publish`](crate::Broker::publish); the differences are
    /// in the module doc.
    pub async fn publish(&self, topic: &str, events: Vec<Event>) -> Result<Vec<Published>> {
        let messages = events
            .into_iter()
            .enumerate()
            .map(|(index, event)| message(index, event))
            .collect::<Result<Vec<_>>>()?;
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let topic = self.topic(topic).await?;
        let count = topic.partitions.len() as u32;
        // Send them all, then collect the acks: one round trip for the call.
        let mut pending = Vec::with_capacity(messages.len());
        for (id, key, headers, payload) in messages {
            let partition = partition_for(key.as_deref(), &id, count);
            let subject = topic.partitions[partition as usize].subject.clone();
            let ack = self
                .js
                .publish_with_headers(subject, headers, payload)
                .await
                .map_err(|e| publish_error(&e))?;
            pending.push((partition, ack));
        }
        let mut published = Vec::with_capacity(pending.len());
        for (partition, ack) in pending {
            let ack = ack.await.map_err(|e| publish_error(&e))?;
            published.push(Published {
                partition,
                offset: ack.sequence.saturating_sub(1),
                duplicate: ack.duplicate,
            });
        }
        Ok(published)
    }

    /// Every topic this JetStream holds and its partition count, by name.
    pub async fn topics(&self) -> Result<Vec<(String, u32)>> {
        let ready = self.ready().await?;
        let mut keys = match ready.topics.keys().await {
            Ok(keys) => keys,
            Err(e) => return Err(remote("list topics", &e)),
        };
        let mut topics = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(|e| remote("list topics", &e))?;
            let Some(name) = unhex(&key) else { continue };
            if let Ok(Some(value)) = ready.topics.get(&key).await {
                if let Ok(count) = parse_count(&value) {
                    topics.push((name, count));
                }
            }
        }
        topics.sort();
        Ok(topics)
    }

    /// `topic`'s partition count, creating the topic if absent.
    pub async fn partitions(&self, topic: &str) -> Result<u32> {
        Ok(self.topic(topic).await?.partitions.len() as u32)
    }

    /// The partition events with partition key `key` land in.
    pub async fn partition_of(&self, topic: &str, key: &[u8]) -> Result<u32> {
        let count = self.partitions(topic).await?;
        Ok(partition_for(Some(key), "", count))
    }

    /// Stops listening and flushes what the client has buffered.
    pub async fn close(&self) -> Result<()> {
        if let Some(task) = lock(&self.listener).take() {
            task.abort();
        }
        self.client.flush().await.map_err(|e| remote("flush", &e))
    }
}

impl Topic {
    fn partition(&self, partition: u32) -> Result<&Partition> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| Error::UnknownPartition {
                topic: self.name.clone(),
                partition,
                partitions: self.partitions.len() as u32,
            })
    }
}

/// Builds event `index`'s message: (ce-id, key, headers, payload).
fn message(index: usize, event: Event) -> Result<(String, Option<Bytes>, HeaderMap, Bytes)> {
    check_event(index, &event)?;
    let refuse = |reason| Err(Error::InvalidEvent { index, reason });
    if !is_text(event.id.as_bytes()) {
        return refuse("the JetStream store needs an id without control characters");
    }
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID, event.id.as_str());
    let key = event.key.filter(|k| !k.is_empty());
    if let Some(key) = &key {
        match std::str::from_utf8(key) {
            Ok(text) if is_text(key) => headers.insert(KEY_HEADER, text),
            _ => {
                return refuse("the JetStream store needs a key of text without control characters")
            }
        }
    }
    let timestamp = if event.timestamp_ms == 0 {
        now_ms()
    } else {
        event.timestamp_ms
    };
    headers.insert(TIME_HEADER, timestamp.to_string().as_str());
    for header in &event.headers {
        let reserved = ["nats-", "sinew-"].iter().any(|p| {
            header.name.len() >= p.len() && header.name[..p.len()].eq_ignore_ascii_case(p)
        });
        if reserved {
            return refuse("header names starting nats- or sinew- are reserved");
        }
        if header.name.is_empty()
            || !header
                .name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b':')
        {
            return refuse("a header name is printable ASCII without ':'");
        }
        match std::str::from_utf8(&header.value) {
            Ok(value) if is_text(&header.value) => headers.append(header.name.as_str(), value),
            _ => {
                return refuse(
                    "the JetStream store needs header values of text without control characters",
                )
            }
        }
    }
    Ok((event.id, key, headers, event.value))
}

/// Raises the epoch in `meta` by one (compare-and-set) and returns it.
async fn bump_epoch(meta: &kv::Store) -> Result<u64> {
    loop {
        let entry = meta
            .entry("epoch")
            .await
            .map_err(|e| remote("read epoch", &e))?;
        let (current, revision) = match &entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                (parse_offset(&entry.value)?, Some(entry.revision))
            }
            _ => (0, None),
        };
        let next = current + 1;
        let value = Bytes::from(next.to_string());
        let written = match revision {
            Some(revision) => meta.update("epoch", value, revision).await.is_ok(),
            None => meta.create("epoch", value).await.is_ok(),
        };
        if written {
            return Ok(next);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A publish failure: JetStream out of storage → storage full (507).
fn publish_error(e: &jetstream::context::PublishError) -> Error {
    let code = std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<jetstream::Error>())
        .map(|e| e.error_code().0);
    Error::Remote {
        op: "publish",
        message: e.to_string(),
        storage_full: matches!(
            code,
            Some(INSUFFICIENT_RESOURCES | STORAGE_EXCEEDED | STORE_FAILED)
        ),
    }
}

fn remote(op: &'static str, e: &dyn std::error::Error) -> Error {
    Error::Remote {
        op,
        message: e.to_string(),
        storage_full: false,
    }
}

/// Text a NATS header can carry: no control characters.
fn is_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| !s.chars().any(char::is_control))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_become_messages_and_come_back_as_records() {
        let event = Event::new("id-1", "payload")
            .with_key("customer-7")
            .with_header("ce-type", "order.placed");
        let (id, key, headers, payload) = message(0, event).unwrap();
        assert_eq!(id, "id-1");
        assert_eq!(key.as_deref(), Some(&b"customer-7"[..]));
        assert_eq!(headers.get(MSG_ID).unwrap().as_str(), "id-1");
        assert_eq!(headers.get("ce-type").unwrap().as_str(), "order.placed");
        assert_eq!(payload, Bytes::from("payload"));

        let refused = |event| match message(0, event) {
            Err(Error::InvalidEvent { reason, .. }) => reason,
            other => panic!("accepted: {other:?}"),
        };
        assert!(refused(Event::new("", "x")).contains("id"));
        assert!(refused(Event::new("a", "x").with_key("line\nbreak")).contains("key"));
        assert!(refused(Event::new("a", "x").with_header("nats-msg-id", "b")).contains("reserved"));
        assert!(refused(Event::new("a", "x").with_header("bad name", "b")).contains("name"));
        assert!(refused(Event::new("a", "x").with_header("ce-id", "b")).contains("ce-id"));
    }
}
