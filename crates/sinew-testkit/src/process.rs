//! `Process`: a spawned child with captured output, bounded waits and signals.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

type Captured = Arc<Mutex<Vec<u8>>>;

/// A child process whose stdout and stderr are captured; killed on drop.
#[derive(Debug)]
pub struct Process {
    child: Child,
    pid: u32,
    stdout: Captured,
    stderr: Captured,
    readers: Vec<JoinHandle<()>>,
    exit: Option<ExitStatus>,
}

fn capture(
    pipe: Option<impl AsyncRead + Unpin + Send + 'static>,
    into: &Captured,
) -> JoinHandle<()> {
    let into = Arc::clone(into);
    tokio::spawn(async move {
        let Some(mut pipe) = pipe else { return };
        let mut buf = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut buf).await {
            if n == 0 {
                break;
            }
            into.lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend_from_slice(&buf[..n]);
        }
    })
}

impl Process {
    /// Spawns `cmd` with stdout and stderr piped and captured, stdin closed.
    pub fn spawn(mut cmd: Command) -> io::Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("spawned child has no pid"))?;
        let stdout = Captured::default();
        let stderr = Captured::default();
        let readers = vec![
            capture(child.stdout.take(), &stdout),
            capture(child.stderr.take(), &stderr),
        ];
        Ok(Self {
            child,
            pid,
            stdout,
            stderr,
            readers,
            exit: None,
        })
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        let bytes = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Everything it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        let bytes = self.stdout.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Its exit status if it has exited, without waiting.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    /// Waits up to `timeout` for it to exit; then its output is fully captured.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = tokio::time::timeout(timeout, self.child.wait())
                .await
                .ok()
                .and_then(Result::ok);
        }
        if self.exit.is_some() {
            for reader in self.readers.drain(..) {
                // Pipes close with the process; a stuck grandchild must not hang the test.
                let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
            }
        }
        self.exit
    }

    /// Waits up to `timeout` for `needle` to appear in its stderr.
    pub async fn wait_for_stderr(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends signal `name` (e.g. `HUP`, `TERM`, `INT`) with the `kill` command.
    pub fn signal(&self, name: &str) -> io::Result<()> {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill -{name} {} failed: {status}",
                self.pid
            )))
        }
    }

    /// Sends SIGHUP.
    pub fn sighup(&self) -> io::Result<()> {
        self.signal("HUP")
    }

    /// Sends SIGKILL (no cleanup).
    pub fn kill(&mut self) -> io::Result<()> {
        self.child.start_kill()
    }

    /// The `Threads:` count from `/proc/PID/status` (Linux), if readable.
    pub fn threads(&self) -> Option<u32> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
    }
}
