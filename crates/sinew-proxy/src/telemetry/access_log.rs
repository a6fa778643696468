//! The JSON-lines access log: requests format a line and hand it to a writer thread, never waiting on I/O.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::access_entry::AccessEntry;
use super::instruments::Counter;

/// Where access log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessLogTarget {
    /// The process's standard output.
    Stdout,
    /// A file, created if missing and appended to.
    File(PathBuf),
}

/// An open access log.
///
/// [`AccessLog::log`] formats the entry on the calling thread (one buffer
/// allocation per line) and passes it to a background writer through a
/// bounded channel. If the writer is behind and the channel is full, the line
/// is dropped and counted: a request never waits for the disk. The writer
/// flushes whenever the channel runs empty. Dropping the `AccessLog` writes
/// out what is queued and joins the writer thread.
///
/// ```no_run
/// use sinew_proxy::telemetry::{AccessLog, AccessLogTarget, Metrics};
/// let metrics = Metrics::new();
/// let log = AccessLog::open_with(AccessLogTarget::Stdout, 4096, metrics.access_log_dropped())?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct AccessLog {
    lines: Option<SyncSender<Vec<u8>>>,
    dropped: Arc<Counter>,
    writer: Option<JoinHandle<()>>,
}

impl AccessLog {
    /// Lines that may wait for the writer before new ones are dropped.
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// Opens `target` with the default capacity and a private drop counter.
    pub fn open(target: AccessLogTarget) -> io::Result<AccessLog> {
        AccessLog::open_with(target, Self::DEFAULT_CAPACITY, Arc::default())
    }

    /// Opens `target`, queueing up to `capacity` lines (at least one) and
    /// counting dropped lines in `dropped` (typically
    /// [`Metrics::access_log_dropped`](super::Metrics::access_log_dropped)).
    pub fn open_with(
        target: AccessLogTarget,
        capacity: usize,
        dropped: Arc<Counter>,
    ) -> io::Result<AccessLog> {
        let sink: Box<dyn Write + Send> = match &target {
            AccessLogTarget::Stdout => Box::new(io::stdout()),
            AccessLogTarget::File(path) => {
                Box::new(OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        AccessLog::with_sink(sink, capacity, dropped)
    }

    pub(crate) fn with_sink(
        sink: Box<dyn Write + Send>,
        capacity: usize,
        dropped: Arc<Counter>,
    ) -> io::Result<AccessLog> {
        let (lines, queued) = mpsc::sync_channel(capacity.max(1));
        let writer = std::thread::Builder::new()
            .name("sinew-access-log".into())
            .spawn(move || write_lines(&queued, sink))?;
        Ok(AccessLog {
            lines: Some(lines),
            dropped,
            writer: Some(writer),
        })
    }

    /// Logs one request without blocking: the line is queued or, when the
    /// queue is full, dropped and counted.
    pub fn log(&self, entry: &AccessEntry<'_>) {
        let mut line = Vec::with_capacity(384);
        entry.write_json(&mut line);
        let Some(lines) = &self.lines else { return };
        match lines.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Lines dropped so far because the writer was behind (or gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        // Closing the channel lets the writer drain the queue and exit.
        drop(self.lines.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("access log writer thread panicked");
            }
        }
    }
}

/// The writer thread: write queued lines, flush when the queue runs empty.
fn write_lines(queued: &Receiver<Vec<u8>>, sink: Box<dyn Write + Send>) {
    let mut out = BufWriter::with_capacity(64 * 1024, sink);
    let mut healthy = true;
    while let Ok(line) = queued.recv() {
        let mut result = out.write_all(&line);
        while let Ok(line) = queued.try_recv() {
            result = result.and_then(|()| out.write_all(&line));
        }
        result = result.and_then(|()| out.flush());
        match result {
            Ok(()) => healthy = true,
            // Report once per failure streak, not once per line.
            Err(error) if healthy => {
                healthy = false;
                tracing::warn!(%error, "access log write failed; lines are being lost");
            }
            Err(_) => {}
        }
    }
    if let Err(error) = out.flush() {
        tracing::warn!(%error, "access log final flush failed");
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::telemetry::{AccessFlags, Direction, TraceContext};

    fn entry(path: &str) -> AccessEntry<'_> {
        AccessEntry {
            timestamp: SystemTime::now(),
            direction: Direction::Inbound,
            method: "POST",
            authority: "orders:8080",
            path,
            status: 201,
            duration: Duration::from_micros(87),
            bytes_in: Some(12),
            bytes_out: Some(34),
            upstream: "127.0.0.1:8080".parse::<SocketAddr>().ok(),
            service: "orders",
            route: "",
            trace: Some(TraceContext::new_root()),
            remote: "10.1.2.3:40000".parse::<SocketAddr>().ok(),
            peer_identity: None,
            user_agent: Some("test-agent/1.0"),
            error: None,
            policy: None,
            flags: AccessFlags::DIRECT_RESPONSE,
        }
    }

    /// A unique temp file path, removed on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(tag: &str) -> TempPath {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let name = format!(
                "sinew-{tag}-{}-{nanos}-{}.log",
                std::process::id(),
                fastrand::u64(..)
            );
            TempPath(std::env::temp_dir().join(name))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn writes_json_lines_to_a_file() {
        let path = TempPath::new("access-log");
        let log = AccessLog::open(AccessLogTarget::File(path.0.clone())).expect("open");
        let first = entry("/orders/1");
        log.log(&first);
        log.log(&entry("/orders/\"2\""));
        drop(log); // drains and joins the writer

        let text = std::fs::read_to_string(&path.0).expect("read back");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["path"], "/orders/1");
        assert_eq!(lines[1]["path"], "/orders/\"2\"");
        assert_eq!(lines[0]["status"], 201);
        assert_eq!(lines[0]["method"], "POST");
        assert_eq!(lines[0]["duration_us"], 87);
        assert_eq!(lines[0]["flags"], serde_json::json!(["direct_response"]));
        let trace = first.trace.map(|t| t.trace_id_hex().to_string());
        assert_eq!(lines[0]["trace_id"].as_str(), trace.as_deref());
    }

    #[test]
    fn appends_to_an_existing_file() {
        let path = TempPath::new("access-log-append");
        std::fs::write(&path.0, "{\"earlier\":true}\n").expect("seed");
        let log = AccessLog::open(AccessLogTarget::File(path.0.clone())).expect("open");
        log.log(&entry("/"));
        drop(log);
        let text = std::fs::read_to_string(&path.0).expect("read back");
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with("{\"earlier\":true}\n"));
    }

    /// A sink whose first write blocks until the test releases it.
    struct StalledSink {
        written: Arc<Mutex<Vec<u8>>>,
        entered: SyncSender<()>,
        release: Option<Receiver<()>>,
    }

    impl Write for StalledSink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(release) = self.release.take() {
                let _ = self.entered.send(());
                let _ = release.recv();
            }
            let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
            written.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn drops_and_counts_lines_when_the_writer_is_behind() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let (entered_tx, entered_rx) = mpsc::sync_channel(1);
        let (release_tx, release_rx) = mpsc::sync_channel(1);
        let sink = StalledSink {
            written: Arc::clone(&written),
            entered: entered_tx,
            release: Some(release_rx),
        };
        let dropped = Arc::new(Counter::default());
        let log = AccessLog::with_sink(Box::new(sink), 1, Arc::clone(&dropped)).expect("spawn");

        log.log(&entry("/one"));
        entered_rx
            .recv()
            .expect("writer is stalled on the first line");
        log.log(&entry("/two")); // fills the queue of one
        log.log(&entry("/three")); // dropped, without blocking
        log.log(&entry("/four")); // dropped
        assert_eq!(log.dropped(), 2);
        assert_eq!(dropped.get(), 2);

        release_tx.send(()).expect("release");
        drop(log);
        let written = written.lock().map(|w| w.clone()).unwrap_or_default();
        let paths: Vec<String> = String::from_utf8_lossy(&written)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["path"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(paths, ["/one", "/two"]);
    }
}
