//! The ingress listener's TLS: certificates picked by the client's SNI
//! (exact names first, then the longest `*.suffix`), the first certificate
//! for clients that send no name or an unknown one. TLS 1.2 and 1.3, ALPN
//! `h2` and `http/1.1`.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sinew_model::IngressTls;
use std::collections::HashMap;
use std::sync::Arc;

/// Picks a certificate by server name.
#[derive(Debug)]
struct Resolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// (`.suffix`, key), longest suffix first.
    wildcard: Vec<(String, Arc<CertifiedKey>)>,
    default: Arc<CertifiedKey>,
}

impl Resolver {
    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        self.wildcard
            .iter()
            .find(|(suffix, _)| {
                // `*.b.test` matches exactly one more label: `a.b.test`.
                name.strip_suffix(suffix.as_str())
                    .is_some_and(|label| !label.is_empty() && !label.contains('.'))
            })
            .map_or_else(|| self.default.clone(), |(_, key)| key.clone())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// Reads the certificate files of `tls` into a server config.
pub(crate) fn server_config(tls: &IngressTls) -> Result<Arc<ServerConfig>, String> {
    let provider = crate::tls::provider();
    let mut exact = HashMap::new();
    let mut wildcard = Vec::new();
    let mut default = None;
    for (i, c) in tls.certificates.iter().enumerate() {
        let what = |field: &str| format!("listen.ingress.tls.certificates[{i}].{field}");
        let pem = std::fs::read(&c.cert)
            .map_err(|e| format!("cannot read {} {}: {e}", what("cert"), c.cert.display()))?;
        let chain = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", what("cert")))?;
        if chain.is_empty() {
            return Err(format!("{}: no CERTIFICATE block", what("cert")));
        }
        let key = PrivateKeyDer::from_pem_file(&c.key)
            .map_err(|e| format!("{} {}: {e}", what("key"), c.key.display()))?;
        let signing = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| format!("{}: {e}", what("key")))?;
        let certified = Arc::new(CertifiedKey::new(chain, signing));
        certified
            .keys_match()
            .map_err(|e| format!("{} does not match {}: {e}", what("key"), what("cert")))?;
        default.get_or_insert_with(|| certified.clone());
        for host in &c.hosts {
            match host.strip_prefix('*') {
                Some(suffix) => wildcard.push((suffix.to_owned(), certified.clone())),
                None => {
                    exact
                        .entry(host.clone())
                        .or_insert_with(|| certified.clone());
                }
            }
        }
    }
    wildcard.sort_by_key(|(suffix, _)| std::cmp::Reverse(suffix.len()));
    let default = default.ok_or("listen.ingress.tls needs a certificate")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver {
            exact,
            wildcard,
            default,
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
