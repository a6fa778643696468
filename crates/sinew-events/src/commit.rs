//! `Committer`: group commit. Many concurrent appends, one write and one
//! `sync_data` per group, every caller answered after the sync.
//!
//! ```text
//! callers ─ bounded queue ─ committer task: take one, drain the rest (up to
//!   max_batch_bytes) ─ spawn_blocking { stage each, commit once, answer each } ─ next group
//! ```
//!
//! While one group's sync runs, the next group queues up, so the number of
//! syncs adapts to the disk: one caller pays one sync, a thousand callers
//! share a handful.
//!
//! **Why a task plus `spawn_blocking`, not a thread per log.** The file I/O
//! (write, `sync_data`, reads) runs only inside `spawn_blocking`, never on a
//! tokio worker. Between groups the log waits on an async channel and holds
//! no thread at all, so a broker with thousands of mostly idle partitions
//! costs thousands of small tasks, not thousands of parked threads; busy
//! partitions borrow blocking-pool threads only while they do I/O. The log
//! is moved into each blocking call and back, so at most one call per log
//! runs at a time: appends are ordered without a lock.
//!
//! Reads and the other queries travel through the same queue and run right
//! after the group's commit, so they see every append queued before them.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::error;

use crate::error::{Error, Result};
use crate::log::{PartitionLog, Retention};
use crate::record::{self, NewRecord, Record};

/// The committer's queue and group limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitterConfig {
    /// Requests that may wait in the queue; further callers wait to enqueue
    /// (backpressure, not unbounded memory). Default 1024.
    pub queue_depth: usize,
    /// A group stops taking queued appends once their records reach this
    /// many bytes (a single larger append still goes whole). Default 8 MiB.
    pub max_batch_bytes: usize,
}

impl Default for CommitterConfig {
    fn default() -> Self {
        Self {
            queue_depth: 1024,
            max_batch_bytes: 8 * 1024 * 1024,
        }
    }
}

/// Counters of a committer's work since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Appends acknowledged.
    pub appends: u64,
    /// Records in those appends.
    pub records: u64,
    /// Successful `sync_data` calls (group commits).
    pub syncs: u64,
}

/// The live counters behind [`CommitStats`].
#[derive(Debug, Default)]
struct Counters {
    /// See [`CommitStats::appends`].
    appends: AtomicU64,
    /// See [`CommitStats::records`].
    records: AtomicU64,
    /// See [`CommitStats::syncs`].
    syncs: AtomicU64,
}

/// One queued request.
#[derive(Debug)]
enum Command {
    /// [`Committer::append`].
    Append {
        /// The records, in order.
        records: Vec<NewRecord>,
        /// Gets the assigned offsets after the sync.
        reply: oneshot::Sender<Result<Range<u64>>>,
    },
    /// [`Committer::read`].
    Read {
        /// First offset wanted.
        from: u64,
        /// Byte budget.
        max_bytes: usize,
        /// Gets the records.
        reply: oneshot::Sender<Result<Vec<Record>>>,
    },
    /// [`Committer::offset_for_time`].
    OffsetForTime {
        /// The time looked up.
        timestamp_ms: u64,
        /// Gets the offset.
        reply: oneshot::Sender<Result<Option<u64>>>,
    },
    /// [`Committer::offsets`].
    Offsets {
        /// Gets `first_offset..next_offset`.
        reply: oneshot::Sender<Range<u64>>,
    },
    /// [`Committer::enforce_retention`].
    Retention {
        /// The time to judge ages at.
        now: SystemTime,
        /// Gets what was deleted.
        reply: oneshot::Sender<Result<Retention>>,
    },
}

impl Command {
    /// Roughly how many bytes the request adds to a write.
    fn weight(&self) -> usize {
        match self {
            Self::Append { records, .. } => records
                .iter()
                .map(|r| record::MIN_RECORD_LEN + r.key.len() + r.value.len())
                .sum(),
            _ => 0,
        }
    }

    /// Answers a request that is not an append. Replies whose caller gave
    /// up are dropped.
    fn answer(self, log: &mut PartitionLog) {
        match self {
            Self::Append { .. } => {}
            Self::Read {
                from,
                max_bytes,
                reply,
            } => drop(reply.send(log.read(from, max_bytes))),
            Self::OffsetForTime {
                timestamp_ms,
                reply,
            } => drop(reply.send(log.offset_for_time(timestamp_ms))),
            Self::Offsets { reply } => drop(reply.send(log.first_offset()..log.next_offset())),
            Self::Retention { now, reply } => drop(reply.send(log.enforce_retention(now))),
        }
    }
}

/// Shares one [`PartitionLog`] between many async callers with group commit.
///
/// Dropping the future of a call does not withdraw a request already
/// queued: an append may still be written (at-least-once, like any append
/// whose answer was lost).
pub struct Committer {
    /// The request queue.
    tx: mpsc::Sender<Command>,
    /// Work counters.
    counters: Arc<Counters>,
    /// The committer task; yields the log back when the queue closes.
    task: JoinHandle<Option<PartitionLog>>,
}

impl fmt::Debug for Committer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Committer")
            .field("queued", &(self.tx.max_capacity() - self.tx.capacity()))
            .field("stats", &self.stats())
            .finish()
    }
}

impl Committer {
    /// Starts the committer task for `log`.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `tokio::spawn`; or if
    /// `config.queue_depth` is 0.
    pub fn spawn(log: PartitionLog, config: CommitterConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_depth);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(run(
            log,
            rx,
            Arc::clone(&counters),
            config.max_batch_bytes,
            config.queue_depth,
        ));
        Self { tx, counters, task }
    }

    /// Appends `records`; resolves with their offsets once they are durable
    /// (written and `sync_data`'ed together with the rest of their group).
    pub async fn append(&self, records: Vec<NewRecord>) -> Result<Range<u64>> {
        self.call(|reply| Command::Append { records, reply })
            .await?
    }

    /// [`PartitionLog::read`], after every append queued before it.
    pub async fn read(&self, from_offset: u64, max_bytes: usize) -> Result<Vec<Record>> {
        self.call(|reply| Command::Read {
            from: from_offset,
            max_bytes,
            reply,
        })
        .await?
    }

    /// [`PartitionLog::offset_for_time`].
    pub async fn offset_for_time(&self, timestamp_ms: u64) -> Result<Option<u64>> {
        self.call(|reply| Command::OffsetForTime {
            timestamp_ms,
            reply,
        })
        .await?
    }

    /// `first_offset..next_offset` of the log.
    pub async fn offsets(&self) -> Result<Range<u64>> {
        self.call(|reply| Command::Offsets { reply }).await
    }

    /// [`PartitionLog::enforce_retention`].
    pub async fn enforce_retention(&self, now: SystemTime) -> Result<Retention> {
        self.call(|reply| Command::Retention { now, reply }).await?
    }

    /// Counters since the committer started.
    pub fn stats(&self) -> CommitStats {
        CommitStats {
            appends: self.counters.appends.load(Ordering::Relaxed),
            records: self.counters.records.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
        }
    }

    /// Stops taking requests, finishes the queued ones and hands the log back.
    pub async fn close(self) -> Result<PartitionLog> {
        drop(self.tx);
        match self.task.await {
            Ok(Some(log)) => Ok(log),
            Ok(None) | Err(_) => Err(Error::Closed),
        }
    }

    /// Queues the command `make` builds and waits for its reply.
    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)
    }
}

/// The committer task: one group at a time until the queue closes.
async fn run(
    mut log: PartitionLog,
    mut rx: mpsc::Receiver<Command>,
    counters: Arc<Counters>,
    max_batch_bytes: usize,
    max_group: usize,
) -> Option<PartitionLog> {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.weight();
        let mut group = vec![first];
        while bytes < max_batch_bytes && group.len() < max_group {
            match rx.try_recv() {
                Ok(command) => {
                    bytes += command.weight();
                    group.push(command);
                }
                Err(_) => break,
            }
        }
        let counters = Arc::clone(&counters);
        let done = tokio::task::spawn_blocking(move || {
            execute(&mut log, group, &counters);
            log
        })
        .await;
        match done {
            Ok(back) => log = back,
            Err(panic) => {
                // The group's callers see their reply channels close (Closed).
                error!(error = %panic, "log committer failed; the log is closed");
                return None;
            }
        }
    }
    Some(log)
}

/// Runs one group on the blocking pool: stage every append, commit once,
/// answer the appends, then the other requests.
fn execute(log: &mut PartitionLog, group: Vec<Command>, counters: &Counters) {
    let mut appends = Vec::new();
    let mut others = Vec::new();
    for command in group {
        match command {
            Command::Append { records, reply } => {
                let staged = log.stage(&records);
                appends.push((reply, staged, records.len() as u64));
            }
            other => others.push(other),
        }
    }
    let committed = log.commit();
    counters.syncs.store(log.sync_count(), Ordering::Relaxed);
    for (reply, staged, count) in appends {
        let result = staged.and_then(|offsets| committed.clone().map(|()| offsets));
        if result.is_ok() {
            counters.appends.fetch_add(1, Ordering::Relaxed);
            counters.records.fetch_add(count, Ordering::Relaxed);
        }
        // A caller that stopped waiting still had its records made durable.
        drop(reply.send(result));
    }
    for command in others {
        command.answer(log);
    }
}
