//! Control-plane (and broker) crashes while publishing: every
//! acknowledged event is delivered, in per-key order.

use super::*;

/// Events a crash run publishes: the acceptance number. A debug build
/// acknowledges about 1 500 a second here, so the run takes ~15 s;
/// `SINEW_EVENTS_CRASH_EVENTS` and `SINEW_EVENTS_CRASH_KILLS` make a longer
/// soak, `SINEW_EVENTS_CRASH_SEED` repeats a run's kill schedule.
const CRASH_EVENTS: usize = 20_000;
/// Control-plane SIGKILLs in a crash run.
const CRASH_KILLS: usize = 10;
/// Partition keys of a crash run.
const CRASH_KEYS: usize = 50;
/// Concurrent publishers (HTTP connections to the sidecar's api).
const CRASH_PUBLISHERS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_control_plane_crashes() {
    crash_run(Store::Embedded).await;
}

/// The same with the events on a standalone broker (`sinew broker`): kills
/// alternate between the control plane and the broker, restarted on its
/// data directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_broker_acknowledged_events_survive_broker_and_control_plane_crashes() {
    crash_run(Store::Broker(Broker::spawn(SINEW, &[]).await)).await;
}

/// The same on JetStream: kills alternate between the control plane and
/// nats-server (restarted on its store), so both the process serving the
/// sidecars and the one storing the events die mid-publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream_acknowledged_events_survive_broker_and_control_plane_crashes() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    crash_run(Store::Nats(nats)).await;
}

/// Where a crash run keeps its events.
enum Store {
    /// The control plane's embedded broker.
    Embedded,
    /// A nats-server's JetStream.
    Nats(Nats),
    /// A standalone `sinew broker`.
    Broker(Broker),
}

/// Publishes `events` (over [`CRASH_KEYS`] keys, [`CRASH_PUBLISHERS`] at a
/// time, each id retried until acknowledged) while the control plane is
/// SIGKILLed and restarted `kills` times (`SINEW_EVENTS_CRASH_EVENTS` and
/// `SINEW_EVENTS_CRASH_KILLS`, default [`CRASH_EVENTS`] and [`CRASH_KILLS`]); then checks nothing acknowledged
/// was lost, per-key order of first deliveries, and counts duplicates.
/// With the events on JetStream or a standalone broker, every other kill
/// is that process's instead of the control plane's.
async fn crash_run(mut store: Store) {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(default)
    };
    let events = env("SINEW_EVENTS_CRASH_EVENTS", CRASH_EVENTS);
    let kills = env("SINEW_EVENTS_CRASH_KILLS", CRASH_KILLS);
    let started = Instant::now();
    let seed = std::env::var("SINEW_EVENTS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let on = match &store {
        Store::Embedded => "the embedded broker",
        Store::Nats(_) => "JetStream",
        Store::Broker(_) => "a standalone broker",
    };
    eprintln!("crash run on {on}: {events} events, {kills} kills, seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);

    let mut builder = Control::builder(SINEW);
    match &store {
        Store::Embedded => {}
        Store::Nats(nats) => builder = builder.events(&format!("jetstream:{}", nats.url())),
        Store::Broker(broker) => builder = builder.on_broker(broker),
    }
    let mut control = builder.spawn().await;
    control.apply(&inventory_subscription()).await;
    let recorder = Recorder::default();
    let inventory = sidecar(
        &control,
        "inventory-1",
        "inventory",
        Some(recorder.app(0).await),
    )
    .await;
    let checkout = sidecar(&control, "checkout-1", "checkout", None).await;

    // Keys dealt to publishers: one key is always published by one task,
    // one event at a time, so its order is the order of its 200s.
    let per_key = events.div_ceil(CRASH_KEYS);
    let total = per_key * CRASH_KEYS;
    let tally = Arc::new(Tally::default());
    let acked = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for task in 0..CRASH_PUBLISHERS {
        let keys: Vec<String> = (task..CRASH_KEYS)
            .step_by(CRASH_PUBLISHERS)
            .map(|k| format!("key{k:02}"))
            .collect();
        let (tally, acked, api) = (tally.clone(), acked.clone(), checkout.api());
        tasks.push(tokio::spawn(async move {
            let mut publisher = Publisher::new(api);
            let mut acks = Vec::with_capacity(keys.len() * per_key);
            for n in 0..per_key {
                for key in &keys {
                    let id = format!("{key}-{n:05}");
                    acks.push(publish_until_acked(&mut publisher, &tally, &id, key).await);
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
            acks
        }));
    }

    // Kills at random moments. Most come once about (i+1)/(kills+2) of the
    // events are acknowledged (± a quarter of that spacing) plus up to
    // 150 ms, with publishing in full swing; those are followed by a wait
    // for publishing to resume, which measures how long publishers saw
    // 503s. One in four instead comes 0-300 ms after the previous restart,
    // while sidecars reconnect and the broker rebuilds its de-dup window.
    // Down 50-600 ms each time.
    let spacing = total / (kills + 2);
    let mut outages = Vec::new();
    let mut restarts = Vec::new();
    let mut quick = false;
    for i in 0..kills {
        if quick {
            tokio::time::sleep(Duration::from_millis(rng.u64(0..300))).await;
        } else {
            let threshold = (i + 1) * spacing + rng.usize(0..=spacing / 2) - spacing / 4;
            assert_eventually!(
                acked.load(Ordering::Relaxed) >= threshold,
                Duration::from_secs(60),
                "publishing stalled at {} of {total} before kill {i}: {}\n--- checkout ---\n{}\n--- control ---\n{}",
                acked.load(Ordering::Relaxed),
                tally.report(),
                checkout.stderr_tail(),
                tail(&control.stderr())
            );
            tokio::time::sleep(Duration::from_millis(rng.u64(0..150))).await;
        }
        let killed = Instant::now();
        let before = acked.load(Ordering::Relaxed);
        let down = Duration::from_millis(rng.u64(50..600));
        let (victim, restarting) = match &mut store {
            Store::Nats(nats) if i % 2 == 1 => {
                nats.kill().await;
                tokio::time::sleep(down).await;
                let restarting = Instant::now();
                nats.restart().await;
                ("nats-server", restarting)
            }
            Store::Broker(broker) if i % 2 == 1 => {
                broker.kill().await;
                tokio::time::sleep(down).await;
                let restarting = Instant::now();
                broker.restart().await;
                ("sinew broker", restarting)
            }
            _ => {
                control.kill().await;
                tokio::time::sleep(down).await;
                let restarting = Instant::now();
                control.restart().await;
                ("control plane", restarting)
            }
        };
        let restart = restarting.elapsed();
        restarts.push(restart);
        quick = i + 1 < kills && rng.usize(0..4) == 0;
        if quick {
            eprintln!(
                "kill {i} ({victim}): at {before} acked, down {:?}, restart took {restart:?}; killing again during recovery",
                restarting - killed
            );
            continue;
        }
        // In-flight publishes may still land as the kill hits; the
        // outage ends with the first acknowledgement after the restart.
        let after_restart = acked.load(Ordering::Relaxed);
        assert_eventually!(
            acked.load(Ordering::Relaxed) > after_restart,
            Duration::from_secs(30),
            "no publish acknowledged within 30 s of restart {i}: {}\n--- checkout ---\n{}",
            tally.report(),
            checkout.stderr_tail()
        );
        outages.push(killed.elapsed());
        eprintln!(
            "kill {i} ({victim}): at {before} acked, down {:?}, restart took {restart:?}, publishing again after {:?}",
            restarting - killed,
            killed.elapsed()
        );
    }
    let mut acks_by_task = Vec::new();
    for task in tasks {
        acks_by_task.push(task.await.expect("publisher"));
    }
    let published_in = started.elapsed();
    let acks: Vec<Ack> = acks_by_task.iter().flatten().cloned().collect();
    assert_eq!(acks.len(), total);

    // Drain: every acknowledged id reaches the app.
    let want: HashSet<&str> = acks.iter().map(|a| a.id.as_str()).collect();
    let drain = Instant::now();
    assert_eventually!(
        {
            let got = recorder.ids();
            want.iter().all(|id| got.contains(*id))
        },
        Duration::from_secs(90),
        "{} of {total} acknowledged events delivered:\n--- inventory ---\n{}\n--- control ---\n{}",
        want.iter()
            .filter(|id| recorder.ids().contains(**id))
            .count(),
        inventory.stderr_tail(),
        tail(&control.stderr())
    );
    let drained_in = drain.elapsed();

    let seen = recorder.seen();
    let delivered: HashSet<&str> = seen.iter().map(|d| d.id.as_str()).collect();
    let lost = want.iter().filter(|id| !delivered.contains(**id)).count();
    let unknown = delivered.iter().filter(|id| !want.contains(**id)).count();
    let duplicates = seen.len() - delivered.len();

    // Per key, first deliveries in acknowledgement order.
    let mut first: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut once = HashSet::new();
    for d in &seen {
        if once.insert(d.id.as_str()) {
            first.entry(d.key.as_str()).or_default().push(d.id.as_str());
        }
    }
    let mut acked_order: HashMap<&str, Vec<&str>> = HashMap::new();
    for ack in acks_by_task.iter().flatten() {
        acked_order
            .entry(ack.key.as_str())
            .or_default()
            .push(ack.id.as_str());
    }
    let out_of_order: Vec<&str> = acked_order
        .iter()
        .filter(|(key, ids)| first.get(*key) != Some(*ids))
        .map(|(key, _)| *key)
        .collect();

    // What the broker stored: every 200 where it said, and ids stored twice.
    let stored = match &mut store {
        Store::Nats(_) => stored_via_api(&control).await,
        Store::Embedded => {
            control.kill().await;
            stored_events(&control.dir().join("events/topics").join(TOPIC_DIR))
        }
        Store::Broker(broker) => {
            broker.kill().await;
            stored_events(&broker.dir().join("events/topics").join(TOPIC_DIR))
        }
    };
    let stored_twice = check_stored(&stored, &acks);
    let acked_as_duplicate = acks.iter().filter(|a| a.duplicate).count();

    let max_outage = outages.iter().max().copied().unwrap_or_default();
    let max_restart = restarts.iter().max().copied().unwrap_or_default();
    eprintln!(
        "crash run: {total} events acknowledged in {published_in:?} ({:.0}/s) over {kills} kills \
         (restart ≤ {max_restart:?}, publishing resumed ≤ {max_outage:?} after a kill); attempts: {}",
        total as f64 / published_in.as_secs_f64(),
        tally.report()
    );
    eprintln!(
        "crash run: lost {lost}, deliveries {} ({duplicates} duplicates), unknown ids delivered {unknown}, \
         200s with duplicate:true {acked_as_duplicate}, ids stored twice {stored_twice}, keys out of order {}; \
         drained in {drained_in:?}, whole test {:?}",
        seen.len(),
        out_of_order.len(),
        started.elapsed()
    );
    assert_eq!(lost, 0, "acknowledged and never delivered");
    assert_eq!(unknown, 0, "delivered ids nobody published");
    assert!(
        out_of_order.is_empty(),
        "first deliveries out of acknowledgement order for keys {out_of_order:?}; e.g. {}: acked {:?}… delivered {:?}…",
        out_of_order[0],
        &acked_order[out_of_order[0]][..10.min(acked_order[out_of_order[0]].len())],
        first.get(out_of_order[0]).map(|v| &v[..10.min(v.len())])
    );
    assert_eq!(
        stored_twice, 0,
        "the broker de-duplicates republished ids across restarts"
    );
}
