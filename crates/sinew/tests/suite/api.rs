//! The sidecar API listener, black-box: /live, /ready, /config, /shutdown draining, loopback-only binding.

use std::time::Duration;

use sinew_testkit::{assert_eventually, free_port, Backend, Proxy};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

#[tokio::test]
async fn live_ready_and_config_describe_the_applied_snapshot() {
    let web = Backend::http().name("web").spawn().await;
    let proxy = Proxy::builder(SINEW).service("web", &[&web]).spawn().await;

    assert_eq!(proxy.api_get("/live").await.status, 200);
    assert_eq!(proxy.api_get("/ready").await.status, 200);

    let config = proxy.api_get("/config").await;
    assert_eq!(config.status, 200);
    let json = config.json();
    let version = json["version"].as_u64().expect("numeric version");
    assert!(version >= 1, "{json}");
    let digest = json["digest"].as_str().expect("digest string");
    assert!(!digest.is_empty(), "{json}");
    assert!(json["snapshot"].is_object(), "{json}");
    assert!(
        json["snapshot"]
            .to_string()
            .contains(&web.addr().to_string()),
        "the snapshot holds the service's endpoint: {json}"
    );

    let again = proxy.api_get("/config").await.json();
    assert_eq!(again["version"], json["version"], "no reload, same version");
    assert_eq!(again["digest"], json["digest"], "no reload, same digest");

    assert_eq!(proxy.api_get("/no-such-endpoint").await.status, 404);
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_then_exits_zero() {
    let web = Backend::http()
        .name("web")
        .delay("/slow", Duration::from_millis(1500))
        .spawn()
        .await;
    let mut proxy = Proxy::builder(SINEW).service("web", &[&web]).spawn().await;

    let outbound = proxy.outbound();
    let in_flight = tokio::spawn(async move {
        let mut client = sinew_testkit::HttpClient::http1(outbound).await?;
        client.get("web", "/slow").await
    });
    assert_eventually!(web.requests_to("/slow") == 1, Duration::from_secs(5));

    let shutdown = proxy.api_post("/shutdown").await;
    assert!(
        shutdown.status.is_success(),
        "POST /shutdown: {}",
        shutdown.status
    );

    let resp = in_flight.await.expect("request task").unwrap_or_else(|e| {
        panic!(
            "in-flight request cut by shutdown: {e}\n{}",
            proxy.stderr_tail()
        )
    });
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "web");
    assert_eq!(
        resp.header("connection"),
        Some("close"),
        "the last response of a draining proxy says so"
    );

    let status = proxy.wait_exit(Duration::from_secs(15)).await;
    let tail = proxy.stderr_tail();
    let status =
        status.unwrap_or_else(|| panic!("proxy still running 15 s after /shutdown\n{tail}"));
    assert_eq!(status.code(), Some(0), "exit after /shutdown\n{tail}");
}

#[tokio::test]
async fn api_listener_refuses_a_non_loopback_address() {
    let port = free_port().port();
    let mut proxy = Proxy::builder(SINEW)
        .api_listen(&format!("0.0.0.0:{port}"))
        .launch();

    let status = proxy.wait_exit(Duration::from_secs(10)).await;
    let stderr = proxy.stderr();
    let status = status.unwrap_or_else(|| panic!("proxy accepted a public api address:\n{stderr}"));
    assert!(!status.success(), "{stderr}");
    let file = proxy.config_path().display().to_string();
    assert!(
        stderr.contains(&file),
        "stderr names the file {file}:\n{stderr}"
    );
    assert!(stderr.contains("api"), "stderr names the field:\n{stderr}");
}
