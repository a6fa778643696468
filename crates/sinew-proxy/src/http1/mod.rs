//! HTTP/1.1 proxying, written for the hot path: heads parsed in place,
//! rewritten in one pass, and the upstream exchange run inside the
//! downstream connection's task with pooled keep-alive connections.

mod attempt;
mod body;
mod chunked;
mod exchange;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
mod head;
mod idle;
mod server;
mod write;

pub(crate) use server::serve;
