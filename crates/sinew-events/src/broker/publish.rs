//! Publishing: validate, partition, de-duplicate, one durable append per
//! partition, answer.
//!
//! ```text
//! events ─ validate all (nothing written on a refusal) ─ partition by key (or id)
//!   ─ under the window's lock: classify each id (new / written / pending elsewhere / repeated in this call)
//!       └ any pending elsewhere? unlock, wait for those writes to end, classify again
//!   ─ reserve the new ids, group them by partition (call order kept) ─ unlock
//!   ─ one task per partition: Committer append (one write, one fsync) ─ mark ids written (or free them)
//!   ─ wait for every task ─ answer each event: its offset, or the original's for a duplicate
//! ```
//!
//! Each partition's append runs in a task of its own, so partitions sync in
//! parallel, and a caller that gives up does not stop a write half-way: the
//! task still settles the ids it reserved (written, or freed on failure).

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashTable;
use tokio::sync::watch;

use super::dedup::Seen;
use super::gate::Pass;
use super::partitioner::partition_for;
use super::topic::Topic;
use super::{lock, now_ms, Event, Published, ID_HEADER, MAX_ID_BYTES};
use crate::error::{Error, Result};
use crate::record::{self, Header, NewRecord};

/// The checks every store makes of event `index` before writing anything:
/// an id of 1..=[`MAX_ID_BYTES`] bytes, and no `ce-id` header of its own.
pub(crate) fn check_event(index: usize, event: &Event) -> Result<()> {
    let refuse = |reason| Err(Error::InvalidEvent { index, reason });
    if event.id.is_empty() {
        return refuse("an event needs an id (ce-id)");
    }
    if event.id.len() > MAX_ID_BYTES {
        return refuse("an event id has at most 256 bytes");
    }
    if event
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case(ID_HEADER))
    {
        return refuse("the ce-id header is written by the broker: give the id as Event::id");
    }
    Ok(())
}

/// A validated event, ready to append.
#[derive(Debug)]
pub(crate) struct Item {
    /// Its ce-id.
    id: String,
    /// The record to append (ce-id as its first header).
    record: NewRecord,
}

impl Item {
    /// Checks event `index` and builds its record, stamped `now_ms` when
    /// the event has no timestamp.
    pub(crate) fn new(index: usize, event: Event, now_ms: u64) -> Result<Self> {
        check_event(index, &event)?;
        let mut headers = Vec::with_capacity(event.headers.len() + 1);
        headers.push(Header {
            name: ID_HEADER.to_owned(),
            value: Bytes::copy_from_slice(event.id.as_bytes()),
        });
        headers.extend(event.headers);
        let record = NewRecord {
            timestamp_ms: if event.timestamp_ms == 0 {
                now_ms
            } else {
                event.timestamp_ms
            },
            key: event.key.unwrap_or_default(),
            headers,
            value: event.value,
        };
        record::encoded_len(&record).map_err(|source| Error::InvalidRecord { index, source })?;
        Ok(Self {
            id: event.id,
            record,
        })
    }
}

/// What becomes of one event of a publish.
#[derive(Debug, Clone, Copy)]
enum Fate {
    /// Not seen: appended to `partition` as the batch's record `position`.
    New {
        /// Its partition.
        partition: u32,
        /// Its place in that partition's batch.
        position: u64,
    },
    /// Written before, within the window.
    Written {
        /// The original's partition.
        partition: u32,
        /// The original's offset.
        offset: u64,
    },
    /// The same id as an earlier event of this publish.
    SameAs(usize),
}

/// The ids a partition's batch reserved in the window. Settles them when
/// dropped: written if [`Reservation::written`] was called, freed if not.
/// Dropping it also closes the channel publishes waiting on these ids watch.
#[derive(Debug)]
struct Reservation {
    /// The topic whose window holds the ids.
    topic: Arc<Topic>,
    /// The batch's partition.
    partition: u32,
    /// The ids' bytes, one after another, in batch order.
    ids: String,
    /// Per id: its key and where its bytes end in `ids`.
    ends: Vec<(u64, usize)>,
    /// Closed when this is dropped.
    _signal: watch::Sender<()>,
    /// Identifies this reservation's slots.
    done: watch::Receiver<()>,
    /// The batch's first offset once it is durable.
    first_offset: Option<u64>,
}

impl Reservation {
    /// Adds `id` (whose key is `key`).
    fn push(&mut self, id: &str, key: u64) {
        self.ids.push_str(id);
        self.ends.push((key, self.ids.len()));
    }

    /// The ids with their keys, in batch order.
    fn ids(&self) -> impl Iterator<Item = (&str, u64)> {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|&(_, end)| end));
        self.ends
            .iter()
            .zip(starts)
            .map(|(&(key, end), start)| (&self.ids[start..end], key))
    }

    /// Marks the ids written from `first_offset` on.
    fn written(mut self, first_offset: u64) {
        self.first_offset = Some(first_offset);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut dedup = lock(&self.topic.dedup);
        match self.first_offset {
            Some(first) => {
                let now = now_ms();
                for ((id, key), offset) in self.ids().zip(first..) {
                    dedup.written(id, key, &self.done, (self.partition, offset), now);
                }
            }
            None => {
                for &(key, _) in &self.ends {
                    dedup.abandon(key, &self.done);
                }
            }
        }
    }
}

/// One partition's share of a publish.
#[derive(Debug)]
struct Batch {
    /// The records, in call order.
    records: Vec<NewRecord>,
    /// Their ids' reservation.
    reservation: Reservation,
}

/// Publishes `items` to `topic` (see the module doc). `pass` is the
/// caller's; each partition's task holds a share of it.
pub(crate) async fn publish(
    topic: &Arc<Topic>,
    items: Vec<Item>,
    pass: &Pass,
) -> Result<Vec<Published>> {
    let count = topic.count();
    let partitions: Vec<u32> = items
        .iter()
        .map(|item| partition_for(Some(&item.record.key), &item.id, count))
        .collect();
    let keys: Vec<u64> = items.iter().map(|i| topic.id_keys.key(&i.id)).collect();
    topic.expire_dedup(now_ms());
    let (fates, batches) = loop {
        match plan(topic, &items, &keys, &partitions) {
            Ok(planned) => break planned,
            Err(pending) => {
                for mut done in pending {
                    // Closes when that write ends, either way.
                    let _ = done.changed().await;
                }
            }
        }
    };
    let mut records: Vec<Option<NewRecord>> = items.into_iter().map(|i| Some(i.record)).collect();
    let mut tasks = Vec::with_capacity(batches.len());
    for (partition, (indices, reservation)) in batches {
        let batch = Batch {
            records: indices.iter().filter_map(|i| records[*i].take()).collect(),
            reservation,
        };
        let topic = Arc::clone(topic);
        let pass = pass.share();
        tasks.push((
            partition,
            tokio::spawn(async move {
                let result = match topic.partition(partition) {
                    Ok(part) => part.append(batch.records).await,
                    Err(error) => Err(error),
                };
                if let Ok(offsets) = &result {
                    batch.reservation.written(offsets.start);
                } else {
                    drop(batch.reservation);
                }
                drop(topic);
                drop(pass);
                result
            }),
        ));
    }
    let mut appended: HashMap<u32, Range<u64>> = HashMap::new();
    let mut failure = None;
    for (partition, task) in tasks {
        match task.await {
            Ok(Ok(offsets)) => {
                appended.insert(partition, offsets);
            }
            Ok(Err(error)) => {
                failure.get_or_insert(error);
            }
            Err(_) => {
                failure.get_or_insert(Error::Closed);
            }
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let mut published: Vec<Published> = Vec::with_capacity(fates.len());
    for fate in fates {
        let answer = match fate {
            Fate::New {
                partition,
                position,
            } => {
                let start = appended.get(&partition).map_or(0, |r| r.start);
                Published {
                    partition,
                    offset: start + position,
                    duplicate: false,
                }
            }
            Fate::Written { partition, offset } => Published {
                partition,
                offset,
                duplicate: true,
            },
            Fate::SameAs(first) => Published {
                duplicate: true,
                ..published[first]
            },
        };
        published.push(answer);
    }
    Ok(published)
}

/// Per partition: the indices of its new events, and their reservation.
type Batches = BTreeMap<u32, (Vec<usize>, Reservation)>;

/// Classifies every id and reserves the new ones, all under one hold of the
/// window's lock; or, if another publish is writing any of them, the
/// channels to wait on (nothing reserved).
fn plan(
    topic: &Arc<Topic>,
    items: &[Item],
    keys: &[u64],
    partitions: &[u32],
) -> Result<(Vec<Fate>, Batches), Vec<watch::Receiver<()>>> {
    let now = now_ms();
    let mut dedup = lock(&topic.dedup);
    // This call's ids so far, by key: each one's first index.
    let mut first_seen: HashTable<usize> = HashTable::with_capacity(items.len());
    let mut fates = Vec::with_capacity(items.len());
    let mut pending = Vec::new();
    for (index, (item, &key)) in items.iter().zip(keys).enumerate() {
        let same = |&first: &usize| keys[first] == key && items[first].id == item.id;
        if let Some(&first) = first_seen.find(key, same) {
            fates.push(Some(Fate::SameAs(first)));
            continue;
        }
        first_seen.insert_unique(key, index, |&i| keys[i]);
        fates.push(match dedup.lookup(&item.id, key, now) {
            Seen::New => None,
            Seen::Written { partition, offset } => Some(Fate::Written { partition, offset }),
            Seen::Pending(done) => {
                pending.push(done);
                None
            }
        });
    }
    if !pending.is_empty() {
        return Err(pending);
    }
    let mut batches: Batches = BTreeMap::new();
    let fates = fates
        .into_iter()
        .zip(items.iter().zip(keys.iter().zip(partitions)))
        .enumerate()
        .map(|(index, (fate, (item, (&key, &partition))))| {
            if let Some(fate) = fate {
                return fate;
            }
            let (indices, reservation) = batches.entry(partition).or_insert_with(|| {
                let (signal, done) = watch::channel(());
                let reservation = Reservation {
                    topic: Arc::clone(topic),
                    partition,
                    ids: String::new(),
                    ends: Vec::new(),
                    _signal: signal,
                    done,
                    first_offset: None,
                };
                (Vec::new(), reservation)
            });
            dedup.reserve(key, reservation.done.clone());
            reservation.push(&item.id, key);
            indices.push(index);
            Fate::New {
                partition,
                position: indices.len() as u64 - 1,
            }
        })
        .collect();
    Ok((fates, batches))
}
