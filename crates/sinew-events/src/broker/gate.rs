//! `Gate`: counts the broker's operations in flight so `close` can stop new
//! ones and wait for the rest before it closes the logs.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::error::{Error, Result};

/// The count of operations in flight and whether the broker is closing.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// Operations in flight.
    active: AtomicUsize,
    /// Set by `close`: no new operation passes.
    closed: AtomicBool,
    /// Woken when `active` drops to zero.
    idle: Notify,
}

/// One operation in flight; dropping it ends the operation.
#[derive(Debug)]
pub(crate) struct Pass(Arc<Gate>);

impl Gate {
    /// Starts an operation, or `Error::Closed` once the broker is closing.
    pub(crate) fn enter(self: &Arc<Self>) -> Result<Pass> {
        self.active.fetch_add(1, Ordering::SeqCst);
        let pass = Pass(Arc::clone(self));
        if self.closed.load(Ordering::SeqCst) {
            return Err(Error::Closed);
        }
        Ok(pass)
    }

    /// Stops new operations; `false` if it was already closed.
    pub(crate) fn close(&self) -> bool {
        !self.closed.swap(true, Ordering::SeqCst)
    }

    /// Waits until no operation is in flight.
    pub(crate) async fn idle(&self) {
        loop {
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.active.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

impl Pass {
    /// Another pass for work this operation hands to a task of its own
    /// (it counts even while the broker is closing: it is part of an
    /// operation that was let in).
    pub(crate) fn share(&self) -> Pass {
        self.0.active.fetch_add(1, Ordering::SeqCst);
        Pass(Arc::clone(&self.0))
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn close_waits_for_operations_in_flight() {
        let gate = Arc::new(Gate::default());
        let pass = gate.enter().expect("open");
        let shared = pass.share();
        assert!(gate.close());
        assert!(!gate.close());
        assert!(matches!(gate.enter(), Err(Error::Closed)));
        let waiter = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.idle().await }
        });
        drop(pass);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(shared);
        waiter.await.expect("idle");
    }
}
