//! `sinew up -f FILE`: the user's own services — a command per replica
//! (argv with `{port}`, or a shell line with `$PORT`), replicas, env — each
//! beside its own sidecar, with the file's resources applied; a mistake in
//! the file is refused with its line and field.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sinew_testkit::{HttpClient, Process, TempDir};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

async fn banner(up: &mut Process) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = up.stdout();
        if out.contains("is ready") && out.contains("Ctrl-C") {
            return out;
        }
        if let Some(status) = up.try_exit() {
            panic!("sinew up exited ({status})\n{out}\n{}", up.stderr());
        }
        assert!(
            Instant::now() < deadline,
            "no banner in 60 s\n{out}\n{}",
            up.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_the_users_services_from_a_file() {
    let dir = TempDir::new("up-file");
    let file = dir.join("mesh.yaml");
    // The apps are `sinew demo-app` started the way a user starts theirs:
    // one as argv with {port}, one as a shell line with $PORT and the
    // sidecar's outbound address from the environment.
    let text = format!(
        "services:
  - name: hello
    command: [\"{SINEW}\", demo-app, --name, hello, --version, \"$NOT_EXPANDED\", --listen, \"127.0.0.1:{{port}}\"]
    replicas: 2
    health_path: /healthz
  - name: front
    command: exec \"{SINEW}\" demo-app --name front --version \"$GREETING\" --listen 127.0.0.1:$PORT --call hello=${{SINEW_OUTBOUND#http://}}
    env: {{GREETING: v7}}
entry: front
---
apiVersion: sinew.dev/v1alpha1
kind: Route
metadata: {{name: hello}}
spec:
  hosts: [hello]
  rules:
    - match: [{{path: {{prefix: /private}}}}]
      direct_response: {{status: 403, body: \"not here\\n\"}}
    - backends: [{{service: hello}}]
"
    );
    std::fs::write(&file, text).expect("write mesh.yaml");
    let mut cmd = tokio::process::Command::new(SINEW);
    cmd.args(["up", "-f"]).arg(&file);
    let mut up = Process::spawn(cmd).expect("spawn sinew up -f");
    let banner = banner(&mut up).await;
    assert!(
        banner.contains("(3 instances, each with its sidecar)"),
        "{banner}"
    );
    let front: SocketAddr = banner
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("front:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|u| {
            u.trim_start_matches("http://")
                .trim_end_matches('/')
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no front URL in:\n{banner}"));
    assert!(
        !banner.contains("Demo traffic"),
        "no made-up traffic for a user's mesh"
    );

    // Through the gateway to front, whose app calls hello through its sidecar.
    let mut client = HttpClient::http1(front)
        .await
        .expect("connect to the gateway");
    let response = client.get("localhost", "/").await.expect("front answers");
    let body = response.text();
    assert_eq!(response.status, 200, "{body}");
    let json = response.json();
    assert_eq!(json["service"], "front", "{body}");
    assert_eq!(
        json["version"], "v7",
        "the env reached the shell command: {body}"
    );
    assert_eq!(json["calls"][0]["answer"]["service"], "hello", "{body}");
    assert_eq!(
        json["calls"][0]["answer"]["version"], "$NOT_EXPANDED",
        "argv is not run by a shell: {body}"
    );
    // Both hello replicas registered behind hello.
    let instances: std::collections::HashSet<String> = {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let r = client.get("localhost", "/").await.expect("front answers");
            if let Some(i) = r.json()["calls"][0]["answer"]["instance"].as_str() {
                seen.insert(i.to_owned());
            }
        }
        seen
    };
    assert_eq!(
        instances.len(),
        2,
        "hello-1 and hello-2 both serve: {instances:?}"
    );

    up.signal("INT").expect("SIGINT");
    let status = up
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("still running 15 s after SIGINT\n{}", up.stderr()));
    assert!(status.success(), "{}", up.stderr());
}

#[test]
fn a_mistake_in_the_file_is_refused_with_its_place() {
    let dir = TempDir::new("up-file-bad");
    let file = dir.join("mesh.yaml");
    std::fs::write(
        &file,
        "services:\n  - name: api\n    command: [./api]\n    port: 8080\n    replicas: 2\n",
    )
    .expect("write");
    let out = std::process::Command::new(SINEW)
        .args(["up", "-f"])
        .arg(&file)
        .output()
        .expect("run sinew up -f");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:4:11: services[0].port: a fixed port serves one replica",
            file.display()
        )),
        "{stderr}"
    );
}
