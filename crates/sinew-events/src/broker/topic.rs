//! `Topic`: its partitions and its de-duplication window.
//!
//! A partition is a [`Committer`] over its [`PartitionLog`] plus a `watch`
//! of its next offset, sent after every acknowledged append: long-polling
//! fetches wait on it, and cursor commits are checked against it without a
//! trip through the committer's queue.

use std::ops::Range;
use std::sync::Mutex;

use tokio::sync::watch;

use super::dedup::{Dedup, IdKeys};
use super::{event_id, lock};
use crate::commit::{Committer, CommitterConfig};
use crate::error::{Error, Result};
use crate::log::PartitionLog;
use crate::record::NewRecord;

/// Bytes read at a time while rebuilding the de-duplication window.
const REBUILD_CHUNK: usize = 1024 * 1024;

/// One partition of a topic.
#[derive(Debug)]
pub(crate) struct Partition {
    /// Appends and reads, with group commit.
    pub(crate) committer: Committer,
    /// The offset the next append gets, as of the last acknowledged one.
    pub(crate) next: watch::Sender<u64>,
}

impl Partition {
    /// Appends `records` durably and wakes fetches waiting for them.
    pub(crate) async fn append(&self, records: Vec<NewRecord>) -> Result<Range<u64>> {
        let offsets = self.committer.append(records).await?;
        self.next.send_if_modified(|next| {
            let moved = offsets.end > *next;
            *next = (*next).max(offsets.end);
            moved
        });
        Ok(offsets)
    }

    /// The offset the next append gets.
    pub(crate) fn next_offset(&self) -> u64 {
        *self.next.borrow()
    }
}

/// A topic: partitions numbered `0..n` and one de-duplication window.
#[derive(Debug)]
pub(crate) struct Topic {
    /// Its name.
    pub(crate) name: String,
    /// Its partitions, by number.
    pub(crate) partitions: Vec<Partition>,
    /// The ce-ids published in the window, and those being written.
    pub(crate) dedup: Mutex<Dedup>,
    /// The keys `dedup` files ids under.
    pub(crate) id_keys: IdKeys,
}

impl Topic {
    /// Starts a committer for each of `logs` (partition `i` is `logs[i]`).
    pub(crate) fn start(name: String, logs: Vec<PartitionLog>, window_ms: u64) -> Self {
        let partitions = logs
            .into_iter()
            .map(|log| {
                let (next, _) = watch::channel(log.next_offset());
                Partition {
                    committer: Committer::spawn(log, CommitterConfig::default()),
                    next,
                }
            })
            .collect();
        Self {
            name,
            partitions,
            dedup: Mutex::new(Dedup::new(window_ms)),
            id_keys: IdKeys::default(),
        }
    }

    /// How many partitions the topic has.
    pub(crate) fn count(&self) -> u32 {
        // At most MAX_PARTITIONS, checked when created or listed.
        self.partitions.len() as u32
    }

    /// Partition `partition`, or [`Error::UnknownPartition`].
    pub(crate) fn partition(&self, partition: u32) -> Result<&Partition> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| Error::UnknownPartition {
                topic: self.name.clone(),
                partition,
                partitions: self.count(),
            })
    }

    /// Drops the de-duplication window's generations older than the window
    /// at `now_ms`, freeing them after the lock is released and off the
    /// async workers (one can hold hundreds of megabytes).
    pub(crate) fn expire_dedup(&self, now_ms: u64) {
        let expired = lock(&self.dedup).expire(now_ms);
        if !expired.is_empty() {
            tokio::task::spawn_blocking(move || drop(expired));
        }
    }

    /// Refills the de-duplication window from the partitions' tails: every
    /// record from the first one stamped at or after `now_ms - window_ms`
    /// on. A record after it with an older stamp was still appended after
    /// it, so it counts as of the newest stamp before it. Returns how many
    /// ids were restored.
    pub(crate) async fn rebuild_dedup(&self, now_ms: u64, window_ms: u64) -> Result<usize> {
        let since = now_ms.saturating_sub(window_ms);
        let mut found = Vec::new();
        for (partition, part) in (0u32..).zip(&self.partitions) {
            let Some(mut from) = part.committer.offset_for_time(since).await? else {
                continue;
            };
            let mut newest = 0;
            loop {
                let records = part.committer.read(from, REBUILD_CHUNK).await?;
                let Some(last) = records.last() else {
                    break;
                };
                from = last.offset + 1;
                for record in &records {
                    newest = newest.max(record.timestamp_ms);
                    if let Some(id) = event_id(record) {
                        found.push((newest, id.to_owned(), partition, record.offset));
                    }
                }
            }
        }
        // One queue across partitions, in stamp order (stable: a partition's
        // own order is kept among equal stamps).
        found.sort_by_key(|(at, ..)| *at);
        let restored = found.len();
        let mut dedup = lock(&self.dedup);
        for (at, id, partition, offset) in found {
            dedup.restore(&id, self.id_keys.key(&id), (partition, offset), at);
        }
        Ok(restored)
    }

    /// Finishes every queued request and closes the logs.
    pub(crate) async fn close(self) -> Result<()> {
        let mut result = Ok(());
        for partition in self.partitions {
            if let Err(error) = partition.committer.close().await {
                result = result.and(Err(error));
            }
        }
        result
    }
}
