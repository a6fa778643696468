//! Worker threads, black-box: `workers: 2` serves traffic with a bounded number of OS threads.

use sinew_testkit::{Backend, Load, Proxy};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");
/// Threads allowed beyond the workers (main, signal/reload, api, blocking I/O).
const EXTRA_THREADS: u32 = 4;

#[tokio::test]
async fn two_workers_serve_with_a_bounded_thread_count() {
    let web = Backend::http().name("web").spawn().await;
    let proxy = Proxy::builder(SINEW)
        .service("web", &[&web])
        .workers(2)
        .spawn()
        .await;

    let report = Load::new(proxy.outbound(), "web", "/")
        .concurrency(8)
        .requests(400)
        .run()
        .await;
    assert_eq!(report.failed, 0, "{report:?}");
    assert_eq!(report.from_backend("web"), 400);

    let threads = proxy
        .process()
        .threads()
        .expect("Threads: in /proc/PID/status");
    assert!(
        (2..=2 + EXTRA_THREADS).contains(&threads),
        "workers: 2 runs {threads} threads"
    );
}
