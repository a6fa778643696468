//! The channel to a standalone broker: its `https://HOST:PORT` URL, TLS
//! 1.3 trusting only the broker's own certificate, one lazily connected,
//! self-reconnecting HTTP/2 channel for tonic.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The channel to the broker at `url`, trusting `cert_pem`; it connects at
/// the first call.
///
/// # Errors
/// [`Error::InvalidConfig`] for a URL that is not `https://HOST:PORT` or a
/// certificate that does not parse.
pub(super) fn open(url: &str, cert_pem: &str) -> Result<Channel> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| Error::InvalidConfig("the broker URL is not https://HOST:PORT"))?;
    if uri.scheme_str() != Some("https") || uri.host().is_none() || uri.port_u16().is_none() {
        return Err(Error::InvalidConfig(
            "the broker URL is not https://HOST:PORT",
        ));
    }
    let host = uri
        .host()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let server_name = ServerName::try_from(host)
        .map_err(|_| Error::InvalidConfig("the broker URL's host is not a name or address"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(cert_pem.as_bytes()) {
        let cert = cert.map_err(|_| Error::InvalidConfig("the broker certificate is not PEM"))?;
        roots
            .add(cert)
            .map_err(|_| Error::InvalidConfig("the broker certificate is not usable"))?;
    }
    if roots.is_empty() {
        return Err(Error::InvalidConfig(
            "the broker certificate file holds no certificate",
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|_| Error::InvalidConfig("TLS 1.3 is not available"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = Connector {
        tls: Arc::new(tls),
        server_name,
    };
    // tonic sees plain h2 through the connector, which does the TLS.
    let plain = format!("http://{}", uri.authority().map_or("", |a| a.as_str()));
    let channel = Endpoint::from_shared(plain)
        .map_err(|_| Error::InvalidConfig("the broker URL is not https://HOST:PORT"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect_with_connector_lazy(connector);
    Ok(channel)
}

/// Opens the TLS connections tonic asks for, to the broker's certificate.
#[derive(Debug, Clone)]
struct Connector {
    tls: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

type Connected = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower_service::Service<http::Uri> for Connector {
    type Response = Connected;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Connected>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let (tls, name) = (self.tls.clone(), self.server_name.clone());
        Box::pin(async move {
            let host = uri
                .host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                .ok_or_else(|| std::io::Error::other("the broker URL has no host"))?;
            let port = uri
                .port_u16()
                .ok_or_else(|| std::io::Error::other("the broker URL has no port"))?;
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}
