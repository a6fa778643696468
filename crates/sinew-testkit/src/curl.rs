//! `Curl`: runs the real `curl` command line client once and parses what it received.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::process::Command;

use crate::process::Process;
use crate::tempdir::TempDir;

/// Default bound on one curl run (also passed as `--max-time`).
const CURL_TIMEOUT: Duration = Duration::from_secs(20);

/// One `curl` invocation: extra arguments, then [`Curl::run`] with a URL.
///
/// ```no_run
/// # async fn f(proxy: std::net::SocketAddr) {
/// let Some(bin) = sinew_testkit::require_external("curl") else { return };
/// let resp = sinew_testkit::Curl::new(bin)
///     .arg("-x").arg(format!("http://{proxy}"))
///     .run("http://be/path")
///     .await;
/// assert_eq!(resp.status, 200);
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Curl {
    bin: PathBuf,
    args: Vec<OsString>,
    timeout: Duration,
}

/// What one curl run produced.
#[derive(Debug, Clone)]
pub struct CurlResponse {
    /// curl's exit status (0 on a completed transfer, whatever the HTTP status).
    pub exit: ExitStatus,
    /// The final response's status (`%{http_code}`), 0 when none arrived.
    pub status: u16,
    /// The final response's HTTP version as curl reports it (`1.1`, `2`).
    pub http_version: String,
    /// Statuses of interim (1xx) responses received before the final one, in order.
    pub interim: Vec<u16>,
    /// The final response's headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The response body as received (not decoded unless `--compressed` was passed).
    pub body: Vec<u8>,
    /// curl's stderr (errors; the trace with `-v`).
    pub stderr: String,
}

impl CurlResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Curl {
    /// A run of the curl binary at `bin` (from [`crate::require_external`]`("curl")`).
    pub fn new(bin: impl Into<PathBuf>) -> Self {
        Self {
            bin: bin.into(),
            args: Vec::new(),
            timeout: CURL_TIMEOUT,
        }
    }

    /// Adds one argument (e.g. `--http2-prior-knowledge`, `-H`, `Host: be`).
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Bounds the run (default 20 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs `curl -sS --max-time T -o BODY -D HEADERS -w … ARGS url`; panics
    /// when curl cannot start or outlives its bound.
    pub async fn run(self, url: &str) -> CurlResponse {
        let dir = TempDir::new("curl");
        let body_path = dir.join("body");
        let headers_path = dir.join("headers");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-sS")
            .arg("--max-time")
            .arg(self.timeout.as_secs().max(1).to_string())
            .arg("-o")
            .arg(&body_path)
            .arg("-D")
            .arg(&headers_path)
            .arg("-w")
            .arg("%{http_code} %{http_version}")
            .args(&self.args)
            .arg(url);
        let mut process = Process::spawn(cmd)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        let exit = process
            .wait_exit(self.timeout + Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("curl {url} did not finish within {:?}", self.timeout));
        let written = process.stdout();
        let mut fields = written.split_whitespace();
        let status = fields.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let http_version = fields.next().unwrap_or("").to_owned();
        let head = std::fs::read(&headers_path).unwrap_or_default();
        let (interim, headers) = parse_header_dump(&String::from_utf8_lossy(&head));
        CurlResponse {
            exit,
            status,
            http_version,
            interim,
            headers,
            body: std::fs::read(&body_path).unwrap_or_default(),
            stderr: process.stderr(),
        }
    }
}

/// Splits curl's `-D` dump into the interim statuses and the final response's headers.
fn parse_header_dump(dump: &str) -> (Vec<u16>, Vec<(String, String)>) {
    let mut blocks: Vec<(u16, Vec<(String, String)>)> = Vec::new();
    for line in dump.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("HTTP/") {
            let status = line
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            blocks.push((status, Vec::new()));
        } else if let (Some((name, value)), Some(block)) = (line.split_once(':'), blocks.last_mut())
        {
            block
                .1
                .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let last = blocks.pop().map(|(_, h)| h).unwrap_or_default();
    let interim = blocks
        .iter()
        .map(|(s, _)| *s)
        .filter(|s| (100..200).contains(s))
        .collect();
    (interim, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_dump_separates_interim_responses() {
        let dump = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b: c\r\n\r\n";
        let (interim, headers) = parse_header_dump(dump);
        assert_eq!(interim, [100]);
        assert_eq!(
            headers,
            [
                ("content-length".to_owned(), "3".to_owned()),
                ("x-a".to_owned(), "b: c".to_owned())
            ]
        );
    }

    #[test]
    fn header_dump_of_h2_response() {
        let (interim, headers) =
            parse_header_dump("HTTP/2 404 \r\nx-sinew-error: no-route\r\n\r\n");
        assert!(interim.is_empty());
        assert_eq!(headers[0].0, "x-sinew-error");
    }
}
