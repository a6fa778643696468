//! The broker's disk fills up: 507, and nothing acknowledged lost.

use super::*;
use sinew_testkit::Tmpfs;

/// A mesh whose events are on an 8 MiB tmpfs (the control plane's data
/// directory, or a standalone broker's), published to until it is full.
struct FullDisk {
    control: Control,
    /// The standalone broker holding the events, if not the control plane.
    broker: Option<Broker>,
    recorder: Recorder,
    inventory: Proxy,
    checkout: Proxy,
    /// Events answered 200.
    acks: Vec<Ack>,
    /// Ids answered 507.
    refused: Vec<String>,
    /// The first 507's body.
    full: String,
    /// Last: unmounted once the processes above are gone.
    fs: Tmpfs,
}

impl FullDisk {
    /// The event topic's directory.
    fn topic_dir(&self) -> PathBuf {
        let root = match &self.broker {
            Some(broker) => broker.dir().to_path_buf(),
            None => self.control.dir().to_path_buf(),
        };
        root.join("events/topics").join(TOPIC_DIR)
    }
}

/// Starts the mesh with its events on a tmpfs (in the control plane, or
/// with `on_broker` in a standalone broker) and publishes 16 KiB events
/// until the sidecar answers 507, then 20 more (each must be 200 or 507);
/// `None` when no tmpfs can be mounted.
async fn fill_disk(on_broker: bool) -> Option<FullDisk> {
    let fs = match Tmpfs::mount("8m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: the full-disk test needs a tmpfs mount (root): {why}");
            return None;
        }
    };
    let (control, broker) = if on_broker {
        let broker = Broker::spawn_in(SINEW, fs.path().join("broker"), &[]).await;
        let control = Control::builder(SINEW).on_broker(&broker).spawn().await;
        (control, Some(broker))
    } else {
        let control = Control::builder(SINEW)
            .dir(fs.path().join("control"))
            .spawn()
            .await;
        (control, None)
    };
    control.apply(&inventory_subscription()).await;
    let on = if on_broker {
        "a standalone broker"
    } else {
        "the control plane"
    };
    eprintln!("full disk: {on} started on an 8 MiB tmpfs: {}", fs.usage());
    let recorder = Recorder::default();
    let app = recorder.app(0).await;
    let inventory = sidecar(&control, "inventory-1", "inventory", Some(app)).await;
    let checkout = sidecar(&control, "checkout-1", "checkout", None).await;

    let data = format!("{{\"pad\":\"{}\"}}", "x".repeat(16 * 1024));
    let mut publisher = Publisher::new(checkout.api());
    let (mut acks, mut refused, mut full) = (Vec::new(), Vec::new(), None);
    let mut n = 0usize;
    while refused.len() < 20 {
        assert!(n < 2_000, "8 MiB never filled up ({})", fs.usage());
        let id = format!("big-{n:05}");
        let key = format!("key{}", n % 8);
        n += 1;
        let answer = match publisher.publish(&id, &key, &data).await {
            Ok(a) => a,
            Err(e) => panic!(
                "publishing {id}: {e}\n--- checkout ---\n{}",
                checkout.stderr_tail()
            ),
        };
        match answer.status {
            StatusCode::OK => {
                let (partition, offset, duplicate) = answer.placed();
                acks.push(Ack {
                    id,
                    key,
                    partition,
                    offset,
                    duplicate,
                });
            }
            StatusCode::INSUFFICIENT_STORAGE => {
                full.get_or_insert(answer.text);
                refused.push(id);
            }
            other => panic!(
                "publishing {id}: {other} {}\n--- control ---\n{}",
                answer.text,
                tail(&control.stderr())
            ),
        }
    }
    let full = full.expect("a 507");
    eprintln!(
        "full disk: {} events of 16 KiB acknowledged, {} answered 507 ({}): {full}",
        acks.len(),
        refused.len(),
        fs.usage()
    );
    Some(FullDisk {
        control,
        broker,
        recorder,
        inventory,
        checkout,
        acks,
        refused,
        full,
        fs,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_loses_nothing_acknowledged() {
    full_disk_run(false).await;
}

/// The same with the events on a standalone broker whose disk fills: its
/// refusal crosses to the publisher as the same 507.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_broker_a_full_disk_answers_507_and_loses_nothing_acknowledged() {
    full_disk_run(true).await;
}

async fn full_disk_run(on_broker: bool) {
    let started = Instant::now();
    let Some(mut disk) = fill_disk(on_broker).await else {
        return;
    };
    assert!(
        disk.full.contains("No space left on device"),
        "the 507 names the storage problem: {}",
        disk.full
    );

    // The control plane is still up and serves its REST API.
    let health = disk.control.call(Method::GET, "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text());

    // Everything acknowledged is delivered.
    let want: HashSet<&str> = disk.acks.iter().map(|a| a.id.as_str()).collect();
    assert_eventually!(
        {
            let got = disk.recorder.ids();
            want.iter().all(|id| got.contains(*id))
        },
        Duration::from_secs(30),
        "{} of {} acknowledged events delivered\n--- inventory ---\n{}\n--- control ---\n{}",
        want.iter()
            .filter(|id| disk.recorder.ids().contains(**id))
            .count(),
        want.len(),
        disk.inventory.stderr_tail(),
        tail(&disk.control.stderr())
    );
    let seen = disk.recorder.seen();
    let delivered: HashSet<&str> = seen.iter().map(|d| d.id.as_str()).collect();
    let lost = want.iter().filter(|id| !delivered.contains(**id)).count();
    let refused_delivered = disk
        .refused
        .iter()
        .filter(|id| delivered.contains(id.as_str()))
        .count();

    // On disk: every 200 is stored where it said; no 507 left a record.
    let stored_twice = check_stored(&stored_events(&disk.topic_dir()), &disk.acks);
    let stored: HashSet<String> = stored_events(&disk.topic_dir()).into_values().collect();
    let refused_stored = disk
        .refused
        .iter()
        .filter(|id| stored.contains(*id))
        .count();
    eprintln!(
        "full disk: lost {lost}, deliveries {} ({} duplicates), refused {} (stored {refused_stored}, \
         delivered {refused_delivered}), stored twice {stored_twice}; disk at the end: {}; whole test {:?}",
        seen.len(),
        seen.len() - delivered.len(),
        disk.refused.len(),
        disk.fs.usage(),
        started.elapsed()
    );
    assert_eq!(lost, 0, "acknowledged and never delivered");
    assert_eq!(refused_stored, 0, "an event answered 507 was stored");
    assert_eq!(refused_delivered, 0, "an event answered 507 was delivered");
    assert_eq!(stored_twice, 0);
    disk.control.kill().await;
}

/// Writes zeros to `path` until the file system is full.
fn fill_up(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create filler");
    let chunk = [0u8; 4096];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_plane_restarted_on_a_full_disk_comes_back() {
    let Some(mut disk) = fill_disk(false).await else {
        return;
    };
    // Whatever space the broker left (cursor commits take it otherwise,
    // as deliveries go on) goes to another writer.
    fill_up(&disk.fs.path().join("filler"));
    // A crash while the disk is full: the control plane must come back
    // (config, certificates, REST), its broker answering 507 for publishes
    // and delivering what it stored.
    disk.control.kill().await;
    disk.control.restart().await;
    let health = disk.control.call(Method::GET, "/healthz", None).await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text());
    // Publishing answers clearly again once the sidecars reconnect: 507
    // while the disk is full, or 200 when the restart left room (then the
    // event must be delivered like the others) — never a silent drop.
    let mut publisher = Publisher::new(disk.checkout.api());
    let deadline = Instant::now() + Duration::from_secs(15);
    let stored_after_restart = loop {
        let status = publisher
            .publish("after-restart", "k", "{}")
            .await
            .map(|a| a.status)
            .ok();
        match status {
            Some(StatusCode::OK) => break true,
            Some(StatusCode::INSUFFICIENT_STORAGE) => break false,
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "publishing after the restart answers 507 or 200 (last {status:?})\n--- control ---\n{}",
            tail(&disk.control.stderr())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut want: HashSet<&str> = disk.acks.iter().map(|a| a.id.as_str()).collect();
    if stored_after_restart {
        want.insert("after-restart");
    }
    assert_eventually!(
        {
            let got = disk.recorder.ids();
            want.iter().all(|id| got.contains(*id))
        },
        Duration::from_secs(30),
        "acknowledged events delivered after the restart"
    );
    disk.control.kill().await;
}
