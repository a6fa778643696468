//! Mutual TLS between sidecars in static mode (certificate files from a
//! test CA), black-box: a strict inbound refuses plaintext, the caller's
//! SPIFFE ID reaches the callee's authorization, headers and access log, an
//! endpoint proving the wrong identity (or a certificate from another CA) is
//! refused, permissive takes both, and a strict proxy without a certificate
//! does not start. Control-mode mTLS (issued certificates, rotation) is in
//! `control_plane.rs`.

use std::time::Duration;

use http::StatusCode;
use sinew_testkit::{
    assert_eventually, Backend, HttpClient, Proxy, ProxyBuilder, Request, TcpEcho, TempDir, TestCa,
    TlsFiles,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

fn id(service: &str) -> String {
    format!("spiffe://sinew.local/ns/default/svc/{service}")
}

/// A Service `name` whose one endpoint is `callee`'s inbound listener,
/// known by `identity`.
fn meshed_service(name: &str, callee: &Proxy, identity: &str, protocol: &str) -> String {
    format!(
        "apiVersion: sinew.dev/v1alpha1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  \
         protocol: {protocol}\n  endpoints:\n    - {{address: \"{}\", identity: \"{identity}\"}}\n",
        callee.inbound()
    )
}

/// A sidecar for `service` fronting `app`, with its certificate.
fn callee(service: &str, app: std::net::SocketAddr, tls: &TlsFiles, mode: &str) -> ProxyBuilder {
    Proxy::builder(SINEW)
        .own_service(service)
        .app(app)
        .tls(tls)
        .mtls(mode)
}

/// A client-side sidecar for `service` calling `target` (a Service resource).
fn caller(service: &str, tls: &TlsFiles, target: &str) -> ProxyBuilder {
    Proxy::builder(SINEW)
        .own_service(service)
        .tls(tls)
        .mtls("strict")
        .route_yaml(target)
}

/// Writes `bytes` on a fresh connection to `addr` and reads until the peer
/// closes (or `wait` passes): what came back.
async fn raw(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> Vec<u8> {
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    conn.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(wait, conn.read_to_end(&mut got)).await;
    got
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_to_a_strict_inbound_is_refused() {
    let dir = TempDir::new("mtls-strict");
    let ca = TestCa::new("mesh");
    let app = Backend::http().name("reviews").spawn().await;
    let reviews = callee(
        "reviews",
        app.addr(),
        &ca.write(dir.path(), "reviews", &id("reviews")),
        "strict",
    )
    .spawn()
    .await;

    // HTTP/1 in plaintext: told why, never forwarded.
    let mut c = HttpClient::http1(reviews.inbound()).await.expect("connect");
    let r = c
        .send(Request::get("/reviews/1").host("reviews"))
        .await
        .expect("an answer");
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.header("x-sinew-error"), Some("mtls_required"));
    // HTTP/2 prior knowledge in plaintext: no stream is served.
    if let Ok(mut h2) = HttpClient::h2(reviews.inbound()).await {
        assert!(h2.get("reviews", "/reviews/1").await.is_err());
    }
    // Raw bytes that are not a ClientHello: closed.
    let got = raw(
        reviews.inbound(),
        b"\x00\x01garbage\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(got.starts_with(b"HTTP/1.1 403") || got.is_empty());

    assert_eq!(app.requests(), 0, "plaintext never reaches the application");
    let metrics = reviews.metrics().await;
    assert!(
        metric(
            &metrics,
            "sinew_inbound_tls_refused_total{reason=\"plaintext\"}"
        ) >= 3.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_spiffe_id_reaches_authorization_headers_and_the_access_log() {
    let dir = TempDir::new("mtls-identity");
    let ca = TestCa::new("mesh");
    let app = Backend::http().name("reviews").spawn().await;
    let log = dir.join("reviews-access.log");
    let policies = format!(
        r#"
apiVersion: sinew.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: web-reads}}
spec:
  target: reviews
  action: allow
  rules:
    - from: {{identities: ["{web}"]}}
      to: {{methods: [GET], paths: ["/reviews/*"]}}
---
apiVersion: sinew.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: no-admin}}
spec:
  target: reviews
  action: deny
  rules:
    - to: {{paths: ["/admin/*"]}}
"#,
        web = id("web")
    );
    let reviews = callee(
        "reviews",
        app.addr(),
        &ca.write(dir.path(), "reviews", &id("reviews")),
        "strict",
    )
    .access_log(log.to_str().expect("utf-8 path"))
    .route_yaml(&policies)
    .spawn()
    .await;
    let target = meshed_service("reviews", &reviews, &id("reviews"), "http");
    let web = caller("web", &ca.write(dir.path(), "web", &id("web")), &target)
        .spawn()
        .await;
    let ads = caller("ads", &ca.write(dir.path(), "ads", &id("ads")), &target)
        .spawn()
        .await;

    // HTTP/1 and HTTP/2 from the app to its sidecar; mTLS between sidecars.
    for version in ["http1", "h2"] {
        let mut c = match version {
            "http1" => HttpClient::http1(web.outbound()).await,
            _ => HttpClient::h2(web.outbound()).await,
        }
        .expect("outbound listener");
        let r = c.get("reviews", "/reviews/1").await.expect("an answer");
        assert_eq!(r.status, StatusCode::OK, "{version}: allowed for web");
        let seen = app.last_request().expect("forwarded");
        let header = |n: &str| {
            seen.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("x-sinew-client-id"), Some(id("web")), "{version}");
        assert_eq!(header("x-forwarded-proto").as_deref(), Some("https"));

        // Denied by the deny policy, whatever the caller.
        let r = c.get("reviews", "/admin/users").await.expect("an answer");
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{version}");
    }
    let before = app.requests();

    // Another identity: default deny (the allow policy names only web), and
    // a forged client-id header does not help.
    let r = ads
        .send(
            Request::get("/reviews/1")
                .host("reviews")
                .header("x-sinew-client-id", &id("web")),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.requests(),
        before,
        "refused requests never reach the app"
    );

    let metrics = reviews.metrics().await;
    let web_series = format!(
        "sinew_inbound_tls_connections_total{{client_id=\"{}\"}}",
        id("web")
    );
    assert!(metric(&metrics, &web_series) >= 1.0, "{metrics}");
    assert!(
        metric(
            &metrics,
            "sinew_authz_denied_total{service=\"reviews\",policy=\"default-deny\"}"
        ) >= 1.0
    );

    let logged = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        lines
            .iter()
            .any(|v| v["peer_identity"] == id("web") && v["status"] == 200)
            && lines.iter().any(|v| {
                v["peer_identity"] == id("ads")
                    && v["status"] == 403
                    && v["policy"] == "default-deny"
            })
            && lines.iter().any(|v| {
                v["peer_identity"] == id("web")
                    && v["path"] == "/admin/users"
                    && v["policy"] == "default/no-admin"
            })
    };
    assert_eventually!(
        logged(),
        Duration::from_secs(5),
        "the access log names the peers:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_proving_another_identity_or_ca_is_refused() {
    let dir = TempDir::new("mtls-impostor");
    let ca = TestCa::new("mesh");
    let other_ca = TestCa::new("elsewhere");
    let app = Backend::http().name("payments").spawn().await;
    // The endpoint is known as `payments` but holds a certificate for `ads`.
    let impostor = callee(
        "payments",
        app.addr(),
        &ca.write(dir.path(), "impostor", &id("ads")),
        "strict",
    )
    .spawn()
    .await;
    let target = meshed_service("payments", &impostor, &id("payments"), "http");
    let web = caller("web", &ca.write(dir.path(), "web", &id("web")), &target)
        .spawn()
        .await;
    let r = web.get("payments", "/charge").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let metrics = web.metrics().await;
    assert!(
        metric(
            &metrics,
            &format!(
                "sinew_upstream_tls_errors_total{{service=\"payments\",endpoint=\"{}\"}}",
                impostor.inbound()
            )
        ) >= 1.0,
        "{metrics}"
    );

    // A caller whose certificate another CA signed: the callee refuses it.
    let real = callee(
        "payments",
        app.addr(),
        &ca.write(dir.path(), "payments", &id("payments")),
        "strict",
    )
    .spawn()
    .await;
    let target = meshed_service("payments", &real, &id("payments"), "http");
    let stranger = caller(
        "web",
        &other_ca.write(dir.path(), "stranger", &id("web")),
        &target,
    )
    .spawn()
    .await;
    let r = stranger.get("payments", "/charge").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    // Both sides refuse the other's CA; whichever speaks first, the callee
    // counts the connection as refused (a failed handshake, or the caller
    // hanging up on its certificate).
    let refused = |metrics: &str| {
        metric(
            metrics,
            "sinew_inbound_tls_refused_total{reason=\"handshake\"}",
        ) + metric(
            metrics,
            "sinew_inbound_tls_refused_total{reason=\"client_closed\"}",
        )
    };
    assert_eventually!(
        refused(&real.metrics().await) >= 1.0,
        Duration::from_secs(5),
        "the callee counts the refused connection:\n{}",
        real.metrics().await
    );
    assert_eq!(app.requests(), 0);

    // With the right CA and identity it works.
    let web = caller("web", &ca.write(dir.path(), "web2", &id("web")), &target)
        .spawn()
        .await;
    assert_eq!(web.get("payments", "/charge").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permissive_takes_mtls_and_plaintext() {
    let dir = TempDir::new("mtls-permissive");
    let ca = TestCa::new("mesh");
    let app = Backend::http().name("reviews").spawn().await;
    let reviews = callee(
        "reviews",
        app.addr(),
        &ca.write(dir.path(), "reviews", &id("reviews")),
        "permissive",
    )
    .spawn()
    .await;
    let mut plain = HttpClient::http1(reviews.inbound()).await.expect("connect");
    let r = plain.get("reviews", "/x").await.expect("an answer");
    assert_eq!(r.status, StatusCode::OK);
    let seen = app.last_request().expect("forwarded");
    assert!(seen.headers.get("x-sinew-client-id").is_none());

    let target = meshed_service("reviews", &reviews, &id("reviews"), "http");
    let web = caller("web", &ca.write(dir.path(), "web", &id("web")), &target)
        .spawn()
        .await;
    assert_eq!(web.get("reviews", "/x").await.status, StatusCode::OK);
    let seen = app.last_request().expect("forwarded");
    assert_eq!(
        seen.headers
            .get("x-sinew-client-id")
            .and_then(|v| v.to_str().ok()),
        Some(id("web").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tcp_between_sidecars_is_mtls_too() {
    let dir = TempDir::new("mtls-tcp");
    let ca = TestCa::new("mesh");
    let echo = TcpEcho::spawn().await;
    let db_service = "apiVersion: sinew.dev/v1alpha1\nkind: Service\nmetadata: {name: db}\nspec:\n  protocol: tcp\n  endpoints: []\n";
    let db = callee(
        "db",
        echo.addr(),
        &ca.write(dir.path(), "db", &id("db")),
        "strict",
    )
    .route_yaml(db_service)
    .spawn()
    .await;
    let web = caller(
        "web",
        &ca.write(dir.path(), "web", &id("web")),
        &meshed_service("db", &db, &id("db"), "tcp"),
    )
    .tcp_listener("db")
    .spawn()
    .await;
    let mut conn = TcpStream::connect(web.tcp("db")).await.expect("connect");
    conn.write_all(b"ping over mtls").await.expect("write");
    let mut echoed = [0u8; 14];
    tokio::time::timeout(Duration::from_secs(5), conn.read_exact(&mut echoed))
        .await
        .expect("echoed in time")
        .expect("echoed");
    assert_eq!(&echoed, b"ping over mtls");
    let metrics = db.metrics().await;
    let series = format!(
        "sinew_inbound_tls_connections_total{{client_id=\"{}\"}}",
        id("web")
    );
    assert!(metric(&metrics, &series) >= 1.0, "{metrics}");

    // Plaintext straight to the strict inbound: nothing reaches the app.
    let before = echo.connections();
    let got = raw(db.inbound(), b"plain", Duration::from_secs(5)).await;
    assert!(got.starts_with(b"HTTP/1.1 403") || got.is_empty());
    assert_eq!(echo.connections(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_without_a_certificate_does_not_start() {
    let app = Backend::http().spawn().await;
    // No Mesh resource: the default is strict.
    let mut proxy = Proxy::builder(SINEW)
        .own_service("reviews")
        .app(app.addr())
        .no_mesh()
        .launch();
    let status = proxy.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| !s.success()),
        "must exit with an error"
    );
    let stderr = proxy.stderr();
    assert!(
        stderr.contains("strict (the default)") && stderr.contains("no certificate"),
        "{stderr}"
    );
}
