//! HTTP/2 prior-knowledge detection from the client connection preface.

use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client opens with the HTTP/2 preface. Peeks without
/// consuming; an HTTP/1 request is told apart by its first byte.
pub(crate) async fn is_h2_prior_knowledge(stream: &TcpStream) -> bool {
    let mut buf = [0u8; PREFACE.len()];
    loop {
        let n = match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if buf[..n] != PREFACE[..n] {
            return false;
        }
        if n == PREFACE.len() {
            return true;
        }
        // A prefix of the preface: wait for more bytes.
        if stream.readable().await.is_err() {
            return false;
        }
        tokio::task::yield_now().await;
    }
}
