//! Publish coalescing: the events of concurrent `POST /v1/publish` calls
//! for one topic go to the broker in one `Publish` call on the control-plane
//! session, so a sidecar under load makes one gRPC call (and the broker one
//! append per partition) for many app requests, not one each. The batching
//! itself is [`sinew_proto::coalesce`], shared with the control plane's
//! client of a standalone broker.

use std::sync::{Arc, Weak};

use sinew_proto::coalesce::Publish;
use sinew_proto::{Event, PublishRequest, Published};
use tonic::{Code, Status};

use super::Control;

/// The per-topic queues, by (namespace, topic).
pub(super) type Coalescer = sinew_proto::coalesce::Coalescer<(String, String), TopicPublisher>;

/// One topic's Publish call on the control-plane session. Holds the
/// control weakly: the queues live inside it.
pub(super) struct TopicPublisher {
    control: Weak<Control>,
    namespace: String,
    topic: String,
}

impl Publish for TopicPublisher {
    type Published = Published;
    type Error = Status;

    async fn publish(&self, events: Vec<Event>) -> Result<Vec<Published>, Status> {
        let Some(control) = self.control.upgrade() else {
            return Err(Status::unavailable("the control-plane session ended"));
        };
        let request = PublishRequest {
            topic: self.topic.clone(),
            events,
            namespace: self.namespace.clone(),
        };
        control.publish(request).await.map(|r| r.results)
    }

    fn is_invalid(error: &Status) -> bool {
        error.code() == Code::InvalidArgument
    }

    fn failure(why: &'static str) -> Status {
        Status::unavailable(why)
    }
}

impl Control {
    /// Publishes `request`'s events, coalesced with concurrent publishes to
    /// the same topic; `again` makes the same events once more, should a
    /// shared call be refused as invalid
    /// ([`Again`](sinew_proto::coalesce::Again)). Answers for these events
    /// only, in order.
    ///
    /// # Errors
    /// As [`Control::publish`].
    pub async fn publish_coalesced(
        self: &Arc<Self>,
        request: PublishRequest,
        again: impl FnOnce() -> Vec<Event> + Send + 'static,
    ) -> Result<Vec<Published>, Status> {
        let control = Arc::downgrade(self);
        self.coalescer
            .publish(
                (request.namespace, request.topic),
                request.events,
                again,
                |(namespace, topic)| TopicPublisher {
                    control,
                    namespace: namespace.clone(),
                    topic: topic.clone(),
                },
            )
            .await
    }
}
