//! The checker: one task per endpoint probing at the check's interval
//! (first probe after a random jitter), feeding each result to the
//! endpoint's shared [`EndpointHealth`].

use super::probe::probe;
use super::state::{EndpointHealth, Thresholds};
use sinew_model::HealthCheck;
use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{runtime::Handle, task::JoinHandle, time::MissedTickBehavior};
use tracing::{info, warn};

/// Shortest interval between probes, whatever the config says.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// One endpoint to check.
#[derive(Debug, Clone)]
pub struct Target {
    /// The service the endpoint belongs to (sent as `Host` / `:authority`).
    pub service: Arc<str>,
    /// The endpoint's address.
    pub addr: SocketAddr,
    /// mTLS to the endpoint, when it is a meshed sidecar.
    pub tls: Option<crate::config::UpstreamTls>,
    /// How to check it.
    pub check: HealthCheck,
    /// Where results go; shared with the request path, kept across reloads.
    pub state: Arc<EndpointHealth>,
}

impl Target {
    /// Whether `other` needs no new task in place of this one's.
    fn same_as(&self, other: &Target) -> bool {
        self.service == other.service
            && self.addr == other.addr
            && self.tls.as_ref().map(|t| &t.identity) == other.tls.as_ref().map(|t| &t.identity)
            && self.check == other.check
            && Arc::ptr_eq(&self.state, &other.state)
    }
}

/// Starts health checking.
#[derive(Debug)]
pub struct HealthChecker;

impl HealthChecker {
    /// Starts one checking task per target on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, like `tokio::spawn`.
    pub fn spawn(targets: Vec<Target>) -> HealthCheckerHandle {
        let mut handle = HealthCheckerHandle {
            runtime: Handle::current(),
            tasks: HashMap::new(),
        };
        handle.replace(targets);
        handle
    }
}

#[derive(Debug)]
struct Task {
    target: Target,
    join: JoinHandle<()>,
}

/// The running checks: dropping it (or [`stop`](Self::stop)) ends them all.
#[derive(Debug)]
pub struct HealthCheckerHandle {
    runtime: Handle,
    tasks: HashMap<(Arc<str>, SocketAddr), Task>,
}

impl HealthCheckerHandle {
    /// Applies a new target list (on config reload): tasks of unchanged
    /// targets keep running on their schedule; changed ones restart (their
    /// state lives on in its `Arc`); removed ones stop. Targets are keyed by
    /// service and address; of duplicates, the last wins.
    pub fn replace(&mut self, targets: Vec<Target>) {
        let mut old = std::mem::take(&mut self.tasks);
        for target in targets {
            let key = (target.service.clone(), target.addr);
            if let Some(task) = old.remove(&key) {
                if task.target.same_as(&target) && !task.join.is_finished() {
                    self.tasks.insert(key, task);
                    continue;
                }
                task.join.abort();
            }
            let join = self.runtime.spawn(run(target.clone()));
            if let Some(previous) = self.tasks.insert(key, Task { target, join }) {
                previous.join.abort();
            }
        }
        for task in old.into_values() {
            task.join.abort();
        }
    }

    /// How many endpoints are being checked.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether no endpoint is being checked.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every check.
    pub fn stop(&mut self) {
        for (_, task) in self.tasks.drain() {
            task.join.abort();
        }
    }
}

impl Drop for HealthCheckerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A random delay in `[0, interval)`, so probes of many endpoints spread out.
fn jitter(interval: Duration) -> Duration {
    let nanos = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(if nanos == 0 {
        0
    } else {
        fastrand::u64(..nanos)
    })
}

async fn run(target: Target) {
    let interval = target.check.interval.0.max(MIN_INTERVAL);
    let thresholds = Thresholds::from(&target.check);
    let start = tokio::time::Instant::now() + jitter(interval);
    let mut ticks = tokio::time::interval_at(start, interval);
    // A probe that takes long (up to its timeout) delays the next one rather
    // than causing a burst.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = probe(
            &target.service,
            target.addr,
            target.tls.as_ref(),
            &target.check,
        )
        .await;
        if !target.state.record(result.is_ok(), thresholds) {
            continue;
        }
        match result {
            Err(error) => {
                warn!(
                    service = %target.service,
                    endpoint = %target.addr,
                    %error,
                    "endpoint unhealthy"
                );
                target.state.set_last_error(Some(error.to_string()));
            }
            Ok(()) => info!(
                service = %target.service,
                endpoint = %target.addr,
                "endpoint healthy again"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_below_the_interval() {
        let interval = Duration::from_millis(20);
        for _ in 0..1000 {
            assert!(jitter(interval) < interval);
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }
}
