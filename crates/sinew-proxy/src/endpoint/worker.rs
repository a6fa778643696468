//! Which worker thread the current task runs on, for per-worker (uncontended) state.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `index`; called once when a worker starts.
pub fn set_current_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// The index of the worker thread running the caller (0 outside workers).
pub fn current_worker() -> usize {
    WORKER.with(Cell::get)
}
