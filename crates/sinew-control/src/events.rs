//! The event broker's gRPC API (`sinew.v1.Events`), served next to the
//! proxies' control API on the same TLS port. Every call names a topic in a
//! namespace; a certificate-authenticated caller may name only its own
//! namespace, and the topic's AuthorizationPolicies decide, for its SPIFFE
//! ID, whether it may publish (Publish) or subscribe (every consuming call).
//! A caller authenticated by the join token has no identity: it passes only
//! topics no allow policy governs.
//!
//! `sinew broker` serves the same API alone ([`Admission::Token`]): no mesh,
//! no policies; the holder of the broker's token may use every topic.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use sinew_events::{ErrorKind as StoreErrorKind, EventStore};
use sinew_model::access::{spiffe_namespace, topic_access};
use sinew_model::{AuthorizationPolicy, Kind, Resource, TopicOperation};
use sinew_proto::events_server::Events;
use sinew_proto::{
    Assignment, CommitReply, CommitRequest, CursorReply, CursorRequest, Event, FetchReply,
    FetchRequest, HeartbeatRequest, LeaveReply, OffsetsReply, OffsetsRequest, PartitionOfReply,
    PartitionOfRequest, PublishReply, PublishRequest, Published, StoredEvent, TopicPartitions,
    TopicsReply, TopicsRequest,
};
use tonic::{Request, Response, Status};

use crate::caller::Caller;
use crate::replica::Replica;

/// Longest a fetch may wait for a first record.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// Largest fetch answer.
const MAX_FETCH_BYTES: u32 = 4 << 20;

/// Who may call, and what decides their access to a topic.
#[derive(Debug)]
pub(crate) enum Admission {
    /// In the control plane: a workload certificate and the topic's
    /// AuthorizationPolicies, or the join (or admin) token.
    Mesh(Arc<Replica>),
    /// A standalone broker: the bearer of this token, for every topic.
    Token(String),
}

/// The Events service.
#[derive(Debug)]
pub(crate) struct EventsService {
    admission: Admission,
    /// The event store; `None` without one (`--events none`, or etcd without JetStream).
    broker: Option<EventStore>,
    /// The topic policies, parsed once per view version.
    policies: Mutex<(u64, Arc<Vec<AuthorizationPolicy>>)>,
}

impl EventsService {
    pub(crate) fn new(admission: Admission, broker: Option<EventStore>) -> Self {
        Self {
            admission,
            broker,
            policies: Mutex::new((u64::MAX, Arc::default())),
        }
    }

    /// The AuthorizationPolicies of the current view.
    fn policies(&self, replica: &Replica) -> Arc<Vec<AuthorizationPolicy>> {
        let view = replica.view.borrow().clone();
        let mut cached = self.policies.lock().unwrap_or_else(PoisonError::into_inner);
        if cached.0 != view.version {
            let parsed = view
                .docs
                .iter()
                .filter(|(k, _)| k.kind == Kind::AuthorizationPolicy)
                .filter_map(|(k, d)| {
                    let text = std::str::from_utf8(&d.json).ok()?;
                    match sinew_model::parse_str(&k.name, text).ok()?.pop()? {
                        Resource::AuthorizationPolicy(p) => Some(p),
                        _ => None,
                    }
                })
                .collect();
            *cached = (view.version, Arc::new(parsed));
        }
        cached.1.clone()
    }

    /// Authenticates the call and checks it may do `op` on `namespace/topic`;
    /// returns the broker and its name for the topic.
    fn admit<T>(
        &self,
        request: &Request<T>,
        namespace: &str,
        topic: &str,
        op: TopicOperation,
    ) -> Result<(&EventStore, String), Status> {
        let broker = self.broker.as_ref().ok_or_else(|| {
            Status::unavailable(
                "no event store: run the control plane with the embedded store or `--events jetstream:URL`",
            )
        })?;
        let caller = match &self.admission {
            Admission::Mesh(replica) => Some((replica, Caller::of(replica, request)?)),
            Admission::Token(token) => {
                check_bearer(request, token)?;
                if namespace.is_empty() {
                    // The broker's own name (the control plane's remote
                    // store); the broker checks it.
                    return Ok((broker, topic.to_owned()));
                }
                None
            }
        };
        let namespace = crate::view::namespace_or_default(Some(namespace));
        if !crate::keys::valid_segment(namespace) {
            return Err(Status::invalid_argument(format!(
                "`{namespace}` is not a valid namespace"
            )));
        }
        if !valid_topic(topic) {
            return Err(Status::invalid_argument(format!(
                "`{topic}` is not a valid topic: 1-249 of [a-z0-9._-]"
            )));
        }
        let Some((replica, caller)) = caller else {
            // The standalone broker's token holder.
            return Ok((broker, format!("{namespace}.{topic}")));
        };
        let identity = match &caller {
            Caller::Workload(id) => {
                if spiffe_namespace(id) != Some(namespace) {
                    return Err(Status::permission_denied(format!(
                        "{id} may not use topics of namespace `{namespace}`"
                    )));
                }
                Some(id.as_str())
            }
            Caller::Token => None,
        };
        let verdict = topic_access(
            self.policies(replica).iter(),
            namespace,
            topic,
            op,
            identity,
        );
        if !verdict.allowed() {
            let policy = verdict.policy().unwrap_or("default-deny");
            let what = match op {
                TopicOperation::Publish => "publish to",
                TopicOperation::Subscribe => "subscribe to",
            };
            return Err(Status::permission_denied(format!(
                "{} may not {what} `{topic}` (AuthorizationPolicy {policy})",
                identity.unwrap_or("an unauthenticated caller")
            )));
        }
        Ok((broker, format!("{namespace}.{topic}")))
    }
}

/// The standalone broker's token; refuses its own calls in the control plane.
fn standalone_token(admission: &Admission) -> Result<&str, Status> {
    match admission {
        Admission::Token(token) => Ok(token),
        Admission::Mesh(_) => Err(Status::unimplemented(
            "served by `sinew broker` only: the control plane's REST API lists topics and resets cursors",
        )),
    }
}

/// Checks `authorization: Bearer TOKEN` against the standalone broker's
/// token, in time independent of where they differ.
fn check_bearer<T>(request: &Request<T>, token: &str) -> Result<(), Status> {
    let given = request
        .metadata()
        .get(sinew_proto::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::replica::bearer);
    if given.is_some_and(|given| crate::replica::same(given, token)) {
        Ok(())
    } else {
        Err(Status::unauthenticated(
            "a missing or wrong token: send `authorization: Bearer TOKEN` (the broker's DIR/broker.token)",
        ))
    }
}

/// A topic name: 1-249 of `[a-z0-9._-]`, not `.` or `..`.
fn valid_topic(topic: &str) -> bool {
    (1..=249).contains(&topic.len())
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// A broker failure as a gRPC status the sidecar maps to HTTP: storage full
/// → `RESOURCE_EXHAUSTED` (507), bad input → `INVALID_ARGUMENT` (400),
/// anything else → `UNAVAILABLE` (503).
fn status(e: &sinew_events::Error) -> Status {
    match e.kind() {
        StoreErrorKind::StorageFull => Status::resource_exhausted(e.to_string()),
        StoreErrorKind::InvalidInput => Status::invalid_argument(e.to_string()),
        StoreErrorKind::Fenced => Status::failed_precondition(e.to_string()),
        _ => Status::unavailable(e.to_string()),
    }
}

fn to_broker_event(e: Event) -> sinew_events::Event {
    // The map iterates in name order: the order the broker stores.
    let headers = e
        .headers
        .into_iter()
        .map(|(name, value)| sinew_events::Header {
            name,
            value: Bytes::from(value),
        })
        .collect();
    sinew_events::Event {
        id: e.id,
        key: (!e.key.is_empty()).then_some(e.key),
        timestamp_ms: e.timestamp_ms,
        headers,
        value: e.data,
    }
}

fn from_record(r: sinew_events::Record) -> StoredEvent {
    let (id, headers) = sinew_events::split_event_headers(&r.headers);
    StoredEvent {
        offset: r.offset,
        event: Some(Event {
            id,
            key: r.key,
            timestamp_ms: r.timestamp_ms,
            headers: headers
                .into_iter()
                .filter(|(name, _)| !name.is_empty())
                .collect(),
            data: r.value,
        }),
    }
}

#[tonic::async_trait]
impl Events for EventsService {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishReply>, Status> {
        let r = request.get_ref();
        let (broker, topic) =
            self.admit(&request, &r.namespace, &r.topic, TopicOperation::Publish)?;
        let events: Vec<_> = request
            .into_inner()
            .events
            .into_iter()
            .map(to_broker_event)
            .collect();
        if let Some(bad) = events.iter().position(|e| e.id.is_empty()) {
            return Err(Status::invalid_argument(format!(
                "event {bad} has no id (ce-id)"
            )));
        }
        let published = broker
            .publish(&topic, events)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(PublishReply {
            results: published
                .into_iter()
                .map(|p| Published {
                    partition: p.partition,
                    offset: p.offset,
                    duplicate: p.duplicate,
                })
                .collect(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<Assignment>, Status> {
        let r = request.get_ref();
        let (broker, topic) =
            self.admit(&request, &r.namespace, &r.topic, TopicOperation::Subscribe)?;
        let r = request.into_inner();
        let partition_count = broker.partitions(&topic).await.map_err(|e| status(&e))?;
        let a = broker
            .heartbeat(&r.group, &topic, &r.member)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(Assignment {
            generation: a.generation,
            partitions: a.partitions,
            partition_count,
        }))
    }

    async fn leave(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<LeaveReply>, Status> {
        let r = request.get_ref();
        let (broker, topic) =
            self.admit(&request, &r.namespace, &r.topic, TopicOperation::Subscribe)?;
        let r = request.into_inner();
        broker
            .leave(&r.group, &topic, &r.member)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(LeaveReply {}))
    }

    async fn fetch(&self, request: Request<FetchRequest>) -> Result<Response<FetchReply>, Status> {
        let r = request.get_ref();
        let (broker, topic) =
            self.admit(&request, &r.namespace, &r.topic, TopicOperation::Subscribe)?;
        let r = request.into_inner();
        let wait = Duration::from_millis(u64::from(r.wait_ms)).min(MAX_WAIT);
        let max = r.max_bytes.clamp(1, MAX_FETCH_BYTES) as usize;
        match broker.fetch(&topic, r.partition, r.from, max, wait).await {
            Ok(records) => {
                // The partition's end, for the consumer's lag.
                let range = broker
                    .offsets(&topic, r.partition)
                    .await
                    .map_err(|e| status(&e))?;
                Ok(Response::new(FetchReply {
                    events: records.into_iter().map(from_record).collect(),
                    out_of_range: false,
                    first: range.start,
                    next: range.end,
                }))
            }
            Err(sinew_events::Error::OffsetOutOfRange { first, next, .. }) => {
                Ok(Response::new(FetchReply {
                    events: Vec::new(),
                    out_of_range: true,
                    first,
                    next,
                }))
            }
            Err(e) => Err(status(&e)),
        }
    }

    async fn committed(
        &self,
        request: Request<CursorRequest>,
    ) -> Result<Response<CursorReply>, Status> {
        let r = request.get_ref();
        let (broker, topic) =
            self.admit(&request, &r.namespace, &r.topic, TopicOperation::Subscribe)?;
        let r = request.into_inner();
        let at = broker
            .committed(&r.group, &topic, r.partition)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(CursorReply {
            committed: at.is_some(),
            next_offset: at.unwrap_or(0),
        }))
    }

    async fn commit(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitReply>, Status> {
        let r = request.get_ref();
        let (broker, topic) =
            self.admit(&request, &r.namespace, &r.topic, TopicOperation::Subscribe)?;
        let r = request.into_inner();
        broker
            .commit(
                &r.group,
                &topic,
                r.partition,
                r.next_offset,
                &r.member,
                r.generation,
            )
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(CommitReply {}))
    }

    async fn offsets(
        &self,
        request: Request<OffsetsRequest>,
    ) -> Result<Response<OffsetsReply>, Status> {
        let r = request.get_ref();
        let (broker, topic) =
            self.admit(&request, &r.namespace, &r.topic, TopicOperation::Subscribe)?;
        let r = request.into_inner();
        let range = broker
            .offsets(&topic, r.partition)
            .await
            .map_err(|e| status(&e))?;
        let at_time = if r.time_ms > 0 {
            broker
                .offset_for_time(&topic, r.partition, r.time_ms)
                .await
                .map_err(|e| status(&e))?
        } else {
            None
        };
        Ok(Response::new(OffsetsReply {
            first: range.start,
            next: range.end,
            has_at_time: at_time.is_some(),
            at_time: at_time.unwrap_or(0),
        }))
    }

    async fn topics(
        &self,
        request: Request<TopicsRequest>,
    ) -> Result<Response<TopicsReply>, Status> {
        check_bearer(&request, standalone_token(&self.admission)?)?;
        let broker = self
            .broker
            .as_ref()
            .ok_or_else(|| Status::unavailable("no event store"))?;
        let topics = broker.topics().await.map_err(|e| status(&e))?;
        Ok(Response::new(TopicsReply {
            topics: topics
                .into_iter()
                .map(|(topic, partitions)| TopicPartitions { topic, partitions })
                .collect(),
        }))
    }

    async fn partition_of(
        &self,
        request: Request<PartitionOfRequest>,
    ) -> Result<Response<PartitionOfReply>, Status> {
        standalone_token(&self.admission)?;
        let r = request.get_ref();
        let (broker, topic) =
            self.admit(&request, &r.namespace, &r.topic, TopicOperation::Subscribe)?;
        let partitions = broker.partitions(&topic).await.map_err(|e| status(&e))?;
        let partition = broker
            .partition_of(&topic, &request.get_ref().key)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(PartitionOfReply {
            partition,
            partitions,
        }))
    }

    async fn reset_cursor(
        &self,
        request: Request<CommitRequest>,
    ) -> Result<Response<CommitReply>, Status> {
        standalone_token(&self.admission)?;
        let r = request.get_ref();
        let (broker, topic) =
            self.admit(&request, &r.namespace, &r.topic, TopicOperation::Subscribe)?;
        let r = request.into_inner();
        broker
            .reset_cursor(&r.group, &topic, r.partition, r.next_offset)
            .await
            .map_err(|e| status(&e))?;
        Ok(Response::new(CommitReply {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(valid_topic("orders"));
        assert!(valid_topic("orders.dlq"));
        assert!(!valid_topic(""));
        assert!(!valid_topic(".."));
        assert!(!valid_topic("Orders"));
        assert!(!valid_topic("a/b"));
    }
}
