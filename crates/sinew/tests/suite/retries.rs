//! Service retries, black-box: a failed try is retried on a sibling endpoint;
//! a POST is retried only when it never left (connect failure) or when the
//! service opts in; the retry budget caps retries against a failing service;
//! a body past `max_body_bytes` is never replayed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;
use sinew_testkit::{free_port, AddrOnly, Backend, Load, Proxy, Request, Response, Upstream};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

/// An endpoint that reads one whole request per connection (head and
/// `content-length` body), records its method, then closes the connection
/// without answering: the request was sent, no response ever starts.
struct Closer {
    addr: SocketAddr,
    methods: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Closer {
    async fn spawn() -> Closer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind closer");
        let addr = listener.local_addr().expect("closer address");
        let methods = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&methods);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    if let Some(method) = read_request(stream).await {
                        seen.lock().unwrap_or_else(|e| e.into_inner()).push(method);
                    }
                });
            }
        });
        Closer {
            addr,
            methods,
            task,
        }
    }

    /// Methods of the requests it has read, oldest first.
    fn methods(&self) -> Vec<String> {
        self.methods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many requests with `method` it has read.
    fn count(&self, method: &str) -> usize {
        self.methods().iter().filter(|m| *m == method).count()
    }
}

impl Upstream for Closer {
    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request (head, then a `content-length` body) and returns its
/// method; dropping the stream afterwards closes the connection cleanly.
async fn read_request(mut stream: TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        if stream.read_buf(&mut buf).await.ok()? == 0 {
            return None;
        }
    }
    head.split(' ').next().map(str::to_owned)
}

/// The value of `family{service="…"}` in a Prometheus text page.
fn service_counter(metrics: &str, family: &str, service: &str) -> u64 {
    let label = format!("service=\"{service}\"");
    metrics
        .lines()
        .filter(|l| l.strip_prefix(family).is_some_and(|r| r.starts_with('{')))
        .filter(|l| l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn retries_of(proxy: &Proxy, service: &str) -> u64 {
    service_counter(&proxy.metrics().await, "sinew_retries_total", service)
}

fn post(body: &'static str) -> Request {
    Request::post("/", body).host("be")
}

fn put(path: &str, body: Vec<u8>) -> Request {
    Request::new(Method::PUT, path).host("be").body(body)
}

fn describe(response: &Response) -> String {
    format!(
        "{} x-sinew-error={:?} x-backend={:?}",
        response.status,
        response.header("x-sinew-error"),
        response.backend()
    )
}

#[tokio::test]
async fn a_503_endpoint_is_retried_on_its_healthy_sibling() {
    let sick = Backend::http().name("sick").fail("/", 503).spawn().await;
    let well = Backend::http().name("well").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&sick, &well],
            "balancer: {algorithm: round-robin}
retries: {attempts: 1, on: [gateway-error]}",
        )
        .spawn()
        .await;
    // 50 requests need at most 50 retries: within the default budget's floor (10/s over 10 s).
    let report = Load::new(proxy.outbound(), "be", "/")
        .concurrency(4)
        .requests(50)
        .run()
        .await;
    assert_eq!(report.failed, 0, "{report:?}\n{}", proxy.stderr_tail());
    assert_eq!(report.from_backend("well"), 50, "{report:?}");
    assert!(sick.requests() >= 1, "round-robin tried the sick endpoint");
    assert_eq!(
        retries_of(&proxy, "be").await,
        sick.requests() as u64,
        "each 503 was retried once"
    );
}

#[tokio::test]
async fn a_post_is_not_retried_once_sent_while_a_get_is() {
    let closer = Closer::spawn().await;
    let well = Backend::http().name("well").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&AddrOnly(closer.addr), &AddrOnly(well.addr())],
            "balancer: {algorithm: round-robin}
retries: {attempts: 1, on: [connect-failure, reset, gateway-error], backoff: {base: 5ms, max: 5ms}}",
        )
        .spawn()
        .await;

    // POSTs until one has reached the closer (round-robin: within two).
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = proxy.send(post("order")).await;
        statuses.push(describe(&response));
        if closer.count("POST") > 0 {
            assert_eq!(response.status, 502, "{statuses:?}");
            assert_eq!(response.header("x-sinew-error"), Some("upstream-reset"));
            break;
        }
        assert_eq!(response.status, 200, "{statuses:?}");
    }
    assert_eq!(
        closer.count("POST"),
        1,
        "the POST reached the closer exactly once (not replayed): {statuses:?}"
    );
    assert_eq!(
        retries_of(&proxy, "be").await,
        0,
        "no retry for a sent POST"
    );

    // GETs in the same setup are retried on the sibling.
    for _ in 0..4 {
        let response = proxy.get("be", "/").await;
        assert_eq!(response.status, 200, "{}", describe(&response));
        assert_eq!(response.backend(), Some("well"));
    }
    let gets = closer.count("GET");
    assert!(gets >= 1, "round-robin sent a GET to the closer");
    assert_eq!(retries_of(&proxy, "be").await, gets as u64);
}

#[tokio::test]
async fn a_post_is_retried_on_connect_failure() {
    let closed = AddrOnly(free_port());
    let well = Backend::http().name("well").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&closed, &AddrOnly(well.addr())],
            "balancer: {algorithm: round-robin}
retries: {attempts: 1, backoff: {base: 5ms, max: 5ms}}",
        )
        .spawn()
        .await;
    for _ in 0..6 {
        let response = proxy.send(Request::post("/", "order").host("be")).await;
        assert_eq!(response.status, 200, "{}", describe(&response));
        assert_eq!(response.header("x-body-len"), Some("5"));
    }
    assert_eq!(well.requests(), 6);
    let metrics = proxy.metrics().await;
    let connect_errors = metrics
        .lines()
        .filter(|l| l.starts_with("sinew_upstream_connect_errors_total{"))
        .filter(|l| l.contains(&format!("endpoint=\"{}\"", closed.0)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum::<u64>();
    assert!(connect_errors >= 1, "the closed port was tried: {metrics}");
    assert_eq!(
        service_counter(&metrics, "sinew_retries_total", "be"),
        connect_errors,
        "each refused connect was retried"
    );
}

#[tokio::test]
async fn retry_non_idempotent_lets_a_sent_post_be_retried() {
    let closer = Closer::spawn().await;
    let well = Backend::http().name("well").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&AddrOnly(closer.addr), &AddrOnly(well.addr())],
            "balancer: {algorithm: round-robin}
retries: {attempts: 1, on: [reset], retry_non_idempotent: true, backoff: {base: 5ms, max: 5ms}}",
        )
        .spawn()
        .await;
    for _ in 0..4 {
        let response = proxy.send(post("order")).await;
        assert_eq!(response.status, 200, "{}", describe(&response));
        assert_eq!(response.backend(), Some("well"));
    }
    let replayed = closer.count("POST");
    assert!(replayed >= 1, "round-robin sent a POST to the closer");
    assert_eq!(retries_of(&proxy, "be").await, replayed as u64);
    assert_eq!(well.requests(), 4);
}

#[tokio::test]
async fn retries_against_a_failing_service_stay_within_the_budget() {
    const REQUESTS: u64 = 600;
    const CONCURRENCY: usize = 8;
    let sick = Backend::http().name("sick").fail("/", 503).spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&sick],
            "retries:
  attempts: 1
  on: [gateway-error]
  backoff: {base: 1ms, max: 2ms}
  budget: {ratio: 0.2, min_per_second: 1}",
        )
        .spawn()
        .await;
    let started = std::time::Instant::now();
    let report = Load::new(proxy.outbound(), "be", "/")
        .concurrency(CONCURRENCY)
        .requests(REQUESTS)
        .run()
        .await;
    let run = started.elapsed();
    assert_eq!(
        report.by_status.get(&503).copied(),
        Some(REQUESTS),
        "every request failed with the backend's 503: {report:?}"
    );
    let metrics = proxy.metrics().await;
    let retries = service_counter(&metrics, "sinew_retries_total", "be");
    let exhausted = service_counter(&metrics, "sinew_retry_budget_exhausted_total", "be");
    eprintln!(
        "retries: {retries} retries for {REQUESTS} requests in {run:?} (ratio {:.3}); budget_exhausted counter {exhausted}",
        retries as f64 / REQUESTS as f64
    );
    // The whole run fits in one budget window (10 s): 20 % of the requests
    // plus 1/s × 10 s, plus one per concurrent request for the budget's
    // documented check-then-withdraw race.
    assert!(
        run < Duration::from_secs(9),
        "the load outlasted a window: {run:?}"
    );
    let ceiling = REQUESTS / 5 + 10 + CONCURRENCY as u64;
    assert!(
        retries <= ceiling,
        "{retries} retries for {REQUESTS} requests: over the budget (≤ {ceiling})"
    );
    assert!(
        retries >= REQUESTS / 5,
        "{retries} retries: the budget grants 20 % of the requests"
    );
    assert_eq!(
        sick.requests() as u64,
        REQUESTS + retries,
        "the backend saw each request plus each counted retry"
    );
}

/// Two endpoints behind round-robin: `sick` answers `/upload` with 503,
/// `well` with 200; retries on gateway errors, 1 KiB replay cap.
async fn upload_setup() -> (Backend, Backend, Proxy) {
    let sick = Backend::http()
        .name("sick")
        .fail("/upload", 503)
        .spawn()
        .await;
    let well = Backend::http().name("well").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service_with(
            "be",
            &[&sick, &well],
            "balancer: {algorithm: round-robin}
retries: {attempts: 1, on: [gateway-error], max_body_bytes: 1024, backoff: {base: 5ms, max: 5ms}}",
        )
        .spawn()
        .await;
    (sick, well, proxy)
}

/// Requests the sick endpoint saw with a body of `len` bytes.
fn sick_with(sick: &Backend, len: usize) -> usize {
    sick.recorded().iter().filter(|r| r.body_len == len).count()
}

/// PUTs a body of `len` bytes (more than the 1 KiB cap) until one has
/// reached the sick endpoint: its 503 must stand, not be replayed.
async fn put_past_the_cap_until_sick(proxy: &Proxy, sick: &Backend, len: usize) {
    let mut answers = Vec::new();
    for _ in 0..4 {
        let response = proxy.send(put("/upload", vec![b'x'; len])).await;
        answers.push(describe(&response));
        if sick_with(sick, len) > 0 {
            assert_eq!(
                response.status, 503,
                "a {len}-byte body past the 1024-byte max_body_bytes was retried: {answers:?}"
            );
            assert_eq!(response.backend(), Some("sick"), "{answers:?}");
            break;
        }
        assert_eq!(response.status, 200, "{answers:?}");
    }
    assert_eq!(
        sick_with(sick, len),
        1,
        "sent once, not replayed: {answers:?}"
    );
    assert_eq!(retries_of(proxy, "be").await, 0, "{answers:?}");
}

#[tokio::test]
async fn a_streamed_body_past_max_body_bytes_is_not_retried_while_a_small_one_is() {
    let (sick, _well, proxy) = upload_setup().await;

    // 256 KiB: more than the proxy reads with the head, streamed past the cap.
    put_past_the_cap_until_sick(&proxy, &sick, 256 * 1024).await;

    // 512 bytes: buffered, so a 503 is retried on the sibling.
    for _ in 0..4 {
        let response = proxy.send(put("/upload", vec![b'y'; 512])).await;
        assert_eq!(response.status, 200, "{}", describe(&response));
        assert_eq!(response.header("x-body-len"), Some("512"));
    }
    let replayed = sick_with(&sick, 512);
    assert!(
        replayed >= 1,
        "round-robin sent a small body to the sick endpoint"
    );
    assert_eq!(retries_of(&proxy, "be").await, replayed as u64);
}

#[tokio::test]
async fn a_body_past_max_body_bytes_that_arrives_with_the_head_is_not_retried() {
    let (sick, _well, proxy) = upload_setup().await;
    // 4 KiB, four times the cap, but small enough to arrive in the same read
    // as the request head.
    put_past_the_cap_until_sick(&proxy, &sick, 4096).await;
}

#[tokio::test]
async fn retry_after_is_honoured_when_it_fits_the_request_timeout() {
    let busy = Backend::http()
        .name("busy")
        .fail("/", 503)
        .response_header("retry-after", "1")
        .spawn()
        .await;
    let good = Backend::http().name("good").spawn().await;
    let retries = "balancer: {algorithm: round-robin}\nretries: {attempts: 1, on: [gateway-error]}";
    let proxy = Proxy::builder(SINEW)
        .service_with("be", &[&busy, &good], retries)
        .spawn()
        .await;
    // Round-robin: one of two requests lands on `busy` first and waits 1 s.
    let mut slowest = Duration::ZERO;
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let response = proxy.get("be", "/").await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(response.text(), "good");
    }
    assert!(
        slowest >= Duration::from_millis(950),
        "waited for Retry-After: {slowest:?}"
    );

    // With a request timeout shorter than the asked pause, the 503 is passed on.
    let proxy = Proxy::builder(SINEW)
        .service_with("be", &[&busy], &format!("{retries}\ntimeout: 500ms"))
        .spawn()
        .await;
    let started = std::time::Instant::now();
    let response = proxy.get("be", "/").await;
    assert_eq!(response.status, 503);
    assert_eq!(response.header("retry-after"), Some("1"));
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
}
