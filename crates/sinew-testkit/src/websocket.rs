//! WebSocket echo server (`WsEcho`) and client (`WsClient`), over tokio-tungstenite.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::upstream::Upstream;

const WS_TIMEOUT: Duration = Duration::from_secs(10);

/// A WebSocket server that echoes every text and binary message back.
#[derive(Debug)]
pub struct WsEcho {
    addr: SocketAddr,
    upgrades: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl WsEcho {
    /// Binds a free loopback port and starts accepting WebSocket upgrades.
    pub async fn spawn() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind websocket listener");
        let addr = listener.local_addr().expect("websocket local address");
        let upgrades = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&upgrades);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    while let Some(Ok(msg)) = ws.next().await {
                        let reply = match msg {
                            Message::Text(_) | Message::Binary(_) => msg,
                            Message::Close(_) => break,
                            _ => continue,
                        };
                        if ws.send(reply).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            upgrades,
            task,
        }
    }

    /// Its listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many WebSocket handshakes completed.
    pub fn upgrades(&self) -> u64 {
        self.upgrades.load(Ordering::SeqCst)
    }
}

impl Upstream for WsEcho {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A WebSocket client connection.
#[derive(Debug)]
pub struct WsClient {
    ws: WebSocketStream<TcpStream>,
}

impl WsClient {
    /// Connects to `addr` and upgrades `ws://{host}{path}` (so `Host: host`,
    /// which routes it when `addr` is a proxy's outbound listener).
    pub async fn connect(addr: SocketAddr, host: &str, path: &str) -> Result<Self, String> {
        let attempt = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            let url = format!("ws://{host}{path}");
            let (ws, _resp) = tokio_tungstenite::client_async(url, stream)
                .await
                .map_err(|e| format!("websocket handshake: {e}"))?;
            Ok(Self { ws })
        };
        tokio::time::timeout(WS_TIMEOUT, attempt)
            .await
            .map_err(|_| "websocket connect timed out".to_owned())?
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| format!("websocket send: {e}"))
    }

    /// Receives the next text message (other data frames fail).
    pub async fn recv_text(&mut self) -> Result<String, String> {
        let next = tokio::time::timeout(WS_TIMEOUT, self.ws.next())
            .await
            .map_err(|_| "websocket receive timed out".to_owned())?;
        match next {
            Some(Ok(Message::Text(text))) => Ok(text.as_str().to_owned()),
            Some(Ok(other)) => Err(format!("expected a text message, got {other:?}")),
            Some(Err(e)) => Err(format!("websocket receive: {e}")),
            None => Err("websocket closed".to_owned()),
        }
    }

    /// Sends a close frame and waits for the peer's.
    pub async fn close(mut self) -> Result<(), String> {
        self.ws
            .close(None)
            .await
            .map_err(|e| format!("websocket close: {e}"))
    }
}
