//! Workload identity on a control plane, end to end: SPIFFE certificates
//! issued from CSRs and renewed (with root rotation), mTLS between
//! control-plane sidecars through several certificate lifetimes under load,
//! and the proxies' TLS gRPC API where a proxy joins with the token and
//! then runs on its certificate. (Static-mode mTLS is in `mtls.rs`.)

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use sinew_testkit::{
    assert_eventually, resource, Backend, Control, HttpClient, Load, LoadReport, Proxy,
};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// A sidecar `name` of `service` on `control`.
async fn sidecar(control: &Control, name: &str, service: &str) -> Proxy {
    Proxy::builder(SINEW)
        .name(name)
        .own_service(service)
        .control_plane(control)
        .spawn()
        .await
}

/// The body of the answer to `GET /` for `host` through `proxy`, when 200.
async fn backend_of(proxy: &Proxy, host: &str) -> Option<String> {
    let r = proxy
        .try_send(sinew_testkit::Request::get("/").host(host))
        .await
        .ok()?;
    (r.status == StatusCode::OK).then(|| r.text())
}

/// A proxy gets a workload certificate for its SPIFFE identity from the
/// control plane's CA, renews it at two thirds of its lifetime, and a proxy
/// without a valid join token gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_get_and_renew_spiffe_certificates() {
    let control = Control::builder(SINEW).spawn().await;
    control
        .apply(&resource(
            "Mesh",
            "default",
            "trust_domain: shop.test\ncert_ttl: 6s\n",
        ))
        .await;
    let proxy = sidecar(&control, "web-1", "web").await;
    let identity = || async {
        let r = proxy.api_get("/identity").await;
        (r.status == StatusCode::OK).then(|| r.json())
    };
    assert_eventually!(
        identity().await.is_some(),
        Duration::from_secs(3),
        "no certificate:\n{}",
        proxy.stderr_tail()
    );
    let first = identity().await.unwrap();
    assert_eq!(first["identity"], "spiffe://shop.test/ns/default/svc/web");
    let life = first["not_after_ms"].as_u64().unwrap() - first["not_before_ms"].as_u64().unwrap();
    assert!((6_000..=6_700).contains(&life), "lifetime {life} ms");
    assert!(first.to_string().contains("BEGIN CERTIFICATE"));
    assert!(
        !first.to_string().contains("PRIVATE KEY"),
        "the key never leaves the proxy"
    );
    // The chain's root is the control plane's trust bundle.
    let bundle = control
        .call(Method::GET, "/v1/trust-bundle", None)
        .await
        .text();
    assert_eq!(first["trust_bundle_pem"].as_str(), Some(bundle.as_str()));

    // Renewed before it expires: a later certificate, without a restart.
    let first_end = first["not_after_ms"].as_u64().unwrap();
    assert_eventually!(
        identity().await.and_then(|i| i["not_after_ms"].as_u64()) > Some(first_end),
        Duration::from_secs(15),
        "not renewed:\n{}",
        proxy.stderr_tail()
    );

    // Root rotation with an overlap: the bundle holds both roots, proxies
    // move to certificates of the new root at their next renewal, then the
    // old root leaves the bundle.
    let roots = |pem: &str| pem.matches("BEGIN CERTIFICATE").count();
    let old_root = bundle.clone();
    let r = control.call(Method::POST, "/v1/ca/rotate", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["roots"], 2);
    let during = control
        .call(Method::GET, "/v1/trust-bundle", None)
        .await
        .text();
    assert_eq!(roots(&during), 2);
    assert!(
        during.ends_with(&old_root),
        "the old root stays trusted during the overlap"
    );
    assert_eventually!(
        identity()
            .await
            .is_some_and(|i| i["trust_bundle_pem"].as_str() == Some(during.as_str())),
        Duration::from_secs(15),
        "the proxy never got the rotated bundle"
    );
    let r = control
        .call(Method::POST, "/v1/ca/rotate/finish", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let after = control
        .call(Method::GET, "/v1/trust-bundle", None)
        .await
        .text();
    assert_eq!(roots(&after), 1);
    assert!(
        during.starts_with(&after) && after != old_root,
        "the new root alone"
    );
    assert_eventually!(
        identity()
            .await
            .is_some_and(|i| i["trust_bundle_pem"].as_str() == Some(after.as_str())),
        Duration::from_secs(15),
        "the proxy never dropped the old root"
    );

    // A proxy with a wrong join token gets nothing.
    let outsider = Proxy::builder(SINEW)
        .name("outsider")
        .own_service("web")
        .proxy_spec(&format!("control: \"{}\"", control.grpc()))
        .env("SINEW_TOKEN", "not-the-token")
        .env("SINEW_CONTROL_CA", &control.ca_file().display().to_string())
        .launch();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let r = outsider
        .try_api(Method::GET, "/identity")
        .await
        .expect("api answers");
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    assert!(
        !control
            .proxies()
            .await
            .iter()
            .any(|p| p["name"] == "outsider"),
        "an unauthenticated proxy must not register"
    );
}

/// Sidecars on a control plane talk mTLS with the certificates it issues:
/// each registers with its SPIFFE ID, the caller's identity reaches the
/// callee's authorization, and with a 10 s certificate lifetime both sides
/// renew several times under load — steady traffic plus bursts that open
/// fresh connections (so handshakes use the renewed certificates) — with
/// no failed request and no failed handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_survives_certificate_rotation_under_load() {
    let control = Control::builder(SINEW).spawn().await;
    let app = Backend::http().name("reviews-app").spawn().await;
    control
        .apply(&format!(
            "{}{}{}",
            resource("Mesh", "default", "cert_ttl: 10s\n"),
            resource(
                "Service",
                "reviews",
                // Idle upstream connections go after 300 ms: every burst
                // below handshakes anew.
                "upstream_idle_timeout: 300ms\n",
            ),
            resource(
                "AuthorizationPolicy",
                "web-only",
                "target: reviews\naction: allow\nrules:\n  - from: {identities: [\"spiffe://sinew.local/ns/default/svc/web\"]}\n",
            ),
        ))
        .await;
    let reviews = Proxy::builder(SINEW)
        .name("reviews-1")
        .own_service("reviews")
        .app(app.addr())
        .control_plane(&control)
        .spawn()
        .await;
    let web = sidecar(&control, "web-1", "web").await;
    let other = sidecar(&control, "ads-1", "ads").await;

    // Registered with its identity, reached over mTLS, authorized by it.
    assert_eventually!(
        backend_of(&web, "reviews").await.as_deref() == Some("reviews-app"),
        Duration::from_secs(5),
        "web never reached reviews:\n{}",
        web.stderr_tail()
    );
    let catalog = control
        .call(Method::GET, "/v1/catalog/services/default/reviews", None)
        .await
        .json();
    assert_eq!(
        catalog["endpoints"][0]["identity"], "spiffe://sinew.local/ns/default/svc/reviews",
        "{catalog}"
    );
    assert_eq!(
        other.get("reviews", "/").await.status,
        StatusCode::FORBIDDEN
    );

    let not_after = |proxy: &Proxy| {
        let api = proxy.api();
        async move {
            let mut c = HttpClient::http1(api).await.ok()?;
            let r = c.get("api", "/identity").await.ok()?;
            r.json()["not_after_ms"].as_u64()
        }
    };
    let first = (not_after(&web).await, not_after(&reviews).await);

    // 25 s: two and a half lifetimes, so each side renews at least three times.
    let steady = Load::new(web.outbound(), "reviews", "/")
        .concurrency(2)
        .duration(Duration::from_secs(25))
        .spawn();
    let mut bursts = LoadReport::default();
    let end = Instant::now() + Duration::from_secs(25);
    let mut renewals = (0, 0);
    let mut last = first;
    while Instant::now() < end {
        let burst = Load::new(web.outbound(), "reviews", "/")
            .concurrency(6)
            .requests(30)
            .run()
            .await;
        bursts.ok += burst.ok;
        bursts.failed += burst.failed;
        bursts.errors.extend(burst.errors);
        tokio::time::sleep(Duration::from_millis(600)).await;
        let now = (not_after(&web).await, not_after(&reviews).await);
        renewals.0 += usize::from(now.0 != last.0);
        renewals.1 += usize::from(now.1 != last.1);
        last = now;
    }
    let steady = steady.join().await;
    eprintln!(
        "rotation under load: steady {} ok / {} failed, bursts {} ok / {} failed, renewals (web, reviews) {renewals:?}",
        steady.ok, steady.failed, bursts.ok, bursts.failed
    );
    assert_eq!(steady.failed, 0, "steady load failed: {:?}", steady.errors);
    assert_eq!(bursts.failed, 0, "bursts failed: {:?}", bursts.errors);
    assert!(
        steady.ok > 100 && bursts.ok > 300,
        "{} + {}",
        steady.ok,
        bursts.ok
    );
    assert!(
        renewals.0 >= 2 && renewals.1 >= 2,
        "renewals (web, reviews): {renewals:?}"
    );
    let metrics = web.metrics().await;
    let total = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(total("sinew_upstream_tls_errors_total"), 0.0, "{metrics}");
    let fresh = total("sinew_upstream_connections_total{service=\"reviews\"");
    eprintln!("rotation under load: {fresh} mTLS connections opened, 0 handshake errors");
    assert!(fresh >= 20.0, "bursts opened fresh connections: {metrics}");
}

/// The proxies' gRPC API is TLS only; a proxy joins with the join token and,
/// its session runs on the workload certificate it got with it (shown in
/// `/v1/proxies` as `authenticated`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_join_with_the_token_then_reconnect_with_their_certificate() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut control = Control::builder(SINEW).spawn().await;

    // Plaintext HTTP/2 to the gRPC port gets no HTTP/2 answer.
    let mut raw = tokio::net::TcpStream::connect(control.grpc())
        .await
        .unwrap();
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut answer)).await;
    assert!(
        answer.is_empty() || answer[0] == 0x15,
        "a TLS alert or nothing, not HTTP/2: {answer:?}"
    );

    let proxy = sidecar(&control, "p1", "client").await;
    let authenticated = |control: &Control| {
        let http = control.http();
        let token = control.token().to_owned();
        async move {
            let mut c = HttpClient::http1(http).await.ok()?;
            let req = sinew_testkit::Request::get("/v1/proxies")
                .host("control")
                .header("authorization", &format!("Bearer {token}"));
            let items = c.send(req).await.ok()?.json()["items"].clone();
            let p1 = items
                .as_array()?
                .iter()
                .find(|p| p["name"] == "p1")?
                .clone();
            (p1["connected"] == true).then(|| p1["authenticated"].as_str().map(str::to_owned))?
        }
    };
    // It joins with the token just to get its certificate, and its session
    // runs on the certificate; after a control-plane restart, again.
    assert_eventually!(
        authenticated(&control).await.as_deref() == Some("certificate"),
        Duration::from_secs(5),
        "the proxy authenticates with its certificate once it has one:\n{}",
        proxy.stderr_tail()
    );
    control.restart().await;
    assert_eventually!(
        authenticated(&control).await.as_deref() == Some("certificate"),
        Duration::from_secs(10),
        "after a reconnect the proxy authenticates with its certificate:\n{}",
        proxy.stderr_tail()
    );
    assert_eq!(backend_of(&proxy, "nothing-here").await, None);
}
