//! Test certificates: a throwaway root CA that issues SPIFFE workload
//! certificates, written as the PEM files a static-mode proxy's `tls` names.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// A root CA for one test.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// The three files of a static-mode proxy's `tls`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The workload certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// The trust bundle, PEM.
    pub trust_bundle: PathBuf,
}

impl TlsFiles {
    /// The `tls:` block for a Proxy spec.
    pub fn spec_yaml(&self) -> String {
        format!(
            "tls: {{cert: \"{}\", key: \"{}\", trust_bundle: \"{}\"}}",
            self.cert.display(),
            self.key.display(),
            self.trust_bundle.display()
        )
    }
}

impl TestCa {
    /// A fresh self-signed root.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("generate a CA key");
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test root"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + Duration::from_secs(24 * 3600)).into();
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The root, PEM (the trust bundle).
    pub fn bundle_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A workload certificate for `uri` (a SPIFFE ID, or any URI for
    /// negative tests) valid for `lifetime`: (certificate PEM, key PEM).
    pub fn issue(&self, uri: &str, lifetime: Duration) -> (String, String) {
        let key = KeyPair::generate().expect("generate a workload key");
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![SanType::URI(uri.try_into().expect("a URI"))];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + lifetime).into();
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign a workload certificate");
        (cert.pem(), key.serialize_pem())
    }

    /// A day-long server certificate for DNS names `hosts` (wildcards
    /// allowed), written into `dir` as `<name>.crt` and `<name>.key`:
    /// (certificate path, key path).
    pub fn write_server(&self, dir: &Path, name: &str, hosts: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("generate a server key");
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>())
                .expect("DNS names");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(60)).into();
        params.not_after = (now + Duration::from_secs(24 * 3600)).into();
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign a server certificate");
        let (cert_path, key_path) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).expect("write the certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write the key");
        (cert_path, key_path)
    }

    /// Writes this CA's certificate into `dir` as `<name>` (for clients' trust).
    pub fn write_bundle(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, &self.cert_pem).expect("write the bundle");
        path
    }

    /// Issues a day-long certificate for `uri` and writes it, its key and
    /// this CA's bundle into `dir` as `<name>.crt`, `<name>.key`, `<name>-bundle.pem`.
    pub fn write(&self, dir: &Path, name: &str, uri: &str) -> TlsFiles {
        let (cert, key) = self.issue(uri, Duration::from_secs(24 * 3600));
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            trust_bundle: dir.join(format!("{name}-bundle.pem")),
        };
        std::fs::write(&files.cert, cert).expect("write the certificate");
        std::fs::write(&files.key, key).expect("write the key");
        std::fs::write(&files.trust_bundle, &self.cert_pem).expect("write the bundle");
        files
    }
}
