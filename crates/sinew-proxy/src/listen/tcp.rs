//! Opaque TCP proxying: pick an endpoint, connect, splice bytes both ways.

use super::Peer;
use crate::server::Shared;
use crate::telemetry::TcpMetrics;
use crate::tls::{Alpn, Conn};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Where a TCP connection goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// The `listen.tcp` entry with this index (outbound).
    Listener(usize),
    /// The application (inbound).
    App,
}

/// A TCP connection has no headers: hash balancers use the source IP.
struct NoHeaders;

impl crate::route::HeaderSource for NoHeaders {
    fn header(&self, _: &str) -> Option<&[u8]> {
        None
    }
}

/// Proxies one TCP connection until either side closes.
pub(crate) async fn serve(shared: Arc<Shared>, target: Target, mut down: Conn, peer: Peer) {
    let runtime = shared.runtime();
    let (cluster, metrics): (_, &Arc<TcpMetrics>) = match target {
        Target::Listener(index) => match runtime.tcp.get(index) {
            Some(t) => (&runtime.clusters[t.cluster], &t.metrics),
            None => return,
        },
        Target::App => match &runtime.inbound {
            Some(inbound) => (&inbound.cluster, &inbound.tcp),
            None => return,
        },
    };
    let picked = cluster.pick(
        &crate::route::RequestView {
            method: "",
            path: "/",
            query: None,
            headers: &NoHeaders,
        },
        peer.addr,
    );
    let Some(index) = picked else {
        tracing::debug!(service = %cluster.service, "no endpoint for TCP connection");
        return;
    };
    let endpoint = &cluster.endpoints[index];
    let mut up =
        match crate::endpoint::connect(endpoint, Alpn::Opaque, cluster.connect_timeout).await {
            Ok(up) => {
                endpoint.telemetry.connects.inc();
                up
            }
            Err(error) => {
                endpoint.telemetry.connect_errors.inc();
                tracing::debug!(%error, upstream = %endpoint.addr, "TCP connect failed");
                let _ = down.shutdown().await;
                return;
            }
        };
    let load = cluster.balancer.load(index).start();
    let started = std::time::Instant::now();
    if let Ok((to_up, to_down)) = tokio::io::copy_bidirectional(&mut down, &mut up).await {
        metrics.to_upstream.add(to_up);
        metrics.to_downstream.add(to_down);
    }
    load.finish(started.elapsed());
}
