//! `Broker`: topics of partitioned logs, publish with ce-id de-duplication,
//! long-poll fetch, and consumer groups with durable cursors.
//!
//! ```text
//! publish ─ validate ─ topic (created on first use) ─ key → partition ─ de-dup window
//!         ─ one Committer append per partition (one fsync) ─ window updated ─ watch(next) ─ ack
//! fetch   ─ nothing at `from`? wait on the partition's watch(next) up to `wait` ─ Committer read
//! group   ─ heartbeat (join/renew, expire, rebalance) ─ Assignment { generation, partitions }
//! commit  ─ owner check (member, generation) ─ cursor writer (group commit, one fsync) ─ ok
//! open    ─ lock dir ─ bump epoch ─ load cursors ─ open every partition log ─ rebuild de-dup windows
//! ```
//!
//! # Code map
//!
//! - `broker.rs` — the API: [`Broker`], [`BrokerConfig`], [`Event`], [`Published`].
//! - `broker/layout.rs` — the directory layout, names, the epoch.
//! - `broker/topic.rs` — a topic's partitions (committer + next-offset
//!   watch) and the window's rebuild at open.
//! - `broker/publish.rs` — the publish path.
//! - `broker/dedup.rs` — the de-duplication window.
//! - `broker/partitioner.rs` — key → partition (Kafka's murmur2).
//! - `broker/group.rs` — membership, assignment, generations, fencing.
//! - `broker/cursors.rs` — the durable cursor file.
//! - `broker/gate.rs` — operations in flight, for `close`.
//!
//! # Guarantees
//!
//! - **Durable before acknowledged**: `publish` returns only after every new
//!   event is `fdatasync`'ed; `commit` and `reset_cursor` only after the
//!   cursor is. Events of one call for one partition are one append (one
//!   write, one sync), in call order.
//! - **Per-key order**: a key always maps to the same partition (the
//!   partition count of a topic never changes), and a partition keeps
//!   append order.
//! - **De-duplication by ce-id** within a topic: an id acknowledged less
//!   than `dedup_window` ago is not written again; the caller gets the
//!   original's partition and offset with `duplicate: true`. Concurrent
//!   publishes of one id write it once. After a restart the window is
//!   rebuilt from the partitions' tails, so a producer that republishes
//!   what it sent before a crash (acknowledged or not) does not duplicate
//!   it. The window goes by record timestamps: an event published with a
//!   timestamp older than the window is not found by the rebuild.
//! - **Cursors only move forward** through `commit` (a lower value is
//!   accepted and changes nothing), and only by the member that owns the
//!   partition, continuously since the generation it gives
//!   ([`ErrorKind::Fenced`](crate::ErrorKind::Fenced) otherwise).
//!   `reset_cursor` sets any value up to the partition's end (replay,
//!   subscription start positions).
//! - **Assignment moves within `session_timeout` + a tick** (a tenth of the
//!   timeout, at most 250 ms) of a member's last heartbeat; at once on
//!   `leave`.
//!
//! Not guaranteed:
//!
//! - A publish is not atomic across partitions: on an error some
//!   partitions' events may be durable. Retry with the same ids; those
//!   written come back as duplicates.
//! - Two members may deliver one partition for a moment during a
//!   rebalance (the old owner until its next heartbeat): delivery is
//!   at-least-once, and the old owner's commits are refused.
//! - Membership is not durable: after a restart members rejoin by
//!   heartbeat (generations still grow: see `group.rs`).
//! - The de-dup window costs memory per id (about 100 bytes plus the id):
//!   1 000 events/s with the default 2 minutes is ~120 000 ids.

mod cursors;
mod dedup;
mod gate;
pub(crate) mod group;
pub(crate) mod layout;
pub(crate) mod partitioner;
pub(crate) mod publish;
mod topic;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use self::cursors::{CursorFile, Cursors, Key};
use self::gate::Gate;
use self::group::Groups;
use self::layout::{check_name, check_topic, partition_dir};
use self::publish::Item;
use self::topic::Topic;
use crate::commit::CommitStats;
use crate::config::LogConfig;
use crate::error::{Error, Result};
use crate::log::{PartitionLog, Retention};
use crate::record::{Header, Record};

pub use self::group::Assignment;

/// The record header that carries an event's ce-id: the first header of
/// every record the broker writes. Publishers give the id as [`Event::id`]
/// and may not set this header themselves.
pub const ID_HEADER: &str = "ce-id";

/// The longest ce-id, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// The most partitions a topic may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// How often the broker applies the logs' retention.
const RETENTION_INTERVAL: Duration = Duration::from_secs(30);

/// How a [`Broker`] creates topics and runs groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Partitions of a topic created implicitly (1..=[`MAX_PARTITIONS`]). Default 8.
    pub partitions: u32,
    /// Segments and retention of every partition's log.
    pub log: LogConfig,
    /// How long a ce-id is remembered for de-duplication. Default 2 minutes.
    pub dedup_window: Duration,
    /// A group member with no heartbeat for this long leaves its group.
    /// Default 3 s (members should heartbeat every second or so).
    pub session_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            partitions: 8,
            log: LogConfig::default(),
            dedup_window: Duration::from_secs(120),
            session_timeout: Duration::from_secs(3),
        }
    }
}

impl BrokerConfig {
    /// Checks the bounds the broker relies on.
    pub fn validate(&self) -> Result<()> {
        if self.partitions == 0 || self.partitions > MAX_PARTITIONS {
            return Err(Error::InvalidConfig("partitions must be in 1..=1024"));
        }
        if self.session_timeout.is_zero() {
            return Err(Error::InvalidConfig("session_timeout must be positive"));
        }
        self.log.validate()
    }
}

/// An event to publish.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// The CloudEvents id: required, at most [`MAX_ID_BYTES`] bytes. Stored
    /// as the record's first header, [`ID_HEADER`].
    pub id: String,
    /// The partition key: events with the same key go to the same
    /// partition, in order. `None` (or empty) spreads events by id.
    pub key: Option<Bytes>,
    /// Milliseconds since the Unix epoch; 0 is stamped with the broker's
    /// clock. Retention, time lookups and the de-dup window's rebuild go by
    /// it, so give the publish time (or the event's `time`, if close).
    pub timestamp_ms: u64,
    /// Headers, stored after the ce-id header.
    pub headers: Vec<Header>,
    /// The payload.
    pub value: Bytes,
}

impl Event {
    /// An event with an id and a value, no key, no headers, stamped at publish.
    pub fn new(id: impl Into<String>, value: impl Into<Bytes>) -> Self {
        Self {
            id: id.into(),
            value: value.into(),
            ..Self::default()
        }
    }

    /// The same event with a partition key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The same event with one more header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push(Header {
            name: name.into(),
            value: value.into(),
        });
        self
    }
}

/// Where a published event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Its partition.
    pub partition: u32,
    /// Its offset in that partition.
    pub offset: u64,
    /// The same id was published within the de-dup window (or earlier in
    /// the same call): nothing was written, and `partition`/`offset` are
    /// the original's.
    pub duplicate: bool,
}

/// The ce-id of a record the broker wrote (its first [`ID_HEADER`] header).
pub fn event_id(record: &Record) -> Option<&str> {
    record
        .headers
        .iter()
        .find(|h| h.name == ID_HEADER)
        .and_then(|h| std::str::from_utf8(&h.value).ok())
}

/// A record's headers split for delivery: its ce-id (empty if it has none)
/// and every other header, in order, with its value as UTF-8 (invalid
/// sequences replaced by U+FFFD, as CloudEvents attributes are strings).
pub fn split_event_headers(headers: &[Header]) -> (String, Vec<(String, String)>) {
    let mut id = None;
    let mut rest = Vec::with_capacity(headers.len().saturating_sub(1));
    for header in headers {
        if id.is_none() && header.name == ID_HEADER {
            id = Some(String::from_utf8_lossy(&header.value).into_owned());
        } else {
            let value = String::from_utf8_lossy(&header.value).into_owned();
            rest.push((header.name.clone(), value));
        }
    }
    (id.unwrap_or_default(), rest)
}

/// The event broker: topics, publish, fetch, consumer groups.
///
/// Every call that names a topic creates it if absent (with
/// `config.partitions` partitions), except `leave`. Every method but
/// `topics` is async and does its file I/O on the blocking pool; no lock is
/// held across an `.await`. After [`Broker::close`] every call fails with
/// [`Error::Closed`].
///
/// ```
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> sinew_events::Result<()> {
/// use std::time::Duration;
/// use sinew_events::{event_id, Broker, BrokerConfig, Event};
///
/// # let dir = std::env::temp_dir().join(format!("sinew-events-doc-{}", std::process::id()));
/// let broker = Broker::open(&dir, BrokerConfig::default()).await?;
/// let event = Event::new("id-1", "order placed").with_key("order-42");
/// let published = broker.publish("orders", vec![event.clone()]).await?;
/// // The same ce-id again is not written twice.
/// assert!(broker.publish("orders", vec![event]).await?[0].duplicate);
///
/// // A subscriber: join the group, fetch what it owns, commit the cursor.
/// let assignment = broker.heartbeat("billing", "orders", "sidecar-1").await?;
/// let partition = published[0].partition;
/// assert!(assignment.partitions.contains(&partition));
/// let from = broker.committed("billing", "orders", partition).await?.unwrap_or(0);
/// let records = broker
///     .fetch("orders", partition, from, 1 << 20, Duration::from_secs(1))
///     .await?;
/// assert_eq!(event_id(&records[0]), Some("id-1"));
/// let next = records[records.len() - 1].offset + 1;
/// broker
///     .commit("billing", "orders", partition, next, "sidecar-1", assignment.generation)
///     .await?;
/// broker.close().await?;
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok(())
/// # }
/// ```
pub struct Broker {
    /// The broker's directory.
    dir: PathBuf,
    /// Its configuration.
    config: BrokerConfig,
    /// Open topics by name.
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    /// Serializes topic creation (not the hot path).
    creating: tokio::sync::Mutex<()>,
    /// Consumer-group membership.
    groups: Mutex<Groups>,
    /// Durable cursors.
    cursors: Cursors,
    /// Operations in flight.
    gate: Arc<Gate>,
    /// Set when closing: wakes long-polling fetches.
    closing: watch::Sender<bool>,
    /// Background tasks (member expiry, retention).
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The directory lock, released by `close`.
    lock: Mutex<Option<File>>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("dir", &self.dir)
            .field("topics", &read(&self.topics).len())
            .field("closing", &*self.closing.borrow())
            .finish_non_exhaustive()
    }
}

/// What opening the directory found, before any task starts.
struct Opened {
    /// The directory lock.
    lock: File,
    /// The epoch for generations.
    epoch: u64,
    /// The cursor file.
    cursors: CursorFile,
    /// Every topic's name and partition logs.
    topics: Vec<(String, Vec<PartitionLog>)>,
}

impl Broker {
    /// Opens (creating if needed) the broker in `dir`: every topic under
    /// `dir/topics/`, the cursors, and each topic's de-dup window rebuilt
    /// from its partitions' tails. Fails with [`Error::Locked`] if another
    /// broker has `dir` open.
    pub async fn open(dir: impl Into<PathBuf>, config: BrokerConfig) -> Result<Arc<Broker>> {
        config.validate()?;
        let dir = dir.into();
        let opened = blocking({
            let dir = dir.clone();
            let log = config.log.clone();
            move || open_dir(&dir, &log)
        })
        .await?;
        let window_ms = millis(config.dedup_window);
        let now = now_ms();
        let mut topics = HashMap::new();
        for (name, logs) in opened.topics {
            let topic = Arc::new(Topic::start(name.clone(), logs, window_ms));
            let restored = topic.rebuild_dedup(now, window_ms).await?;
            info!(topic = %name, partitions = topic.count(), restored, "topic open");
            topics.insert(name, topic);
        }
        let (closing, _) = watch::channel(false);
        let broker = Arc::new(Broker {
            dir,
            config,
            topics: RwLock::new(topics),
            creating: tokio::sync::Mutex::new(()),
            groups: Mutex::new(Groups::new(opened.epoch)),
            cursors: Cursors::start(opened.cursors),
            gate: Arc::new(Gate::default()),
            closing,
            tasks: Mutex::new(Vec::new()),
            lock: Mutex::new(Some(opened.lock)),
        });
        broker.spawn_background();
        Ok(broker)
    }

    /// Publishes `events` to `topic`, creating it on first use. Resolves
    /// once every new event is durable, with one answer per event, in
    /// order. An event with a key goes to the key's partition (Kafka's
    /// murmur2 of the key modulo the partition count); one without, by the
    /// same hash of its id. Events of this call for one partition are one
    /// append (one fsync), in call order.
    ///
    /// Validates every event first: a refused one ([`Error::InvalidEvent`],
    /// [`Error::InvalidRecord`]) fails the call with nothing written.
    pub async fn publish(&self, topic: &str, events: Vec<Event>) -> Result<Vec<Published>> {
        let pass = self.gate.enter()?;
        check_topic(topic)?;
        let now = now_ms();
        let items = events
            .into_iter()
            .enumerate()
            .map(|(index, event)| Item::new(index, event, now))
            .collect::<Result<Vec<_>>>()?;
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let topic = self.topic(topic).await?;
        publish::publish(&topic, items, &pass).await
    }

    /// Every topic and its partition count, by name.
    pub fn topics(&self) -> Vec<(String, u32)> {
        let mut topics: Vec<_> = read(&self.topics)
            .values()
            .map(|topic| (topic.name.clone(), topic.count()))
            .collect();
        topics.sort();
        topics
    }

    /// The log's work since the broker opened, summed over every partition:
    /// appends acknowledged, their records, and the syncs that made them
    /// durable (records per sync is the group commit's yield).
    pub fn commit_stats(&self) -> CommitStats {
        read(&self.topics)
            .values()
            .flat_map(|topic| topic.partitions.iter())
            .map(|partition| partition.committer.stats())
            .fold(CommitStats::default(), |sum, s| CommitStats {
                appends: sum.appends + s.appends,
                records: sum.records + s.records,
                syncs: sum.syncs + s.syncs,
            })
    }

    /// `topic`'s partition count, creating the topic if absent.
    pub async fn partitions(&self, topic: &str) -> Result<u32> {
        let _pass = self.gate.enter()?;
        Ok(self.topic(topic).await?.count())
    }

    /// The partition events with partition key `key` land in (creating the
    /// topic if absent): where a key's history is.
    pub async fn partition_of(&self, topic: &str, key: &[u8]) -> Result<u32> {
        let count = self.partitions(topic).await?;
        Ok(partitioner::partition_for(Some(key), "", count))
    }

    /// Records of `topic`/`partition` from offset `from`, up to about
    /// `max_bytes` (at least one record when any is there). When `from` is
    /// the partition's end, waits up to `wait` for an append first, then
    /// returns what there is (possibly nothing). `from` outside the
    /// retained records is [`Error::OffsetOutOfRange`] with `first` and
    /// `next`, to reposition.
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<Record>> {
        let _pass = self.gate.enter()?;
        let topic = self.topic(topic).await?;
        let part = topic.partition(partition)?;
        if !wait.is_zero() {
            let mut next = part.next.subscribe();
            if *next.borrow_and_update() == from {
                let mut closing = self.closing.subscribe();
                tokio::select! {
                    _ = next.wait_for(|next| *next > from) => {}
                    () = tokio::time::sleep(wait) => {}
                    _ = closing.wait_for(|closing| *closing) => return Err(Error::Closed),
                }
            }
        }
        part.committer.read(from, max_bytes).await
    }

    /// `first..next` of `topic`/`partition`: the first retained offset and
    /// the one the next event gets.
    pub async fn offsets(&self, topic: &str, partition: u32) -> Result<Range<u64>> {
        let _pass = self.gate.enter()?;
        let topic = self.topic(topic).await?;
        topic.partition(partition)?.committer.offsets().await
    }

    /// The offset of the first record of `topic`/`partition` stamped at or
    /// after `ts_ms`; `None` when there is none (start from the end).
    pub async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        ts_ms: u64,
    ) -> Result<Option<u64>> {
        let _pass = self.gate.enter()?;
        let topic = self.topic(topic).await?;
        topic
            .partition(partition)?
            .committer
            .offset_for_time(ts_ms)
            .await
    }

    /// Joins `member` to `group` on `topic`, or renews its membership;
    /// returns its partitions and the group's generation (bumped whenever
    /// membership changes). Partitions are shared evenly over the live
    /// members, and a member keeps what it holds up to its share, so a
    /// join or a leave moves only what must move (see `broker/group.rs`).
    pub async fn heartbeat(&self, group: &str, topic: &str, member: &str) -> Result<Assignment> {
        let _pass = self.gate.enter()?;
        check_name("group", group)?;
        check_name("member", member)?;
        let partitions = self.topic(topic).await?.count();
        let timeout = self.config.session_timeout;
        Ok(lock(&self.groups).heartbeat(
            (group, topic),
            partitions,
            member,
            Instant::now(),
            timeout,
        ))
    }

    /// Removes `member` from `group` at once; its partitions move to the
    /// others. Leaving a group one is not in does nothing.
    pub async fn leave(&self, group: &str, topic: &str, member: &str) -> Result<()> {
        let _pass = self.gate.enter()?;
        check_name("group", group)?;
        check_name("member", member)?;
        check_topic(topic)?;
        lock(&self.groups).leave((group, topic), member);
        Ok(())
    }

    /// `group`'s cursor on `topic`/`partition`: the next offset to deliver,
    /// if one was ever committed or reset.
    pub async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        let _pass = self.gate.enter()?;
        check_name("group", group)?;
        self.topic(topic).await?.partition(partition)?;
        Ok(self.cursors.get(&Key {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
        }))
    }

    /// Moves `group`'s cursor on `topic`/`partition` to `next_offset` once
    /// that is durable. Refused with [`Error::NotOwner`] unless `member`
    /// has owned the partition without a break since `generation` (which
    /// must not be newer than the group's); with
    /// [`Error::CursorOutOfRange`] past the partition's end. A value at or
    /// below the cursor changes nothing (late or repeated commits cannot
    /// move it back); use [`Broker::reset_cursor`] for that.
    pub async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        member: &str,
        generation: u64,
    ) -> Result<()> {
        let _pass = self.gate.enter()?;
        check_name("group", group)?;
        check_name("member", member)?;
        let part_next = self.topic(topic).await?.partition(partition)?.next_offset();
        lock(&self.groups).fence((group, topic), partition, member, generation)?;
        self.set_cursor(group, topic, partition, next_offset, part_next, false)
            .await
    }

    /// Sets `group`'s cursor on `topic`/`partition` to `next_offset`,
    /// backwards too (replay, a subscription's start position), once that
    /// is durable. Not fenced: an operator's call. Refused past the
    /// partition's end ([`Error::CursorOutOfRange`]); below its first
    /// retained offset is allowed (the next fetch says where to go).
    pub async fn reset_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<()> {
        let _pass = self.gate.enter()?;
        check_name("group", group)?;
        let part_next = self.topic(topic).await?.partition(partition)?.next_offset();
        self.set_cursor(group, topic, partition, next_offset, part_next, true)
            .await
    }

    /// Applies every partition's retention now (the broker also does every
    /// 30 seconds); returns what was deleted.
    pub async fn enforce_retention(&self) -> Result<Retention> {
        let _pass = self.gate.enter()?;
        let topics: Vec<Arc<Topic>> = read(&self.topics).values().cloned().collect();
        let mut total = Retention::default();
        let now = SystemTime::now();
        for topic in topics {
            for partition in &topic.partitions {
                let done = partition.committer.enforce_retention(now).await?;
                total.segments += done.segments;
                total.bytes += done.bytes;
            }
            topic.expire_dedup(now_ms());
        }
        Ok(total)
    }

    /// Stops taking calls (they fail with [`Error::Closed`]), wakes
    /// long-polling fetches, waits for the calls in flight, then closes
    /// every log, the cursor file and the directory lock. Calling it again
    /// does nothing.
    pub async fn close(&self) -> Result<()> {
        if !self.gate.close() {
            return Ok(());
        }
        self.closing.send_replace(true);
        self.gate.idle().await;
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        let topics = std::mem::take(&mut *write(&self.topics));
        let mut result = Ok(());
        for (name, topic) in topics {
            match Arc::try_unwrap(topic) {
                Ok(topic) => {
                    if let Err(error) = topic.close().await {
                        result = result.and(Err(error));
                    }
                }
                Err(_) => {
                    warn!(topic = %name, "topic still in use at close; its logs close when released")
                }
            }
        }
        self.cursors.close().await;
        lock(&self.lock).take();
        info!(dir = %self.dir.display(), "broker closed");
        result
    }

    /// The open topic `name`, created (with `config.partitions`) if absent.
    async fn topic(&self, name: &str) -> Result<Arc<Topic>> {
        if let Some(topic) = read(&self.topics).get(name) {
            return Ok(Arc::clone(topic));
        }
        check_topic(name)?;
        let _creating = self.creating.lock().await;
        if let Some(topic) = read(&self.topics).get(name) {
            return Ok(Arc::clone(topic));
        }
        let logs = blocking({
            let dir = self.dir.clone();
            let name = name.to_owned();
            let log = self.config.log.clone();
            let partitions = self.config.partitions;
            move || {
                let partitions = layout::ensure_topic(&dir, &name, partitions)?;
                open_partitions(&dir, &name, partitions, &log)
            }
        })
        .await?;
        let window_ms = millis(self.config.dedup_window);
        let topic = Arc::new(Topic::start(name.to_owned(), logs, window_ms));
        write(&self.topics).insert(name.to_owned(), Arc::clone(&topic));
        info!(topic = name, partitions = topic.count(), "topic created");
        Ok(topic)
    }

    /// Durably sets a cursor after checking it against the partition's end.
    async fn set_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        part_next: u64,
        force: bool,
    ) -> Result<()> {
        if next_offset > part_next {
            return Err(Error::CursorOutOfRange {
                requested: next_offset,
                next: part_next,
            });
        }
        let key = Key {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
        };
        self.cursors.set(key, next_offset, force).await
    }

    /// Starts member expiry (every tenth of the session timeout, at most
    /// 250 ms) and retention (every 30 s). They hold the broker weakly and
    /// stop with it.
    fn spawn_background(self: &Arc<Self>) {
        let tick = (self.config.session_timeout / 10)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        let weak = Arc::downgrade(self);
        let expiry = tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(broker) = weak.upgrade() else {
                    return;
                };
                let timeout = broker.config.session_timeout;
                lock(&broker.groups).expire(Instant::now(), timeout);
            }
        });
        let weak = Arc::downgrade(self);
        let retention = tokio::spawn(async move {
            let start = tokio::time::Instant::now() + RETENTION_INTERVAL;
            let mut interval = tokio::time::interval_at(start, RETENTION_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let Some(broker) = weak.upgrade() else {
                    return;
                };
                match broker.enforce_retention().await {
                    Ok(_) => {}
                    Err(Error::Closed) => return,
                    Err(error) => warn!(%error, "retention failed"),
                }
            }
        });
        lock(&self.tasks).extend([expiry, retention]);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

/// Locks the directory, bumps the epoch, loads the cursors and opens every
/// topic's partition logs. Blocking.
fn open_dir(dir: &std::path::Path, log: &LogConfig) -> Result<Opened> {
    let lock = layout::prepare(dir)?;
    let epoch = layout::bump_epoch(dir)?;
    let cursors = CursorFile::open(dir)?;
    let mut topics = Vec::new();
    for (name, partitions) in layout::list_topics(dir)? {
        let logs = open_partitions(dir, &name, partitions, log)?;
        topics.push((name, logs));
    }
    info!(dir = %dir.display(), epoch, topics = topics.len(), "broker open");
    Ok(Opened {
        lock,
        epoch,
        cursors,
        topics,
    })
}

/// Opens partitions `0..partitions` of `topic`. Blocking.
fn open_partitions(
    dir: &std::path::Path,
    topic: &str,
    partitions: u32,
    log: &LogConfig,
) -> Result<Vec<PartitionLog>> {
    (0..partitions)
        .map(|partition| PartitionLog::open(partition_dir(dir, topic, partition), log.clone()))
        .collect()
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|panic| {
        error!(error = %panic, "broker file work failed");
        Error::Closed
    })?
}

/// Milliseconds since the Unix epoch, by the system clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// A duration in whole milliseconds, saturated.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Locks `mutex`; a panic while it was held does not poison the broker
/// (every critical section leaves its state consistent).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads `lock`, ignoring poisoning (see [`lock`]).
pub(crate) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Writes `lock`, ignoring poisoning (see [`lock`]).
pub(crate) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
