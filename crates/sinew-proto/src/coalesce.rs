//! Publish coalescing for callers of `sinew.v1.Events/Publish`: the events
//! of concurrent publishes to one topic go out in one call, so many callers
//! cost one round trip (and the broker one sync) rather than one each. The
//! sidecar coalesces its apps' publishes with it, and the control plane its
//! publishes to a standalone broker (`sinew_events::remote`).
//!
//! ```text
//! caller ─ Job { events, reply } ─ the topic's queue ─ the topic's task:
//!   take the first job (wait), then every queued job up to MAX_EVENTS / MAX_BYTES
//!   ─ one call (at most IN_FLIGHT at a time per topic) ─ split the answers by job
//! ```
//!
//! Nothing waits for company: a job alone is sent at once. The batch is
//! whatever queued while earlier calls were in flight. A batch refused as
//! invalid (one caller's bad event) is retried job by job, so one caller's
//! bad event never fails another's publish; any other error reaches every
//! job of the batch, as it would have reached each alone.
//!
//! **The events move into the call; they are not copied.** For the retry
//! job by job, each caller hands over, beside its events, a way to make
//! them again ([`Again`]: the sidecar parses its request body once more),
//! which runs only then. A copy of every event kept for that rare case was
//! about an eighth of the sidecar's CPU when publishing batches.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::{payload_bytes, Event};

/// Most events in one coalesced call.
pub const MAX_EVENTS: usize = 512;
/// Most payload bytes in one coalesced call (a lone larger job goes alone).
pub const MAX_BYTES: usize = 1 << 20;
/// Calls in flight per topic: the next batches gather while earlier ones are
/// synced. A call of 500 events spends about a third of its time in the
/// partition's group commit and the rest in transit, decoding and queueing,
/// so 4 keep the broker busier than 2 (batches of 100 through the sidecar:
/// +4 to +20 % events/s in 6 of 6 interleaved pairs, 1 and 8 partitions).
pub const IN_FLIGHT: usize = 4;

/// One topic's Publish call, as a [`Coalescer`] makes it.
pub trait Publish: Send + Sync + 'static {
    /// One event's answer.
    type Published: Send + 'static;
    /// A failed call.
    type Error: Clone + Send + 'static;

    /// One call carrying `events`; answers them in order.
    fn publish(
        &self,
        events: Vec<Event>,
    ) -> impl Future<Output = Result<Vec<Self::Published>, Self::Error>> + Send;

    /// Whether `error` refuses the events themselves (a bad event): a batch
    /// so refused is retried job by job.
    fn is_invalid(error: &Self::Error) -> bool;

    /// The error for a publish the coalescer could not carry through.
    fn failure(why: &'static str) -> Self::Error;
}

/// What a publish gets: its events' answers, in order, or the call's error.
pub type Answer<P> = Result<Vec<<P as Publish>::Published>, <P as Publish>::Error>;

/// Makes a caller's events once more: for its retry alone after a shared
/// call was refused as invalid. Runs at most once, and only then.
pub type Again = Box<dyn FnOnce() -> Vec<Event> + Send>;

/// One caller's events and where their answer goes.
struct Job<P: Publish> {
    events: Vec<Event>,
    again: Again,
    reply: oneshot::Sender<Answer<P>>,
}

/// How long a topic's queue and task outlive its last publish by default.
pub const IDLE: Duration = Duration::from_secs(60);

/// The queues, by key.
type Queues<K, P> = Mutex<HashMap<K, mpsc::UnboundedSender<Job<P>>>>;

/// Per-topic queues, by key `K`. A topic's task starts with its first
/// publish and ends once its queue has been empty for the idle time (the
/// queue leaves the map with it, so topics published once do not pile up)
/// or once the coalescer is dropped and its queue drained.
pub struct Coalescer<K, P: Publish> {
    queues: Arc<Queues<K, P>>,
    idle: Duration,
}

impl<K, P: Publish> Default for Coalescer<K, P> {
    fn default() -> Self {
        Self::with_idle(IDLE)
    }
}

impl<K, P: Publish> Coalescer<K, P> {
    /// A coalescer whose topic queues end after `idle` without a publish.
    #[must_use]
    pub fn with_idle(idle: Duration) -> Self {
        Self {
            queues: Arc::new(Mutex::new(HashMap::new())),
            idle,
        }
    }

    /// Topics with a queue now.
    #[must_use]
    pub fn topics(&self) -> usize {
        self.queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl<K, P: Publish> fmt::Debug for Coalescer<K, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let topics = self
            .queues
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("Coalescer")
            .field("topics", &topics)
            .finish()
    }
}

impl<K: Hash + Eq + Clone + Send + 'static, P: Publish> Coalescer<K, P> {
    /// Publishes `events` to the topic `key` names, coalesced with the
    /// concurrent publishes to it; `again` makes the same events once more
    /// (see [`Again`]); `publisher` makes the topic's caller on its first
    /// publish. Answers for these events only, in order.
    ///
    /// # Panics
    /// Outside a tokio runtime (it spawns the topic's task).
    pub async fn publish(
        &self,
        key: K,
        events: Vec<Event>,
        again: impl FnOnce() -> Vec<Event> + Send + 'static,
        publisher: impl FnOnce(&K) -> P,
    ) -> Answer<P> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            events,
            again: Box::new(again),
            reply,
        };
        let sent = {
            let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
            let queue = queues.entry(key).or_insert_with_key(|key| {
                let (tx, rx) = mpsc::unbounded_channel();
                let home = Home {
                    queues: Arc::downgrade(&self.queues),
                    key: key.clone(),
                    idle: self.idle,
                };
                tokio::spawn(run(Arc::new(publisher(key)), rx, home));
                tx
            });
            queue.send(job)
        };
        if sent.is_err() {
            // Only a task that panicked drops its queue while we hold it.
            return Err(P::failure("the publish queue ended"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(P::failure("the publish was abandoned")))
    }
}

/// Where a topic's queue is kept, for its task to take it out when idle.
struct Home<K, P: Publish> {
    queues: Weak<Queues<K, P>>,
    key: K,
    idle: Duration,
}

impl<K: Hash + Eq, P: Publish> Home<K, P> {
    /// Takes the queue out of the map if nothing is queued; then no publish
    /// can reach it (they send under the same lock), and the task may end.
    fn leave_if_empty(&self, queue: &mpsc::UnboundedReceiver<Job<P>>) -> bool {
        let Some(queues) = self.queues.upgrade() else {
            return false;
        };
        let mut queues = queues.lock().unwrap_or_else(PoisonError::into_inner);
        if !queue.is_empty() {
            return false;
        }
        queues.remove(&self.key);
        true
    }
}

/// A topic's task: batches queued jobs, one call per batch; ends when its
/// queue has been idle for `home.idle` (or has no sender left).
async fn run<K: Hash + Eq, P: Publish>(
    publisher: Arc<P>,
    mut queue: mpsc::UnboundedReceiver<Job<P>>,
    home: Home<K, P>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut held: Option<Job<P>> = None;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let first = match held.take() {
            Some(job) => job,
            None => match tokio::time::timeout(home.idle, queue.recv()).await {
                Ok(Some(job)) => job,
                Ok(None) => return,
                Err(_) if home.leave_if_empty(&queue) => return,
                Err(_) => continue,
            },
        };
        let (mut count, mut bytes) = (first.events.len(), payload_bytes(&first.events));
        let mut batch = vec![first];
        while count < MAX_EVENTS {
            let Ok(job) = queue.try_recv() else { break };
            let (n, b) = (job.events.len(), payload_bytes(&job.events));
            if count + n > MAX_EVENTS || bytes + b > MAX_BYTES {
                held = Some(job);
                break;
            }
            count += n;
            bytes += b;
            batch.push(job);
        }
        let publisher = Arc::clone(&publisher);
        tokio::spawn(async move {
            send(&*publisher, batch).await;
            drop(permit);
        });
    }
}

/// Sends one batch and answers each job.
async fn send<P: Publish>(publisher: &P, batch: Vec<Job<P>>) {
    if batch.len() == 1 {
        let job = batch.into_iter().next().expect("one job");
        let _ = job.reply.send(publisher.publish(job.events).await);
        return;
    }
    let counts: Vec<usize> = batch.iter().map(|j| j.events.len()).collect();
    let total = counts.iter().sum();
    let mut events = Vec::with_capacity(total);
    let mut callers = Vec::with_capacity(batch.len());
    for job in batch {
        events.extend(job.events);
        callers.push((job.again, job.reply));
    }
    match publisher.publish(events).await {
        Ok(answers) if answers.len() == total => {
            let mut answers = answers.into_iter();
            for (reply, n) in replies(callers).zip(counts) {
                let _ = reply.send(Ok(answers.by_ref().take(n).collect()));
            }
        }
        Ok(_) => {
            for reply in replies(callers) {
                let _ = reply.send(Err(P::failure(
                    "the broker answered a different number of events",
                )));
            }
        }
        Err(error) if P::is_invalid(&error) => {
            for (again, reply) in callers {
                let events = again();
                let answer = if events.is_empty() {
                    Err(P::failure("the publish could not be made again"))
                } else {
                    publisher.publish(events).await
                };
                let _ = reply.send(answer);
            }
        }
        Err(error) => {
            for reply in replies(callers) {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}

/// The reply channels of a batch's callers.
fn replies<A, R>(callers: Vec<(A, R)>) -> impl Iterator<Item = R> {
    callers.into_iter().map(|(_, reply)| reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A broker stand-in that records each call's size, answers each event
    /// with its id, refuses a batch holding an id `bad`, and takes 5 ms.
    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<usize>>,
        stored: AtomicUsize,
    }

    struct Topic(Arc<Recorder>);

    impl Publish for Topic {
        type Published = String;
        type Error = String;

        async fn publish(&self, events: Vec<Event>) -> Result<Vec<String>, String> {
            self.0
                .calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(events.len());
            tokio::time::sleep(Duration::from_millis(5)).await;
            if events.iter().any(|e| e.id == "bad") {
                return Err("invalid: bad".into());
            }
            self.0.stored.fetch_add(events.len(), Ordering::Relaxed);
            Ok(events.into_iter().map(|e| e.id).collect())
        }

        fn is_invalid(error: &String) -> bool {
            error.starts_with("invalid")
        }

        fn failure(why: &'static str) -> String {
            why.into()
        }
    }

    fn event(id: &str) -> Event {
        Event {
            id: id.into(),
            ..Event::default()
        }
    }

    /// `n` concurrent callers of three events each (caller `bad` instead
    /// with one bad event); checks each gets its own answers, in order.
    async fn burst(recorder: &Arc<Recorder>, n: usize, bad: Option<usize>) {
        let coalescer: Arc<Coalescer<&'static str, Topic>> = Arc::default();
        let callers: Vec<_> = (0..n)
            .map(|i| {
                let (coalescer, recorder) = (Arc::clone(&coalescer), Arc::clone(recorder));
                tokio::spawn(async move {
                    let ids: Vec<String> = if Some(i) == bad {
                        vec!["bad".into()]
                    } else {
                        (0..3).map(|k| format!("{i}-{k}")).collect()
                    };
                    let events = ids.iter().map(|id| event(id)).collect();
                    let again = {
                        let ids = ids.clone();
                        move || ids.iter().map(|id| event(id)).collect()
                    };
                    let answer = coalescer
                        .publish("orders", events, again, |_| Topic(recorder))
                        .await;
                    (ids, answer)
                })
            })
            .collect();
        for caller in callers {
            let (ids, answer) = caller.await.expect("caller");
            if ids == ["bad"] {
                assert_eq!(answer, Err("invalid: bad".to_owned()));
            } else {
                assert_eq!(
                    answer,
                    Ok(ids),
                    "each caller gets its own answers, in order"
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_publishes_share_calls() {
        let recorder = Arc::new(Recorder::default());
        burst(&recorder, 40, None).await;
        assert_eq!(recorder.stored.load(Ordering::Relaxed), 40 * 3);
        let calls = recorder.calls.lock().expect("calls").clone();
        assert!(
            calls.len() < 40,
            "40 concurrent publishes made {} calls: {calls:?}",
            calls.len()
        );
        assert!(calls.iter().all(|&n| n <= MAX_EVENTS));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_bad_event_fails_only_its_caller() {
        let recorder = Arc::new(Recorder::default());
        burst(&recorder, 40, Some(17)).await;
        // Every good event stored once: a refused batch stored nothing.
        assert_eq!(recorder.stored.load(Ordering::Relaxed), 39 * 3);
    }

    #[tokio::test]
    async fn idle_topics_leave_and_come_back_on_their_next_publish() {
        let recorder = Arc::new(Recorder::default());
        let coalescer: Coalescer<String, Topic> = Coalescer::with_idle(Duration::from_millis(400));
        let publish = |topic: String| {
            let recorder = Arc::clone(&recorder);
            let events = vec![event(&topic)];
            coalescer.publish(topic, events, Vec::new, move |_| Topic(recorder))
        };
        for i in 0..20 {
            assert!(publish(format!("t{i}")).await.is_ok());
        }
        assert_eq!(coalescer.topics(), 20);
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(coalescer.topics(), 0, "every idle topic left");
        assert_eq!(publish("t3".to_owned()).await, Ok(vec!["t3".to_owned()]));
        assert_eq!(coalescer.topics(), 1);
        assert_eq!(recorder.stored.load(Ordering::Relaxed), 21);
    }

    #[tokio::test]
    async fn a_lone_publish_goes_at_once_and_topics_do_not_mix() {
        let recorder = Arc::new(Recorder::default());
        let coalescer: Coalescer<String, Topic> = Coalescer::default();
        for topic in ["a", "b"] {
            let answer = coalescer
                .publish(topic.to_owned(), vec![event(topic)], Vec::new, |_| {
                    Topic(Arc::clone(&recorder))
                })
                .await;
            assert_eq!(answer, Ok(vec![topic.to_owned()]));
        }
        assert_eq!(*recorder.calls.lock().expect("calls"), [1, 1]);
        assert!(format!("{coalescer:?}").contains("topics: 2"));
    }
}
