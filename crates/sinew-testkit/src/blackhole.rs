//! Endpoints that misbehave at the TCP level: an address nothing listens on,
//! and a listener whose backlog is full so connects hang.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::upstream::Upstream;

/// An endpoint that is only an address: connections are refused when
/// nothing listens there (see [`crate::free_port`]).
#[derive(Debug, Clone, Copy)]
pub struct AddrOnly(pub SocketAddr);

impl Upstream for AddrOnly {
    fn addr(&self) -> SocketAddr {
        self.0
    }
}

/// A listener that never accepts, its backlog filled: further connects
/// hang until the caller's connect timeout.
#[derive(Debug)]
pub struct BlackHole {
    addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl BlackHole {
    /// Binds a free loopback port and fills its backlog.
    pub async fn spawn() -> BlackHole {
        let socket = TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind");
        let listener = socket.listen(0).expect("listen");
        let addr = listener.local_addr().expect("local addr");
        let mut fillers = Vec::new();
        for _ in 0..4 {
            if let Ok(Ok(stream)) =
                tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
            {
                fillers.push(stream);
            }
        }
        BlackHole {
            addr,
            _listener: listener,
            _fillers: fillers,
        }
    }
}

impl Upstream for BlackHole {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}
