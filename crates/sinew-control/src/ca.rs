//! The mesh's certificate authority: a root made on first start (or the
//! operator's root or intermediate), kept in the store so every replica signs
//! with it, and workload certificates signed from proxies' CSRs — the private
//! key never leaves the proxy. Identities are SPIFFE IDs,
//! `spiffe://<trust-domain>/ns/<namespace>/svc/<service>`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};

use crate::{
    keys,
    store::{Compare, Op, Store, StoreError},
};

/// The CA's lifetime when Sinew makes it.
const ROOT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Certificates start this long before they are issued (clock skew).
const BACKDATE: Duration = Duration::from_secs(60);
/// Shortest and longest workload certificate lifetime.
const MIN_TTL: Duration = Duration::from_secs(5);
const MAX_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// What the store keeps at `ca/signer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    /// The signing certificate (the root, or the operator's intermediate), PEM.
    cert_pem: String,
    /// Its private key, PEM.
    key_pem: String,
    /// Every root to trust, PEM (the signer's root first; more during a rotation).
    bundle_pem: String,
    /// Intermediates between the signer and its root, PEM (sent with each leaf).
    chain_pem: String,
}

/// A signer, ready.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    stored: Stored,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// An issued workload certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Issued {
    pub(crate) chain_pem: String,
    pub(crate) bundle_pem: String,
    pub(crate) identity: String,
    pub(crate) not_before_ms: u64,
    pub(crate) not_after_ms: u64,
}

/// The operator's own CA (`--ca-cert`, `--ca-key`, optional `--ca-bundle`).
#[derive(Debug, Clone)]
pub struct UserCa {
    /// The signing certificate, PEM (a root, or an intermediate followed by its chain).
    pub cert_pem: String,
    /// Its key, PEM.
    pub key_pem: String,
    /// The roots to trust, PEM; default: the last certificate of `cert_pem`.
    pub bundle_pem: Option<String>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("certificate authority: {e}"))
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn pem_blocks(pem: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in pem.lines() {
        if line.starts_with("-----BEGIN") {
            current.clear();
        }
        current.push_str(line);
        current.push('\n');
        if line.starts_with("-----END") {
            out.push(std::mem::take(&mut current));
        }
    }
    out
}

impl Ca {
    /// The CA in the store and the revision it was read at, created (or
    /// taken from `user`) on first start. Replicas racing to create it
    /// agree: the first write wins.
    pub(crate) async fn load_or_create(
        store: &dyn Store,
        user: Option<&UserCa>,
    ) -> Result<(u64, Ca), StoreError> {
        loop {
            if let Some(current) = Ca::current(store).await? {
                return Ok(current);
            }
            let value = serde_json::to_vec(&signer(user).map_err(err)?).map_err(err)?;
            let guard = vec![Compare::ModRevision(keys::CA.to_owned(), 0)];
            store.txn(guard, vec![Op::put(keys::CA, value)]).await?;
        }
    }

    /// The CA as stored now, and the revision it was read at (`None`: not made yet).
    pub(crate) async fn current(store: &dyn Store) -> Result<Option<(u64, Ca)>, StoreError> {
        match store.get(keys::CA).await? {
            Some(kv) => {
                let stored: Stored = serde_json::from_slice(&kv.value).map_err(err)?;
                Ok(Some((kv.mod_revision, Ca::from_stored(stored)?)))
            }
            None => Ok(None),
        }
    }

    /// Starts a root rotation: `next` (or a fresh root) signs from now on,
    /// and the bundle holds the new root and every root trusted before, so
    /// certificates of either chain verify during the overlap. Returns the
    /// number of roots trusted.
    pub(crate) async fn rotate(store: &dyn Store, next: Option<&UserCa>) -> Result<usize, String> {
        let kv = store
            .get(keys::CA)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no CA yet")?;
        let old: Stored = serde_json::from_slice(&kv.value).map_err(|e| e.to_string())?;
        let mut new = signer(next)?;
        let mut roots = pem_blocks(&new.bundle_pem);
        for root in pem_blocks(&old.bundle_pem) {
            if !roots.contains(&root) {
                roots.push(root);
            }
        }
        new.bundle_pem = roots.concat();
        write(store, kv.mod_revision, &new).await?;
        Ok(roots.len())
    }

    /// Ends a rotation: only the signer's own roots stay trusted.
    pub(crate) async fn finish_rotation(store: &dyn Store) -> Result<usize, String> {
        let kv = store
            .get(keys::CA)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no CA yet")?;
        let mut s: Stored = serde_json::from_slice(&kv.value).map_err(|e| e.to_string())?;
        let roots = pem_blocks(&s.bundle_pem);
        let Some(first) = roots.first() else {
            return Err("the trust bundle is empty".into());
        };
        s.bundle_pem = first.clone();
        write(store, kv.mod_revision, &s).await?;
        Ok(1)
    }

    fn from_stored(stored: Stored) -> Result<Ca, StoreError> {
        let key = KeyPair::from_pem(&stored.key_pem).map_err(err)?;
        let issuer = Issuer::from_ca_cert_pem(&stored.cert_pem, key).map_err(err)?;
        Ok(Ca { issuer, stored })
    }

    /// The roots to trust, PEM.
    pub(crate) fn bundle_pem(&self) -> &str {
        &self.stored.bundle_pem
    }

    /// Signs `csr_der` for `identity` (a SPIFFE URI) valid for `ttl`. The CSR's
    /// own subject and names are ignored: the identity is the control plane's
    /// to give.
    pub(crate) fn issue(
        &self,
        csr_der: &[u8],
        identity: &str,
        ttl: Duration,
    ) -> Result<Issued, String> {
        let ttl = ttl.clamp(MIN_TTL, MAX_TTL);
        let csr = CertificateSigningRequestParams::from_der(&csr_der.to_vec().into())
            .map_err(|e| format!("bad certificate signing request: {e}"))?;
        let now = SystemTime::now();
        // Backdated for clock skew, but never by much of a short lifetime:
        // proxies renew two thirds into [not_before, not_after].
        let not_before = now - BACKDATE.min(ttl / 10);
        let not_after = now + ttl;
        let mut params = CertificateParams::default();
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.subject_alt_names =
            vec![SanType::URI(identity.try_into().map_err(|e| {
                format!("identity `{identity}` is not a valid URI: {e}")
            })?)];
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "sinew");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let signed = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        }
        .signed_by(&self.issuer)
        .map_err(|e| format!("cannot sign: {e}"))?;
        Ok(Issued {
            chain_pem: format!("{}{}", signed.pem(), self.stored.chain_pem),
            bundle_pem: self.stored.bundle_pem.clone(),
            identity: identity.to_owned(),
            not_before_ms: ms(not_before),
            not_after_ms: ms(not_after),
        })
    }
}

/// A signer to store: the operator's CA, or a fresh root; refused when its
/// certificate and key do not make a working issuer.
fn signer(user: Option<&UserCa>) -> Result<Stored, String> {
    let stored = match user {
        Some(u) => {
            let blocks = pem_blocks(&u.cert_pem);
            let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
                return Err("the CA certificate file holds no certificate".into());
            };
            Stored {
                cert_pem: first.clone(),
                key_pem: u.key_pem.clone(),
                bundle_pem: u.bundle_pem.clone().unwrap_or_else(|| last.clone()),
                chain_pem: blocks[1..].concat(),
            }
        }
        None => generate_root().map_err(|e| e.to_string())?,
    };
    Ca::from_stored(stored.clone()).map_err(|e| e.to_string())?;
    Ok(stored)
}

async fn write(store: &dyn Store, revision: u64, s: &Stored) -> Result<(), String> {
    let value = serde_json::to_vec(s).map_err(|e| e.to_string())?;
    let guard = vec![Compare::ModRevision(keys::CA.to_owned(), revision)];
    let outcome = store
        .txn(guard, vec![Op::put(keys::CA, value)])
        .await
        .map_err(|e| e.to_string())?;
    if outcome.succeeded {
        Ok(())
    } else {
        Err("the CA changed meanwhile; try again".into())
    }
}

/// A fresh self-signed root.
fn generate_root() -> Result<Stored, StoreError> {
    let key = KeyPair::generate().map_err(err)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "sinew");
    dn.push(DnType::CommonName, "sinew mesh root CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + ROOT_LIFETIME).into();
    let cert = params.self_signed(&key).map_err(err)?;
    Ok(Stored {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        bundle_pem: cert.pem(),
        chain_pem: String::new(),
    })
}

/// `spiffe://<trust-domain>/ns/<namespace>/svc/<service>`.
pub(crate) fn spiffe_id(trust_domain: &str, namespace: &str, service: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/svc/{service}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

    fn der(pem: &str) -> Vec<u8> {
        let block = pem_blocks(pem).into_iter().next().expect("a PEM block");
        let b64: String = block.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).expect("base64")
    }

    #[test]
    fn issues_a_spiffe_certificate_the_root_verifies() {
        let ca = Ca::from_stored(generate_root().expect("root")).expect("ca");
        let key = KeyPair::generate().expect("key");
        let mut req = CertificateParams::new(vec!["evil.example".to_owned()]).expect("params");
        req.distinguished_name
            .push(DnType::CommonName, "I am the root");
        let csr = req.serialize_request(&key).expect("csr");
        let id = spiffe_id("sinew.local", "shop", "web");
        let issued = ca
            .issue(csr.der(), &id, Duration::from_secs(3600))
            .expect("issued");
        assert_eq!(issued.identity, "spiffe://sinew.local/ns/shop/svc/web");
        let lifetime = issued.not_after_ms - issued.not_before_ms;
        assert!((3_600_000..=3_960_000).contains(&lifetime), "{lifetime}");

        let leaf_der = der(&issued.chain_pem);
        let (_, leaf) = X509Certificate::from_der(&leaf_der).expect("leaf parses");
        let root_der = der(ca.bundle_pem());
        let (_, root) = X509Certificate::from_der(&root_der).expect("root parses");
        leaf.verify_signature(Some(root.public_key()))
            .expect("signed by the root");
        assert!(!leaf.is_ca());
        // Only the SPIFFE ID: the CSR's names are ignored.
        let sans: Vec<String> = leaf
            .extensions()
            .iter()
            .filter_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => Some(san),
                _ => None,
            })
            .flat_map(|san| san.general_names.iter())
            .map(|n| match n {
                GeneralName::URI(u) => format!("uri:{u}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(sans, ["uri:spiffe://sinew.local/ns/shop/svc/web"]);
        // The key in the certificate is the CSR's.
        assert_eq!(
            &*leaf.public_key().subject_public_key.data,
            rcgen::PublicKeyData::der_bytes(&key)
        );
    }

    #[test]
    fn a_garbled_csr_is_refused() {
        let ca = Ca::from_stored(generate_root().expect("root")).expect("ca");
        let err = ca
            .issue(
                b"not a csr",
                "spiffe://sinew.local/ns/a/svc/b",
                Duration::from_secs(60),
            )
            .expect_err("refused");
        assert!(err.contains("signing request"), "{err}");
    }
}
