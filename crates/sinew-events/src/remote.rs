//! [`RemoteBroker`]: a standalone broker (`sinew broker`) as an event store,
//! over its gRPC API (`sinew.v1.Events`), so a control plane can keep its
//! events on another machine. Feature `remote`.
//!
//! Every call names the topic by the broker's own name (an empty
//! `namespace` in the request) and carries the broker's token; the
//! connection is TLS 1.3, trusting only the broker's certificate
//! (`DIR/broker.pem`). The channel connects lazily and reconnects by
//! itself: while the broker is down, calls fail with
//! [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) (503 to a
//! publisher) and the control plane keeps serving everything else.
//!
//! Concurrent publishes to one topic share a call: each topic has a queue,
//! and while up to two calls are in flight the next batch gathers (up to
//! 512 events or 1 MiB), so many callers cost one round trip and one sync
//! on the broker rather than one each — the way the sidecars coalesce
//! their apps' publishes (the same [`sinew_proto::coalesce`]), and the way a
//! NATS client pipelines. Nothing waits for company: a lone publish goes at
//! once. A batch the broker refuses as invalid is retried call by call, so
//! one caller's bad event fails only it.
//!
//! The broker's errors come back by kind ([`Error::Refused`]): storage full,
//! bad input and fencing keep their meaning across the hop, and a fetch
//! outside the retained offsets is [`Error::OffsetOutOfRange`] as it is
//! locally.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sinew_proto::coalesce::{Coalescer, Publish};
use sinew_proto::events_client::EventsClient;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::broker::{Assignment, Event, Published, ID_HEADER};
use crate::error::{Error, ErrorKind, Result};
use crate::record::{Header, Record};

mod channel;

/// A call's deadline, beyond a fetch's own wait.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the broker is and how to reach it.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// `https://HOST:PORT`.
    pub url: String,
    /// The broker's token (`DIR/broker.token`).
    pub token: String,
    /// The broker's certificate, PEM (`DIR/broker.pem`).
    pub cert_pem: String,
}

/// A standalone broker, reached over gRPC.
#[derive(Debug)]
pub struct RemoteBroker {
    calls: Calls,
    /// Each topic's publish queue.
    coalescer: Coalescer<String, TopicCalls>,
}

/// Makes the calls: the channel and the token.
#[derive(Debug, Clone)]
struct Calls {
    client: EventsClient<Channel>,
    authorization: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

/// One topic's Publish call, for the coalescer.
struct TopicCalls {
    calls: Calls,
    topic: String,
}

impl Publish for TopicCalls {
    type Published = Published;
    type Error = Error;

    async fn publish(&self, events: Vec<sinew_proto::Event>) -> Result<Vec<Published>> {
        self.calls.publish(&self.topic, events).await
    }

    fn is_invalid(error: &Error) -> bool {
        error.kind() == ErrorKind::InvalidInput
    }

    fn failure(why: &'static str) -> Error {
        Error::Refused {
            op: "publish",
            kind: ErrorKind::Unavailable,
            message: why.to_owned(),
        }
    }
}

impl RemoteBroker {
    /// Prepares the connection (made at the first call, remade as needed).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a URL that is not `https://HOST:PORT`,
    /// a certificate that does not parse or a token that cannot be a header.
    pub fn connect(config: RemoteConfig) -> Result<Arc<Self>> {
        let channel = channel::open(&config.url, &config.cert_pem)?;
        let authorization = format!("Bearer {}", config.token.trim())
            .parse()
            .map_err(|_| Error::InvalidConfig("the broker token is not a header value"))?;
        Ok(Arc::new(Self {
            calls: Calls {
                client: EventsClient::new(channel)
                    .max_decoding_message_size(sinew_proto::EVENTS_MAX_MESSAGE)
                    .max_encoding_message_size(sinew_proto::EVENTS_MAX_MESSAGE),
                authorization,
            },
            coalescer: Coalescer::default(),
        }))
    }

    /// `message` with the token and a deadline `wait` past the usual.
    fn request<T>(&self, message: T, wait: Duration) -> Request<T> {
        self.calls.request(message, wait)
    }

    /// See [`Broker::publish`](crate::Broker::publish); coalesced with
    /// concurrent publishes to the same topic (module doc), answered for
    /// these events only, in order.
    pub async fn publish(&self, topic: &str, events: Vec<Event>) -> Result<Vec<Published>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        // The retry alone after a refused shared call needs the events
        // again: here a copy, for every publish of a control plane whose
        // events live on this broker (data and key are shared, not copied;
        // the id and header names are).
        let copy = events.clone();
        let again = move || copy.into_iter().map(to_proto).collect();
        let events = events.into_iter().map(to_proto).collect();
        self.coalescer
            .publish(topic.to_owned(), events, again, |topic| TopicCalls {
                calls: self.calls.clone(),
                topic: topic.clone(),
            })
            .await
    }

    /// Every topic and its partition count, by name.
    pub async fn topics(&self) -> Result<Vec<(String, u32)>> {
        let reply = self
            .calls
            .client
            .clone()
            .topics(self.request(sinew_proto::TopicsRequest {}, Duration::ZERO))
            .await
            .map_err(|s| refused("topics", &s))?
            .into_inner();
        let mut topics: Vec<_> = reply
            .topics
            .into_iter()
            .map(|t| (t.topic, t.partitions))
            .collect();
        topics.sort();
        Ok(topics)
    }

    async fn partition_of_reply(
        &self,
        topic: &str,
        key: &[u8],
    ) -> Result<sinew_proto::PartitionOfReply> {
        let message = sinew_proto::PartitionOfRequest {
            topic: topic.to_owned(),
            key: key.to_vec(),
            namespace: String::new(),
        };
        Ok(self
            .calls
            .client
            .clone()
            .partition_of(self.request(message, Duration::ZERO))
            .await
            .map_err(|s| refused("partitions", &s))?
            .into_inner())
    }

    /// See [`Broker::partitions`](crate::Broker::partitions).
    pub async fn partitions(&self, topic: &str) -> Result<u32> {
        Ok(self.partition_of_reply(topic, b"").await?.partitions)
    }

    /// See [`Broker::partition_of`](crate::Broker::partition_of).
    pub async fn partition_of(&self, topic: &str, key: &[u8]) -> Result<u32> {
        Ok(self.partition_of_reply(topic, key).await?.partition)
    }

    /// See [`Broker::fetch`](crate::Broker::fetch).
    pub async fn fetch(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max_bytes: usize,
        wait: Duration,
    ) -> Result<Vec<Record>> {
        let message = sinew_proto::FetchRequest {
            topic: topic.to_owned(),
            partition,
            from,
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            namespace: String::new(),
        };
        let reply = self
            .calls
            .client
            .clone()
            .fetch(self.request(message, wait))
            .await
            .map_err(|s| refused("fetch", &s))?
            .into_inner();
        if reply.out_of_range {
            return Err(Error::OffsetOutOfRange {
                requested: from,
                first: reply.first,
                next: reply.next,
            });
        }
        Ok(reply.events.into_iter().map(to_record).collect())
    }

    async fn offsets_reply(
        &self,
        topic: &str,
        partition: u32,
        time_ms: u64,
    ) -> Result<sinew_proto::OffsetsReply> {
        let message = sinew_proto::OffsetsRequest {
            topic: topic.to_owned(),
            partition,
            time_ms,
            namespace: String::new(),
        };
        Ok(self
            .calls
            .client
            .clone()
            .offsets(self.request(message, Duration::ZERO))
            .await
            .map_err(|s| refused("offsets", &s))?
            .into_inner())
    }

    /// See [`Broker::offsets`](crate::Broker::offsets).
    pub async fn offsets(&self, topic: &str, partition: u32) -> Result<Range<u64>> {
        let reply = self.offsets_reply(topic, partition, 0).await?;
        Ok(reply.first..reply.next)
    }

    /// See [`Broker::offset_for_time`](crate::Broker::offset_for_time).
    pub async fn offset_for_time(
        &self,
        topic: &str,
        partition: u32,
        ts_ms: u64,
    ) -> Result<Option<u64>> {
        // 0 asks for no lookup on the wire; the epoch's first instant finds
        // the same first record as 1 ms after it.
        let reply = self.offsets_reply(topic, partition, ts_ms.max(1)).await?;
        Ok(reply.has_at_time.then_some(reply.at_time))
    }

    /// See [`Broker::heartbeat`](crate::Broker::heartbeat).
    pub async fn heartbeat(&self, group: &str, topic: &str, member: &str) -> Result<Assignment> {
        let reply = self
            .calls
            .client
            .clone()
            .heartbeat(self.request(group_request(group, topic, member), Duration::ZERO))
            .await
            .map_err(|s| refused("heartbeat", &s))?
            .into_inner();
        Ok(Assignment {
            generation: reply.generation,
            partitions: reply.partitions,
        })
    }

    /// See [`Broker::leave`](crate::Broker::leave).
    pub async fn leave(&self, group: &str, topic: &str, member: &str) -> Result<()> {
        self.calls
            .client
            .clone()
            .leave(self.request(group_request(group, topic, member), Duration::ZERO))
            .await
            .map_err(|s| refused("leave", &s))?;
        Ok(())
    }

    /// See [`Broker::committed`](crate::Broker::committed).
    pub async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        let message = sinew_proto::CursorRequest {
            group: group.to_owned(),
            topic: topic.to_owned(),
            partition,
            namespace: String::new(),
        };
        let reply = self
            .calls
            .client
            .clone()
            .committed(self.request(message, Duration::ZERO))
            .await
            .map_err(|s| refused("committed", &s))?
            .into_inner();
        Ok(reply.committed.then_some(reply.next_offset))
    }

    /// See [`Broker::commit`](crate::Broker::commit).
    pub async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
        member: &str,
        generation: u64,
    ) -> Result<()> {
        let message = commit_request(group, topic, partition, next_offset, member, generation);
        self.calls
            .client
            .clone()
            .commit(self.request(message, Duration::ZERO))
            .await
            .map_err(|s| refused("commit", &s))?;
        Ok(())
    }

    /// See [`Broker::reset_cursor`](crate::Broker::reset_cursor).
    pub async fn reset_cursor(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> Result<()> {
        let message = commit_request(group, topic, partition, next_offset, "", 0);
        self.calls
            .client
            .clone()
            .reset_cursor(self.request(message, Duration::ZERO))
            .await
            .map_err(|s| refused("reset_cursor", &s))?;
        Ok(())
    }

    /// Nothing to close here: the broker's log is the broker's.
    pub async fn close(&self) -> Result<()> {
        Ok(())
    }
}

impl Calls {
    /// `message` with the token and a deadline `wait` past the usual.
    fn request<T>(&self, message: T, wait: Duration) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert(sinew_proto::AUTHORIZATION, self.authorization.clone());
        request.set_timeout(CALL_TIMEOUT + wait);
        request
    }

    /// One Publish call.
    async fn publish(
        &self,
        topic: &str,
        events: Vec<sinew_proto::Event>,
    ) -> Result<Vec<Published>> {
        let message = sinew_proto::PublishRequest {
            topic: topic.to_owned(),
            events,
            namespace: String::new(),
        };
        let reply = self
            .client
            .clone()
            .publish(self.request(message, Duration::ZERO))
            .await
            .map_err(|s| refused("publish", &s))?
            .into_inner();
        Ok(reply
            .results
            .into_iter()
            .map(|p| Published {
                partition: p.partition,
                offset: p.offset,
                duplicate: p.duplicate,
            })
            .collect())
    }
}

fn group_request(group: &str, topic: &str, member: &str) -> sinew_proto::HeartbeatRequest {
    sinew_proto::HeartbeatRequest {
        group: group.to_owned(),
        topic: topic.to_owned(),
        member: member.to_owned(),
        namespace: String::new(),
    }
}

fn commit_request(
    group: &str,
    topic: &str,
    partition: u32,
    next_offset: u64,
    member: &str,
    generation: u64,
) -> sinew_proto::CommitRequest {
    sinew_proto::CommitRequest {
        group: group.to_owned(),
        topic: topic.to_owned(),
        partition,
        next_offset,
        member: member.to_owned(),
        generation,
        namespace: String::new(),
    }
}

/// The broker's answer as an error of the kind it meant.
fn refused(op: &'static str, status: &Status) -> Error {
    let kind = match status.code() {
        Code::ResourceExhausted => ErrorKind::StorageFull,
        Code::InvalidArgument => ErrorKind::InvalidInput,
        Code::FailedPrecondition => ErrorKind::Fenced,
        _ => ErrorKind::Unavailable,
    };
    Error::Refused {
        op,
        kind,
        message: format!("{:?}: {}", status.code(), status.message()),
    }
}

/// An event as the wire carries it: the headers as names to text (the
/// Events API's form; the control plane's events are all text).
fn to_proto(e: Event) -> sinew_proto::Event {
    sinew_proto::Event {
        id: e.id,
        key: e.key.unwrap_or_default(),
        timestamp_ms: e.timestamp_ms,
        headers: e
            .headers
            .into_iter()
            .map(|h| (h.name, String::from_utf8_lossy(&h.value).into_owned()))
            .collect(),
        data: e.value,
    }
}

/// A fetched event as the record the broker holds: the ce-id header first,
/// then the others.
fn to_record(stored: sinew_proto::StoredEvent) -> Record {
    let event = stored.event.unwrap_or_default();
    let mut headers = Vec::with_capacity(event.headers.len() + 1);
    headers.push(Header {
        name: ID_HEADER.to_owned(),
        value: Bytes::from(event.id),
    });
    // In name order already (the message's map is a BTreeMap).
    headers.extend(event.headers.into_iter().map(|(name, value)| Header {
        name,
        value: Bytes::from(value),
    }));
    Record {
        offset: stored.offset,
        timestamp_ms: event.timestamp_ms,
        key: event.key,
        headers,
        value: event.data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetched_event_is_the_record_the_broker_holds() {
        let stored = sinew_proto::StoredEvent {
            offset: 7,
            event: Some(sinew_proto::Event {
                id: "e-1".into(),
                key: Bytes::from_static(b"k"),
                timestamp_ms: 42,
                headers: [("ce-type".to_owned(), "t".to_owned())].into(),
                data: Bytes::from_static(b"{}"),
            }),
        };
        let record = to_record(stored);
        assert_eq!(record.offset, 7);
        assert_eq!(crate::split_event_headers(&record.headers).0, "e-1");
        assert_eq!(record.headers[1].name, "ce-type");
        assert_eq!(&record.value[..], b"{}");
    }

    #[test]
    fn refusals_keep_their_kind() {
        let full = refused("publish", &Status::resource_exhausted("disk full"));
        assert!(full.is_storage_full());
        let fenced = refused("commit", &Status::failed_precondition("not the owner"));
        assert_eq!(fenced.kind(), ErrorKind::Fenced);
        let down = refused("fetch", &Status::unavailable("connection refused"));
        assert_eq!(down.kind(), ErrorKind::Unavailable);
    }

    #[test]
    fn only_https_urls() {
        let config = |url: &str| RemoteConfig {
            url: url.to_owned(),
            token: "t".to_owned(),
            cert_pem: String::new(),
        };
        assert!(RemoteBroker::connect(config("http://127.0.0.1:7450")).is_err());
        assert!(RemoteBroker::connect(config("https://127.0.0.1")).is_err());
        // A good URL still needs the certificate.
        assert!(RemoteBroker::connect(config("https://127.0.0.1:7450")).is_err());
    }
}
