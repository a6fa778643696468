//! One owned partition of a subscription: find where to start, fetch, hand
//! events to deliveries under the ordering rule, and commit the cursor past
//! every event that is done (delivered or dead-lettered).
//!
//! `ordering: key`: events of one key go one at a time, in offset order;
//! other keys proceed meanwhile, so a failing key holds back only its own
//! later events. `ordering: none`: every event at once. Either way at most
//! `max_in_flight` deliveries run, and at most [`MAX_BUFFERED`] fetched
//! events, or [`MAX_BUFFERED_BYTES`] of them, wait in memory (then fetching
//! pauses). The cursor only passes an
//! event once it and everything before it is done, so a crash redelivers
//! (at least once), never skips.

use super::deliver::Attempt;
use super::Subscriber;
use crate::resilience::delay;
use bytes::Bytes;
use sinew_model::{Ordering, StartPosition};
use sinew_proto::{
    CommitRequest, CursorRequest, Event, FetchRequest, OffsetsRequest, PublishRequest, StoredEvent,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tonic::Code;

/// Fetched events kept in memory at most, per partition.
pub(super) const MAX_BUFFERED: usize = 10_000;
/// Bytes of fetched events (data, key, id, attributes) past which a
/// partition fetches no more until some are done: large events behind a
/// slow app must not grow a sidecar by count alone. One fetch may pass it
/// by its size ([`FETCH_BYTES`], or one larger event).
pub(super) const MAX_BUFFERED_BYTES: usize = 8 << 20;
/// How long a fetch waits for the first event.
const FETCH_WAIT: Duration = Duration::from_secs(1);
/// Largest fetch answer.
const FETCH_BYTES: u32 = 1 << 20;
/// After a broker error, wait this long before trying again.
const ERROR_PAUSE: Duration = Duration::from_millis(500);
/// While deliveries wait for a heartbeat to be answered, how often to look.
const MEMBER_RECHECK: Duration = Duration::from_millis(100);

/// Where this partition's deliveries stand.
struct State {
    /// The next offset to fetch.
    next_fetch: u64,
    /// The cursor as last committed.
    committed: u64,
    /// Whether the group has a cursor here at all. Until it has, `committed`
    /// is only where this worker started, and that start is committed first.
    pinned: bool,
    /// Offsets fetched and not yet done, with their event.
    pending: BTreeMap<u64, Arc<Event>>,
    /// The payload bytes of `pending`.
    pending_bytes: usize,
    /// Per key (ordering: key), the offsets waiting behind the one in flight.
    queued: HashMap<Bytes, VecDeque<u64>>,
    /// Offsets ready to deliver now.
    ready: VecDeque<u64>,
}

impl State {
    /// The cursor may move to the lowest offset not done (or past all fetched).
    fn commit_point(&self) -> u64 {
        self.pending
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_fetch)
    }
}

/// Least time between two cursor commits of one partition. The broker syncs
/// every commit, so one per finished delivery would cost a sync each; a
/// crash redelivers at most this much more.
const COMMIT_EVERY: Duration = Duration::from_millis(50);

/// A broker call running beside the deliveries.
type Call<T> = Pin<Box<dyn Future<Output = Result<T, tonic::Status>> + Send>>;

/// Runs partition `partition` until the task is aborted (ownership moved)
/// or the broker says this member no longer owns it.
///
/// One loop drives three things at once, none waiting for another: the
/// deliveries in flight, one long-polling fetch (kept across iterations:
/// a finished delivery does not cancel it), and one cursor commit at a
/// time, at most every [`COMMIT_EVERY`].
pub(super) async fn run(sub: Arc<Subscriber>, partition: u32, generation: u64) {
    let Some((start, committed)) = start_offset(&sub, partition).await else {
        return;
    };
    let mut state = State {
        next_fetch: start,
        committed: start,
        pending_bytes: 0,
        // A `latest` start is committed at once, beside the first fetch:
        // otherwise a member taking the partition over before the first
        // commit would compute its own "latest" and skip what this one had
        // not finished. The other starts come out the same when computed
        // again. While the commit fails (a full disk) deliveries go on.
        pinned: committed || !matches!(sub.spec.start, StartPosition::Latest),
        pending: BTreeMap::new(),
        queued: HashMap::new(),
        ready: VecDeque::new(),
    };
    let mut deliveries: JoinSet<u64> = JoinSet::new();
    let max_in_flight = sub.spec.max_in_flight.max(1) as usize;
    let mut fetching: Option<Call<Fetched>> = None;
    let mut committing: Option<(u64, Call<()>)> = None;
    let mut next_commit = Instant::now();
    let mut commit_failing = false;
    let lag = sub.metrics_lag(partition);
    loop {
        // Cut off from the broker, the partition may be someone else's by
        // now: deliveries in flight finish, none start.
        let member = sub.member_fresh();
        while member && deliveries.len() < max_in_flight {
            let Some(offset) = state.ready.pop_front() else {
                break;
            };
            let Some(event) = state.pending.get(&offset).cloned() else {
                continue;
            };
            let sub = sub.clone();
            deliveries.spawn(async move {
                deliver(&sub, &event).await;
                offset
            });
        }
        if fetching.is_none()
            && state.pending.len() < MAX_BUFFERED
            && state.pending_bytes < MAX_BUFFERED_BYTES
        {
            let (sub, from) = (sub.clone(), state.next_fetch);
            fetching = Some(Box::pin(async move {
                fetch(&sub, partition, from, FETCH_WAIT).await
            }));
        }
        let point = state.commit_point();
        let commit_wanted = (point > state.committed || !state.pinned) && committing.is_none();
        if commit_wanted && Instant::now() >= next_commit {
            let sub = sub.clone();
            committing = Some((
                point,
                Box::pin(async move { commit(&sub, partition, point, generation).await }),
            ));
        }
        let commit_waits = commit_wanted && committing.is_none();
        tokio::select! {
            done = deliveries.join_next(), if !deliveries.is_empty() => {
                if let Some(Ok(offset)) = done {
                    finish(&mut state, offset);
                }
            }
            fetched = async { fetching.as_mut().expect("a fetch runs").await }, if fetching.is_some() => {
                fetching = None;
                match fetched {
                    Ok(Fetched::Events(events, end)) => {
                        take(&mut state, events, sub.spec.ordering);
                        lag.set(i64::try_from(end.saturating_sub(state.commit_point())).unwrap_or(i64::MAX));
                    }
                    Ok(Fetched::Moved(first)) => {
                        tracing::warn!(subscription = %sub.name, partition, from = state.next_fetch, to = first, "events before the first retained offset are gone; continuing there");
                        state.next_fetch = first;
                        if state.pending.is_empty() {
                            state.committed = state.committed.max(first);
                        }
                    }
                    Err(status) if status.code() == Code::PermissionDenied => {
                        tracing::warn!(subscription = %sub.name, partition, error = %status.message(), "not allowed to consume");
                        tokio::time::sleep(ERROR_PAUSE * 10).await;
                    }
                    Err(_) => tokio::time::sleep(ERROR_PAUSE).await,
                }
            }
            committed = async { committing.as_mut().expect("a commit runs").1.as_mut().await }, if committing.is_some() => {
                let (point, _) = committing.take().expect("a commit ran");
                next_commit = Instant::now() + COMMIT_EVERY;
                match committed {
                    Ok(()) => {
                        if commit_failing {
                            tracing::info!(subscription = %sub.name, partition, "cursor commits work again");
                        }
                        commit_failing = false;
                        state.committed = state.committed.max(point);
                        state.pinned = true;
                    }
                    Err(status) if status.code() == Code::FailedPrecondition => {
                        tracing::info!(subscription = %sub.name, partition, "partition moved to another member");
                        return;
                    }
                    Err(status) => {
                        // Said once per streak: a stalled cursor means a restart
                        // redelivers everything since the last commit.
                        if !commit_failing {
                            tracing::warn!(subscription = %sub.name, partition, error = %status.message(), "cannot commit the cursor; retrying");
                        }
                        commit_failing = true;
                        next_commit = Instant::now() + ERROR_PAUSE;
                    }
                }
            }
            () = tokio::time::sleep_until(next_commit.into()), if commit_waits => {}
            () = tokio::time::sleep(MEMBER_RECHECK), if !member && !state.ready.is_empty() => {}
        }
    }
}

/// Adds fetched events to the state, making ready those that may go now.
fn take(state: &mut State, events: Vec<StoredEvent>, ordering: Ordering) {
    for stored in events {
        let Some(mut event) = stored.event else {
            continue;
        };
        if stored.offset < state.next_fetch {
            continue;
        }
        state.next_fetch = stored.offset + 1;
        // The key and data arrive as slices of the whole fetch reply; an
        // event may wait here long (behind its key, or retrying), so it
        // keeps copies of its own, not the reply's megabyte.
        event.key = Bytes::copy_from_slice(&event.key);
        event.data = Bytes::copy_from_slice(&event.data);
        let key = event.key.clone();
        state.pending_bytes += event_bytes(&event);
        state.pending.insert(stored.offset, Arc::new(event));
        match ordering {
            Ordering::Key if !key.is_empty() => {
                let queue = state.queued.entry(key).or_default();
                queue.push_back(stored.offset);
                if queue.len() == 1 {
                    state.ready.push_back(stored.offset);
                }
            }
            _ => state.ready.push_back(stored.offset),
        }
    }
}

/// What one buffered event counts against [`MAX_BUFFERED_BYTES`].
fn event_bytes(event: &Event) -> usize {
    sinew_proto::payload_bytes(std::slice::from_ref(event))
}

/// Marks `offset` done and lets the next event of its key go.
fn finish(state: &mut State, offset: u64) {
    let Some(event) = state.pending.remove(&offset) else {
        return;
    };
    state.pending_bytes = state.pending_bytes.saturating_sub(event_bytes(&event));
    if event.key.is_empty() {
        return;
    }
    if let Some(queue) = state.queued.get_mut(&event.key) {
        if queue.front() == Some(&offset) {
            queue.pop_front();
        }
        match queue.front() {
            Some(next) => state.ready.push_back(*next),
            None => {
                state.queued.remove(&event.key);
            }
        }
    }
}

/// Delivers with retries; dead-letters when retrying cannot help or the
/// attempts run out. Always ends: the event is done either way.
async fn deliver(sub: &Subscriber, event: &Event) {
    let retry = sub.spec.retry;
    let mut rng = fastrand::Rng::new();
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let reason = match sub
            .app
            .attempt(&sub.spec.deliver.path, &sub.spec.topic, event)
            .await
        {
            Attempt::Delivered => {
                sub.metrics.delivered.inc();
                return;
            }
            Attempt::Drop(reason) => reason,
            Attempt::Retry(reason) if attempts < retry.max_attempts => {
                sub.metrics.redelivered.inc();
                let wait = delay(
                    attempts,
                    retry.backoff.base.into(),
                    retry.backoff.max.into(),
                    &mut rng,
                );
                tracing::debug!(subscription = %sub.name, id = %event.id, attempts, %reason, ?wait, "delivery failed; retrying");
                tokio::time::sleep(wait).await;
                // A retry is a new delivery: not while cut off from the
                // broker (the worker is aborted if the partition moved).
                while !sub.member_fresh() {
                    tokio::time::sleep(MEMBER_RECHECK).await;
                }
                continue;
            }
            Attempt::Retry(reason) => reason,
        };
        dead_letter(sub, event, &reason, attempts).await;
        return;
    }
}

/// Publishes `event` to the subscription's dead-letter topic with why and
/// after how many attempts; retried until the broker takes it (the event
/// is never dropped unrecorded).
async fn dead_letter(sub: &Subscriber, event: &Event, reason: &str, attempts: u32) {
    let mut dead = event.clone();
    dead.headers
        .insert("deadletterreason".into(), reason.to_owned());
    dead.headers
        .insert("deliveryattempts".into(), attempts.to_string());
    dead.headers
        .insert("deadlettertopic".into(), sub.spec.topic.clone());
    let topic = sub.spec.dead_letter_topic();
    let mut pause = ERROR_PAUSE;
    loop {
        let request = PublishRequest {
            topic: topic.clone(),
            events: vec![dead.clone()],
            namespace: sub.namespace.clone(),
        };
        match sub.control.publish(request).await {
            Ok(_) => {
                sub.metrics.dead_lettered.inc();
                tracing::info!(subscription = %sub.name, id = %event.id, attempts, %reason, dead_letter = %topic, "event dead-lettered");
                return;
            }
            Err(status) => {
                tracing::warn!(subscription = %sub.name, id = %event.id, error = %status.message(), "cannot dead-letter yet");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// What a fetch brought.
enum Fetched {
    /// Events, and the partition's end (the next offset to be stored).
    Events(Vec<StoredEvent>, u64),
    /// The offset asked for is no longer retained: start here.
    Moved(u64),
}

async fn fetch(
    sub: &Subscriber,
    partition: u32,
    from: u64,
    wait: Duration,
) -> Result<Fetched, tonic::Status> {
    let reply = sub
        .control
        .fetch(FetchRequest {
            topic: sub.spec.topic.clone(),
            partition,
            from,
            max_bytes: FETCH_BYTES,
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            namespace: sub.namespace.clone(),
        })
        .await?;
    if reply.out_of_range {
        // Behind the log's start: move to it; ahead of its end cannot happen
        // for an offset this member fetched, so that is a reset too.
        return Ok(Fetched::Moved(if from < reply.first {
            reply.first
        } else {
            reply.next
        }));
    }
    Ok(Fetched::Events(reply.events, reply.next))
}

async fn commit(
    sub: &Subscriber,
    partition: u32,
    next_offset: u64,
    generation: u64,
) -> Result<(), tonic::Status> {
    sub.control
        .commit(CommitRequest {
            group: sub.group.clone(),
            topic: sub.spec.topic.clone(),
            partition,
            next_offset,
            member: sub.member.clone(),
            generation,
            namespace: sub.namespace.clone(),
        })
        .await
}

/// The committed cursor (and `true`), or the subscription's `start` the
/// first time (and `false`).
async fn start_offset(sub: &Subscriber, partition: u32) -> Option<(u64, bool)> {
    let mut pause = ERROR_PAUSE;
    loop {
        match start_offset_once(sub, partition).await {
            Ok(offset) => return Some(offset),
            Err(status) => {
                tracing::debug!(subscription = %sub.name, partition, error = %status.message(), "cannot find where to start; again shortly");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn start_offset_once(sub: &Subscriber, partition: u32) -> Result<(u64, bool), tonic::Status> {
    let cursor = sub
        .control
        .committed(CursorRequest {
            group: sub.group.clone(),
            topic: sub.spec.topic.clone(),
            partition,
            namespace: sub.namespace.clone(),
        })
        .await?;
    if cursor.committed {
        return Ok((cursor.next_offset, true));
    }
    let time_ms = match &sub.spec.start {
        StartPosition::Time(t) => super::rfc3339_ms(t).unwrap_or(0),
        _ => 0,
    };
    let offsets = sub
        .control
        .offsets(OffsetsRequest {
            topic: sub.spec.topic.clone(),
            partition,
            time_ms,
            namespace: sub.namespace.clone(),
        })
        .await?;
    let start = match &sub.spec.start {
        StartPosition::Earliest => offsets.first,
        StartPosition::Latest => offsets.next,
        StartPosition::Offset(n) => (*n).clamp(offsets.first, offsets.next),
        StartPosition::Time(_) if offsets.has_at_time => offsets.at_time,
        StartPosition::Time(_) => offsets.next,
    };
    Ok((start, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(offset: u64, key: &str) -> StoredEvent {
        StoredEvent {
            offset,
            event: Some(Event {
                id: format!("e{offset}"),
                key: Bytes::copy_from_slice(key.as_bytes()),
                ..Event::default()
            }),
        }
    }

    fn state() -> State {
        State {
            next_fetch: 0,
            committed: 0,
            pinned: true,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            queued: HashMap::new(),
            ready: VecDeque::new(),
        }
    }

    #[test]
    fn one_event_per_key_at_a_time_and_the_cursor_waits_for_the_lowest() {
        let mut s = state();
        take(
            &mut s,
            vec![
                stored(0, "a"),
                stored(1, "b"),
                stored(2, "a"),
                stored(3, ""),
            ],
            Ordering::Key,
        );
        assert_eq!(s.ready, [0, 1, 3], "a's second event waits");
        s.ready.clear();
        finish(&mut s, 1);
        assert_eq!(s.commit_point(), 0, "0 is still in flight");
        finish(&mut s, 0);
        assert_eq!(s.ready, [2], "a's next goes once its first is done");
        assert_eq!(s.commit_point(), 2);
        finish(&mut s, 3);
        finish(&mut s, 2);
        assert_eq!(s.commit_point(), 4, "past everything fetched");
        assert!(s.queued.is_empty());
    }

    #[test]
    fn buffered_bytes_follow_the_events_in_and_out() {
        let mut s = state();
        let mut big = stored(0, "k");
        if let Some(e) = big.event.as_mut() {
            e.data = Bytes::from(vec![0u8; 1000]);
        }
        take(&mut s, vec![big, stored(1, "k")], Ordering::Key);
        let one = sinew_proto::payload_bytes(&[Event {
            id: "e1".into(),
            key: Bytes::from_static(b"k"),
            ..Event::default()
        }]);
        assert!(s.pending_bytes >= 1000 + one, "{}", s.pending_bytes);
        finish(&mut s, 0);
        assert_eq!(s.pending_bytes, one);
        finish(&mut s, 1);
        assert_eq!(s.pending_bytes, 0);
    }

    #[test]
    fn ordering_none_releases_everything() {
        let mut s = state();
        take(&mut s, vec![stored(5, "a"), stored(6, "a")], Ordering::None);
        assert_eq!(s.ready, [5, 6]);
        // Already-seen offsets are ignored.
        take(&mut s, vec![stored(6, "a")], Ordering::None);
        assert_eq!(s.ready.len(), 2);
    }

    #[test]
    fn a_waiting_event_keeps_its_own_bytes_not_the_fetch_reply() {
        // A fetch reply's buffer; the event's key and data are slices of it.
        let reply = Bytes::from(vec![7u8; 1 << 20]);
        let within = |b: &Bytes| reply.as_ptr_range().contains(&b.as_ptr());
        let event = StoredEvent {
            offset: 0,
            event: Some(Event {
                id: "e0".into(),
                key: reply.slice(0..1),
                data: reply.slice(1..257),
                ..Event::default()
            }),
        };
        let mut s = state();
        take(&mut s, vec![event], Ordering::Key);
        let kept = &s.pending[&0];
        assert_eq!((kept.key.len(), kept.data.len()), (1, 256));
        assert!(!within(&kept.key) && !within(&kept.data));
        assert!(s.queued.keys().all(|k| !within(k)));
    }
}
