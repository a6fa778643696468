//! Black-box test kit: spawns real `sinew` processes, real backends and real clients on loopback sockets.
//!
//! Tests written with it read like the scenario they check:
//!
//! ```no_run
//! # async fn scenario() {
//! use sinew_testkit::{Backend, Proxy};
//! let backend = Backend::http().name("v1").spawn().await;
//! let proxy = Proxy::builder("path/to/sinew").service("be", &[&backend]).spawn().await;
//! let resp = proxy.get("be", "/").await;
//! assert_eq!(resp.text(), "v1");
//! # }
//! ```
//!
//! Everything here is bounded in time: waits take a deadline and panic with the
//! captured diagnostics (for a proxy, its stderr) when it passes.
#![forbid(unsafe_code)]

mod app;
mod backend;
mod blackhole;
mod body;
mod broker;
mod client;
mod control;
mod curl;
mod etcd;
mod eventually;
mod external;
pub mod grpc;
mod h2load;
mod load;
mod nats;
mod nginx;
mod pki;
mod port;
mod process;
mod proxy;
mod raw;
mod resource;
mod tcp_echo;
mod tempdir;
mod tmpfs;
mod upstream;
mod websocket;

pub use app::serve_app;
pub use backend::{digest, pattern_bytes, Backend, BackendBuilder, RecordedRequest};
pub use blackhole::{AddrOnly, BlackHole};
pub use body::ChannelBody;
pub use broker::Broker;
pub use client::{ClientError, HttpClient, HttpVersion, Request, Response};
pub use control::{Control, ControlBuilder};
pub use curl::{Curl, CurlResponse};
pub use etcd::{Etcd, EtcdBuilder};
pub use external::{external_binary, require_external};
pub use grpc::{grpc_decode, grpc_encode, GrpcBackend, GrpcClient, GrpcReply};
pub use h2load::{H2load, H2loadReport};
pub use load::{Load, LoadHandle, LoadReport};
pub use nats::Nats;
pub use nginx::{Nginx, NginxBuilder};
pub use pki::{TestCa, TlsFiles};
pub use port::free_port;
pub use process::Process;
pub use proxy::{Proxy, ProxyBuilder, ProxyPorts};
pub use raw::{raw_exchange, RawResponse};
pub use resource::resource;
pub use tcp_echo::TcpEcho;
pub use tempdir::TempDir;
pub use tmpfs::Tmpfs;
pub use upstream::Upstream;
pub use websocket::{WsClient, WsEcho};

/// Re-exports used by this crate's macros; not part of the stable API.
#[doc(hidden)]
pub mod __private {
    pub use tokio;
}
