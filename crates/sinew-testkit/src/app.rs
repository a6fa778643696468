//! `serve_app`: a test app from one function — HTTP/1 on a free loopback
//! port, for the apps behind sidecars that record what reaches them (event
//! deliveries, for one).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// Serves HTTP/1 on a free loopback port until the runtime ends: each
/// request's head goes to `handle` as it arrives, then its body is read and
/// the answer is `handle`'s status with an empty body. Returns the address.
///
/// # Panics
/// When no loopback port can be bound.
pub async fn serve_app<F>(handle: F) -> SocketAddr
where
    F: Fn(&http::request::Parts) -> StatusCode + Clone + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind an app");
    let addr = listener.local_addr().expect("the app's address");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let handle = handle.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let handle = handle.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let status = handle(&parts);
                            let _ = body.collect().await;
                            let mut response = http::Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = status;
                            Ok::<_, Infallible>(response)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}
