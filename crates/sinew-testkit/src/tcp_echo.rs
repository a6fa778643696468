//! `TcpEcho`: a TCP server that writes back every byte it reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::upstream::Upstream;

/// A running TCP echo server on a loopback port.
#[derive(Debug)]
pub struct TcpEcho {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TcpEcho {
    /// Binds a free loopback port and starts echoing.
    pub async fn spawn() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind echo listener");
        let addr = listener.local_addr().expect("echo local address");
        let connections = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut rd, mut wr) = stream.split();
                    // The peer going away ends the echo; nothing else to do.
                    let _ = tokio::io::copy(&mut rd, &mut wr).await;
                });
            }
        });
        Self {
            addr,
            connections,
            task,
        }
    }

    /// Its listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many connections it has accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Upstream for TcpEcho {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}
