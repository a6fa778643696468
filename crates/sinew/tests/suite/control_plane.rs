//! The control plane end to end, with real `sinew control`, `sinew proxy`
//! and (when installed) `etcd` processes: push within a second, refused
//! applies that change nothing, NACKs in status, static stability when the
//! control plane dies, the registry's TTLs and grace, and fencing tokens.
//! Certificates and mTLS on a control plane are in `control_identity.rs`.
//!
//! Every scenario runs on the embedded store and on etcd (`SKIPPED: etcd not
//! installed` unless SINEW_REQUIRE_EXTERNAL=1).

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use sinew_testkit::{
    assert_eventually, resource, Backend, Control, ControlBuilder, Etcd, Load, Proxy,
};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");
/// A pushed change must be serving within this (the acceptance bar).
const PUSH_WITHIN: Duration = Duration::from_secs(1);

/// The store under a scenario.
enum Backing {
    Embedded,
    Etcd(Box<Etcd>),
}

impl Backing {
    fn control(&self) -> ControlBuilder {
        let b = Control::builder(SINEW);
        match self {
            Backing::Embedded => b,
            Backing::Etcd(e) => b.store(&format!("etcd:{}", e.url())),
        }
    }
}

/// Runs `scenario` once on each store.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$scenario(super::Backing::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn etcd() {
                let Some(etcd) = sinew_testkit::Etcd::start().await else { return };
                super::$scenario(super::Backing::Etcd(Box::new(etcd))).await;
            }
        }
    )*};
}

on_both_stores!(
    applied_route_serves_within_a_second,
    bad_apply_names_the_field_and_changes_nothing,
    proxy_nack_shows_in_status,
    proxies_keep_serving_when_the_control_plane_is_killed,
    proxy_restarted_while_control_plane_down_serves_from_cache,
    ttl_registration_leaves_the_catalog_and_the_proxies,
    proxy_endpoint_is_deregistered_after_the_grace_period,
    fencing_tokens_only_grow,
    http_checked_registration_follows_its_check,
    sidecar_health_reports_reach_the_catalog,
);

fn services(a: &Backend, b: &Backend) -> String {
    let mut out = resource(
        "Service",
        "svc-a",
        &format!("endpoints: [{{address: \"{}\"}}]", a.addr()),
    );
    out.push_str(&resource(
        "Service",
        "svc-b",
        &format!("endpoints: [{{address: \"{}\"}}]", b.addr()),
    ));
    out
}

fn route_to(service: &str) -> String {
    resource(
        "Route",
        "shop",
        &format!("hosts: [shop]\nrules:\n  - backends: [{{service: {service}}}]\n"),
    )
}

/// A sidecar of `service` steered by `controls` (comma-separated gRPC addresses).
async fn sidecar(
    controls: &str,
    control: &Control,
    name: &str,
    service: &str,
    extra: &str,
) -> Proxy {
    Proxy::builder(SINEW)
        .name(name)
        .own_service(service)
        .proxy_spec(&format!("control: \"{controls}\"\n{extra}"))
        .env("SINEW_TOKEN", control.token())
        .env("SINEW_CONTROL_CA", &ca(control))
        .spawn()
        .await
}

/// The control plane's trust bundle file, as `SINEW_CONTROL_CA` takes it.
fn ca(control: &Control) -> String {
    control.ca_file().display().to_string()
}

/// The usual client: sidecar `p1` of service `client`, steered by `control`.
async fn client_sidecar(control: &Control) -> Proxy {
    sidecar(&control.grpc().to_string(), control, "p1", "client", "").await
}

/// Registers an external workload over REST; it must succeed.
async fn register(control: &Control, path: &str, body: &str) {
    let r = control.call(Method::PUT, path, Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

async fn backend_of(proxy: &Proxy, host: &str) -> Option<String> {
    let r = proxy
        .try_send(sinew_testkit::Request::get("/").host(host))
        .await
        .ok()?;
    (r.status == StatusCode::OK).then(|| r.text())
}

async fn applied_route_serves_within_a_second(store: Backing) {
    let (a, b) = (
        Backend::http().name("a").spawn().await,
        Backend::http().name("b").spawn().await,
    );
    let control = store.control().spawn().await;
    control
        .apply(&(services(&a, &b) + &route_to("svc-a")))
        .await;
    let proxy = client_sidecar(&control).await;
    assert_eq!(backend_of(&proxy, "shop").await.as_deref(), Some("a"));

    for (round, (target, want)) in [("svc-b", "b"), ("svc-a", "a"), ("svc-b", "b")]
        .iter()
        .enumerate()
    {
        let revision = control.apply(&route_to(target)).await;
        let applied = Instant::now();
        assert_eventually!(
            backend_of(&proxy, "shop").await.as_deref() == Some(*want),
            PUSH_WITHIN,
            "round {round}: route to {target} not serving within {PUSH_WITHIN:?}:\n{}",
            proxy.stderr_tail()
        );
        let took = applied.elapsed();
        // The proxy's applied version is the store revision, and status shows it.
        assert_eventually!(
            control.proxies().await.iter().any(|p| p["name"] == "p1"
                && p["applied_version"].as_u64() == Some(revision)
                && p["desired_version"].as_u64() == Some(revision)
                && p["connected"] == true),
            Duration::from_secs(3),
            "status never showed version {revision}: {:?}",
            control.proxies().await
        );
        assert_eq!(proxy.config_version().await, revision);
        eprintln!("round {round}: serving {took:?} after the apply returned");
    }
}

async fn bad_apply_names_the_field_and_changes_nothing(store: Backing) {
    let (a, b) = (
        Backend::http().name("a").spawn().await,
        Backend::http().name("b").spawn().await,
    );
    let control = store.control().spawn().await;
    let before = control
        .apply(&(services(&a, &b) + &route_to("svc-a")))
        .await;

    // Valid route change and an invalid service in one file: nothing applies.
    let bad = route_to("svc-b")
        + &resource(
            "Service",
            "svc-c",
            "endpoints: [{address: \"127.0.0.1:1\"}]\ntimeout: 5\n",
        );
    let timeout_line = bad.lines().position(|l| l.contains("timeout: 5")).unwrap() as u64 + 1;
    let mut req = sinew_testkit::Request::post("/v1/apply", bad)
        .host("control")
        .header("authorization", &format!("Bearer {}", control.token()))
        .header("x-sinew-source", "bad.yaml");
    req = req.header("content-type", "application/yaml");
    let mut client = sinew_testkit::HttpClient::http1(control.http())
        .await
        .unwrap();
    let r = client.send(req).await.unwrap();
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text());
    let errors = r.json()["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors.iter().any(|e| e["file"] == "bad.yaml"
            && e["line"].as_u64() == Some(timeout_line)
            && e["field"] == "spec.timeout"
            && e["message"].as_str().is_some_and(|m| m.contains("unit"))),
        "expected bad.yaml:{timeout_line} spec.timeout: {errors:?}"
    );

    // A backend naming an unknown service is refused with its place too.
    let r = control
        .call(Method::POST, "/v1/apply", Some(&route_to("nowhere")))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text().contains("unknown service `nowhere`"),
        "{}",
        r.text()
    );

    let route = control
        .call(Method::GET, "/v1/resources/route/default/shop", None)
        .await;
    assert_eq!(
        route.json()["spec"]["rules"][0]["backends"][0]["service"],
        "svc-a"
    );
    let svc = control
        .call(Method::GET, "/v1/resources/service/default/svc-c", None)
        .await;
    assert_eq!(svc.status, StatusCode::NOT_FOUND);
    let list = control
        .call(Method::GET, "/v1/resources/routes", None)
        .await;
    assert_eq!(
        list.json()["revision"].as_u64().map(|r| r >= before),
        Some(true)
    );
}

async fn proxy_nack_shows_in_status(store: Backing) {
    let db = Backend::http().name("db").spawn().await;
    let control = store.control().spawn().await;
    control
        .apply(&resource(
            "Service",
            "db",
            &format!(
                "protocol: tcp\nendpoints: [{{address: \"{}\"}}]\n",
                db.addr()
            ),
        ))
        .await;
    let proxy = Proxy::builder(SINEW)
        .name("p-nack")
        .own_service("client")
        .tcp_listener("db")
        .control_plane(&control)
        .spawn()
        .await;
    let good = proxy.config_version().await;

    // Valid for the mesh, but this proxy forwards opaque TCP to `db`: it refuses.
    let revision = control
        .apply(&resource(
            "Service",
            "db",
            &format!(
                "protocol: http\nendpoints: [{{address: \"{}\"}}]\n",
                db.addr()
            ),
        ))
        .await;
    assert_eventually!(
        control.proxies().await.iter().any(|p| p["name"] == "p-nack"
            && p["last_nack"]["version"].as_u64() == Some(revision)
            && p["last_nack"]["error"]
                .as_str()
                .is_some_and(|e| e.contains("db"))),
        Duration::from_secs(3),
        "no NACK of {revision} in status: {:?}\n{}",
        control.proxies().await,
        proxy.stderr_tail()
    );
    assert_eq!(
        proxy.config_version().await,
        good,
        "a NACKed version must not apply"
    );

    // Fixing it clears the NACK.
    let fixed = control
        .apply(&resource(
            "Service",
            "db",
            &format!(
                "protocol: tcp\nendpoints: [{{address: \"{}\"}}]\n",
                db.addr()
            ),
        ))
        .await;
    assert_eventually!(
        control.proxies().await.iter().any(|p| p["name"] == "p-nack"
            && p["applied_version"].as_u64() == Some(fixed)
            && p["last_nack"].is_null()),
        Duration::from_secs(3),
        "NACK not cleared: {:?}",
        control.proxies().await
    );
}

async fn proxies_keep_serving_when_the_control_plane_is_killed(store: Backing) {
    let (a, b) = (
        Backend::http().name("a").spawn().await,
        Backend::http().name("b").spawn().await,
    );
    let mut control = store.control().spawn().await;
    control
        .apply(&(services(&a, &b) + &route_to("svc-a")))
        .await;
    let proxy = client_sidecar(&control).await;
    assert_eq!(backend_of(&proxy, "shop").await.as_deref(), Some("a"));

    let load = Load::new(proxy.outbound(), "shop", "/")
        .concurrency(4)
        .duration(Duration::from_secs(30))
        .spawn();
    tokio::time::sleep(Duration::from_secs(2)).await;
    control.kill().await;
    let report = load.join().await;
    assert!(report.ok > 1000, "too little load to judge: {report:?}");
    assert_eq!(
        report.failed, 0,
        "requests failed with the control plane gone: {report:?}"
    );
    assert_eq!(report.from_backend("a"), report.ok);
    eprintln!(
        "{} requests over 30 s, 0 failed, control plane killed at 2 s",
        report.ok
    );
}

async fn proxy_restarted_while_control_plane_down_serves_from_cache(store: Backing) {
    let (a, b) = (
        Backend::http().name("a").spawn().await,
        Backend::http().name("b").spawn().await,
    );
    let mut control = store.control().spawn().await;
    control
        .apply(&(services(&a, &b) + &route_to("svc-b")))
        .await;
    let mut proxy = client_sidecar(&control).await;
    assert_eq!(backend_of(&proxy, "shop").await.as_deref(), Some("b"));
    let version = proxy.config_version().await;

    control.kill().await;
    proxy.restart().await;
    assert_eq!(backend_of(&proxy, "shop").await.as_deref(), Some("b"));
    assert_eq!(proxy.config_version().await, version);

    // And it catches up once the control plane is back.
    control.restart().await;
    let revision = control.apply(&route_to("svc-a")).await;
    assert_eventually!(
        backend_of(&proxy, "shop").await.as_deref() == Some("a"),
        Duration::from_secs(10),
        "proxy did not reconnect and apply {revision}:\n{}",
        proxy.stderr_tail()
    );
}

async fn ttl_registration_leaves_the_catalog_and_the_proxies(store: Backing) {
    let ext = Backend::http().name("ext").spawn().await;
    let control = store.control().spawn().await;
    let proxy = client_sidecar(&control).await;
    let body = format!(
        "{{\"address\": \"{}\", \"check\": {{\"ttl\": \"2s\"}}}}",
        ext.addr()
    );
    register(&control, "/v1/registry/default/legacy/vm-1", &body).await;

    let catalog = || async {
        control
            .call(Method::GET, "/v1/catalog/services/default/legacy", None)
            .await
    };
    let r = catalog().await;
    assert_eq!(r.json()["endpoints"][0]["source"], "external");
    assert_eventually!(
        backend_of(&proxy, "legacy").await.as_deref() == Some("ext"),
        PUSH_WITHIN,
        "registered endpoint not routed:\n{}",
        proxy.stderr_tail()
    );

    // Heartbeats keep it past its TTL.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let hb = control
            .call(
                Method::PUT,
                "/v1/registry/default/legacy/vm-1/heartbeat",
                None,
            )
            .await;
        assert_eq!(hb.status, StatusCode::OK, "{}", hb.text());
    }
    assert_eq!(catalog().await.status, StatusCode::OK);

    // Without them it is gone within its TTL (plus the leader's tick).
    let stopped = Instant::now();
    assert_eventually!(
        catalog().await.status == StatusCode::NOT_FOUND,
        Duration::from_secs(5),
        "TTL registration still in the catalog"
    );
    let gone = stopped.elapsed();
    assert!(gone >= Duration::from_secs(2), "expired early: {gone:?}");
    assert_eventually!(
        backend_of(&proxy, "legacy").await.is_none(),
        PUSH_WITHIN,
        "expired endpoint still routed"
    );
}

async fn proxy_endpoint_is_deregistered_after_the_grace_period(store: Backing) {
    let app = Backend::http().name("web-1").spawn().await;
    let control = store.control().grace("2s").spawn().await;
    let client = sidecar(
        &control.grpc().to_string(),
        &control,
        "client-1",
        "client",
        "",
    )
    .await;
    let web = Proxy::builder(SINEW)
        .name("web-1")
        .own_service("web")
        .app(app.addr())
        .control_plane(&control)
        .spawn()
        .await;

    // The sidecar registered its inbound address; the client's sidecar routes to it.
    let catalog = control
        .call(Method::GET, "/v1/catalog/services/default/web", None)
        .await;
    let endpoints = catalog.json()["endpoints"].clone();
    assert_eq!(endpoints[0]["source"], "proxy", "{endpoints}");
    assert_eq!(endpoints[0]["address"], web.inbound().to_string());
    assert_eventually!(
        backend_of(&client, "web").await.as_deref() == Some("web-1"),
        PUSH_WITHIN,
        "client sidecar does not reach web through its sidecar:\n{}",
        client.stderr_tail()
    );

    drop(web);
    let killed = Instant::now();
    assert_eventually!(
        control
            .call(Method::GET, "/v1/catalog/services/default/web", None)
            .await
            .status
            == StatusCode::NOT_FOUND,
        Duration::from_secs(6),
        "web-1 still registered"
    );
    assert!(
        killed.elapsed() >= Duration::from_secs(2),
        "deregistered before the grace period"
    );
    let status = control.proxies().await;
    assert!(
        status
            .iter()
            .any(|p| p["name"] == "web-1" && p["connected"] == false),
        "{status:?}"
    );
}

async fn fencing_tokens_only_grow(store: Backing) {
    let mut control = store.control().spawn().await;
    let proxy = client_sidecar(&control).await;
    let lock = |owner: &'static str, ttl: &'static str| {
        let api = proxy.api();
        async move {
            let mut c = sinew_testkit::HttpClient::http1(api).await.unwrap();
            let body = format!("{{\"owner\": \"{owner}\", \"ttl\": \"{ttl}\"}}");
            let r = c
                .send(sinew_testkit::Request::post("/v1/locks/jobs", body).host("localhost"))
                .await
                .unwrap();
            (r.status, r.json())
        }
    };
    let release = |owner: &'static str, token: u64| {
        let api = proxy.api();
        async move {
            let mut c = sinew_testkit::HttpClient::http1(api).await.unwrap();
            let path = format!("/v1/locks/jobs?owner={owner}&token={token}");
            let r = c
                .send(sinew_testkit::Request::new(Method::DELETE, &path).host("localhost"))
                .await
                .unwrap();
            (r.status, r.json())
        }
    };

    let (s, first) = lock("alice", "10s").await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let t1 = first["token"].as_u64().unwrap();
    let (s, held) = lock("bob", "10s").await;
    assert_eq!(s, StatusCode::CONFLICT, "{held}");
    assert!(
        !held.to_string().contains("alice"),
        "the holder is not told: {held}"
    );
    // Another workload naming the holder's owner string is not the holder:
    // no lease, no token.
    let other = sidecar(&control.grpc().to_string(), &control, "p2", "other", "").await;
    let mut c = sinew_testkit::HttpClient::http1(other.api()).await.unwrap();
    let r = c
        .send(
            sinew_testkit::Request::post(
                "/v1/locks/jobs",
                "{\"owner\": \"alice\", \"ttl\": \"10s\"}",
            )
            .host("localhost"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    assert!(r.json().get("token").is_none(), "{}", r.text());
    // Renewing keeps the token.
    let mut c = sinew_testkit::HttpClient::http1(proxy.api()).await.unwrap();
    let renew = sinew_testkit::Request::new(Method::PUT, "/v1/locks/jobs")
        .host("localhost")
        .body(format!("{{\"owner\": \"alice\", \"token\": {t1}}}"));
    let r = c.send(renew).await.unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["token"].as_u64(), Some(t1));
    let (s, r) = release("alice", t1).await;
    assert_eq!((s, r["released"].as_bool()), (StatusCode::OK, Some(true)));

    let (_, second) = lock("bob", "1s").await;
    let t2 = second["token"].as_u64().unwrap();
    assert!(t2 > t1, "token went {t1} → {t2}");
    // Bob's lease expires without renewal; carol gets a larger token.
    let (s, third) = {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (s, v) = lock("carol", "10s").await;
            if s == StatusCode::OK || Instant::now() > deadline {
                break (s, v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(s, StatusCode::OK, "{third}");
    let t3 = third["token"].as_u64().unwrap();
    assert!(t3 > t2, "token went {t2} → {t3}");
    let (s, _) = release("carol", t3).await;
    assert_eq!(s, StatusCode::OK);

    // Across a control-plane restart (REST this time).
    control.restart().await;
    let r = control
        .call(
            Method::POST,
            "/v1/locks/jobs",
            Some("{\"owner\": \"dave\", \"ttl\": \"5s\"}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let t4 = r.json()["token"].as_u64().unwrap();
    assert!(t4 > t3, "token went {t3} → {t4} across a restart");
}

async fn http_checked_registration_follows_its_check(store: Backing) {
    let ext = Backend::http().name("vm").spawn().await;
    let control = store.control().spawn().await;
    let proxy = client_sidecar(&control).await;
    let body = format!(
        "{{\"address\": \"{0}\", \"labels\": {{\"zone\": \"a\"}}, \"check\": {{\"http\": \"http://{0}/healthz\", \"interval\": \"200ms\", \"timeout\": \"500ms\"}}}}",
        ext.addr()
    );
    register(&control, "/v1/registry/default/vm/vm-1", &body).await;
    let endpoint = || async {
        control
            .call(
                Method::GET,
                "/v1/catalog/services/default/vm?label=zone=a",
                None,
            )
            .await
            .json()["endpoints"][0]
            .clone()
    };
    // Unhealthy until the leader's first check passes; then routed.
    assert_eventually!(
        endpoint().await["healthy"] == true,
        Duration::from_secs(3),
        "check never passed: {}",
        endpoint().await
    );
    assert_eventually!(
        backend_of(&proxy, "vm").await.as_deref() == Some("vm"),
        PUSH_WITHIN,
        "healthy external endpoint not routed"
    );
    assert!(ext.requests_to("/healthz") >= 1);

    // The workload dies: the check fails, the endpoint leaves the proxies.
    ext.stop();
    assert_eventually!(
        endpoint().await["healthy"] == false,
        Duration::from_secs(3),
        "failed check not recorded: {}",
        endpoint().await
    );
    assert_eventually!(
        backend_of(&proxy, "vm").await.is_none(),
        PUSH_WITHIN,
        "unhealthy external endpoint still routed"
    );
    let none = control
        .call(
            Method::GET,
            "/v1/catalog/services/default/vm?label=zone=b",
            None,
        )
        .await;
    assert_eq!(none.json()["endpoints"].as_array().map(Vec::len), Some(0));
}

async fn sidecar_health_reports_reach_the_catalog(store: Backing) {
    let good = Backend::http().name("good").spawn().await;
    let dead = sinew_testkit::free_port();
    let control = store.control().spawn().await;
    control
        .apply(&resource(
            "Service",
            "checked",
            &format!(
                "endpoints: [{{address: \"{}\"}}, {{address: \"{}\"}}]\n\
                 health_check: {{http: {{path: /healthz}}, interval: 200ms, timeout: 100ms, unhealthy_threshold: 1}}\n",
                good.addr(),
                dead
            ),
        ))
        .await;
    let _proxy = client_sidecar(&control).await;
    let reports = || async {
        let r = control
            .call(Method::GET, "/v1/catalog/services/default/checked", None)
            .await;
        r.json()["endpoints"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert_eventually!(
        {
            let eps = reports().await;
            let by = |addr: String| eps.iter().find(|e| e["address"] == addr.as_str()).cloned();
            by(dead.to_string()).is_some_and(|e| {
                e["healthy"] == false && e["reports"]["unhealthy"].as_u64() >= Some(1)
            }) && by(good.addr().to_string()).is_some_and(|e| {
                e["healthy"] == true && e["reports"]["healthy"].as_u64() >= Some(1)
            })
        },
        Duration::from_secs(5),
        "sidecar verdicts not in the catalog: {:?}",
        reports().await
    );
}

/// Two replicas on one etcd: killing the one a proxy streams from moves the
/// proxy to the other within 5 s, and nothing applied is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_replica_killed_proxies_fail_over_within_5s() {
    let Some(etcd) = Etcd::start().await else {
        return;
    };
    let store = Backing::Etcd(Box::new(etcd));
    let (a, b) = (
        Backend::http().name("a").spawn().await,
        Backend::http().name("b").spawn().await,
    );
    let mut one = store.control().replica("one").spawn().await;
    let two = store.control().replica("two").spawn().await;
    assert_eq!(
        one.token(),
        two.token(),
        "replicas share the token through etcd"
    );
    let leader = |c: &Control| {
        let addr = c.http();
        async move {
            let mut client = sinew_testkit::HttpClient::http1(addr).await.ok()?;
            let r = client
                .send(sinew_testkit::Request::get("/healthz").host("control"))
                .await
                .ok()?;
            r.json()["leader"].as_bool()
        }
    };
    assert_eventually!(
        leader(&one).await == Some(true) && leader(&two).await == Some(false),
        Duration::from_secs(3),
        "the first replica should lead, alone"
    );
    one.apply(&(services(&a, &b) + &route_to("svc-a"))).await;
    let controls = format!("{},{}", one.grpc(), two.grpc());
    let mut proxies = Vec::new();
    for i in 0..3 {
        proxies.push(sidecar(&controls, &one, &format!("p{i}"), "client", "").await);
    }
    for p in &proxies {
        assert_eq!(backend_of(p, "shop").await.as_deref(), Some("a"));
    }

    // Everyone dials the first address first: kill that replica.
    let load = Load::new(proxies[0].outbound(), "shop", "/")
        .concurrency(2)
        .duration(Duration::from_secs(8))
        .spawn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    one.kill().await;
    let killed = Instant::now();
    assert_eventually!(
        {
            let status = two.proxies().await;
            status
                .iter()
                .filter(|p| p["connected"] == true && p["replica"] == "two")
                .count()
                == 3
        },
        Duration::from_secs(5),
        "proxies not on replica two within 5 s: {:?}",
        two.proxies().await
    );
    eprintln!(
        "all proxies on replica two {:?} after the kill",
        killed.elapsed()
    );

    // Nothing lost: the store still has everything, and a change reaches everyone.
    let revision = two.apply(&route_to("svc-b")).await;
    for p in &proxies {
        assert_eventually!(
            backend_of(p, "shop").await.as_deref() == Some("b"),
            PUSH_WITHIN,
            "revision {revision} not served by a proxy:\n{}",
            p.stderr_tail()
        );
    }
    let report = load.join().await;
    assert_eq!(report.failed, 0, "{report:?}");

    // The singleton jobs move too: replica two takes the leadership once the
    // dead replica's lease (10 s) runs out.
    assert_eventually!(
        leader(&two).await == Some(true),
        Duration::from_secs(15),
        "replica two never became leader"
    );
}

/// A mesh whose full update is far larger than one part (64 KiB) arrives
/// whole: the proxy applies it once, after the last part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_mesh_arrives_in_parts_and_applies_whole() {
    let backend = Backend::http().name("last").spawn().await;
    let control = Backing::Embedded.control().spawn().await;
    let mut mesh = String::new();
    for i in 0..3000 {
        mesh.push_str(&resource(
            "Service",
            &format!("svc-{i:04}"),
            &format!(
                "endpoints: [{{address: \"{0}\", labels: {{zone: a, rack: r{i}}}}}, {{address: \"127.0.0.1:{1}\"}}]\nsubsets: [{{name: a, labels: {{zone: a}}}}]\n",
                backend.addr(),
                10_000 + i
            ),
        ));
    }
    let revision = control.apply(&mesh).await;
    let proxy = client_sidecar(&control).await;
    assert_eq!(proxy.config_version().await, revision);
    let config = proxy.api_get("/config").await.json();
    assert_eq!(
        config["snapshot"]["resources"].as_array().map(Vec::len),
        Some(3000)
    );
    assert_eventually!(
        control
            .proxies()
            .await
            .iter()
            .any(|p| p["applied_version"].as_u64() == Some(revision)),
        Duration::from_secs(3),
        "not ACKed: {:?}",
        control.proxies().await
    );
}

/// A TCP-checked external workload is healthy while something accepts on its
/// check address, and leaves the proxies when nothing does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_checked_registration_follows_its_check() {
    let app = Backend::http().name("tcp-vm").spawn().await;
    let control = Backing::Embedded.control().spawn().await;
    let proxy = client_sidecar(&control).await;
    // The check probes a separate port (a management port, say) that we can close.
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let probe_addr = probe.local_addr().unwrap();
    let body = format!(
        "{{\"address\": \"{}\", \"check\": {{\"tcp\": \"{probe_addr}\", \"interval\": \"200ms\", \"timeout\": \"300ms\"}}}}",
        app.addr()
    );
    register(&control, "/v1/registry/default/tcpvm/vm-1", &body).await;
    assert_eventually!(
        backend_of(&proxy, "tcpvm").await.as_deref() == Some("tcp-vm"),
        Duration::from_secs(3),
        "TCP-checked endpoint never routed"
    );
    drop(probe);
    assert_eventually!(
        backend_of(&proxy, "tcpvm").await.is_none(),
        Duration::from_secs(3),
        "endpoint with a failing TCP check still routed"
    );
    let endpoint = control
        .call(Method::GET, "/v1/catalog/services/default/tcpvm", None)
        .await
        .json()["endpoints"][0]
        .clone();
    assert_eq!(endpoint["healthy"], false, "{endpoint}");
}
