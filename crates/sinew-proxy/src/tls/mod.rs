//! Mutual TLS between sidecars (rustls, TLS 1.3 only).
//!
//! A proxy holds one [`Material`] at a time — its workload certificate and
//! key, and the trust bundle — in a [`TlsState`] the control-plane client
//! (or, in static mode, the config loader) swaps when the certificate is
//! renewed. New connections use the new material; established ones keep the
//! session they negotiated, so renewal never drops a connection.
//!
//! Inbound, the client must present a certificate chaining to the bundle
//! and naming a SPIFFE ID, which becomes the request's peer identity (for
//! authorization, metrics and the access log). Outbound, the endpoint's
//! certificate must name exactly the SPIFFE ID the endpoint is registered
//! with ([`verify`]).

mod conn;
mod verify;

pub(crate) use conn::Conn;
pub(crate) use verify::spiffe_id;

use arc_swap::ArcSwapOption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::{fmt, io};
use tokio::net::TcpStream;

/// What an outbound connection offers by ALPN: the protocol the engine
/// will speak on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// `http/1.1`.
    Http1,
    /// `h2`.
    H2,
    /// Nothing: opaque TCP.
    Opaque,
}

impl Alpn {
    fn index(self) -> usize {
        self as usize
    }

    fn protocols(self) -> Vec<Vec<u8>> {
        match self {
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::H2 => vec![b"h2".to_vec()],
            Alpn::Opaque => Vec::new(),
        }
    }
}

/// The crypto provider (ring), shared by every config.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The one name every outbound handshake carries; SNI is off and the
/// verifier checks the SPIFFE ID instead, so it is never matched.
fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from("sinew.mesh")
            .unwrap_or_else(|_| unreachable!("a valid DNS name"))
            .to_owned(),
    )
}

/// A workload certificate, its key and the trust bundle, made into the
/// rustls configs both directions use.
pub struct Material {
    identity: Arc<str>,
    not_after_unix: u64,
    roots: Arc<RootCertStore>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    server: Arc<ServerConfig>,
    /// Client configs by the identity they expect, one per [`Alpn`].
    clients: Mutex<HashMap<Arc<str>, [Arc<ClientConfig>; 3]>>,
}

impl fmt::Debug for Material {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Material")
            .field("identity", &self.identity)
            .field("not_after_unix", &self.not_after_unix)
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

fn invalid(what: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Material {
    /// Builds the material from PEM text: the certificate chain (leaf
    /// first), its private key and the trust bundle.
    pub fn from_pem(chain_pem: &str, key_pem: &str, bundle_pem: &str) -> io::Result<Material> {
        let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(format!("certificate: {e}")))?;
        let leaf = chain
            .first()
            .ok_or_else(|| invalid("certificate: no CERTIFICATE block"))?;
        let identity: Arc<str> = spiffe_id(leaf)
            .ok_or_else(|| invalid("certificate: no SPIFFE ID (one spiffe:// URI SAN) in it"))?
            .into();
        let not_after_unix = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| invalid(format!("certificate: {e}")))?
            .1
            .validity()
            .not_after
            .timestamp();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| invalid(format!("key: {e}")))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
            let cert = cert.map_err(|e| invalid(format!("trust bundle: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("trust bundle: {e}")))?;
        }
        if roots.is_empty() {
            return Err(invalid("trust bundle: no CERTIFICATE block"));
        }
        let roots = Arc::new(roots);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| invalid(format!("trust bundle: {e}")))?;
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(invalid)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| invalid(format!("certificate and key: {e}")))?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // No resumption: nothing is sent after the handshake, so an idle
        // pooled connection stays quiet, and every peer proves itself anew.
        server.send_tls13_tickets = 0;
        server.session_storage = Arc::new(NoServerSessionStorage {});
        Ok(Material {
            identity,
            not_after_unix: u64::try_from(not_after_unix).unwrap_or(0),
            roots,
            chain,
            key,
            server: Arc::new(server),
            clients: Mutex::default(),
        })
    }

    /// This proxy's SPIFFE ID.
    pub fn identity(&self) -> &Arc<str> {
        &self.identity
    }

    /// When the certificate expires (seconds since the Unix epoch).
    pub fn not_after_unix(&self) -> u64 {
        self.not_after_unix
    }

    /// The client config that expects `peer`, offering `alpn`.
    fn client(&self, peer: &Arc<str>, alpn: Alpn) -> io::Result<Arc<ClientConfig>> {
        let mut clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(configs) = clients.get(peer) {
            return Ok(configs[alpn.index()].clone());
        }
        let verifier = verify::SpiffeServerVerifier::new(
            self.roots.clone(),
            provider().signature_verification_algorithms,
            verify::Expected::Exact(peer.clone()),
        );
        let mut base = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(invalid)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| invalid(format!("certificate and key: {e}")))?;
        base.enable_sni = false;
        base.resumption = rustls::client::Resumption::disabled();
        let configs = [Alpn::Http1, Alpn::H2, Alpn::Opaque].map(|alpn| {
            let mut config = base.clone();
            config.alpn_protocols = alpn.protocols();
            Arc::new(config)
        });
        let chosen = configs[alpn.index()].clone();
        clients.insert(peer.clone(), configs);
        Ok(chosen)
    }

    /// Opens mTLS on `tcp` to a sidecar that must prove `peer`.
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
        peer: &Arc<str>,
        alpn: Alpn,
    ) -> io::Result<Conn> {
        let config = self.client(peer, alpn)?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(server_name(), tcp)
            .await?;
        Ok(Conn::Client(Box::new(stream), peer.clone()))
    }

    /// Completes the server side of a handshake a peer sidecar began.
    pub(crate) async fn accept(&self, tcp: TcpStream) -> io::Result<Accepted> {
        let stream = tokio_rustls::TlsAcceptor::from(self.server.clone())
            .accept(tcp)
            .await?;
        let (_, session) = stream.get_ref();
        let peer = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| spiffe_id(leaf))
            .ok_or_else(|| invalid("the client certificate has no SPIFFE ID"))?;
        let h2 = session.alpn_protocol() == Some(b"h2");
        Ok(Accepted {
            conn: Conn::Server(Box::new(stream)),
            peer: peer.into(),
            h2,
        })
    }
}

/// The client config for the control plane's gRPC API: its certificate must
/// chain to `bundle_pem` and name `spiffe://<trust domain>/sinew/control`;
/// `client` (certificate chain and key PEM) is presented when given. ALPN `h2`.
pub(crate) fn control_client_config(
    bundle_pem: &str,
    client: Option<(&str, &str)>,
) -> io::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle_pem.as_bytes()) {
        let cert = cert.map_err(|e| invalid(format!("control-plane trust bundle: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| invalid(format!("control-plane trust bundle: {e}")))?;
    }
    if roots.is_empty() {
        return Err(invalid("control-plane trust bundle: no CERTIFICATE block"));
    }
    let verifier = verify::SpiffeServerVerifier::new(
        Arc::new(roots),
        provider().signature_verification_algorithms,
        verify::Expected::Path(CONTROL_PATH),
    );
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(invalid)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match client {
        Some((chain_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid(format!("certificate: {e}")))?;
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|e| invalid(format!("key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid(format!("certificate and key: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = false;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The control plane's SPIFFE path.
pub(crate) const CONTROL_PATH: &str = "/sinew/control";

/// Opens TLS to the control plane on `tcp`.
pub(crate) async fn connect_control(
    config: Arc<ClientConfig>,
    tcp: TcpStream,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    tokio_rustls::TlsConnector::from(config)
        .connect(server_name(), tcp)
        .await
}

/// An inbound mTLS connection, handshake done.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) conn: Conn,
    /// The client's SPIFFE ID.
    pub(crate) peer: Arc<str>,
    /// Whether ALPN chose `h2` (else HTTP/1.1, or opaque bytes).
    pub(crate) h2: bool,
}

/// The proxy's current TLS material, swapped on renewal.
#[derive(Debug, Default)]
pub struct TlsState {
    current: ArcSwapOption<Material>,
}

impl TlsState {
    /// The material in force, if the proxy has a certificate yet.
    pub fn current(&self) -> Option<Arc<Material>> {
        self.current.load_full()
    }

    /// Puts `material` in force for new connections.
    pub fn set(&self, material: Material) {
        self.current.store(Some(Arc::new(material)));
    }
}

/// The first byte of a TLS handshake record (a ClientHello).
pub(crate) const HANDSHAKE_RECORD: u8 = 0x16;
