//! The HTTP side: JSON posted to etcd's gateway at the first member that
//! answers, moving on to the next member when one cannot be reached.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Response, StatusCode};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::wire::GatewayError;
use crate::store::{LeaseId, StoreError};

/// Bound on connecting to one member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Bound on one unary call (etcd's own request timeout is 5 s plus elections).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// TCP keep-alive, so a watch on a vanished member ends instead of hanging.
const TCP_KEEPALIVE: Duration = Duration::from_secs(15);

/// Whether a call may be sent again to another member after it was sent once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replay {
    /// Reads and lease refreshes: repeating them changes nothing.
    Safe,
    /// Writes: only when the request surely never left (connect failed).
    OnlyUnsent,
}

/// How one attempt at one member failed.
enum Failure {
    /// The request was never sent: connection refused, connect timeout.
    Unsent(String),
    /// Sent, but no answer came: the write may or may not have happened.
    Lost(String),
    /// The member answered with an error.
    Store(StoreError),
}

#[derive(Debug)]
pub(super) struct Gateway {
    urls: Vec<String>,
    /// The member that answered last; calls start there.
    current: AtomicUsize,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Gateway {
    pub(super) fn new(urls: &[String]) -> Result<Gateway, StoreError> {
        if urls.is_empty() {
            return Err(StoreError::Unavailable("no etcd URL given".into()));
        }
        let mut clean = Vec::with_capacity(urls.len());
        for url in urls {
            let url = url.trim_end_matches('/');
            let uri: hyper::Uri = url
                .parse()
                .map_err(|e| StoreError::Unavailable(format!("bad etcd URL `{url}`: {e}")))?;
            if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                return Err(StoreError::Unavailable(format!(
                    "bad etcd URL `{url}`: expected http://HOST:PORT"
                )));
            }
            clean.push(url.to_owned());
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(TCP_KEEPALIVE));
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Gateway {
            urls: clean,
            current: AtomicUsize::new(0),
            client,
        })
    }

    pub(super) fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Members in the order to try them: the last that answered, then the rest.
    fn rotation(&self) -> impl Iterator<Item = usize> + '_ {
        let n = self.urls.len();
        let start = self.current.load(Ordering::Relaxed) % n;
        (0..n).map(move |i| (start + i) % n)
    }

    async fn post(
        &self,
        member: usize,
        path: &str,
        body: &Value,
    ) -> Result<Response<Incoming>, Failure> {
        let request = hyper::Request::post(format!("{}{path}", self.urls[member]))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| Failure::Store(StoreError::Internal(e.to_string())))?;
        match self.client.request(request).await {
            Ok(response) => Ok(response),
            Err(e) if e.is_connect() => Err(Failure::Unsent(describe(&e))),
            Err(e) => Err(Failure::Lost(describe(&e))),
        }
    }

    /// Posts `body` to `path` and reads the whole reply as `T`; `lease` names
    /// the lease involved, for [`StoreError::LeaseNotFound`].
    pub(super) async fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &Value,
        replay: Replay,
        lease: LeaseId,
    ) -> Result<T, StoreError> {
        self.each_member(replay, |member| async move {
            let response = self.post(member, path, body).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Failure::Lost(describe(&e)))?
                .to_bytes();
            decode(status, &bytes, lease).map_err(Failure::Store)
        })
        .await
    }

    /// Posts `body` to the streaming endpoint `path`: the reply's lines, once
    /// a member accepted the call.
    pub(super) async fn stream(&self, path: &str, body: &Value) -> Result<Lines, StoreError> {
        self.each_member(Replay::Safe, |member| async move {
            let response = self.post(member, path, body).await?;
            let status = response.status();
            if status == StatusCode::OK {
                return Ok(Lines::new(response.into_body()));
            }
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Failure::Lost(describe(&e)))?
                .to_bytes();
            Err(Failure::Store(
                decode::<Value>(status, &bytes, 0).err().unwrap_or_else(|| {
                    StoreError::Internal(format!("etcd answered {status} to {path}"))
                }),
            ))
        })
        .await
    }

    /// Runs `attempt` at each member in turn until one answers (or, for a
    /// write, until the request may have been received).
    async fn each_member<T, F, Fut>(&self, replay: Replay, attempt: F) -> Result<T, StoreError>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut failures = Vec::new();
        for member in self.rotation() {
            let url = &self.urls[member];
            let failure = match tokio::time::timeout(CALL_TIMEOUT, attempt(member)).await {
                Ok(Ok(value)) => {
                    self.current.store(member, Ordering::Relaxed);
                    return Ok(value);
                }
                Ok(Err(failure)) => failure,
                Err(_) => Failure::Lost(format!("no answer within {CALL_TIMEOUT:?}")),
            };
            match failure {
                Failure::Unsent(e) => failures.push(format!("{url}: {e}")),
                Failure::Lost(e) if replay == Replay::Safe => failures.push(format!("{url}: {e}")),
                Failure::Store(StoreError::Unavailable(e)) if replay == Replay::Safe => {
                    failures.push(format!("{url}: {e}"));
                }
                Failure::Lost(e) => return Err(StoreError::Unavailable(format!("{url}: {e}"))),
                Failure::Store(e) => return Err(e),
            }
            tracing::debug!(url, "etcd member did not answer; trying the next");
        }
        Err(StoreError::Unavailable(format!(
            "no etcd member answers: {}",
            failures.join("; ")
        )))
    }
}

/// An error with its sources, which hold the useful part (`connection refused`).
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A unary reply: `T` on 200, else the gateway's error body.
fn decode<T: DeserializeOwned>(
    status: StatusCode,
    body: &[u8],
    lease: LeaseId,
) -> Result<T, StoreError> {
    if status == StatusCode::OK {
        return serde_json::from_slice(body).map_err(|e| {
            StoreError::Internal(format!("etcd reply is not what was expected: {e}"))
        });
    }
    match serde_json::from_slice::<GatewayError>(body) {
        Ok(error) => Err(error.into_store_error(lease)),
        Err(_) => Err(StoreError::Internal(format!(
            "etcd answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))),
    }
}

/// A streaming reply split into its newline-delimited JSON messages.
#[derive(Debug)]
pub(super) struct Lines {
    body: Incoming,
    buf: BytesMut,
}

impl Lines {
    fn new(body: Incoming) -> Lines {
        Lines {
            body,
            buf: BytesMut::new(),
        }
    }

    /// The next message; `Ok(None)` when the stream ended. Cancel-safe.
    pub(super) async fn next(&mut self) -> Result<Option<Bytes>, StoreError> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(end + 1).freeze();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Ok(Some(line));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(StoreError::Unavailable(describe(&e))),
                None if self.buf.iter().all(u8::is_ascii_whitespace) => return Ok(None),
                None => return Ok(Some(std::mem::take(&mut self.buf).freeze())),
            }
        }
    }
}
