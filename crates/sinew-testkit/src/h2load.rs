//! `H2load`: runs nghttp2's `h2load` benchmark client once and parses its request counts.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

use crate::process::Process;

/// Default bound on one h2load run.
const H2LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// One `h2load` invocation: arguments (`-n`, `-c`, `-m`, `-H`), then [`H2load::run`] with a URL.
///
/// ```no_run
/// # async fn f(proxy: std::net::SocketAddr) {
/// let Some(bin) = sinew_testkit::require_external("h2load") else { return };
/// let report = sinew_testkit::H2load::new(bin)
///     .args(["-n", "2000", "-c", "4", "-m", "10", "-H", ":authority: be"])
///     .run(&format!("http://{proxy}/"))
///     .await;
/// assert_eq!(report.succeeded, 2000, "{}", report.output);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct H2load {
    bin: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
}

/// h2load's `requests:` and `status codes:` lines, with its whole output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct H2loadReport {
    /// `N total`.
    pub total: u64,
    /// `N started`.
    pub started: u64,
    /// `N done`.
    pub done: u64,
    /// `N succeeded` (completed with a 2xx or 3xx status).
    pub succeeded: u64,
    /// `N failed`.
    pub failed: u64,
    /// `N errored`.
    pub errored: u64,
    /// `N timeout`.
    pub timeout: u64,
    /// `N 2xx` from the status codes line.
    pub status_2xx: u64,
    /// `N 5xx` from the status codes line.
    pub status_5xx: u64,
    /// h2load's exit code (`None` if killed by a signal, or not run).
    pub exit_code: Option<i32>,
    /// stdout and stderr together, for failure messages.
    pub output: String,
}

impl H2load {
    /// A run of the h2load binary at `bin` (from [`crate::require_external`]`("h2load")`).
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            args: Vec::new(),
            timeout: H2LOAD_TIMEOUT,
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Bounds the run (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs `h2load ARGS url` and parses its report; panics when it cannot
    /// start, outlives its bound, or prints no `requests:` line.
    pub async fn run(self, url: &str) -> H2loadReport {
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args).arg(url);
        let mut process = Process::spawn(cmd)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let exit = process.wait_exit(self.timeout).await;
        let output: String = format!("{}{}", process.stdout(), process.stderr())
            .lines()
            .filter(|l| !l.starts_with("progress:"))
            .flat_map(|l| [l, "\n"])
            .collect();
        let Some(exit) = exit else {
            panic!(
                "h2load {url} did not finish within {:?}\n{output}",
                self.timeout
            );
        };
        let mut report = H2loadReport::parse(&output)
            .unwrap_or_else(|| panic!("h2load printed no `requests:` line ({exit})\n{output}"));
        report.exit_code = exit.code();
        report
    }
}

/// The number in front of `label` in a comma-separated h2load line (`2000 succeeded`).
fn count(line: &str, label: &str) -> Option<u64> {
    line.split(',').find_map(|part| {
        let mut words = part.split_whitespace();
        let n = words.next()?.parse().ok()?;
        (words.next()? == label).then_some(n)
    })
}

impl H2loadReport {
    /// Parses h2load's summary; `None` when it has no `requests:` line.
    pub fn parse(output: &str) -> Option<Self> {
        let requests = output
            .lines()
            .find_map(|l| l.trim().strip_prefix("requests:"))?;
        let statuses = output
            .lines()
            .find_map(|l| l.trim().strip_prefix("status codes:"))
            .unwrap_or("");
        Some(Self {
            total: count(requests, "total")?,
            started: count(requests, "started")?,
            done: count(requests, "done")?,
            succeeded: count(requests, "succeeded")?,
            failed: count(requests, "failed")?,
            errored: count(requests, "errored")?,
            timeout: count(requests, "timeout").unwrap_or(0),
            status_2xx: count(statuses, "2xx").unwrap_or(0),
            status_5xx: count(statuses, "5xx").unwrap_or(0),
            exit_code: None,
            output: output.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary_lines() {
        let out = "finished in 1.02s, 1960.78 req/s, 120KB/s\n\
                   requests: 2000 total, 2000 started, 1998 done, 1990 succeeded, 10 failed, 2 errored, 0 timeout\n\
                   status codes: 1990 2xx, 0 3xx, 0 4xx, 8 5xx\n";
        let r = H2loadReport::parse(out).expect("a report");
        assert_eq!(
            (r.total, r.started, r.done, r.succeeded, r.failed, r.errored),
            (2000, 2000, 1998, 1990, 10, 2)
        );
        assert_eq!((r.timeout, r.status_2xx, r.status_5xx), (0, 1990, 8));
    }

    #[test]
    fn no_summary_is_none() {
        assert_eq!(H2loadReport::parse("could not connect\n"), None);
    }
}
