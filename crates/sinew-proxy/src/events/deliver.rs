//! Delivering one event to the app: `POST {deliver.path}` with the
//! CloudEvent in binary mode, the outcome read from the answer, retries with
//! exponential backoff and full jitter, and dead-lettering.
//!
//! | app answers | outcome |
//! |---|---|
//! | 2xx (body not `{"status":"RETRY"}`/`"DROP"`) | delivered |
//! | 2xx with `{"status":"DROP"}`, 404, 410, another 4xx | dead-letter now (retrying cannot help) |
//! | 2xx with `{"status":"RETRY"}`, 408, 429, 5xx, a timeout, no connection | retry; dead-letter after `max_attempts` |

use bytes::Bytes;
use http::{header, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use sinew_proto::Event;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::net::TcpStream;

/// How long one delivery attempt may take.
pub(super) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle keep-alive connections kept to the app.
const MAX_IDLE: usize = 64;
/// Largest app answer read (only `{"status": …}` matters).
const MAX_ANSWER: usize = 4096;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Attempt {
    /// The app took it.
    Delivered,
    /// Worth trying again (with the reason).
    Retry(String),
    /// Retrying cannot help: dead-letter now (with the reason).
    Drop(String),
}

/// Keep-alive HTTP/1.1 connections to the app.
#[derive(Debug)]
pub(super) struct AppClient {
    app: SocketAddr,
    idle: Mutex<Vec<SendRequest<Full<Bytes>>>>,
}

impl AppClient {
    pub(super) fn new(app: SocketAddr) -> Self {
        Self {
            app,
            idle: Mutex::new(Vec::new()),
        }
    }

    async fn connection(&self) -> std::io::Result<SendRequest<Full<Bytes>>> {
        loop {
            let Some(mut tx) = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()
            else {
                break;
            };
            if tx.ready().await.is_ok() {
                return Ok(tx);
            }
        }
        let tcp = TcpStream::connect(self.app).await?;
        tcp.set_nodelay(true)?;
        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(tx)
    }

    fn keep(&self, tx: SendRequest<Full<Bytes>>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE && !tx.is_closed() {
            idle.push(tx);
        }
    }

    /// One attempt to deliver `event` (of `topic`) to `path`.
    pub(super) async fn attempt(&self, path: &str, topic: &str, event: &Event) -> Attempt {
        match tokio::time::timeout(ATTEMPT_TIMEOUT, self.post(path, topic, event)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Attempt::Retry(format!("cannot reach the app: {e}")),
            Err(_) => Attempt::Retry(format!("no answer within {ATTEMPT_TIMEOUT:?}")),
        }
    }

    async fn post(&self, path: &str, topic: &str, event: &Event) -> std::io::Result<Attempt> {
        let request = request(path, &self.app.to_string(), topic, event)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut tx = self.connection().await?;
        let response = tx
            .send_request(request)
            .await
            .map_err(std::io::Error::other)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        self.keep(tx);
        Ok(outcome(status, &body))
    }
}

/// The binary-mode request for `event`: `ce-*` headers, the data as body.
fn request(
    path: &str,
    host: &str,
    topic: &str,
    event: &Event,
) -> Result<Request<Full<Bytes>>, String> {
    let mut builder = Request::post(path)
        .header(header::HOST, host)
        .header("ce-id", event.id.as_str())
        .header("ce-sinewtopic", topic);
    if !event.key.is_empty() {
        let key = HeaderValue::from_bytes(&event.key)
            .map_err(|_| "the partition key is not a valid header value")?;
        builder = builder.header("ce-partitionkey", key);
    }
    for (name, value) in &event.headers {
        let name = if name == "datacontenttype" {
            header::CONTENT_TYPE.as_str().to_owned()
        } else {
            format!("ce-{name}")
        };
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("attribute `{name}` is not a valid header value"))?;
        builder = builder.header(name, value);
    }
    builder
        .body(Full::new(event.data.clone()))
        .map_err(|e| e.to_string())
}

/// The outcome an answer means.
pub(super) fn outcome(status: StatusCode, body: &[u8]) -> Attempt {
    if status.is_success() {
        let asked = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("status")?.as_str().map(str::to_ascii_uppercase));
        return match asked.as_deref() {
            Some("RETRY") => Attempt::Retry("the app asked to retry".into()),
            Some("DROP") => Attempt::Drop("the app dropped it".into()),
            _ => Attempt::Delivered,
        };
    }
    let reason = format!("the app answered {}", status.as_u16());
    match status.as_u16() {
        408 | 429 | 500..=599 => Attempt::Retry(reason),
        _ => Attempt::Drop(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_outcomes() {
        assert_eq!(outcome(StatusCode::OK, b""), Attempt::Delivered);
        assert_eq!(
            outcome(StatusCode::NO_CONTENT, b"{\"status\":\"SUCCESS\"}"),
            Attempt::Delivered
        );
        assert!(matches!(
            outcome(StatusCode::OK, b"{\"status\":\"retry\"}"),
            Attempt::Retry(_)
        ));
        assert!(matches!(
            outcome(StatusCode::OK, b"{\"status\":\"DROP\"}"),
            Attempt::Drop(_)
        ));
        for s in [404, 410, 400, 403] {
            assert!(
                matches!(
                    outcome(StatusCode::from_u16(s).unwrap(), b""),
                    Attempt::Drop(_)
                ),
                "{s}"
            );
        }
        for s in [408, 429, 500, 503] {
            assert!(
                matches!(
                    outcome(StatusCode::from_u16(s).unwrap(), b""),
                    Attempt::Retry(_)
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn binary_mode_request() {
        let event = Event {
            id: "e-1".into(),
            key: Bytes::from_static(b"k"),
            timestamp_ms: 1,
            headers: [
                ("type".to_owned(), "t".to_owned()),
                ("datacontenttype".to_owned(), "application/json".to_owned()),
            ]
            .into_iter()
            .collect(),
            data: Bytes::from_static(b"{}"),
        };
        let r = request("/events", "127.0.0.1:1", "orders", &event).expect("valid");
        assert_eq!(r.headers()["ce-id"], "e-1");
        assert_eq!(r.headers()["ce-partitionkey"], "k");
        assert_eq!(r.headers()["ce-type"], "t");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.headers()["ce-sinewtopic"], "orders");
    }
}
