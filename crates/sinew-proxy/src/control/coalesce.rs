//! Publish coalescing: the events of concurrent `POST /v1/publish` calls
//! for one topic go to the broker in one `Publish` call, so a sidecar under
//! load makes one gRPC call (and the broker one append per partition) for
//! many app requests, not one each.
//!
//! ```text
//! handler ─ Job { events, reply } ─ per-topic queue ─ coalescer task:
//!   take the first job (wait), then every queued job up to MAX_EVENTS/MAX_BYTES
//!   ─ one Publish (at most IN_FLIGHT at a time per topic) ─ split the results by job
//! ```
//!
//! Nothing waits for company: a job alone is sent at once. The batch is
//! whatever queued while earlier calls were in flight. A batch the broker
//! refuses as invalid (one job's bad event) is retried job by job, so one
//! app's bad event never fails another's publish; any other error reaches
//! every job of the batch, as it would have reached each alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sinew_proto::{Event, PublishRequest, Published};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::{Code, Status};

use super::Control;

/// Most events in one coalesced call.
const MAX_EVENTS: usize = 512;
/// Most payload bytes in one coalesced call (a lone larger job goes alone).
const MAX_BYTES: usize = 1 << 20;
/// Coalesced calls in flight per topic: the next batch gathers while one is
/// being synced.
const IN_FLIGHT: usize = 2;

/// One handler's events and where its answer goes.
struct Job {
    events: Vec<Event>,
    reply: oneshot::Sender<Result<Vec<Published>, Status>>,
}

/// The per-topic queues; a topic's coalescer runs from its first publish.
#[derive(Default)]
pub(super) struct Coalescer {
    queues: Mutex<HashMap<(String, String), mpsc::UnboundedSender<Job>>>,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer").finish_non_exhaustive()
    }
}

impl Control {
    /// Publishes `request`'s events, coalesced with concurrent publishes to
    /// the same topic; answers for these events only, in order.
    ///
    /// # Errors
    /// As [`Control::publish`].
    pub async fn publish_coalesced(
        self: &Arc<Self>,
        request: PublishRequest,
    ) -> Result<Vec<Published>, Status> {
        let (reply, answer) = oneshot::channel();
        let key = (request.namespace, request.topic);
        let job = Job {
            events: request.events,
            reply,
        };
        {
            let mut queues = self
                .coalescer
                .queues
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let queue = queues.entry(key.clone()).or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(run(Arc::downgrade(self), key.0.clone(), key.1.clone(), rx));
                tx
            });
            if let Err(mpsc::error::SendError(job)) = queue.send(job) {
                // The coalescer ended (its control went away): say so.
                let _ = job
                    .reply
                    .send(Err(Status::unavailable("the control-plane session ended")));
            }
        }
        answer
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("the publish was abandoned")))
    }
}

/// A topic's coalescer: batches queued jobs, one call per batch.
async fn run(
    control: std::sync::Weak<Control>,
    namespace: String,
    topic: String,
    mut queue: mpsc::UnboundedReceiver<Job>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut held: Option<Job> = None;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let first = match held.take() {
            Some(job) => job,
            None => match queue.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        let mut bytes = sinew_proto::payload_bytes(&first.events);
        let mut count = first.events.len();
        let mut batch = vec![first];
        while count < MAX_EVENTS {
            let Ok(job) = queue.try_recv() else { break };
            let (n, b) = (job.events.len(), sinew_proto::payload_bytes(&job.events));
            if count + n > MAX_EVENTS || bytes + b > MAX_BYTES {
                held = Some(job);
                break;
            }
            count += n;
            bytes += b;
            batch.push(job);
        }
        let Some(control) = control.upgrade() else {
            for job in batch {
                let _ = job
                    .reply
                    .send(Err(Status::unavailable("the control-plane session ended")));
            }
            return;
        };
        let (namespace, topic) = (namespace.clone(), topic.clone());
        tokio::spawn(async move {
            send(&control, &namespace, &topic, batch).await;
            drop(permit);
        });
    }
}

/// Sends one batch and answers each job.
async fn send(control: &Control, namespace: &str, topic: &str, batch: Vec<Job>) {
    let request = |events: Vec<Event>| PublishRequest {
        topic: topic.to_owned(),
        events,
        namespace: namespace.to_owned(),
    };
    if batch.len() == 1 {
        let job = batch.into_iter().next().expect("one job");
        let answer = control
            .publish(request(job.events))
            .await
            .map(|r| r.results);
        let _ = job.reply.send(answer);
        return;
    }
    let counts: Vec<usize> = batch.iter().map(|j| j.events.len()).collect();
    let (events, replies): (Vec<Vec<Event>>, Vec<_>) =
        batch.into_iter().map(|j| (j.events, j.reply)).unzip();
    match control.publish(request(events.concat())).await {
        Ok(reply) if reply.results.len() == counts.iter().sum::<usize>() => {
            let mut results = reply.results.into_iter();
            for (reply, n) in replies.into_iter().zip(counts) {
                let _ = reply.send(Ok(results.by_ref().take(n).collect()));
            }
        }
        Ok(_) => {
            for reply in replies {
                let _ = reply.send(Err(Status::internal(
                    "the broker answered a different number of events",
                )));
            }
        }
        // One job's bad event refuses the whole call: each job alone, so
        // only the bad one is refused.
        Err(status) if status.code() == Code::InvalidArgument => {
            for (events, reply) in events.into_iter().zip(replies) {
                let answer = control.publish(request(events)).await.map(|r| r.results);
                let _ = reply.send(answer);
            }
        }
        Err(status) => {
            for reply in replies {
                let _ = reply.send(Err(status.clone()));
            }
        }
    }
}
