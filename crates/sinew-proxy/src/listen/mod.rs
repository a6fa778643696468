//! Listeners: accept connections, tell HTTP/2 (prior knowledge) from
//! HTTP/1 by the client preface, and hand each connection to its codec.
//! Opaque TCP listeners skip detection entirely (no sniffing delay).

mod detect;
mod tcp;

use detect::Detected;

use crate::server::{Direction, Shared};
use std::{io, net::SocketAddr, sync::Arc, time::Duration};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Binds `addr` with `SO_REUSEPORT`, so each worker thread owns a listener
/// on the same port and the kernel spreads connections across them.
pub(crate) fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// What a listener serves.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Serve {
    /// HTTP (1.1 or h2c) in the given direction.
    Http(Direction),
    /// Opaque TCP to the `listen.tcp` entry with this index.
    Tcp(usize),
    /// Opaque TCP inbound to the application.
    TcpInbound,
}

/// Accepts connections until the proxy drains.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, serve: Serve) {
    let mut drain = shared.drain_signal();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = drain.changed() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(conn) => conn,
            Err(error) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            handle(shared, serve, stream, peer).await;
        });
    }
}

async fn handle(shared: Arc<Shared>, serve: Serve, stream: TcpStream, peer: SocketAddr) {
    match serve {
        Serve::Http(direction) => {
            let _open = shared.metrics.connections(direction).open();
            let (idle, head) = {
                let runtime = shared.runtime();
                let spec = &runtime.config.proxy.spec;
                (spec.idle_timeout.into(), spec.request_header_timeout.into())
            };
            match detect::detect(&stream, idle, head).await {
                Detected::H2 => crate::http2::serve(shared, direction, stream, peer).await,
                Detected::Http1 => crate::http1::serve(shared, direction, stream, peer).await,
                Detected::Gone => {}
            }
        }
        Serve::Tcp(index) => {
            let _open = shared
                .metrics
                .connections(crate::telemetry::Direction::Tcp)
                .open();
            tcp::serve(shared, tcp::Target::Listener(index), stream, peer).await;
        }
        Serve::TcpInbound => {
            let _open = shared
                .metrics
                .connections(crate::telemetry::Direction::Inbound)
                .open();
            tcp::serve(shared, tcp::Target::App, stream, peer).await;
        }
    }
}
