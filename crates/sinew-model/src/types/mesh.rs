//! `Mesh`: mesh-wide settings (trust domain, mTLS mode, certificate lifetime).

use super::{Location, Metadata};
use crate::Duration;

/// Mesh-wide settings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Mesh {
    /// Name, namespace and labels.
    pub metadata: Metadata,
    /// The settings.
    pub spec: MeshSpec,
    /// Where it was read from (not serialized, ignored by `==`).
    #[serde(skip)]
    pub location: Location,
}

/// `Mesh.spec`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MeshSpec {
    /// SPIFFE trust domain (lowercase DNS name). Default `sinew.local`.
    pub trust_domain: String,
    /// mTLS between sidecars. Default `strict`.
    pub mtls: MtlsMode,
    /// Lifetime of workload certificates. Default 24h.
    pub cert_ttl: Duration,
}

impl Default for MeshSpec {
    fn default() -> Self {
        Self {
            trust_domain: "sinew.local".to_owned(),
            mtls: MtlsMode::Strict,
            cert_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// mTLS mode between sidecars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MtlsMode {
    /// Only mTLS accepted and sent.
    #[default]
    Strict,
    /// mTLS sent; plaintext also accepted inbound.
    Permissive,
    /// Plaintext.
    Disabled,
}
