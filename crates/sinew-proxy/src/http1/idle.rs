//! The stream idle timeout (`Proxy.spec.stream_idle_timeout`): while a
//! request is in flight, every wait on the network — for the client's body,
//! the upstream's response head or body, or a client to take its response —
//! must make progress within it.
//!
//! It costs the hot path no timer operation. I/O that is ready at once is
//! not timed at all. A wait that is not uses the connection's one timer (the
//! one that closes it when idle between requests), which only has to ring
//! *no later* than the wait's deadline: when it rings early (set for another
//! deadline), the deadline is checked and the timer re-armed, so it is moved
//! only when it rings or is set later than needed.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::time::Sleep;

/// A request's bound on waiting without progress, on its connection's timer.
#[derive(Debug)]
pub(crate) struct Stall<'t> {
    pub(crate) timer: Pin<&'t mut Sleep>,
    pub(crate) idle: Duration,
}

impl Stall<'_> {
    /// `io`, or a `TimedOut` error when it makes no progress within the idle
    /// timeout of `since` (`None`: from now, read only if `io` must wait).
    pub(crate) async fn within<T, F>(&mut self, since: Option<Instant>, io: F) -> io::Result<T>
    where
        F: Future<Output = io::Result<T>>,
    {
        let mut io = pin!(io);
        if let Poll::Ready(done) = poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await {
            return done;
        }
        let since = since.unwrap_or_else(Instant::now);
        let deadline = tokio::time::Instant::from_std(since + self.idle);
        if self.timer.deadline() > deadline {
            self.timer.as_mut().reset(deadline);
        }
        loop {
            tokio::select! {
                biased;
                done = &mut io => return done,
                () = self.timer.as_mut() => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                    self.timer.as_mut().reset(deadline);
                }
            }
        }
    }
}

/// Whether an I/O error is a stall past the idle timeout.
pub(crate) fn stalled(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::TimedOut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_io_passes_and_stalled_io_times_out() {
        let timer = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(timer);
        let mut stall = Stall {
            timer: timer.as_mut(),
            idle: Duration::from_millis(20),
        };
        let ready = stall.within(None, async { Ok::<_, io::Error>(7) }).await;
        assert_eq!(ready.ok(), Some(7));
        let never = stall
            .within(None, std::future::pending::<io::Result<()>>())
            .await;
        assert!(never.as_ref().is_err_and(stalled), "{never:?}");
    }

    #[tokio::test]
    async fn a_timer_set_for_an_earlier_deadline_is_re_armed_not_obeyed() {
        // The connection's timer rings first (its idle deadline); the wait
        // goes on until its own deadline.
        let timer = tokio::time::sleep(Duration::from_millis(5));
        tokio::pin!(timer);
        let mut stall = Stall {
            timer: timer.as_mut(),
            idle: Duration::from_millis(200),
        };
        let started = Instant::now();
        let io = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, io::Error>(())
        };
        assert!(stall.within(None, io).await.is_ok());
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
