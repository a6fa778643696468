//! Gateway mode: the ingress listener where traffic from outside the mesh
//! enters. It terminates TLS with the certificate the client's SNI selects
//! ([`sni`]), routes by Route resources like the outbound listener, and
//! checks the end-user JWT a Route asks for ([`jwt`]) against keys from a
//! file or a JWKS URL refreshed in the background ([`jwks`]).

pub(crate) mod jwks;
#[allow(dead_code)]
// the module's full API (claims accessors, key listings) is wider than the gateway's use
pub(crate) mod jwt;
pub(crate) mod sni;

use crate::error::{ErrorKind, ProxyError};
use crate::route::HeaderSource;
use jwks::{JwksRegistry, JwksSlot};
use sinew_model::{JwksSource, JwtRule};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where a policy's keys are.
#[derive(Debug)]
enum Keys {
    /// Read from a file when the config was compiled.
    File(jwt::Jwks),
    /// Fetched from a URL, refreshed in the background.
    Url(Arc<JwksSlot>),
}

/// A Route's compiled `jwt`.
#[derive(Debug)]
pub(crate) struct JwtPolicy {
    validation: jwt::Validation,
    keys: Keys,
}

impl JwtPolicy {
    /// Compiles `rule`: a key file is read (and must hold a usable JWKS)
    /// now; a URL is handed to the registry, which fetches it.
    pub(crate) fn compile(rule: &JwtRule, registry: &JwksRegistry) -> Result<JwtPolicy, String> {
        let keys = match &rule.jwks {
            JwksSource::File(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| format!("cannot read jwks.file {}: {e}", path.display()))?;
                let set = jwt::Jwks::parse(&bytes)
                    .map_err(|e| format!("jwks.file {}: {e}", path.display()))?;
                Keys::File(set)
            }
            JwksSource::Url { url, refresh } => Keys::Url(registry.slot(url, (*refresh).into())),
        };
        Ok(JwtPolicy {
            validation: jwt::Validation {
                issuers: rule.issuers.clone(),
                audiences: rule.audiences.clone(),
                leeway_secs: std::time::Duration::from(rule.leeway).as_secs(),
                require_exp: true,
            },
            keys,
        })
    }

    /// Checks the request's `Authorization: Bearer` token; 401 unless it
    /// verifies and its claims hold.
    pub(crate) fn check(&self, headers: &dyn HeaderSource) -> Result<(), ProxyError> {
        let unauthorized = |why: String| ProxyError::caused_by(ErrorKind::Unauthorized, why);
        let token = headers
            .header("authorization")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(jwt::bearer_token)
            .ok_or_else(|| unauthorized("no bearer token".into()))?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let fetched;
        let set = match &self.keys {
            Keys::File(set) => set,
            Keys::Url(slot) => {
                fetched = slot
                    .keys()
                    .ok_or_else(|| unauthorized("the signing keys are not fetched yet".into()))?;
                &fetched
            }
        };
        jwt::verify(token, set, &self.validation, now)
            .map(drop)
            .map_err(|e| unauthorized(e.to_string()))
    }
}
