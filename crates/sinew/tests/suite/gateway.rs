//! Gateway mode, black-box: an ingress listener terminating TLS with the
//! certificate the client's SNI selects (checked by curl against the edge
//! CA), routing by Route resources into the mesh over mTLS, and validating
//! end-user JWTs per Route (keys from a file or a JWKS URL): a missing,
//! expired, wrongly signed or wrongly addressed token gets 401.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use sinew_testkit::{require_external, Backend, Curl, CurlResponse, Proxy, TempDir, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

fn id(service: &str) -> String {
    format!("spiffe://sinew.local/ns/default/svc/{service}")
}

/// An ES256 signing key and its JWK.
struct Signer {
    key: EcdsaKeyPair,
    kid: String,
}

impl Signer {
    fn new(kid: &str) -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Signer {
            key,
            kid: kid.to_owned(),
        }
    }

    fn jwk(&self) -> serde_json::Value {
        let point = self.key.public_key().as_ref();
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    fn token(&self, claims: serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(aud: &str, exp: u64) -> serde_json::Value {
    serde_json::json!({"iss": "https://login.shop.test", "aud": aud, "sub": "alice", "exp": exp, "iat": now()})
}

/// Serves `body` at any path over HTTP until the test ends.
async fn serve_json(body: String) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let body = body.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

/// The mesh behind the gateway: `shop`'s app and sidecar (strict mTLS), and
/// the Service and Routes the gateway routes by.
struct Mesh {
    _dir: TempDir,
    app: Backend,
    _shop: Proxy,
    gateway: Proxy,
    edge_bundle: std::path::PathBuf,
}

async fn mesh(dir: TempDir, jwks_file: &Path, jwks_url: &str) -> Mesh {
    let mesh_ca = TestCa::new("mesh");
    let edge_ca = TestCa::new("edge");
    let app = Backend::http().name("shop").spawn().await;
    let shop = Proxy::builder(SINEW)
        .own_service("shop")
        .app(app.addr())
        .tls(&mesh_ca.write(dir.path(), "shop", &id("shop")))
        .mtls("strict")
        .spawn()
        .await;
    let (www_cert, www_key) = edge_ca.write_server(dir.path(), "www", &["www.shop.test"]);
    let (api_cert, api_key) = edge_ca.write_server(dir.path(), "api", &["*.api.shop.test"]);
    let tls = format!(
        "{{certificates: [{{hosts: [www.shop.test], cert: \"{}\", key: \"{}\"}}, \
         {{hosts: [\"*.api.shop.test\"], cert: \"{}\", key: \"{}\"}}]}}",
        www_cert.display(),
        www_key.display(),
        api_cert.display(),
        api_key.display()
    );
    let resources = format!(
        r#"
apiVersion: sinew.dev/v1alpha1
kind: Service
metadata: {{name: shop}}
spec:
  endpoints: [{{address: "{shop_inbound}", identity: "{shop_id}"}}]
---
apiVersion: sinew.dev/v1alpha1
kind: Route
metadata: {{name: www}}
spec:
  hosts: [www.shop.test]
  rules: [{{backends: [{{service: shop}}]}}]
---
apiVersion: sinew.dev/v1alpha1
kind: Route
metadata: {{name: api}}
spec:
  hosts: [v1.api.shop.test]
  jwt:
    issuers: ["https://login.shop.test"]
    audiences: [shop-api]
    jwks: {{file: "{jwks_file}"}}
  rules: [{{backends: [{{service: shop}}]}}]
---
apiVersion: sinew.dev/v1alpha1
kind: Route
metadata: {{name: partners}}
spec:
  hosts: [partners.api.shop.test]
  jwt:
    audiences: [partners]
    jwks: {{url: "{jwks_url}", refresh: 1s}}
  rules: [{{backends: [{{service: shop}}]}}]
"#,
        shop_inbound = shop.inbound(),
        shop_id = id("shop"),
        jwks_file = jwks_file.display(),
    );
    let gateway = Proxy::builder(SINEW)
        .own_service("gateway")
        .tls(&mesh_ca.write(dir.path(), "gateway", &id("gateway")))
        .mtls("strict")
        .ingress(Some(&tls))
        .route_yaml(&resources)
        .spawn()
        .await;
    let edge_bundle = edge_ca.write_bundle(dir.path(), "edge.pem");
    Mesh {
        _dir: dir,
        app,
        _shop: shop,
        gateway,
        edge_bundle,
    }
}

impl Mesh {
    /// `curl https://<host>:<ingress>/path`, resolved to the gateway and
    /// verified against the edge CA (so the SNI-chosen certificate must
    /// name `host`).
    async fn curl(
        &self,
        curl: &Path,
        host: &str,
        token: Option<&str>,
        extra: &[&str],
    ) -> CurlResponse {
        let port = self.gateway.ingress().port();
        let mut c = Curl::new(curl)
            .arg("--cacert")
            .arg(&self.edge_bundle)
            .arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"));
        if let Some(token) = token {
            c = c.arg("-H").arg(format!("authorization: Bearer {token}"));
        }
        for a in extra {
            c = c.arg(a);
        }
        c.run(&format!("https://{host}:{port}/orders")).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_terminates_tls_by_sni_and_checks_jwts_per_route() {
    let Some(curl) = require_external("curl") else {
        return;
    };
    let dir = TempDir::new("gateway");
    let signer = Signer::new("k1");
    let stranger = Signer::new("k1"); // same kid, another key
    let jwks_file = dir.join("jwks.json");
    std::fs::write(
        &jwks_file,
        serde_json::json!({"keys": [signer.jwk()]}).to_string(),
    )
    .unwrap();
    let partner = Signer::new("p1");
    let jwks_url = serve_json(serde_json::json!({"keys": [partner.jwk()]}).to_string()).await;
    let m = mesh(
        dir,
        &jwks_file,
        &format!("http://{jwks_url}/.well-known/jwks.json"),
    )
    .await;

    // SNI picks the certificate curl verifies the name against; HTTP/1.1
    // and HTTP/2 (ALPN), into the mesh over mTLS.
    for version in ["--http1.1", "--http2"] {
        let r = m.curl(&curl, "www.shop.test", None, &[version]).await;
        assert!(r.exit.success(), "{version}: {}", r.stderr);
        assert_eq!(r.status, 200, "{version}: {}", m.gateway.stderr_tail());
        assert_eq!(r.text(), "shop");
    }
    let r = m.curl(&curl, "www.shop.test", None, &["--http2"]).await;
    assert_eq!(r.http_version, "2");
    let seen = m.app.last_request().expect("forwarded");
    let header = |n: &str| {
        seen.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("x-sinew-client-id"),
        Some(id("gateway")),
        "the gateway's mesh identity"
    );
    assert_eq!(header("x-forwarded-proto").as_deref(), Some("https"));

    // The wildcard certificate for the API hosts; the Route wants a JWT.
    let before = m.app.requests();
    let r = m.curl(&curl, "v1.api.shop.test", None, &[]).await;
    assert!(
        r.exit.success(),
        "the wildcard certificate verifies: {}",
        r.stderr
    );
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    let hour = 3600;
    for (why, token) in [
        ("expired", signer.token(claims("shop-api", now() - hour))),
        (
            "wrong key",
            stranger.token(claims("shop-api", now() + hour)),
        ),
        (
            "wrong audience",
            signer.token(claims("partners", now() + hour)),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ] {
        let r = m.curl(&curl, "v1.api.shop.test", Some(&token), &[]).await;
        assert_eq!(r.status, 401, "{why}");
        assert_eq!(r.header("x-sinew-error"), Some("unauthorized"), "{why}");
    }
    assert_eq!(
        m.app.requests(),
        before,
        "refused tokens never reach the mesh"
    );
    let good = signer.token(claims("shop-api", now() + hour));
    let r = m
        .curl(&curl, "v1.api.shop.test", Some(&good), &["--http2"])
        .await;
    assert_eq!(r.status, 200);

    // Keys from a URL: fetched in the background.
    let token = partner.token(claims("partners", now() + hour));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = m
            .curl(&curl, "partners.api.shop.test", Some(&token), &[])
            .await
            .status;
        if status == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a token signed by the JWKS URL's key is still refused ({status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = m
        .curl(&curl, "partners.api.shop.test", Some(&good), &[])
        .await;
    assert_eq!(r.status, 401, "the file's key is not the URL's");

    let metrics = m.gateway.metrics().await;
    assert!(metrics.contains("sinew_proxy_errors_total{kind=\"unauthorized\"}"));
    assert!(
        metrics.contains("direction=\"ingress\",service=\"shop\",route=\"api\""),
        "{metrics}"
    );
}
