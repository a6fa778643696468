//! HTTP/2 prior-knowledge detection from the client connection preface.

use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a new connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detected {
    /// The HTTP/2 client preface.
    H2,
    /// Anything else: HTTP/1 (told apart by its first byte or two).
    Http1,
    /// Closed, silent for `idle`, or too slow with its preface: drop it.
    Gone,
}

/// Tells HTTP/2 prior knowledge from HTTP/1 by peeking, without consuming.
/// The first byte may take up to `idle` (an idle connection); a preface
/// begun must be complete within `head` of it (no slowloris here either).
pub(crate) async fn detect(stream: &TcpStream, idle: Duration, head: Duration) -> Detected {
    let mut buf = [0u8; PREFACE.len()];
    let mut n = match timeout(idle, stream.peek(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => n,
        _ => return Detected::Gone,
    };
    let deadline = Instant::now() + head;
    // Peeking leaves the bytes in the socket, so readiness stays set and
    // waiting on it would spin: a split preface (rare) is polled instead,
    // backing off from 1 ms to 50 ms.
    let mut pause = Duration::from_millis(1);
    loop {
        if buf[..n] != PREFACE[..n] {
            return Detected::Http1;
        }
        if n == PREFACE.len() {
            return Detected::H2;
        }
        if timeout_at(deadline, tokio::time::sleep(pause))
            .await
            .is_err()
        {
            return Detected::Gone;
        }
        pause = (pause * 2).min(Duration::from_millis(50));
        n = match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return Detected::Gone,
            Ok(n) => n,
        };
    }
}
