//! Consumer groups: partitions split among members, moved when one dies or
//! leaves, fenced cursor commits, cursors that never move back unless
//! reset, and cursors and generations that survive a reopen.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::TempDir;
use sinew_events::{Assignment, Broker, BrokerConfig, Error, ErrorKind, Event};

const GROUP: &str = "shop/orders-audit";

/// Asserts the assignments are disjoint and cover `0..partitions`.
fn assert_split(assignments: &[&Assignment], partitions: u32) {
    let mut all = BTreeSet::new();
    for assignment in assignments {
        for p in &assignment.partitions {
            assert!(all.insert(*p), "partition {p} owned twice: {assignments:?}");
        }
    }
    assert_eq!(all, (0..partitions).collect(), "{assignments:?}");
}

/// Publishes `count` events with distinct keys so every partition gets some.
async fn fill(broker: &Broker, count: u64) {
    let events = (0..count)
        .map(|i| Event::new(format!("e-{i}"), "x").with_key(format!("k-{i}")))
        .collect();
    broker.publish("orders", events).await.expect("publish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_is_replaced_within_the_session_timeout() {
    let dir = TempDir::new("groups-expiry");
    let config = BrokerConfig::default();
    let timeout = config.session_timeout;
    let broker = Broker::open(dir.path(), config).await.expect("open");
    fill(&broker, 200).await;
    for member in ["a", "b", "c"] {
        broker
            .heartbeat(GROUP, "orders", member)
            .await
            .expect("join");
    }
    let a = broker.heartbeat(GROUP, "orders", "a").await.expect("a");
    let b = broker.heartbeat(GROUP, "orders", "b").await.expect("b");
    // Taken before c's last heartbeat: the broker's clock for it is later.
    let c_last = Instant::now();
    let c = broker.heartbeat(GROUP, "orders", "c").await.expect("c");
    assert_eq!((a.generation, b.generation), (c.generation, c.generation));
    assert_split(&[&a, &b, &c], 8);
    assert!(a.partitions.len() >= 2 && b.partitions.len() >= 2 && c.partitions.len() >= 2);
    // c owns its partitions and may commit them.
    let c_partition = c.partitions[0];
    broker
        .commit(GROUP, "orders", c_partition, 1, "c", c.generation)
        .await
        .expect("c commits while it owns the partition");

    // c goes silent; a and b keep heartbeating until they own everything.
    let (a, b) = loop {
        let a = broker.heartbeat(GROUP, "orders", "a").await.expect("a");
        let b = broker.heartbeat(GROUP, "orders", "b").await.expect("b");
        if a.partitions.len() + b.partitions.len() == 8 && a.generation == b.generation {
            break (a, b);
        }
        assert!(
            c_last.elapsed() < timeout + Duration::from_secs(1),
            "c's partitions did not move within {:?}",
            timeout + Duration::from_secs(1)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let moved_after = c_last.elapsed();
    assert!(
        moved_after >= timeout,
        "moved after {moved_after:?}, before the timeout"
    );
    assert!(a.generation > c.generation);
    assert_split(&[&a, &b], 8);

    // c lost the partition: its commit is refused, whatever it gives.
    for generation in [c.generation, a.generation] {
        let error = broker
            .commit(GROUP, "orders", c_partition, 5, "c", generation)
            .await
            .expect_err("fenced");
        assert_eq!(error.kind(), ErrorKind::Fenced);
        assert!(
            matches!(error, Error::NotOwner { current, .. } if current == a.generation),
            "{error}"
        );
    }
    assert_eq!(
        broker
            .committed(GROUP, "orders", c_partition)
            .await
            .expect("committed"),
        Some(1)
    );
    // The new owner commits with the new generation.
    let owner = if a.partitions.contains(&c_partition) {
        ("a", &a)
    } else {
        ("b", &b)
    };
    broker
        .commit(GROUP, "orders", c_partition, 5, owner.0, owner.1.generation)
        .await
        .expect("the new owner commits");
    assert_eq!(
        broker
            .committed(GROUP, "orders", c_partition)
            .await
            .expect("committed"),
        Some(5)
    );
    // c comes back: it joins anew, with a new generation.
    let back = broker
        .heartbeat(GROUP, "orders", "c")
        .await
        .expect("rejoin");
    assert!(back.generation > a.generation);
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leave_moves_partitions_at_once_and_commits_are_fenced() {
    let dir = TempDir::new("groups-leave");
    let config = BrokerConfig {
        partitions: 2,
        ..BrokerConfig::default()
    };
    let broker = Broker::open(dir.path(), config).await.expect("open");
    fill(&broker, 40).await;
    let ends = [
        broker.offsets("orders", 0).await.expect("offsets").end,
        broker.offsets("orders", 1).await.expect("offsets").end,
    ];
    assert!(ends[0] >= 10 && ends[1] >= 10, "{ends:?}");
    let a1 = broker.heartbeat(GROUP, "orders", "a").await.expect("a");
    assert_eq!(a1.partitions, [0, 1]);
    broker
        .commit(GROUP, "orders", 1, 3, "a", a1.generation)
        .await
        .expect("commit");
    // A lower commit changes nothing; past the end is refused.
    broker
        .commit(GROUP, "orders", 1, 2, "a", a1.generation)
        .await
        .expect("late commit");
    assert_eq!(
        broker.committed(GROUP, "orders", 1).await.expect("c"),
        Some(3)
    );
    let error = broker
        .commit(GROUP, "orders", 1, ends[1] + 1, "a", a1.generation)
        .await
        .expect_err("past the end");
    assert!(matches!(error, Error::CursorOutOfRange { .. }), "{error}");
    assert_eq!(error.kind(), ErrorKind::InvalidInput);
    // Strangers, future generations and other groups are fenced.
    for (member, generation, group) in [
        ("z", a1.generation, GROUP),
        ("a", a1.generation + 1, GROUP),
        ("a", a1.generation, "other"),
    ] {
        let error = broker
            .commit(group, "orders", 1, 4, member, generation)
            .await
            .expect_err("fenced");
        assert_eq!(
            error.kind(),
            ErrorKind::Fenced,
            "{member} {generation} {group}"
        );
    }

    // b joins and takes partition 1; a keeps 0 and its commits there.
    broker
        .heartbeat(GROUP, "orders", "b")
        .await
        .expect("b joins");
    let a2 = broker.heartbeat(GROUP, "orders", "a").await.expect("a");
    assert_eq!(a2.partitions, [0]);
    broker
        .commit(GROUP, "orders", 0, 2, "a", a1.generation)
        .await
        .expect("a kept partition 0 since a1");
    let error = broker
        .commit(GROUP, "orders", 1, 6, "a", a1.generation)
        .await
        .expect_err("a lost partition 1");
    assert_eq!(error.kind(), ErrorKind::Fenced);
    // b leaves: a gets partition 1 back at once, but what it delivered
    // before losing it cannot move the cursor.
    broker.leave(GROUP, "orders", "b").await.expect("leave");
    let a3 = broker.heartbeat(GROUP, "orders", "a").await.expect("a");
    assert_eq!(a3.partitions, [0, 1]);
    assert!(a3.generation > a2.generation);
    assert_eq!(
        broker
            .commit(GROUP, "orders", 1, 6, "a", a1.generation)
            .await
            .expect_err("stale generation")
            .kind(),
        ErrorKind::Fenced
    );
    broker
        .commit(GROUP, "orders", 1, 6, "a", a3.generation)
        .await
        .expect("current generation");

    // Reset moves a cursor back (replay), not past the end.
    broker
        .reset_cursor(GROUP, "orders", 1, 0)
        .await
        .expect("reset");
    assert_eq!(
        broker.committed(GROUP, "orders", 1).await.expect("c"),
        Some(0)
    );
    let error = broker
        .reset_cursor(GROUP, "orders", 1, ends[1] + 1)
        .await
        .expect_err("past the end");
    assert!(matches!(error, Error::CursorOutOfRange { .. }));
    assert_eq!(
        broker.committed("never", "orders", 1).await.expect("c"),
        None
    );
    broker.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_and_generations_survive_a_reopen() {
    let dir = TempDir::new("groups-reopen");
    let broker = Broker::open(dir.path(), BrokerConfig::default())
        .await
        .expect("open");
    fill(&broker, 200).await;
    let a = broker.heartbeat(GROUP, "orders", "a").await.expect("a");
    let mut expected = Vec::new();
    for p in 0..8 {
        let end = broker.offsets("orders", p).await.expect("offsets").end;
        broker
            .commit(GROUP, "orders", p, end, "a", a.generation)
            .await
            .expect("commit");
        expected.push(Some(end));
    }
    broker
        .reset_cursor("other", "orders", 3, 1)
        .await
        .expect("reset");
    // Concurrent commits from many groups share syncs and all land.
    let mut tasks = Vec::new();
    for g in 0..50 {
        let broker = std::sync::Arc::clone(&broker);
        tasks.push(tokio::spawn(async move {
            broker
                .reset_cursor(&format!("group-{g}"), "orders", 0, 1)
                .await
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("reset");
    }
    broker.close().await.expect("close");
    drop(broker);

    let broker = Broker::open(dir.path(), BrokerConfig::default())
        .await
        .expect("reopen");
    for p in 0..8 {
        assert_eq!(
            broker
                .committed(GROUP, "orders", p)
                .await
                .expect("committed"),
            expected[p as usize],
            "partition {p}"
        );
    }
    assert_eq!(
        broker.committed("other", "orders", 3).await.expect("c"),
        Some(1)
    );
    for g in 0..50 {
        assert_eq!(
            broker
                .committed(&format!("group-{g}"), "orders", 0)
                .await
                .expect("c"),
            Some(1)
        );
    }
    // Membership is gone, but the generation does not go back.
    let again = broker.heartbeat(GROUP, "orders", "a").await.expect("a");
    assert!(again.generation > a.generation);
    assert_eq!(again.partitions, (0..8).collect::<Vec<_>>());
    broker.close().await.expect("close");
}
