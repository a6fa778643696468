//! The proxy's workload identity: a key pair made here (the private key never
//! leaves the process), a CSR sent to the control plane, and the certificate
//! it signs for `spiffe://<trust-domain>/ns/<namespace>/svc/<service>`.
//! Renewed at two thirds of its lifetime, with a fresh key each time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sinew_model::Proxy;
use sinew_proto::{control_client::ControlClient, CertificateRequest};
use tonic::transport::Channel;

use super::Control;

/// How long to wait before asking again after a failed request.
pub(super) const RETRY: Duration = Duration::from_secs(1);

/// A certificate and its key, as issued.
#[derive(Clone)]
pub struct Identity {
    /// The SPIFFE ID the certificate names.
    pub id: String,
    /// The certificate, then any intermediates, PEM.
    pub chain_pem: String,
    /// The private key, PEM. Never logged, never served.
    pub key_pem: String,
    /// The roots to trust, PEM.
    pub bundle_pem: String,
    /// Validity, ms since the Unix epoch.
    pub not_before_ms: u64,
    /// Validity end, ms since the Unix epoch.
    pub not_after_ms: u64,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("id", &self.id)
            .field("not_before_ms", &self.not_before_ms)
            .field("not_after_ms", &self.not_after_ms)
            .finish_non_exhaustive()
    }
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Identity {
    /// When to renew: two thirds into the lifetime.
    pub fn renew_at_ms(&self) -> u64 {
        let life = self.not_after_ms.saturating_sub(self.not_before_ms);
        self.not_before_ms + life / 3 * 2
    }

    /// Time from now until it should be renewed (zero when due).
    pub(super) fn renew_in(&self) -> Duration {
        Duration::from_millis(self.renew_at_ms().saturating_sub(now_ms()))
    }

    /// What `GET /identity` shows: no key material beyond the public chain.
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "identity": self.id,
            "not_before_ms": self.not_before_ms,
            "not_after_ms": self.not_after_ms,
            "renew_at_ms": self.renew_at_ms(),
            "certificate_chain_pem": self.chain_pem,
            "trust_bundle_pem": self.bundle_pem,
        })
    }
}

/// Makes a key, sends its CSR, returns the issued identity.
pub(super) async fn request(
    channel: Channel,
    control: &Control,
    proxy: &Proxy,
) -> Result<Identity, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("cannot make a key: {e}"))?;
    let params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| format!("cannot make a CSR: {e}"))?;
    let csr = params
        .serialize_request(&key)
        .map_err(|e| format!("cannot make a CSR: {e}"))?;
    let request = CertificateRequest {
        proxy: proxy.metadata.name.clone(),
        namespace: proxy.metadata.namespace.clone(),
        service: proxy.spec.service.clone(),
        csr_der: csr.der().to_vec(),
    };
    let reply = ControlClient::new(channel)
        .issue_certificate(control.authorized(request))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    Ok(Identity {
        id: reply.identity,
        chain_pem: reply.certificate_chain_pem,
        key_pem: key.serialize_pem(),
        bundle_pem: reply.trust_bundle_pem,
        not_before_ms: reply.not_before_ms,
        not_after_ms: reply.not_after_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_two_thirds_in() {
        let id = Identity {
            id: "spiffe://x/ns/a/svc/b".into(),
            chain_pem: String::new(),
            key_pem: "secret".into(),
            bundle_pem: String::new(),
            not_before_ms: 1_000,
            not_after_ms: 31_000,
        };
        assert_eq!(id.renew_at_ms(), 21_000);
        assert_eq!(id.renew_in(), Duration::ZERO, "long past");
        assert!(
            !format!("{id:?}").contains("secret"),
            "the key is never printed"
        );
        assert!(!id.describe().to_string().contains("secret"));
    }
}
