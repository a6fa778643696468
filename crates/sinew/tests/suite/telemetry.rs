//! Telemetry, black-box: Prometheus metrics after traffic, W3C traceparent propagation, JSON access log.

use std::time::Duration;

use sinew_testkit::{assert_eventually, resource, Backend, HttpClient, Proxy, Request};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

fn web_route() -> String {
    resource(
        "Route",
        "web-route",
        r#"
        hosts: [web]
        rules:
          - backends: [{service: web}]
        "#,
    )
}

/// The value of the first sample line of `metrics` named `name` whose labels contain all `labels`.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_requests_by_service_route_backend_and_status_class() {
    let web = Backend::http()
        .name("web")
        .fail("/broken", 503)
        .spawn()
        .await;
    let proxy = Proxy::builder(SINEW)
        .service("web", &[&web])
        .route_yaml(&web_route())
        .spawn()
        .await;

    for _ in 0..7 {
        assert_eq!(proxy.get("web", "/ok").await.status, 200);
    }
    for _ in 0..2 {
        assert_eq!(proxy.get("web", "/broken").await.status, 503);
    }

    let ok_labels = [
        "service=\"web\"",
        "route=\"web-route\"",
        "backend=\"web\"",
        "status_class=\"2xx\"",
    ];
    assert_eventually!(
        sample(&proxy.metrics().await, "sinew_requests_total", &ok_labels) == Some(7.0),
        Duration::from_secs(5),
        "7 2xx requests counted:\n{}",
        proxy.metrics().await
    );
    let failed = [
        "service=\"web\"",
        "route=\"web-route\"",
        "status_class=\"5xx\"",
    ];
    // A request is counted once its response is written: the client may
    // see it a moment before the counter moves.
    assert_eventually!(
        sample(&proxy.metrics().await, "sinew_requests_total", &failed) == Some(2.0),
        Duration::from_secs(5),
        "2 5xx requests counted:\n{}",
        proxy.metrics().await
    );
    let metrics = proxy.metrics().await;

    assert!(
        metrics.contains("# TYPE sinew_request_duration_seconds histogram"),
        "{metrics}"
    );
    let series = ["service=\"web\"", "route=\"web-route\"", "backend=\"web\""];
    let count = sample(&metrics, "sinew_request_duration_seconds_count", &series);
    assert_eq!(count, Some(9.0), "{metrics}");
    let inf_bucket = sample(
        &metrics,
        "sinew_request_duration_seconds_bucket",
        &[series[0], series[1], series[2], "le=\"+Inf\""],
    );
    assert_eq!(inf_bucket, Some(9.0), "{metrics}");
    assert!(
        sample(&metrics, "sinew_request_duration_seconds_sum", &series).is_some_and(|s| s > 0.0),
        "{metrics}"
    );
}

fn parse_traceparent(value: &str) -> (String, String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value}");
    assert_eq!(parts[1].len(), 32, "trace id in {value}");
    assert_eq!(parts[2].len(), 16, "parent id in {value}");
    assert!(value
        .chars()
        .all(|c| c == '-' || (c.is_ascii_hexdigit() && !c.is_ascii_uppercase())));
    (
        parts[0].to_owned(),
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

#[tokio::test]
async fn traceparent_is_created_when_absent_and_continued_when_present() {
    let web = Backend::http().name("web").spawn().await;
    let proxy = Proxy::builder(SINEW).service("web", &[&web]).spawn().await;

    let resp = proxy.get("web", "/fresh").await;
    let created = resp
        .header("x-req-traceparent")
        .expect("traceparent created upstream");
    let (version, trace, parent, _) = parse_traceparent(created);
    assert_eq!(version, "00");
    assert_ne!(trace, "0".repeat(32));
    assert_ne!(parent, "0".repeat(16));

    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = proxy
        .send(
            Request::get("/child")
                .host("web")
                .header("traceparent", incoming),
        )
        .await;
    let forwarded = resp
        .header("x-req-traceparent")
        .expect("traceparent forwarded");
    let (version, trace, parent, flags) = parse_traceparent(forwarded);
    assert_eq!(version, "00");
    assert_eq!(trace, "4bf92f3577b34da6a3ce929d0e0e4736", "same trace id");
    assert_ne!(
        parent, "00f067aa0ba902b7",
        "the proxy's own span is the new parent"
    );
    assert_eq!(flags, "01", "sampled flag kept");
    let count = resp.headers.get_all("x-req-traceparent").iter().count();
    assert_eq!(count, 1, "exactly one traceparent upstream");
}

#[tokio::test]
async fn json_access_log_line_is_written_per_request() {
    let web = Backend::http().name("web").spawn().await;
    let log_dir = sinew_testkit::TempDir::new("access-log");
    let log_path = log_dir.join("access.log");
    let proxy = Proxy::builder(SINEW)
        .service("web", &[&web])
        .access_log(&log_path.display().to_string())
        .spawn()
        .await;

    assert_eq!(proxy.get("web", "/logged?x=1").await.status, 200);
    let mut h2 = HttpClient::h2(proxy.outbound()).await.expect("h2 connect");
    assert_eq!(
        h2.get("web", "/logged-h2").await.expect("h2 get").status,
        200
    );

    let logged_at = |prefix: &'static str| {
        let log_path = log_path.clone();
        move || {
            std::fs::read_to_string(&log_path)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
        }
    };
    let logged = logged_at("/logged?");
    let logged_h2 = logged_at("/logged-h2");
    assert_eventually!(
        logged().is_some() && logged_h2().is_some(),
        Duration::from_secs(5),
        "access log line for /logged in {}: {:?}",
        log_path.display(),
        std::fs::read_to_string(&log_path)
    );
    let line = logged().unwrap_or_default();
    assert_eq!(line["method"], "GET", "{line}");
    assert_eq!(line["status"], 200, "{line}");
    assert_eq!(line["service"], "web", "{line}");
    let line = logged_h2().unwrap_or_default();
    assert_eq!(
        (line["method"].as_str(), line["status"].as_u64()),
        (Some("GET"), Some(200)),
        "{line}"
    );
    assert_eq!(line["route"], "service/web", "{line}");
    assert!(
        line["trace_id"].as_str().is_some_and(|t| t.len() == 32),
        "{line}"
    );
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        text.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "every access log line is JSON:\n{text}"
    );
}
