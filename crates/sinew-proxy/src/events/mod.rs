//! Event delivery: for each Subscription of this proxy's service, the
//! sidecar joins the subscription's consumer group at the broker (one group
//! per subscription, one member per sidecar), works the partitions the
//! broker assigns it ([`worker`]), and delivers each event to its app
//! ([`deliver`]). When a replica comes or goes, the broker moves partitions;
//! a sidecar stops working a partition it lost and starts on one it gained,
//! from the group's committed cursor.

mod deliver;
mod worker;

use crate::control::Control;
use crate::server::Shared;
use crate::telemetry::Counter;
use deliver::AppClient;
use sinew_model::{Subscription, SubscriptionSpec};
use sinew_proto::HeartbeatRequest;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Between heartbeats to the broker (its session timeout is a few of these).
const HEARTBEAT: Duration = Duration::from_millis(500);

/// How long after its last answered heartbeat a member still starts
/// deliveries. The broker hands its partitions to another member once its
/// session times out (3 s by default); stopping before that keeps two
/// members from delivering one key at once while this one is cut off.
const MEMBERSHIP_FRESH: Duration = Duration::from_secs(2);

/// Counters of one subscription's deliveries.
#[derive(Debug)]
pub(crate) struct SubscriptionMetrics {
    pub(crate) delivered: Arc<Counter>,
    pub(crate) redelivered: Arc<Counter>,
    pub(crate) dead_lettered: Arc<Counter>,
}

/// One subscription as this sidecar consumes it.
#[derive(Debug)]
pub(crate) struct Subscriber {
    name: String,
    namespace: String,
    spec: SubscriptionSpec,
    /// The consumer group: the subscription's name.
    group: String,
    /// This sidecar's member id: its Proxy name.
    member: String,
    control: Arc<Control>,
    app: AppClient,
    metrics: SubscriptionMetrics,
    /// The registry, for per-partition lag gauges.
    lag_family: Arc<crate::telemetry::Metrics>,
    /// When the broker last answered this member's heartbeat, in ms since
    /// `born` (0: never).
    heartbeat_ms: AtomicU64,
    born: std::time::Instant,
}

impl Subscriber {
    /// Notes an answered heartbeat.
    fn heartbeat_answered(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat_ms.store(ms.max(1), AtomicOrdering::Relaxed);
    }

    /// Whether the broker answered a heartbeat recently enough for this
    /// member to be sure it still owns its partitions.
    fn member_fresh(&self) -> bool {
        let last = self.heartbeat_ms.load(AtomicOrdering::Relaxed);
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        last != 0 && now.saturating_sub(last) < MEMBERSHIP_FRESH.as_millis() as u64
    }

    /// The lag gauge of one partition of this subscription.
    fn metrics_lag(&self, partition: u32) -> Arc<crate::telemetry::Gauge> {
        self.lag_family
            .events_lag(&self.name, &partition.to_string())
    }
}

/// Starts the task that keeps one consumer per Subscription of this
/// proxy's service, following config changes, until the proxy drains.
pub fn spawn(shared: Arc<Shared>, control: Arc<Control>) {
    tokio::spawn(async move {
        let mut consumers: HashMap<String, (SubscriptionSpec, JoinHandle<()>)> = HashMap::new();
        let mut drain = shared.drain_signal();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = drain.wait_for(|d| *d) => break,
            }
            let runtime = shared.runtime();
            let proxy = &runtime.config.proxy;
            let Some(app) = proxy.spec.app else {
                continue;
            };
            let wanted: HashMap<String, &Subscription> = runtime
                .config
                .snapshot
                .subscriptions()
                .values()
                .filter(|s| {
                    s.metadata.namespace == proxy.metadata.namespace
                        && s.spec.service == proxy.spec.service
                })
                .map(|s| (s.metadata.name.clone(), s))
                .collect();
            consumers.retain(|name, (spec, task)| {
                let keep = wanted.get(name).is_some_and(|s| s.spec == *spec);
                if !keep {
                    task.abort();
                }
                keep
            });
            for (name, sub) in wanted {
                if consumers.contains_key(&name) {
                    continue;
                }
                let subscriber = Arc::new(Subscriber {
                    name: name.clone(),
                    namespace: proxy.metadata.namespace.clone(),
                    spec: sub.spec.clone(),
                    group: name.clone(),
                    member: proxy.metadata.name.clone(),
                    control: control.clone(),
                    app: AppClient::new(app),
                    metrics: SubscriptionMetrics {
                        delivered: shared.metrics.events("delivered", &name),
                        redelivered: shared.metrics.events("redelivered", &name),
                        dead_lettered: shared.metrics.events("dead_lettered", &name),
                    },
                    lag_family: shared.metrics.clone(),
                    heartbeat_ms: AtomicU64::new(0),
                    born: std::time::Instant::now(),
                });
                tracing::info!(subscription = %name, topic = %sub.spec.topic, "consuming");
                consumers.insert(name, (sub.spec.clone(), tokio::spawn(consume(subscriber))));
            }
        }
        for (_, (_, task)) in consumers {
            task.abort();
        }
    });
}

/// Keeps this member in the group and one worker per owned partition.
async fn consume(sub: Arc<Subscriber>) {
    // Dropped with the consumer (a Subscription edited or deleted, a
    // drain): each worker is aborted, never left delivering on its own.
    let mut workers: HashMap<u32, Worker> = HashMap::new();
    let request = HeartbeatRequest {
        group: sub.group.clone(),
        topic: sub.spec.topic.clone(),
        member: sub.member.clone(),
        namespace: sub.namespace.clone(),
    };
    let _leave = Leave {
        sub: sub.clone(),
        request: request.clone(),
    };
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let assignment = match sub.control.heartbeat(request.clone()).await {
            Ok(a) => {
                sub.heartbeat_answered();
                a
            }
            Err(status) => {
                tracing::debug!(subscription = %sub.name, error = %status.message(), "heartbeat failed");
                continue;
            }
        };
        // A worker keeps its partition across generations only while it runs;
        // one that ended (moved away, then back) starts afresh.
        workers.retain(|partition, worker| {
            assignment.partitions.contains(partition) && !worker.0.is_finished()
        });
        for partition in &assignment.partitions {
            if workers.contains_key(partition) {
                continue;
            }
            let task = tokio::spawn(worker::run(sub.clone(), *partition, assignment.generation));
            workers.insert(*partition, Worker(task));
        }
    }
}

/// One partition's worker task, aborted when dropped: its partition moved,
/// or its consumer stopped.
struct Worker(JoinHandle<()>);

impl Drop for Worker {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Leaves the group when the consumer stops (its partitions move at once).
struct Leave {
    sub: Arc<Subscriber>,
    request: HeartbeatRequest,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let (control, request) = (self.sub.control.clone(), self.request.clone());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = control.leave(request).await;
            });
        }
    }
}

/// An RFC 3339 time (`2024-05-01T12:00:00Z`, `…T12:00:00.250+02:00`) as ms
/// since the Unix epoch.
pub(crate) fn rfc3339_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = text.get(from..from + len)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = text.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        let ms: String = digits.chars().chain("000".chars()).take(3).collect();
        millis = ms.parse().ok()?;
    }
    let offset_minutes = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let m = num(i + 1, 2)? * 60 + num(i + 4, 2)?;
            if *sign == b'-' {
                -m
            } else {
                m
            }
        }
        _ => return None,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    u64::try_from(secs * 1000 + millis).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_ms("2024-02-29T23:59:59.123Z"),
            Some(1_709_251_199_123)
        );
        assert_eq!(
            rfc3339_ms("2024-03-01T01:59:59.123+02:00"),
            Some(1_709_251_199_123)
        );
        assert_eq!(
            rfc3339_ms("2024-02-29T22:59:59.1-01:00"),
            Some(1_709_251_199_100)
        );
        for bad in [
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "2024-02-29T23:59:59",
            "x024-02-29T23:59:59Z",
        ] {
            assert_eq!(rfc3339_ms(bad), None, "{bad}");
        }
    }
}
