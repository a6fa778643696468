//! Small HTTP/1 helpers: JSON responses for the REST API and a one-shot GET
//! for external health checks.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::{BodyExt, Full};

/// A response body.
pub(crate) type Body = Full<Bytes>;

/// `status` with a JSON body.
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// `status` with `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, &serde_json::json!({ "error": message.into() }))
}

/// Connections the REST listener serves at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 1024;

/// How long a request head may take to arrive (slowloris), as the
/// sidecar's `request_header_timeout` default.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves HTTP/1 on `listener` with `handle` until the task is dropped.
/// Before any token is checked a client can only hold a connection for
/// [`HEADER_TIMEOUT`] per head, and at most [`MAX_CONNECTIONS`] of them.
pub(crate) async fn serve<F, Fut>(listener: tokio::net::TcpListener, handle: F)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response<Body>, std::convert::Infallible>>
        + Send
        + 'static,
{
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, _) = match listener.accept().await {
            Ok(x) => x,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(handle);
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(io, service)
                .await;
            drop(slot);
        });
    }
}

/// `200` with a Prometheus text-format body.
pub(crate) fn prometheus(text: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

/// GETs `url` (`http://host:port/path`) once; returns the status code.
pub(crate) async fn get_status(url: &str) -> Result<u16, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad url `{url}`: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("only http:// checks are supported, not `{url}`"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("no host in `{url}`"))?
        .clone();
    let address = if authority.port().is_some() {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(header::USER_AGENT, "sinew-control-check")
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let _ = response.into_body().collect().await;
    Ok(status)
}
