//! HTTP/2 (h2c prior knowledge) proxying on hyper: gRPC and other h2
//! traffic keeps its protocol upstream, with one multiplexed connection per
//! endpoint and worker; bodies and trailers stream through untouched.

mod activity;
mod client;
mod replay;
mod server;

pub(crate) use server::serve;
