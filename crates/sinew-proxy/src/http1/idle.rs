//! The stream idle timeout (`Proxy.spec.stream_idle_timeout`): while a
//! request is in flight, every wait on the network — for the client's body,
//! the upstream's response head or body, or a client to take its response —
//! must make progress within it. I/O that is ready at once (the common case)
//! arms no timer.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

/// `io`, or a `TimedOut` error when it makes no progress within `idle`.
pub(crate) async fn within<T, F>(idle: Duration, io: F) -> io::Result<T>
where
    F: Future<Output = io::Result<T>>,
{
    let mut io = pin!(io);
    if let Poll::Ready(done) = poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await {
        return done;
    }
    match tokio::time::timeout(idle, io).await {
        Ok(done) => done,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
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
        let ready = within(Duration::from_millis(10), async { Ok::<_, io::Error>(7) }).await;
        assert_eq!(ready.ok(), Some(7));
        let never = within(
            Duration::from_millis(10),
            std::future::pending::<io::Result<()>>(),
        )
        .await;
        assert!(never.as_ref().is_err_and(stalled), "{never:?}");
    }
}
