//! Listeners: accept connections, tell HTTP/2 (prior knowledge) from
//! HTTP/1 by the client preface, and hand each connection to its codec.
//! Opaque TCP listeners skip detection entirely (no sniffing delay).

mod detect;
mod tcp;

use detect::Detected;

use crate::server::{Direction, Shared};
use sinew_model::MtlsMode;
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
    /// A gateway's ingress: HTTP (over TLS when configured) from outside
    /// the mesh, routed like outbound.
    Ingress,
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

/// Who is on the other end of a downstream connection.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// Its address.
    pub(crate) addr: SocketAddr,
    /// Its SPIFFE ID, when it proved one by mTLS (inbound only).
    pub(crate) identity: Option<Arc<str>>,
    /// Whether the connection is TLS (mTLS inbound, or a TLS ingress).
    pub(crate) secure: bool,
}

/// The header the inbound listener sets to the client's SPIFFE ID.
pub(crate) const CLIENT_ID_HEADER: &str = "x-sinew-client-id";

/// The scheme of a downstream connection, for `x-forwarded-proto`.
pub(crate) fn scheme(peer: &Peer) -> &'static str {
    if peer.secure {
        "https"
    } else {
        "http"
    }
}

impl Peer {
    fn plain(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            identity: None,
            secure: false,
        }
    }
}

async fn handle(shared: Arc<Shared>, serve: Serve, stream: TcpStream, addr: SocketAddr) {
    match serve {
        Serve::Http(Direction::Inbound) | Serve::TcpInbound => {
            let _open = shared.metrics.connections(Direction::Inbound).open();
            inbound(shared, serve, stream, addr).await;
        }
        Serve::Http(direction) => {
            let _open = shared.metrics.connections(direction).open();
            http(shared, direction, stream, Peer::plain(addr)).await;
        }
        Serve::Ingress => {
            let _open = shared.metrics.connections(Direction::Ingress).open();
            ingress(shared, stream, addr).await;
        }
        Serve::Tcp(index) => {
            let _open = shared
                .metrics
                .connections(crate::telemetry::Direction::Tcp)
                .open();
            let target = tcp::Target::Listener(index);
            tcp::serve(shared, target, stream.into(), Peer::plain(addr)).await;
        }
    }
}

/// A plaintext HTTP connection: HTTP/2 by its preface, else HTTP/1.
async fn http(shared: Arc<Shared>, direction: Direction, stream: TcpStream, peer: Peer) {
    let (idle, head) = timeouts(&shared);
    match detect::detect(&stream, idle, head).await {
        Detected::H2 => crate::http2::serve(shared, direction, stream.into(), peer).await,
        Detected::Http1 => crate::http1::serve(shared, direction, stream.into(), peer).await,
        Detected::Gone => {}
    }
}

fn timeouts(shared: &Shared) -> (Duration, Duration) {
    let runtime = shared.runtime();
    let spec = &runtime.config.proxy.spec;
    (spec.idle_timeout.into(), spec.request_header_timeout.into())
}

/// A client of a gateway: TLS with the SNI-chosen certificate when the
/// ingress has certificates (then ALPN picks the protocol), else plaintext.
async fn ingress(shared: Arc<Shared>, stream: TcpStream, addr: SocketAddr) {
    let Some(config) = shared.ingress_tls() else {
        return http(shared, Direction::Ingress, stream, Peer::plain(addr)).await;
    };
    let (_, head) = timeouts(&shared);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let tls = match tokio::time::timeout(head, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(error)) => {
            tracing::debug!(%error, peer = %addr, "ingress TLS handshake failed");
            return;
        }
        Err(_) => return,
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let conn = crate::tls::Conn::Server(Box::new(tls));
    let peer = Peer {
        addr,
        identity: None,
        secure: true,
    };
    if h2 {
        crate::http2::serve(shared, Direction::Ingress, conn, peer).await;
    } else {
        crate::http1::serve(shared, Direction::Ingress, conn, peer).await;
    }
}

/// A connection from another sidecar (or, in plaintext modes, anyone), as
/// the Mesh's `mtls` mode says: `strict` takes only mTLS, `permissive` tells
/// a TLS ClientHello from plaintext by its first byte, `disabled` takes
/// plaintext only.
async fn inbound(shared: Arc<Shared>, serve: Serve, stream: TcpStream, addr: SocketAddr) {
    let mode = shared.runtime().mtls();
    let (idle, head) = timeouts(&shared);
    let tls = match mode {
        MtlsMode::Disabled => false,
        MtlsMode::Strict | MtlsMode::Permissive => {
            let mut first = [0u8; 1];
            match tokio::time::timeout(idle, stream.peek(&mut first)).await {
                Ok(Ok(1)) => first[0] == crate::tls::HANDSHAKE_RECORD,
                _ => return,
            }
        }
    };
    if !tls {
        if mode == MtlsMode::Strict {
            shared.metrics.inbound_tls_refused("plaintext").inc();
            refuse_plaintext(stream).await;
            return;
        }
        let peer = Peer::plain(addr);
        return match serve {
            Serve::TcpInbound => tcp::serve(shared, tcp::Target::App, stream.into(), peer).await,
            _ => http(shared, Direction::Inbound, stream, peer).await,
        };
    }
    let Some(material) = shared.tls.current() else {
        shared.metrics.inbound_tls_refused("no_certificate").inc();
        tracing::debug!(peer = %addr, "mTLS refused: no workload certificate yet");
        return;
    };
    let accepted = match tokio::time::timeout(head, material.accept(stream)).await {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(error)) => {
            // A client that hangs up mid-handshake (or right after its last
            // message, as `openssl s_time` does) was not refused.
            let reason = match error.kind() {
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof => "client_closed",
                _ => "handshake",
            };
            shared.metrics.inbound_tls_refused(reason).inc();
            tracing::debug!(%error, peer = %addr, "inbound mTLS handshake failed");
            return;
        }
        Err(_) => {
            shared.metrics.inbound_tls_refused("handshake").inc();
            return;
        }
    };
    shared.metrics.inbound_tls(&accepted.peer).inc();
    let peer = Peer {
        addr,
        identity: Some(accepted.peer),
        secure: true,
    };
    match serve {
        Serve::TcpInbound => tcp::serve(shared, tcp::Target::App, accepted.conn, peer).await,
        _ if accepted.h2 => {
            crate::http2::serve(shared, Direction::Inbound, accepted.conn, peer).await;
        }
        _ => crate::http1::serve(shared, Direction::Inbound, accepted.conn, peer).await,
    }
}

/// Answers a plaintext connection to a strict inbound listener: an HTTP/1
/// client is told why (403) before the connection closes.
async fn refuse_plaintext(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const BODY: &str =
        "mutual TLS required: this inbound listener accepts only mTLS from mesh sidecars\n";
    let response = format!(
        "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         x-sinew-error: mtls_required\r\nconnection: close\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    // Read what the client sent (briefly) so closing does not reset the
    // connection before it has read the answer.
    let mut sink = [0u8; 4096];
    let drain = async {
        while let Ok(n) = stream.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
