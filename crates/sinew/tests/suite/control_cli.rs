//! `sinew apply | get | delete | status` against a real `sinew control`, black-box:
//! what the user sees on stdout and stderr, exit codes, and that a refused
//! apply changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use sinew_testkit::{free_port, Control, TempDir};
use tokio::io::AsyncWriteExt;

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

const SERVICE: &str = "\
apiVersion: sinew.dev/v1alpha1
kind: Service
metadata: {name: reviews}
spec:
  endpoints:
    - {address: 127.0.0.1:9081, labels: {version: v1}}
    - {address: 127.0.0.1:9082, labels: {version: v2}}
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
  timeout: 5s
";

const ROUTE: &str = "\
apiVersion: sinew.dev/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  hosts: [reviews]
  rules:
    - match: [{headers: {x-canary: {exact: \"1\"}}}]
      backends: [{service: reviews, subset: v2}]
    - match: [{path: {prefix: /internal}}]
      direct_response: {status: 403, body: \"forbidden\\n\"}
    - backends:
        - {service: reviews, subset: v1, weight: 90}
        - {service: reviews, subset: v2, weight: 10}
";

/// What one `sinew …` run left behind.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success:\n{self}");
        self
    }

    #[track_caller]
    fn failed(self) -> Self {
        assert_eq!(self.code, Some(1), "expected exit 1:\n{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `sinew ARGS` with a clean client environment (no ambient SINEW_* settings),
/// feeding `stdin` when given; bounded to 20 s.
async fn sinew(args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = tokio::process::Command::new(SINEW);
    cmd.args(args)
        .env_remove("SINEW_SERVER")
        .env_remove("SINEW_TOKEN")
        .env_remove("SINEW_TOKEN_FILE")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("start sinew");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(text.as_bytes()).await.expect("write stdin");
        drop(pipe);
    }
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("sinew {args:?} still running after 20 s"))
        .expect("wait for sinew");
    Run::from(output)
}

/// A control plane and a client pointed at it with its admin token.
struct Mesh {
    control: Control,
    files: TempDir,
}

impl Mesh {
    async fn start() -> Self {
        Self {
            control: Control::builder(SINEW).spawn().await,
            files: TempDir::new("cli"),
        }
    }

    fn server(&self) -> String {
        format!("http://{}", self.control.http())
    }

    /// `sinew ARGS --server … --token-file …`.
    async fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None).await
    }

    async fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let server = self.server();
        let token = self.control.token_file();
        let mut all = args.to_vec();
        all.extend(["--server", &server, "--token-file", token.to_str().unwrap()]);
        sinew(&all, stdin).await
    }

    /// Writes `text` to a file named `name` and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.files.join(name);
        std::fs::write(&path, text).expect("write a test file");
        path
    }

    async fn apply(&self, file: &Path) -> Run {
        self.run(&["apply", "-f", file.to_str().unwrap()]).await
    }
}

/// The 1-based line of `text` that contains `marker`.
fn line_of(text: &str, marker: &str) -> usize {
    text.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("{marker:?} not in:\n{text}"))
        + 1
}

#[tokio::test]
async fn apply_get_delete_round_trip() {
    let mesh = Mesh::start().await;
    let file = mesh.file("reviews.yaml", &format!("{SERVICE}---\n{ROUTE}"));

    let applied = mesh.apply(&file).await.ok();
    let lines: Vec<&str> = applied.stdout.lines().collect();
    assert_eq!(
        lines[..2],
        [
            "service/default/reviews created",
            "route/default/reviews created"
        ],
        "{applied}"
    );
    assert!(lines[2].starts_with("applied revision "), "{applied}");
    assert_eq!(lines.len(), 3, "{applied}");

    let again = mesh.apply(&file).await.ok();
    assert!(
        again
            .stdout
            .contains("service/default/reviews unchanged\nroute/default/reviews unchanged\n"),
        "{again}"
    );

    let services = mesh.run(&["get", "services"]).await.ok();
    let rows: Vec<Vec<&str>> = services
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAMESPACE", "NAME", "ENDPOINTS"],
            vec!["default", "reviews", "2"]
        ],
        "{services}"
    );
    let routes = mesh.run(&["get", "Route"]).await.ok();
    let rows: Vec<Vec<&str>> = routes
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAMESPACE", "NAME", "HOSTS"],
            vec!["default", "reviews", "reviews"]
        ],
        "{routes}"
    );

    // `get NAME` prints YAML that is the same resource and applies back unchanged.
    let yaml = mesh.run(&["get", "route", "reviews"]).await.ok();
    let original = sinew_model::parse_str("route.yaml", ROUTE).unwrap();
    let printed = sinew_model::parse_str("printed.yaml", &yaml.stdout)
        .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    assert_eq!(printed, original, "{yaml}");
    let reapplied = mesh
        .run_with_stdin(&["apply", "-f", "-"], Some(&yaml.stdout))
        .await
        .ok();
    assert!(
        reapplied
            .stdout
            .starts_with("route/default/reviews unchanged\n"),
        "{reapplied}"
    );

    // JSON too: one object for NAME, an array for a list; both apply back.
    let one = mesh
        .run(&["get", "service", "reviews", "-o", "json"])
        .await
        .ok();
    let doc: serde_json::Value = serde_json::from_str(&one.stdout).expect("JSON");
    assert_eq!(doc["metadata"]["name"], "reviews", "{one}");
    let list = mesh.run(&["get", "services", "-o", "json"]).await.ok();
    let reapplied = mesh
        .run_with_stdin(&["apply", "-f", "-"], Some(&list.stdout))
        .await
        .ok();
    assert!(
        reapplied
            .stdout
            .starts_with("service/default/reviews unchanged\n"),
        "{reapplied}"
    );

    let deleted = mesh.run(&["delete", "route", "reviews"]).await.ok();
    assert_eq!(deleted.stdout, "route/default/reviews deleted\n");
    let gone = mesh.run(&["get", "route", "reviews"]).await.failed();
    assert!(gone.stderr.contains("does not exist"), "{gone}");
    let none = mesh.run(&["get", "routes"]).await.ok();
    assert_eq!(none.stdout, "", "{none}");
    assert!(none.stderr.contains("no routes"), "{none}");
    let again = mesh.run(&["delete", "route", "reviews"]).await.failed();
    assert!(
        again.stderr.starts_with("error: ") && again.stderr.contains("does not exist"),
        "{again}"
    );
}

#[tokio::test]
async fn a_bad_file_names_file_line_and_field_and_changes_nothing() {
    let mesh = Mesh::start().await;
    mesh.apply(&mesh.file("service.yaml", SERVICE)).await.ok();
    let before = mesh
        .run(&["get", "service", "reviews", "-o", "json"])
        .await
        .ok();

    // A valid change and an invalid field in one file: refused before any call.
    let bad_text = format!(
        "{}  connect_timeout: 250\n",
        SERVICE.replace("timeout: 5s", "timeout: 9s")
    );
    let bad = mesh.file("bad.yaml", &bad_text);
    let refused = mesh.apply(&bad).await.failed();
    let location = format!(
        "{}:{}:",
        bad.display(),
        line_of(&bad_text, "connect_timeout")
    );
    assert!(
        refused.stderr.contains(&location),
        "names {location}:\n{refused}"
    );
    assert!(
        refused
            .stderr
            .contains("spec.connect_timeout: duration needs a unit"),
        "{refused}"
    );
    assert!(refused.stderr.contains("nothing was applied"), "{refused}");
    assert_eq!(refused.stdout, "", "{refused}");

    let after = mesh
        .run(&["get", "service", "reviews", "-o", "json"])
        .await
        .ok();
    assert_eq!(
        after.stdout, before.stdout,
        "the stored Service is unchanged"
    );
}

#[tokio::test]
async fn a_route_to_an_unknown_service_is_refused_by_the_control_plane_all_or_nothing() {
    let mesh = Mesh::start().await;
    // The Service is valid, the Route names a service that exists nowhere:
    // only the control plane can tell, and then neither is stored.
    let text = format!(
        "{SERVICE}---\n{}",
        ROUTE.replace("{service: reviews, subset: v2}]", "{service: ratings}]")
    );
    let file = mesh.file("route.yaml", &text);
    let refused = mesh.apply(&file).await.failed();
    let location = format!("{}:{}:", file.display(), line_of(&text, "service: ratings"));
    assert!(
        refused.stderr.contains(&location),
        "names {location}:\n{refused}"
    );
    assert!(
        refused
            .stderr
            .contains("spec.rules[0].backends[0].service: unknown service `ratings`"),
        "{refused}"
    );
    assert!(
        refused.stderr.contains("error: the control plane refused")
            && refused.stderr.contains("nothing was applied"),
        "{refused}"
    );
    for kind in ["services", "routes"] {
        let listed = mesh.run(&["get", kind]).await.ok();
        assert_eq!(listed.stdout, "", "no {kind} stored:\n{listed}");
    }
}

#[tokio::test]
async fn deleting_a_service_a_route_uses_is_refused() {
    let mesh = Mesh::start().await;
    mesh.apply(&mesh.file("all.yaml", &format!("{SERVICE}---\n{ROUTE}")))
        .await
        .ok();
    let refused = mesh.run(&["delete", "service", "reviews"]).await.failed();
    assert!(
        refused.stderr.contains("Route/default/reviews"),
        "names the Route:\n{refused}"
    );
    assert_eq!(refused.stdout, "", "{refused}");
    mesh.run(&["get", "service", "reviews"]).await.ok();
}

#[tokio::test]
async fn the_token_is_required_and_its_absence_is_explained() {
    let mesh = Mesh::start().await;
    let server = mesh.server();

    let missing = sinew(&["get", "services", "--server", &server], None)
        .await
        .failed();
    assert!(
        missing.stderr.contains(&format!(
            "the control plane at {server} needs the admin token"
        )),
        "{missing}"
    );
    assert!(missing.stderr.contains("--token-file"), "{missing}");
    assert_eq!(
        missing.stderr.lines().count(),
        1,
        "one sentence:\n{missing}"
    );

    let wrong = mesh.file("wrong.token", "not-the-token\n");
    let refused = sinew(
        &[
            "status",
            "--server",
            &server,
            "--token-file",
            wrong.to_str().unwrap(),
        ],
        None,
    )
    .await
    .failed();
    assert!(
        refused
            .stderr
            .contains(&format!("refused the token from {}", wrong.display())),
        "{refused}"
    );

    // SINEW_TOKEN_FILE and SINEW_SERVER are enough on their own.
    let mut cmd = tokio::process::Command::new(SINEW);
    cmd.args(["get", "services"])
        .env("SINEW_SERVER", &server)
        .env_remove("SINEW_TOKEN")
        .env("SINEW_TOKEN_FILE", mesh.control.token_file())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("sinew get finishes")
        .expect("run sinew");
    Run::from(output).ok();
}

#[tokio::test]
async fn an_unreachable_control_plane_is_named() {
    let server = format!("http://{}", free_port());
    let run = sinew(&["status", "--server", &server], None).await.failed();
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot reach the control plane at {server}: "
        )),
        "{run}"
    );
}

#[tokio::test]
async fn status_lists_no_proxy_before_any_connects() {
    let mesh = Mesh::start().await;
    let table = mesh.run(&["status"]).await.ok();
    assert_eq!(table.stdout, "", "{table}");
    assert!(table.stderr.contains("no proxies"), "{table}");
    let json = mesh.run(&["status", "-o", "json"]).await.ok();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&json.stdout).ok(),
        Some(serde_json::json!([])),
        "{json}"
    );
}

/// Before any token is checked, the REST listener gives a request head 10 s:
/// a client that never finishes one (slowloris) is cut off.
#[tokio::test]
async fn the_rest_api_cuts_off_a_head_that_never_ends() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let control = sinew_testkit::Control::builder(SINEW).spawn().await;
    let mut slow = tokio::net::TcpStream::connect(control.http())
        .await
        .expect("connect");
    slow.write_all(b"GET /v1/resources HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "still open after 20 s");
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}
