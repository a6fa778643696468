//! An acknowledged append survives the process being killed.
//!
//! The test binary re-executes itself as a child (`crash_child`, selected
//! by an environment variable) that appends in a loop and prints every
//! acknowledged offset with its value. The parent SIGKILLs it at a random
//! moment, reopens the log (recovering whatever the kill tore) and checks
//! that every offset the child printed is there with its value. Runs
//! alternate between direct `PartitionLog::append` and the group-committing
//! `Committer` with concurrent tasks, all on one directory, so each run also
//! recovers from the previous kill.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::TempDir;
use sinew_events::{Committer, CommitterConfig, LogConfig, NewRecord, PartitionLog};

/// Set in the child: the log directory.
const DIR_VAR: &str = "SINEW_EVENTS_CRASH_DIR";
/// Set in the child: `direct` or `committer`.
const MODE_VAR: &str = "SINEW_EVENTS_CRASH_MODE";
/// Set in the child: the run number, part of every value.
const RUN_VAR: &str = "SINEW_EVENTS_CRASH_RUN";

/// How many times the child is killed.
const RUNS: u32 = 12;

/// The child stops by itself after this many appends (if never killed).
const CHILD_MAX_APPENDS: u64 = 100_000;

/// Small segments, so kills also land around segment rolls.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        ..LogConfig::default()
    }
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The child's side: a no-op unless the parent selected it.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let run = std::env::var(RUN_VAR).expect("run number");
    let log = PartitionLog::open(&dir, config()).expect("child opens the log");
    // libtest may have printed "test crash_child ... " without a newline.
    writeln!(std::io::stdout()).expect("stdout");
    match std::env::var(MODE_VAR).as_deref() {
        Ok("direct") => append_directly(log, &run),
        Ok("committer") => append_through_committer(log, &run),
        other => panic!("unknown mode {other:?}"),
    }
}

/// Batches of one to four records, each acknowledged offset printed.
fn append_directly(mut log: PartitionLog, run: &str) {
    let mut out = std::io::stdout().lock();
    for seq in 0..CHILD_MAX_APPENDS {
        let batch: Vec<_> = (0..1 + seq % 4)
            .map(|j| NewRecord::new(now_ms(), format!("run{run}-direct-{seq}-{j}")))
            .collect();
        let offsets = log.append(&batch).expect("append");
        for (offset, record) in offsets.zip(&batch) {
            let value = std::str::from_utf8(&record.value).expect("utf-8");
            writeln!(out, "ack {offset} {value}").expect("stdout");
        }
        out.flush().expect("stdout");
    }
}

/// Eight tasks appending concurrently through one committer.
fn append_through_committer(log: PartitionLog, run: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let committer = Arc::new(Committer::spawn(log, CommitterConfig::default()));
        let mut tasks = Vec::new();
        for task in 0..8 {
            let committer = Arc::clone(&committer);
            let run = run.to_owned();
            tasks.push(tokio::spawn(async move {
                for seq in 0..CHILD_MAX_APPENDS / 8 {
                    let batch: Vec<_> = (0..1 + seq % 3)
                        .map(|j| NewRecord::new(now_ms(), format!("run{run}-task{task}-{seq}-{j}")))
                        .collect();
                    let offsets = committer.append(batch.clone()).await.expect("append");
                    let mut out = std::io::stdout().lock();
                    for (offset, record) in offsets.zip(&batch) {
                        let value = std::str::from_utf8(&record.value).expect("utf-8");
                        writeln!(out, "ack {offset} {value}").expect("stdout");
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

/// Runs one child until a random moment after its first acknowledgement,
/// kills it, and returns every whole `ack` line it printed.
fn run_child_and_kill(
    dir: &std::path::Path,
    run: u32,
    mode: &str,
    delay: Duration,
) -> Vec<(u64, String)> {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(DIR_VAR, dir)
        .env(MODE_VAR, mode)
        .env(RUN_VAR, run.to_string())
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
            let (offset, value) = ack.split_once(' ').expect("ack line");
            acks.push((offset.parse().expect("offset"), value.to_owned()));
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
        "run {run}: child never acknowledged an append ({status})"
    );
    assert!(
        !status.success(),
        "run {run}: child finished before it was killed"
    );
    acks
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = TempDir::new("crash");
    let seed = u64::from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos()),
    ) | 1;
    let mut rng = Rng(seed);
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    for run in 0..RUNS {
        let mode = if run % 2 == 0 { "direct" } else { "committer" };
        let delay = Duration::from_millis(rng.below(150));
        let acks = run_child_and_kill(dir.path(), run, mode, delay);
        assert!(!acks.is_empty());
        for (offset, value) in acks {
            if let Some(previous) = acked.insert(offset, value.clone()) {
                panic!("seed {seed} run {run}: offset {offset} acknowledged twice ({previous}, {value})");
            }
        }
        let log = PartitionLog::open(dir.path(), config()).expect("reopen after kill");
        let last_acked = acked.keys().next_back().copied().unwrap_or(0);
        assert!(
            log.next_offset() > last_acked,
            "seed {seed} run {run} ({mode}, {delay:?}): next offset {} but {last_acked} was acknowledged",
            log.next_offset()
        );
        // Every acknowledged record of every run so far, with its content.
        let records = log.read(0, usize::MAX).expect("read everything");
        assert_eq!(records.len() as u64, log.next_offset());
        for (offset, value) in &acked {
            let record = &records[*offset as usize];
            assert_eq!(record.offset, *offset);
            assert_eq!(
                record.value,
                value.as_bytes(),
                "seed {seed} run {run}: offset {offset} lost its value"
            );
        }
    }
    assert!(acked.len() as u32 >= RUNS);
}
