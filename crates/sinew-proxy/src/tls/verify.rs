//! Peer verification by SPIFFE ID: a certificate must chain to the trust
//! bundle (the usual WebPKI path checks, validity included) and carry exactly
//! one URI SAN, the SPIFFE ID. Outbound, that ID must be the one the
//! endpoint is known by; DNS names play no part.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore};
use std::sync::Arc;
use x509_parser::extensions::GeneralName;

/// The SPIFFE ID of a certificate: its only URI SAN, when that is a
/// `spiffe://` URI (X.509-SVID: exactly one).
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

/// The identity a server must prove.
#[derive(Debug, Clone)]
pub(crate) enum Expected {
    /// Exactly this SPIFFE ID (a sidecar).
    Exact(Arc<str>),
    /// Any SPIFFE ID with this path, in whatever trust domain the bundle
    /// vouches for (the control plane: `/sinew/control`).
    Path(&'static str),
}

impl Expected {
    fn admits(&self, id: &str) -> bool {
        match self {
            Expected::Exact(expected) => id == &**expected,
            Expected::Path(path) => id
                .strip_prefix("spiffe://")
                .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
                .is_some_and(|p| p == *path),
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Exact(id) => f.write_str(id),
            Expected::Path(path) => write!(f, "spiffe://<trust domain>{path}"),
        }
    }
}

/// Why a peer's certificate names the wrong workload.
#[derive(Debug)]
struct IdentityMismatch {
    expected: Expected,
    presented: Option<String>,
}

impl std::fmt::Display for IdentityMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.presented {
            Some(got) => write!(f, "peer is {got}, expected {}", self.expected),
            None => write!(
                f,
                "peer certificate has no SPIFFE ID, expected {}",
                self.expected
            ),
        }
    }
}

impl std::error::Error for IdentityMismatch {}

/// Verifies an upstream sidecar's certificate against the trust bundle and
/// the one identity this connection expects.
#[derive(Debug)]
pub(crate) struct SpiffeServerVerifier {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
    expected: Expected,
}

impl SpiffeServerVerifier {
    pub(crate) fn new(
        roots: Arc<RootCertStore>,
        algorithms: WebPkiSupportedAlgorithms,
        expected: Expected,
    ) -> Self {
        Self {
            roots,
            algorithms,
            expected,
        }
    }
}

impl ServerCertVerifier for SpiffeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        let presented = spiffe_id(end_entity);
        if !presented
            .as_deref()
            .is_some_and(|id| self.expected.admits(id))
        {
            let mismatch = IdentityMismatch {
                expected: self.expected.clone(),
                presented,
            };
            return Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(mismatch)),
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
