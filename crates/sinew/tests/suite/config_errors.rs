//! Bad configs at startup, black-box: non-zero exit and an error naming FILE:LINE and the field.

use std::time::Duration;

use sinew_testkit::{Backend, Proxy, ProxyBuilder};

const SINEW: &str = env!("CARGO_BIN_EXE_sinew");

fn proxy_doc(builder: &ProxyBuilder) -> String {
    let p = builder.ports();
    format!(
        "apiVersion: sinew.dev/v1alpha1\nkind: Proxy\nmetadata:\n  name: broken\nspec:\n  service: web\n  listen:\n    outbound: \"{}\"\n    inbound: \"{}\"\n    api: \"{}\"\n",
        p.outbound, p.inbound, p.api
    )
}

/// Starts a proxy on `proxy doc + rest`, expects it to fail, and checks that
/// stderr names `FILE:LINE` of the first line containing `marker` and mentions `field`.
async fn assert_rejected(rest: &str, marker: &str, field: &str) {
    let builder = Proxy::builder(SINEW);
    let text = format!("{}{rest}", proxy_doc(&builder));
    let line = text
        .lines()
        .position(|l| l.contains(marker))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("marker {marker:?} not in config"));
    let mut proxy = builder.launch_raw(&text);

    let status = proxy.wait_exit(Duration::from_secs(10)).await;
    let stderr = proxy.stderr();
    let status =
        status.unwrap_or_else(|| panic!("proxy kept running on a bad config:\n{text}\n{stderr}"));
    assert!(
        !status.success(),
        "exit status {status} for:\n{text}\n{stderr}"
    );
    let location = format!("{}:{line}", proxy.config_path().display());
    assert!(
        stderr.contains(&location),
        "stderr names {location}:\n--- config ---\n{text}--- stderr ---\n{stderr}"
    );
    assert!(
        stderr.contains(field),
        "stderr names the field {field}:\n--- stderr ---\n{stderr}"
    );
}

#[tokio::test]
async fn unknown_field_is_rejected_with_its_line() {
    let web = Backend::http().spawn().await;
    let rest = format!(
        "---\napiVersion: sinew.dev/v1alpha1\nkind: Service\nmetadata:\n  name: web\nspec:\n  protocol: http\n  endpoints:\n    - address: \"{}\"\n  conect_timeout: 1s\n",
        web.addr()
    );
    assert_rejected(&rest, "conect_timeout", "conect_timeout").await;
}

#[tokio::test]
async fn duration_without_unit_is_rejected_with_its_line() {
    let web = Backend::http().spawn().await;
    let rest = format!(
        "---\napiVersion: sinew.dev/v1alpha1\nkind: Service\nmetadata:\n  name: web\nspec:\n  endpoints:\n    - address: \"{}\"\n  timeout: 5\n",
        web.addr()
    );
    assert_rejected(&rest, "timeout: 5", "timeout").await;
}

#[tokio::test]
async fn route_backend_naming_an_unknown_service_is_rejected() {
    let web = Backend::http().spawn().await;
    let rest = format!(
        "---\napiVersion: sinew.dev/v1alpha1\nkind: Service\nmetadata:\n  name: web\nspec:\n  endpoints:\n    - address: \"{}\"\n---\napiVersion: sinew.dev/v1alpha1\nkind: Route\nmetadata:\n  name: web\nspec:\n  hosts: [web]\n  rules:\n    - backends: [{{service: ghost}}]\n",
        web.addr()
    );
    assert_rejected(&rest, "service: ghost", "backends").await;
}

#[tokio::test]
async fn two_routes_claiming_one_host_are_rejected() {
    let web = Backend::http().spawn().await;
    let rest = format!(
        "---\napiVersion: sinew.dev/v1alpha1\nkind: Service\nmetadata:\n  name: web\nspec:\n  endpoints:\n    - address: \"{}\"\n---\napiVersion: sinew.dev/v1alpha1\nkind: Route\nmetadata:\n  name: first\nspec:\n  hosts: [shop]\n  rules:\n    - backends: [{{service: web}}]\n---\napiVersion: sinew.dev/v1alpha1\nkind: Route\nmetadata:\n  name: second\nspec:\n  hosts: [shop, second-only]\n  rules:\n    - backends: [{{service: web}}]\n",
        web.addr()
    );
    assert_rejected(&rest, "hosts: [shop, second-only]", "hosts").await;
}

/// The example files shipped for VMs (`deploy/`, docs/guides/vms.md) stay
/// valid as the model changes.
#[test]
fn the_shipped_deploy_examples_validate() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_sinew"))
        .args(["validate", "-f", &format!("{root}/orders.yaml")])
        .output()
        .expect("run sinew validate");
    assert!(
        output.status.success(),
        "deploy/orders.yaml: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
