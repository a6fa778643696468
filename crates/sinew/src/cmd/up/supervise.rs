//! Child processes of the local mesh: each spawned in its own process group,
//! restarted with backoff when it exits (self-healing), and stopped with
//! SIGTERM, then SIGKILL after a grace period.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often a running child is checked for exit.
const POLL: Duration = Duration::from_millis(50);
/// First restart delay; doubles on each quick exit.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest restart delay.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A child that ran this long before exiting restarts after `BACKOFF_BASE` again.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// What to run and where its output goes.
#[derive(Debug, Clone)]
pub(crate) struct ChildSpec {
    /// Name used in logs.
    pub(crate) name: String,
    /// The executable.
    pub(crate) program: PathBuf,
    /// Its arguments.
    pub(crate) args: Vec<String>,
    /// Extra environment variables.
    pub(crate) env: Vec<(String, String)>,
    /// File receiving its stdout and stderr (appended across restarts).
    pub(crate) log: PathBuf,
}

/// Runs children and keeps them running until [`Supervisor::stop`].
#[derive(Debug)]
pub(crate) struct Supervisor {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    restarts: Arc<AtomicU64>,
    grace: Duration,
}

impl Supervisor {
    /// A supervisor giving children `grace` between SIGTERM and SIGKILL.
    pub(crate) fn new(grace: Duration) -> Self {
        Self {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
            restarts: Arc::default(),
            grace,
        }
    }

    /// Starts `spec` now (failing if it cannot be spawned) and keeps it running.
    pub(crate) fn start(&mut self, spec: ChildSpec) -> io::Result<()> {
        let child = spawn(&spec)?;
        tracing::debug!(child = %spec.name, pid = child.id(), "started");
        let watch = Watch {
            spec,
            stop: self.stop.subscribe(),
            restarts: Arc::clone(&self.restarts),
            grace: self.grace,
        };
        self.tasks.push(tokio::spawn(watch.run(Running(child))));
        Ok(())
    }

    /// Restarts so far, all children together.
    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Stops every child (SIGTERM, then SIGKILL after the grace period) and waits for them.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn spawn(spec: &ChildSpec) -> io::Result<Child> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)?;
    let log_err = log.try_clone()?;
    Command::new(&spec.program)
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        // A pipe we never write: it closes when `sinew up` dies, however it dies.
        .stdin(Stdio::piped())
        .stdout(log)
        .stderr(log_err)
        // Own process group: a terminal's Ctrl-C reaches `sinew up` only, which
        // then stops its children in order instead of racing their restarts.
        .process_group(0)
        .spawn()
}

/// A live child; killed if dropped while still running (e.g. on an error path).
#[derive(Debug)]
struct Running(Child);

impl Running {
    /// Resolves when the child exits.
    async fn exited(&mut self) -> io::Result<ExitStatus> {
        loop {
            if let Some(status) = self.0.try_wait()? {
                return Ok(status);
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// One child's supervision loop.
#[derive(Debug)]
struct Watch {
    spec: ChildSpec,
    stop: watch::Receiver<bool>,
    restarts: Arc<AtomicU64>,
    grace: Duration,
}

enum Event {
    Exited(io::Result<ExitStatus>),
    Stop,
}

impl Watch {
    async fn run(mut self, mut child: Running) {
        let mut backoff = BACKOFF_BASE;
        loop {
            let started = Instant::now();
            let event = tokio::select! {
                status = child.exited() => Event::Exited(status),
                _ = self.stop.wait_for(|stop| *stop) => Event::Stop,
            };
            let status = match event {
                Event::Stop => return self.terminate(child).await,
                Event::Exited(status) => status,
            };
            if started.elapsed() >= STABLE_AFTER {
                backoff = BACKOFF_BASE;
            }
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            child = loop {
                let restart = self.restarts.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(child = %self.spec.name, %status, restart, delay = ?backoff,
                    "child exited; restarting");
                if self.sleep_unless_stopped(backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                match spawn(&self.spec) {
                    Ok(c) => {
                        tracing::info!(child = %self.spec.name, pid = c.id(), "restarted");
                        break Running(c);
                    }
                    Err(error) => {
                        tracing::error!(child = %self.spec.name, %error, "restart failed");
                    }
                }
            };
        }
    }

    /// Sleeps `delay`; true if a stop was requested meanwhile.
    async fn sleep_unless_stopped(&mut self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => false,
            _ = self.stop.wait_for(|stop| *stop) => true,
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within the grace period.
    async fn terminate(&self, mut child: Running) {
        if !matches!(child.0.try_wait(), Ok(None)) {
            return;
        }
        let pid = child.0.id();
        if let Err(error) = send_sigterm(pid) {
            tracing::warn!(child = %self.spec.name, %error, "SIGTERM failed; killing");
        } else if tokio::time::timeout(self.grace, child.exited())
            .await
            .is_ok()
        {
            tracing::debug!(child = %self.spec.name, "stopped");
            return;
        } else {
            tracing::warn!(child = %self.spec.name, grace = ?self.grace, "did not stop in time; killing");
        }
        // Dropping a still-running child sends SIGKILL and reaps it.
        drop(child);
    }
}

/// Sends SIGTERM with the `kill` utility (the crate has no unsafe code, so no
/// direct `kill(2)`). The child is not reaped yet, so its pid cannot be reused.
fn send_sigterm(pid: u32) -> io::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Out of our process group, so a signal meant for `sinew up` spares it.
        .process_group(0)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill -TERM {pid}: {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(name: &str, script: &str, log: PathBuf) -> ChildSpec {
        ChildSpec {
            name: name.to_owned(),
            program: PathBuf::from("sh"),
            args: vec!["-c".to_owned(), script.to_owned()],
            env: Vec::new(),
            log,
        }
    }

    fn log_file(tag: &str) -> PathBuf {
        std::env::temp_dir().join(format!("sinew-supervise-{tag}-{}.log", std::process::id()))
    }

    #[tokio::test]
    async fn an_exiting_child_is_restarted() {
        let log = log_file("restart");
        let _ = std::fs::remove_file(&log);
        let mut sup = Supervisor::new(Duration::from_secs(2));
        sup.start(sh("once", "echo run; exit 3", log.clone()))
            .expect("spawn");
        sinew_testkit::assert_eventually!(sup.restarts() >= 2, Duration::from_secs(10));
        sup.stop().await;
        let runs = std::fs::read_to_string(&log)
            .expect("log")
            .lines()
            .filter(|l| *l == "run")
            .count();
        assert!(runs >= 2, "ran {runs} times");
        let _ = std::fs::remove_file(&log);
    }

    #[tokio::test]
    async fn stop_terminates_a_running_child() {
        let log = log_file("stop");
        let mut sup = Supervisor::new(Duration::from_secs(5));
        // `exec` so the pid we signal is the sleeping process itself.
        sup.start(sh("sleeper", "exec sleep 30", log.clone()))
            .expect("spawn");
        tokio::time::timeout(Duration::from_secs(10), sup.stop())
            .await
            .expect("stopped well before the child's own 30 s");
        let _ = std::fs::remove_file(&log);
    }

    #[tokio::test]
    async fn a_child_ignoring_sigterm_is_killed_after_the_grace_period() {
        let log = log_file("stubborn");
        let mut sup = Supervisor::new(Duration::from_millis(300));
        sup.start(sh(
            "stubborn",
            "trap '' TERM; echo armed; while :; do sleep 1; done",
            log.clone(),
        ))
        .expect("spawn");
        // Wait until the trap is installed before asking it to stop.
        sinew_testkit::assert_eventually!(
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("armed"),
            Duration::from_secs(10)
        );
        tokio::time::timeout(Duration::from_secs(10), sup.stop())
            .await
            .expect("killed after the grace period");
        let _ = std::fs::remove_file(&log);
    }
}
