//! Acknowledged publishes survive the broker process being killed, and
//! republishing after a crash does not duplicate.
//!
//! The test binary re-executes itself as a child (`broker_crash_child`,
//! selected by an environment variable) that publishes through
//! `Broker::publish` from four concurrent tasks and prints every
//! acknowledged event: id, partition, offset, whether it was a duplicate.
//! Task `t` publishes the sequence numbers `s ≡ t (mod 4)` in order, in
//! batches of one to four, with id `e<s>` and key `k<s mod 8>` (so each key
//! belongs to one task and its sequence numbers rise). Each run starts 40
//! sequence numbers before the highest one acknowledged so far, so it
//! republishes events acknowledged before the last kill, and those written
//! but unanswered when it came. The parent SIGKILLs the child at a random
//! moment, reopens the broker and checks: every acknowledged id is in the
//! log exactly once, where it was acknowledged; no id is in the log twice
//! (the rebuilt window caught every republish); per key, sequence numbers
//! rise and one partition holds them all.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{read_partition, TempDir};
use sinew_events::{event_id, Broker, BrokerConfig, Event, LogConfig};

/// Set in the child: the broker directory.
const DIR_VAR: &str = "SINEW_EVENTS_BROKER_CRASH_DIR";
/// Set in the child: the first sequence number to publish.
const START_VAR: &str = "SINEW_EVENTS_BROKER_CRASH_START";

/// How many times the child is killed.
const RUNS: u32 = 12;
/// Publishing tasks in the child.
const TASKS: u64 = 4;
/// Distinct keys (a multiple of `TASKS`: each key belongs to one task).
const KEYS: u64 = 8;
/// How far before the highest acknowledged sequence number a run starts.
const OVERLAP: u64 = 40;
/// The child stops by itself after this many publishes per task.
const CHILD_MAX_PUBLISHES: u64 = 50_000;
/// The topic.
const TOPIC: &str = "crash";

/// Four partitions and small segments, so kills also land around rolls.
fn config() -> BrokerConfig {
    BrokerConfig {
        partitions: 4,
        log: LogConfig {
            segment_bytes: 4096,
            ..LogConfig::default()
        },
        ..BrokerConfig::default()
    }
}

/// Event number `seq`.
fn event(seq: u64) -> Event {
    Event::new(format!("e{seq}"), format!("value-{seq}")).with_key(format!("k{}", seq % KEYS))
}

/// The child's side: a no-op unless the parent selected it.
#[test]
fn broker_crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let start: u64 = std::env::var(START_VAR)
        .expect("start")
        .parse()
        .expect("start number");
    // libtest may have printed "test broker_crash_child ... " without a newline.
    writeln!(std::io::stdout()).expect("stdout");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let broker = Broker::open(&dir, config())
            .await
            .expect("child opens the broker");
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let broker = Arc::clone(&broker);
            tasks.push(tokio::spawn(async move {
                // The first sequence number >= start of this task's class.
                let mut seq = start + (task + TASKS - start % TASKS) % TASKS;
                for round in 0..CHILD_MAX_PUBLISHES {
                    let batch: Vec<u64> = (0..1 + round % 4).map(|j| seq + j * TASKS).collect();
                    seq += batch.len() as u64 * TASKS;
                    let events = batch.iter().map(|s| event(*s)).collect();
                    let published = broker.publish(TOPIC, events).await.expect("publish");
                    let mut out = std::io::stdout().lock();
                    for (s, p) in batch.iter().zip(published) {
                        writeln!(
                            out,
                            "ack {s} {} {} {}",
                            p.partition,
                            p.offset,
                            u8::from(p.duplicate)
                        )
                        .expect("stdout");
                    }
                    out.flush().expect("stdout");
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
    });
}

/// One acknowledged event as the child printed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    /// Its sequence number.
    seq: u64,
    /// Its partition.
    partition: u32,
    /// Its offset.
    offset: u64,
    /// Whether the broker answered it as a duplicate.
    duplicate: bool,
}

/// A small xorshift generator: the kill delays need no more.
struct Rng(u64);

impl Rng {
    /// The next number below `bound`.
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Runs one child from `start` until `delay` after its first
/// acknowledgement, kills it, and returns every whole `ack` line it printed.
fn run_child_and_kill(dir: &Path, run: u32, start: u64, delay: Duration) -> Vec<Ack> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "broker_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_VAR, dir)
        .env(START_VAR, start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let (first_ack, first_ack_seen) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // A line cut by the kill has no newline: it was never complete.
            let Some(ack) = line.strip_suffix('\n').and_then(|l| l.strip_prefix("ack ")) else {
                continue;
            };
            let fields: Vec<u64> = ack
                .split(' ')
                .map(|f| f.parse().expect("ack field"))
                .collect();
            let [seq, partition, offset, duplicate] = fields[..] else {
                panic!("ack line {ack:?}");
            };
            acks.push(Ack {
                seq,
                partition: partition as u32,
                offset,
                duplicate: duplicate == 1,
            });
            if acks.len() == 1 {
                let _ = first_ack.send(());
            }
        }
        acks
    });
    let started = first_ack_seen.recv_timeout(Duration::from_secs(60));
    std::thread::sleep(delay);
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("wait for child");
    let acks = reader.join().expect("reader thread");
    assert!(
        started.is_ok(),
        "run {run}: child never acknowledged a publish ({status})"
    );
    assert!(
        !status.success(),
        "run {run}: child finished before it was killed"
    );
    acks
}

/// Every record's sequence number by (partition, offset), read from a
/// freshly opened broker, which is then closed.
fn read_log(dir: &Path) -> BTreeMap<(u32, u64), (u64, String)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let broker = Broker::open(dir, config())
            .await
            .expect("reopen after kill");
        let mut log = BTreeMap::new();
        for partition in 0..broker.partitions(TOPIC).await.expect("partitions") {
            for record in read_partition(&broker, TOPIC, partition).await {
                let id = event_id(&record).expect("ce-id");
                let seq: u64 = id[1..].parse().expect("id number");
                assert_eq!(record.value, format!("value-{seq}").as_bytes());
                let key = String::from_utf8(record.key.to_vec()).expect("key");
                log.insert((partition, record.offset), (seq, key));
            }
        }
        broker.close().await.expect("close");
        log
    })
}

#[test]
fn acknowledged_publishes_survive_sigkill_once_each() {
    let dir = TempDir::new("broker-crash");
    let seed = u64::from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos()),
    ) | 1;
    let mut rng = Rng(seed);
    // Where each acknowledged sequence number is.
    let mut acked: HashMap<u64, (u32, u64)> = HashMap::new();
    let mut duplicates_answered = 0u64;
    for run in 0..RUNS {
        let start = acked
            .keys()
            .max()
            .map_or(0, |max| max.saturating_sub(OVERLAP));
        let delay = Duration::from_millis(rng.below(150));
        let acks = run_child_and_kill(dir.path(), run, start, delay);
        assert!(!acks.is_empty());
        for ack in acks {
            let at = (ack.partition, ack.offset);
            match acked.get(&ack.seq) {
                // Acknowledged before: a duplicate, at the original's place.
                Some(original) => {
                    assert!(
                        ack.duplicate,
                        "seed {seed} run {run}: e{} written twice",
                        ack.seq
                    );
                    assert_eq!(*original, at, "seed {seed} run {run}: e{} moved", ack.seq);
                }
                None => {
                    acked.insert(ack.seq, at);
                }
            }
            duplicates_answered += u64::from(ack.duplicate);
        }

        let log = read_log(dir.path());
        let mut found: HashMap<u64, Vec<(u32, u64)>> = HashMap::new();
        for (at, (seq, _)) in &log {
            found.entry(*seq).or_default().push(*at);
        }
        // Every acknowledged event, exactly once, where it was acknowledged.
        for (seq, at) in &acked {
            assert_eq!(
                found.get(seq).map(Vec::as_slice),
                Some(&[*at][..]),
                "seed {seed} run {run}: e{seq}"
            );
        }
        // And nothing in the log twice, acknowledged or not.
        let twice: Vec<_> = found
            .iter()
            .filter(|(_, places)| places.len() > 1)
            .collect();
        assert!(
            twice.is_empty(),
            "seed {seed} run {run}: in the log twice: {twice:?}"
        );
        // Per key: one partition, rising sequence numbers.
        let mut keys: HashMap<&str, (u32, u64)> = HashMap::new();
        for ((partition, offset), (seq, key)) in &log {
            assert_eq!(key, &format!("k{}", seq % KEYS));
            if let Some((p, last)) = keys.insert(key, (*partition, *seq)) {
                assert_eq!(
                    p, *partition,
                    "seed {seed} run {run}: {key} in two partitions"
                );
                assert!(
                    last < *seq,
                    "seed {seed} run {run}: {key}: e{seq} at {offset} after e{last}"
                );
            }
        }
    }
    eprintln!(
        "{} events acknowledged over {RUNS} kills; {duplicates_answered} republished events answered as duplicates",
        acked.len()
    );
    assert!(duplicates_answered > 0, "no run republished anything");
}
