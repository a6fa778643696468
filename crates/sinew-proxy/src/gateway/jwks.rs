//! JWKS fetched from URLs: one slot per (URL, refresh), shared by every
//! config that names it, fetched at once and then every `refresh` (sooner,
//! with backoff, while fetches fail). The last good key set stays in force
//! when a fetch fails.

use super::jwt::{Jwks, MAX_JWKS_LEN};
use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;
use tokio::net::TcpStream;

/// Longest a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait after a failed fetch; doubles up to the refresh interval.
const RETRY_MIN: Duration = Duration::from_secs(1);

/// One JWKS URL's current keys.
#[derive(Debug)]
pub(crate) struct JwksSlot {
    url: String,
    refresh: Duration,
    keys: ArcSwapOption<Jwks>,
    fetching: AtomicBool,
}

impl JwksSlot {
    /// The last key set fetched, if any.
    pub(crate) fn keys(&self) -> Option<Arc<Jwks>> {
        self.keys.load_full()
    }
}

/// The slots by (URL, refresh), kept while a config uses them.
#[derive(Debug, Default)]
pub struct JwksRegistry {
    slots: Mutex<HashMap<(String, Duration), Weak<JwksSlot>>>,
}

impl JwksRegistry {
    /// The slot for `url`, created when no live config uses it yet.
    pub(crate) fn slot(&self, url: &str, refresh: Duration) -> Arc<JwksSlot> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (url.to_owned(), refresh);
        if let Some(slot) = slots.get(&key).and_then(Weak::upgrade) {
            return slot;
        }
        slots.retain(|_, weak| weak.strong_count() > 0);
        let slot = Arc::new(JwksSlot {
            url: url.to_owned(),
            refresh,
            keys: ArcSwapOption::empty(),
            fetching: AtomicBool::new(false),
        });
        slots.insert(key, Arc::downgrade(&slot));
        slot
    }

    /// Starts a fetch loop (on the current runtime) for every slot that has
    /// none; a loop ends once no config uses its slot.
    pub fn start_fetching(&self) {
        let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in slots.values().filter_map(Weak::upgrade) {
            if !slot.fetching.swap(true, Ordering::AcqRel) {
                tokio::spawn(fetch_loop(Arc::downgrade(&slot)));
            }
        }
    }
}

async fn fetch_loop(slot: Weak<JwksSlot>) {
    let mut retry = RETRY_MIN;
    loop {
        let Some(current) = slot.upgrade() else {
            return;
        };
        let outcome = match tokio::time::timeout(FETCH_TIMEOUT, fetch(&current.url)).await {
            Ok(Ok(body)) => Jwks::parse(&body).map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!("no answer within {FETCH_TIMEOUT:?}")),
        };
        let wait = match outcome {
            Ok(keys) => {
                tracing::debug!(url = %current.url, keys = keys.len(), "JWKS fetched");
                current.keys.store(Some(Arc::new(keys)));
                retry = RETRY_MIN;
                current.refresh
            }
            Err(error) => {
                tracing::warn!(url = %current.url, %error, "cannot fetch the JWKS; keeping the last keys");
                let wait = retry.min(current.refresh);
                retry = (retry * 2).min(current.refresh);
                wait
            }
        };
        drop(current);
        tokio::time::sleep(wait).await;
    }
}

/// GETs `url` (http or https, verified against the system's roots) and
/// returns a 200 body of at most [`MAX_JWKS_LEN`] bytes.
async fn fetch(url: &str) -> Result<Bytes, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("bad URL: {e}"))?;
    let https = uri.scheme_str() == Some("https");
    let host = uri.host().ok_or("the URL has no host")?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = http::Request::get(path)
        .header(
            http::header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        )
        .header(http::header::ACCEPT, "application/json")
        .header(http::header::USER_AGENT, "sinew-gateway")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    if https {
        let name = ServerName::try_from(host).map_err(|e| format!("bad host: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(client_config()?)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        send(tls, request).await
    } else {
        send(tcp, request).await
    }
}

async fn send<S>(io: S, request: http::Request<Empty<Bytes>>) -> Result<Bytes, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let response = tx.send_request(request).await.map_err(|e| e.to_string())?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("answered {}", response.status()));
    }
    Limited::new(response.into_body(), MAX_JWKS_LEN)
        .collect()
        .await
        .map(|body| body.to_bytes())
        .map_err(|e| format!("reading the body: {e}"))
}

/// The client config for https JWKS URLs: the system's trust store
/// (`SSL_CERT_FILE`, else Debian's bundle), loaded once.
fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let path: std::path::PathBuf = std::env::var_os("SSL_CERT_FILE")
                .map_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into(), Into::into);
            let pem = std::fs::read(&path)
                .map_err(|e| format!("cannot read the trust store {}: {e}", path.display()))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                let _ = roots.add(cert);
            }
            rustls::ClientConfig::builder_with_provider(crate::tls::provider())
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| e.to_string())
        })
        .clone()
}
