//! A subscriber replica dies: the survivors take its partitions.

use super::*;

/// Replicas of the subscribing service.
const REPLICAS: usize = 3;
/// How long a survivor may take to deliver a dead replica's partition: the
/// broker's session timeout (3 s), its expiry tick, a heartbeat (500 ms)
/// and a worker's start.
const FAILOVER_BOUND: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_partitions_are_delivered_by_the_survivors_within_5s() {
    failover(&Control::builder(SINEW).spawn().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_jetstream_a_killed_replicas_partitions_are_delivered_by_the_survivors_within_5s() {
    let Some(nats) = Nats::start().await else {
        return;
    };
    let control = Control::builder(SINEW)
        .events(&format!("jetstream:{}", nats.url()))
        .spawn()
        .await;
    failover(&control).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_broker_a_killed_replicas_partitions_are_delivered_by_the_survivors_within_5s() {
    let broker = Broker::spawn(SINEW, &[]).await;
    let control = Control::builder(SINEW).on_broker(&broker).spawn().await;
    failover(&control).await;
}

async fn failover(control: &Control) {
    let started = Instant::now();
    control.apply(&inventory_subscription()).await;
    let recorder = Recorder::default();
    let mut replicas = Vec::new();
    for r in 0..REPLICAS {
        let app = recorder.app(r).await;
        let name = format!("inventory-{}", r + 1);
        replicas.push(sidecar(control, &name, "inventory", Some(app)).await);
    }
    let checkout = sidecar(control, "checkout-1", "checkout", None).await;

    // Steady publishing: two connections, 64 keys (every partition gets
    // events many times a second), a few hundred events a second.
    let stop = Arc::new(AtomicBool::new(false));
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for task in 0..2 {
        let (stop, acks, tally, api) = (stop.clone(), acks.clone(), tally.clone(), checkout.api());
        tasks.push(tokio::spawn(async move {
            let mut publisher = Publisher::new(api);
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("key{:02}", (2 * n + task) % 64);
                let id = format!("e{task}-{n:06}");
                let ack = publish_until_acked(&mut publisher, &tally, &id, &key).await;
                acks.lock().unwrap().push(ack);
                n += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let partition_of = |acks: &Mutex<Vec<Ack>>| -> HashMap<String, u32> {
        acks.lock()
            .unwrap()
            .iter()
            .map(|a| (a.id.clone(), a.partition))
            .collect()
    };

    // Wait for a settled assignment: in the last second every partition
    // was delivered by exactly one replica, and every replica delivered.
    let settled = Instant::now();
    let owners = loop {
        let owners = settled_owners(&recorder.seen(), &partition_of(&acks));
        if !owners.is_empty() {
            break owners;
        }
        assert!(
            settled.elapsed() < Duration::from_secs(30),
            "no settled assignment of partitions to the {REPLICAS} replicas; last second: {:?}",
            recent_owners(&recorder.seen(), &partition_of(&acks))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!(
        "failover: assignment settled after {:?}: {:?}",
        settled.elapsed(),
        sorted(&owners)
    );

    // SIGKILL the replica with the most partitions.
    let victim = (0..REPLICAS)
        .max_by_key(|r| owners.values().filter(|o| *o == r).count())
        .unwrap();
    let orphaned: Vec<u32> = {
        let mut p: Vec<u32> = owners
            .iter()
            .filter(|(_, o)| **o == victim)
            .map(|(p, _)| *p)
            .collect();
        p.sort_unstable();
        p
    };
    let killed = Instant::now();
    replicas[victim].process_mut().kill().expect("kill");
    assert!(
        replicas[victim]
            .wait_exit(Duration::from_secs(5))
            .await
            .is_some(),
        "the killed sidecar exits"
    );

    // From the kill to the first delivery by a survivor, per partition.
    let mut taken_over: HashMap<u32, Duration> = HashMap::new();
    assert_eventually!(
        {
            let partitions = partition_of(&acks);
            for d in recorder.seen() {
                if d.replica == victim || d.at < killed {
                    continue;
                }
                if let Some(p) = partitions.get(&d.id).filter(|p| orphaned.contains(p)) {
                    let after = d.at - killed;
                    let best = taken_over.entry(*p).or_insert(after);
                    *best = (*best).min(after);
                }
            }
            taken_over.len() == orphaned.len()
        },
        Duration::from_secs(20),
        "partitions {orphaned:?} of inventory-{} not delivered by a survivor within 20 s (so far {:?})\n--- control ---\n{}",
        victim + 1,
        taken_over,
        tail(&control.stderr())
    );
    let failover = taken_over.values().max().copied().unwrap_or_default();

    // Keep publishing a moment, then stop and drain.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("publisher");
    }
    let acks = acks.lock().unwrap().clone();
    let want: HashSet<&str> = acks.iter().map(|a| a.id.as_str()).collect();
    assert_eventually!(
        {
            let got = recorder.ids();
            want.iter().all(|id| got.contains(*id))
        },
        Duration::from_secs(20),
        "{} of {} acknowledged events delivered",
        want.iter()
            .filter(|id| recorder.ids().contains(**id))
            .count(),
        want.len()
    );
    let seen = recorder.seen();
    let delivered: HashSet<&str> = seen.iter().map(|d| d.id.as_str()).collect();
    let lost = want.iter().filter(|id| !delivered.contains(**id)).count();
    eprintln!(
        "failover: killed inventory-{} owning partitions {orphaned:?}; first survivor delivery per partition {:?}; \
         max {failover:?} (bound {FAILOVER_BOUND:?})",
        victim + 1,
        sorted(&taken_over),
    );
    eprintln!(
        "failover: {} events acknowledged ({}), {} deliveries ({} duplicates), lost {lost}; whole test {:?}",
        acks.len(),
        tally.report(),
        seen.len(),
        seen.len() - delivered.len(),
        started.elapsed()
    );
    assert_eq!(lost, 0, "acknowledged and never delivered");
    assert!(
        failover <= FAILOVER_BOUND,
        "a survivor took {failover:?} to deliver a dead replica's partition: {:?}",
        sorted(&taken_over)
    );
}

/// Per partition, the replicas that delivered its events in the last second.
fn recent_owners(
    seen: &[Delivery],
    partitions: &HashMap<String, u32>,
) -> HashMap<u32, HashSet<usize>> {
    let since = Instant::now() - Duration::from_secs(1);
    let mut owners: HashMap<u32, HashSet<usize>> = HashMap::new();
    for d in seen.iter().filter(|d| d.at >= since) {
        if let Some(p) = partitions.get(&d.id) {
            owners.entry(*p).or_default().insert(d.replica);
        }
    }
    owners
}

/// The owner of each partition, when the last second shows every partition
/// published to delivered by one replica only, and every replica owning
/// some; otherwise empty.
fn settled_owners(seen: &[Delivery], partitions: &HashMap<String, u32>) -> HashMap<u32, usize> {
    let published: HashSet<u32> = partitions.values().copied().collect();
    let recent = recent_owners(seen, partitions);
    let single = published.len() == 8
        && published
            .iter()
            .all(|p| recent.get(p).is_some_and(|r| r.len() == 1));
    let owners: HashMap<u32, usize> = recent
        .into_iter()
        .filter_map(|(p, r)| Some((p, r.into_iter().next()?)))
        .collect();
    let all_replicas = (0..REPLICAS).all(|r| owners.values().any(|o| *o == r));
    if single && all_replicas {
        owners
    } else {
        HashMap::new()
    }
}

/// A map's entries in key order, for printing.
fn sorted<V: Clone>(map: &HashMap<u32, V>) -> Vec<(u32, V)> {
    let mut entries: Vec<(u32, V)> = map.iter().map(|(k, v)| (*k, v.clone())).collect();
    entries.sort_by_key(|(k, _)| *k);
    entries
}
