//! TLS on the proxies' gRPC API. The control plane serves a certificate its
//! own CA issues for `spiffe://<trust-domain>/sinew/control` (reissued at two
//! thirds of its lifetime, and as soon as the CA changes), and asks clients
//! for theirs without requiring one: a proxy joins with the join token, and
//! once it holds a workload certificate it connects with that instead. The
//! client's SPIFFE ID, when it sent a certificate, reaches the service as
//! [`PeerIdentity`].

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use x509_parser::extensions::GeneralName;

use crate::replica::Replica;

/// The control plane's SPIFFE path, under the mesh's trust domain.
pub(crate) const CONTROL_PATH: &str = "/sinew/control";
/// Lifetime of the serving certificate.
const SERVING_TTL: Duration = Duration::from_secs(24 * 3600);
/// How often the CA is checked for a change (rotation) and the certificate for renewal.
const CHECK_EVERY: Duration = Duration::from_secs(10);
/// A client must finish its handshake within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The SPIFFE ID a client's certificate proved.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerIdentity(pub(crate) Option<String>);

/// A gRPC connection over TLS.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TlsStream<TcpStream>,
    peer: PeerIdentity,
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = PeerIdentity;

    fn connect_info(&self) -> PeerIdentity {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The SPIFFE ID of a DER certificate: its only URI SAN, when `spiffe://`.
pub(crate) fn spiffe_id(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let id = uris.next()?;
    (uris.next().is_none() && id.starts_with("spiffe://")).then(|| id.to_owned())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server config for the current CA: a fresh serving certificate, and
/// the CA's bundle to check client certificates against. Also returns when
/// the certificate should be renewed and the bundle it trusts.
async fn server_config(
    replica: &Replica,
) -> Result<(Arc<rustls::ServerConfig>, u64, String), String> {
    let ca = replica.ca().await.map_err(|e| e.to_string())?;
    let (domain, _) = replica.mesh_identity();
    let identity = format!("spiffe://{domain}{CONTROL_PATH}");
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.serialize_request(&key))
        .map_err(|e| e.to_string())?;
    let issued = ca.issue(csr.der().as_ref(), &identity, SERVING_TTL)?;
    let chain = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let key =
        PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(issued.bundle_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| e.to_string())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let life = issued.not_after_ms.saturating_sub(issued.not_before_ms);
    let renew_at = issued.not_before_ms + life / 3 * 2;
    Ok((Arc::new(config), renew_at, issued.bundle_pem))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Serves TLS on `listener`: returns the stream of handshaken connections
/// for tonic, and keeps the certificate (and `bundle_file`, the trust
/// bundle proxies bootstrap with) current in the background.
pub(crate) async fn incoming(
    listener: TcpListener,
    replica: Arc<Replica>,
    bundle_file: PathBuf,
) -> Result<tokio_stream::wrappers::ReceiverStream<io::Result<Conn>>, String> {
    let (config, mut renew_at, mut bundle) = server_config(&replica).await?;
    // Proxies bootstrap from this file; failing to refresh it (a full disk)
    // must not keep the control plane down.
    if let Err(error) = write_bundle(&bundle_file, &bundle) {
        tracing::warn!(%error, "cannot write the trust bundle file");
    }
    let current = Arc::new(ArcSwap::new(config));
    {
        let current = current.clone();
        tokio::spawn(async move {
            let mut signer = replica.ca().await.ok().map(|c| Arc::as_ptr(&c) as usize);
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let now_signer = replica.ca().await.ok().map(|c| Arc::as_ptr(&c) as usize);
                if now_signer == signer && now_ms() < renew_at {
                    continue;
                }
                match server_config(&replica).await {
                    Ok((config, at, new_bundle)) => {
                        current.store(config);
                        renew_at = at;
                        signer = now_signer;
                        if new_bundle != bundle {
                            if let Err(error) = write_bundle(&bundle_file, &new_bundle) {
                                tracing::warn!(%error, "cannot rewrite the trust bundle file");
                            }
                            bundle = new_bundle;
                        }
                        tracing::info!("gRPC serving certificate reissued");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot reissue the gRPC serving certificate")
                    }
                }
            }
        });
    }
    Ok(accept(listener, current))
}

/// Serves TLS on `listener` with one fixed certificate and no client
/// certificates (the standalone broker's: its clients carry its token).
pub(crate) fn incoming_fixed(
    listener: TcpListener,
    cert_pem: &str,
    key_pem: &str,
) -> Result<tokio_stream::wrappers::ReceiverStream<io::Result<Conn>>, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the certificate: {e}"))?;
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("the key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(accept(listener, Arc::new(ArcSwap::from_pointee(config))))
}

/// Accepts connections on `listener` and handshakes each with the config
/// `current` holds at its accept, handing the connections to tonic.
fn accept(
    listener: TcpListener,
    current: Arc<ArcSwap<rustls::ServerConfig>>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(current.load_full());
            let tx = tx.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let peer = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|leaf| spiffe_id(leaf));
                        let _ = tx
                            .send(Ok(Conn {
                                stream,
                                peer: PeerIdentity(peer),
                            }))
                            .await;
                    }
                    Ok(Err(error)) => tracing::debug!(%error, %addr, "gRPC TLS handshake failed"),
                    Err(_) => tracing::debug!(%addr, "gRPC TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Writes the trust bundle proxies use to verify the control plane, unless
/// the file already holds it.
fn write_bundle(path: &std::path::Path, pem: &str) -> Result<(), String> {
    if std::fs::read_to_string(path).is_ok_and(|current| current == pem) {
        return Ok(());
    }
    let tmp = path.with_extension("pem.tmp");
    std::fs::write(&tmp, pem)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
