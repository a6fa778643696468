//! The runtime configuration: a `sinew_model` snapshot compiled into the
//! immutable tables the request path reads (route table, clusters with their
//! balancers and pools, metric handles). A new config is compiled off the
//! request path and swapped in whole.

mod cluster;
mod compile;
mod kept;

pub use cluster::{Cluster, Endpoint, HashPolicy, UpstreamTls};
pub use compile::{compile, CompileError, Registries, Runtime, TcpTarget};
pub use kept::{Kept, KeptStates};
