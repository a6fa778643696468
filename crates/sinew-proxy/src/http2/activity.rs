//! Whether an HTTP/2 connection is idle: streams count as in flight from
//! the request's arrival until its response body is done, so a connection
//! is idle only with none of them (a header block still arriving is not a
//! stream yet, which is how it gets cut off).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Streams in flight on one connection, and when the last one finished.
#[derive(Debug)]
pub(super) struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to the last stream's end.
    last_ms: AtomicU64,
}

/// One stream in flight; its drop marks the connection active until now.
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Activity {
    pub(super) fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    pub(super) fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the connection will have been idle for `idle`; `None` while a
    /// stream is in flight.
    fn idle_at(&self, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(self.opened + last + idle)
    }

    /// Resolves once no stream has been in flight for `idle`.
    pub(super) async fn idle_for(&self, idle: Duration) {
        loop {
            let at = self.idle_at(idle).unwrap_or_else(|| Instant::now() + idle);
            tokio::time::sleep_until(at.into()).await;
            if self.idle_at(idle).is_some_and(|at| at <= Instant::now()) {
                return;
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.opened.elapsed().as_millis() as u64;
        activity.last_ms.fetch_max(now, Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Release);
    }
}
