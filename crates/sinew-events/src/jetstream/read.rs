//! The read side of the JetStream store: fetch (long-poll on the partition's
//! subject, then pipelined direct gets), offsets, the offset for a time, and a
//! stored message made back into a record.

use std::ops::Range;
use std::time::Duration;

use async_nats::jetstream::{message::StreamMessage, stream};
use bytes::Bytes;
use tokio::sync::watch;

use super::{remote, JetStream, Partition, KEY_HEADER, MSG_ID, TIME_HEADER};
use crate::broker::{lock, ID_HEADER};
use crate::error::{Error, Result};
use crate::record::{Header, Record};

/// Messages fetched per call at most (pipelined direct gets).
const FETCH_BATCH: u64 = 64;

impl JetStream {
    /// See [`Broker::fetch`](crate::Broker::fetch).
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<Record>> {
        let topic = self.topic(topic).await?;
        let part = topic.partition(partition)?;
        // Subscribed before the state is read, so an append in between wakes us.
        let mut appended = self.waker(&part.subject);
        let mut range = offsets(part).await?;
        if from < range.start || from > range.end {
            return Err(Error::OffsetOutOfRange {
                requested: from,
                first: range.start,
                next: range.end,
            });
        }
        if from == range.end && !wait.is_zero() {
            let deadline = tokio::time::Instant::now() + wait;
            while from == range.end {
                match tokio::time::timeout_at(deadline, appended.changed()).await {
                    Ok(Ok(())) => {
                        appended.borrow_and_update();
                        // The stream may store it a moment after the
                        // subscription sees it.
                        for _ in 0..5 {
                            range = offsets(part).await?;
                            if range.end > from {
                                break;
                            }
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    Ok(Err(_)) | Err(_) => return Ok(Vec::new()),
                }
            }
        }
        let count = (range.end - from).min(FETCH_BATCH);
        let gets = (0..count).map(|i| part.stream.direct_get(from + i + 1));
        let messages = futures_util::future::join_all(gets).await;
        let mut records = Vec::with_capacity(messages.len());
        let mut bytes = 0;
        for message in messages {
            let message = match message {
                Ok(message) => message,
                // Aged out under us: the caller's next fetch repositions.
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(remote("read", &e)),
            };
            let record = to_record(message);
            bytes += record.value.len() + record.key.len();
            records.push(record);
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(records)
    }

    /// `first..next` of `topic`/`partition`.
    pub async fn offsets(&self, topic: &str, partition: u32) -> Result<Range<u64>> {
        let topic = self.topic(topic).await?;
        offsets(topic.partition(partition)?).await
    }

    /// The offset of the first event of `topic`/`partition` stored at or
    /// after `ts_ms` (by JetStream's clock, which only grows within a
    /// stream); `None` when there is none.
    pub async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        ts_ms: u64,
    ) -> Result<Option<u64>> {
        let topic = self.topic(topic).await?;
        let part = topic.partition(partition)?;
        let range = offsets(part).await?;
        // Binary search for the first offset stored at or after ts_ms.
        let (mut lo, mut hi) = (range.start, range.end);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match part.stream.direct_get(mid + 1).await {
                Ok(message) if stored_ms(&message) >= ts_ms => hi = mid,
                Ok(_) => lo = mid + 1,
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => lo = mid + 1,
                Err(e) => return Err(remote("read", &e)),
            }
        }
        Ok((lo < range.end).then_some(lo))
    }

    /// A receiver bumped on every message on `subject`.
    fn waker(&self, subject: &str) -> watch::Receiver<u64> {
        let mut wakers = lock(&self.wakers);
        let waker = wakers
            .entry(subject.to_owned())
            .or_insert_with(|| watch::channel(0).0);
        let mut receiver = waker.subscribe();
        receiver.borrow_and_update();
        receiver
    }
}

/// `first..next` offsets of a partition's stream.
pub(super) async fn offsets(part: &Partition) -> Result<Range<u64>> {
    let info = part
        .stream
        .get_info()
        .await
        .map_err(|e| remote("stream info", &e))?;
    let state = info.state;
    let next = state.last_sequence;
    let first = if state.messages == 0 {
        next
    } else {
        state.first_sequence.saturating_sub(1)
    };
    Ok(first..next)
}

/// A stored message as a record: offset = sequence − 1, the ce-id first.
pub(super) fn to_record(message: StreamMessage) -> Record {
    let timestamp_ms = message
        .headers
        .get(TIME_HEADER)
        .and_then(|v| v.as_str().parse().ok())
        .unwrap_or_else(|| stored_ms(&message));
    let key = message
        .headers
        .get(KEY_HEADER)
        .map(|v| Bytes::copy_from_slice(v.as_str().as_bytes()))
        .unwrap_or_default();
    let mut headers = Vec::with_capacity(message.headers.len());
    if let Some(id) = message.headers.get(MSG_ID) {
        headers.push(Header {
            name: ID_HEADER.to_owned(),
            value: Bytes::copy_from_slice(id.as_str().as_bytes()),
        });
    }
    let mut rest: Vec<Header> = message
        .headers
        .iter()
        .filter(|(name, _)| {
            let name: &str = name.as_ref();
            !name.starts_with("Nats-") && !name.starts_with("Sinew-")
        })
        .flat_map(|(name, values)| {
            values.iter().map(move |value| Header {
                name: name.to_string(),
                value: Bytes::copy_from_slice(value.as_str().as_bytes()),
            })
        })
        .collect();
    rest.sort_by(|a, b| a.name.cmp(&b.name));
    headers.extend(rest);
    Record {
        offset: message.sequence.saturating_sub(1),
        timestamp_ms,
        key,
        headers,
        value: message.payload,
    }
}

/// When JetStream stored `message`, in ms since the Unix epoch.
fn stored_ms(message: &StreamMessage) -> u64 {
    u64::try_from(message.time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
