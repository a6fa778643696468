//! `sinew up`: a local mesh on loopback — a control plane (in this process,
//! embedded store in the work directory) and, by default, the demo shop:
//! web → catalog (v1 and v2, split 90/10) → inventory (one instance flaky),
//! web → orders, which publishes events shipping's sidecar delivers; each
//! instance a supervised `sinew demo-app` child with its own `sinew proxy`
//! sidecar child that registers with the control plane and gets its config
//! by push, plus demo traffic and a status line. With `-f FILE`, the user's
//! services instead (their commands, replicas and env), each replica beside
//! its own sidecar, and the file's resources.

mod banner;
pub(crate) mod client;
mod config;
mod ports;
mod ready;
mod shop;
mod supervise;
mod traffic;
mod workdir;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{signal, Signal, SignalKind};

use ports::PortSource;
use shop::{App, Instance, Shop};
use supervise::{ChildSpec, Supervisor};
use workdir::WorkDir;

/// How long every sidecar has to become ready.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// Time between status lines.
const STATUS_EVERY: Duration = Duration::from_secs(5);
/// Time children get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(5);

/// Start a local mesh: demo services (or yours, with -f), each with its sidecar.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Use consecutive loopback ports from N instead of free ports picked by the OS:
    /// four per instance, then the control plane's REST and gRPC, then the gateway's four.
    #[arg(long, value_name = "N")]
    port_base: Option<u16>,
    /// Run your services instead of the demo: a YAML file whose first document lists
    /// them (name, command, port, replicas, env) and whose other documents are Sinew
    /// resources (docs/reference/cli.md#sinew-up).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<std::path::PathBuf>,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    crate::logging::init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(up(args))
}

async fn up(args: Args) -> Result<(), String> {
    let source = args.port_base.map_or(PortSource::Free, PortSource::Base);
    let (shop, extra) = match &args.file {
        None => (
            Shop::demo(source).map_err(|e| format!("cannot pick ports: {e}"))?,
            String::new(),
        ),
        Some(path) => {
            let file = sinew_model::parse_up_file(path).map_err(|e| e.to_string())?;
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let shop = Shop::user(&file, source).map_err(|e| format!("cannot pick ports: {e}"))?;
            (shop, config::user_resources(&file, &text))
        }
    };
    shop.entry().ok_or("no instance of the entry service")?;
    let work = WorkDir::create().map_err(|e| format!("cannot create the work directory: {e}"))?;
    let control = start_control(source, &work, &shop, &extra).await?;
    config::write_all(work.path(), &shop, control.grpc_addr).map_err(|e| {
        format!(
            "cannot write sidecar configs in {}: {e}",
            work.path().display()
        )
    })?;
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the sinew executable: {e}"))?;
    let mut stop = Stop::install().map_err(|e| format!("cannot handle signals: {e}"))?;

    let mut children = Supervisor::new(GRACE);
    let token = control.join_token_file();
    let specs = shop
        .instances
        .iter()
        .flat_map(|instance| child_specs(&exe, &work, instance, &token))
        .chain([gateway_spec(&exe, &work, &token)]);
    for spec in specs {
        if let Err(e) = children.start(spec.clone()) {
            children.stop().await;
            return Err(format!("cannot start {}: {e}", spec.name));
        }
    }
    tracing::info!(instances = shop.instances.len(), dir = %work.path().display(), "started; waiting for sidecars");

    let sidecars: Vec<_> = shop
        .instances
        .iter()
        .map(|i| (i.name.clone(), i.ports.api))
        .chain([(shop::GATEWAY.to_owned(), shop.gateway.api)])
        .collect();
    let readiness = tokio::select! {
        result = ready::wait_all(&sidecars, READY_WITHIN) => Some(result),
        () = stop.recv() => None,
    };
    match readiness {
        None => {
            children.stop().await;
            return Ok(());
        }
        Some(Err(failed)) => {
            let tails: Vec<String> = failed
                .iter()
                .map(|f| workdir::tail(&work.logs().join(format!("{}.sidecar.log", f.name)), 5))
                .collect();
            eprint!("{}", banner::not_ready(&failed, &tails));
            children.stop().await;
            return Err(format!("the mesh was not ready within {READY_WITHIN:?}"));
        }
        Some(Ok(())) => {}
    }
    let explain = if shop.demo {
        "--from web http://catalog/".to_owned()
    } else {
        let services = shop.services();
        let to = services
            .get(1)
            .or(services.first())
            .copied()
            .unwrap_or("SERVICE");
        format!("--from {} http://{to}/", shop.entry)
    };
    let sinew = shell_name(&exe);
    let control_banner = banner::control(
        control.http_addr,
        &control.admin_token_file,
        &sinew,
        &explain,
    );
    say(&banner::ready(&shop, &work.logs(), &control_banner, &sinew));

    let stats = Arc::new(traffic::Stats::default());
    // Demo traffic enters like a user's: through the gateway, which
    // reaches web's sidecar over mTLS. A user's mesh gets no made-up traffic.
    let traffic = shop.demo.then(|| {
        tokio::spawn(traffic::run(
            shop.gateway.ingress,
            shop::ENTRY,
            Arc::clone(&stats),
        ))
    });
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + STATUS_EVERY, STATUS_EVERY);
    let mut prev = stats.totals();
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let now = stats.totals();
                let line = if shop.demo {
                    banner::status(&prev, &now, STATUS_EVERY, children.restarts())
                } else {
                    format!("status: restarts {}", children.restarts())
                };
                say(&format!("{line}\n"));
                prev = now;
            }
            () = stop.recv() => break,
        }
    }
    if let Some(traffic) = traffic {
        traffic.abort();
    }
    say("sinew up: stopping\n");
    children.stop().await;
    control.stop();
    drop(work);
    say("sinew up: stopped\n");
    Ok(())
}

/// Starts the control plane on the two ports after the shop's and applies
/// the mesh resources (and `extra`, the user's).
async fn start_control(
    source: PortSource,
    work: &WorkDir,
    shop: &Shop,
    extra: &str,
) -> Result<sinew_control::ControlPlane, String> {
    let source = match source {
        PortSource::Base(base) => PortSource::Base(base.saturating_add(shop.instance_ports())),
        PortSource::Free => PortSource::Free,
    };
    let ports = ports::allocate(source, 2).map_err(|e| format!("cannot pick ports: {e}"))?;
    let dir = work.path().join("control");
    let options = sinew_control::Options {
        store: sinew_control::StoreSpec::Embedded(dir),
        http_listen: ports[0],
        grpc_listen: ports[1],
        data_dir: None,
        grace: Duration::from_secs(10),
        replica_id: Some("up".to_owned()),
        ca: None,
        events: sinew_control::EventsSpec::Embedded,
        event_partitions: 8,
        broker: None,
    };
    let control = sinew_control::ControlPlane::start(options)
        .await
        .map_err(|e| format!("cannot start the control plane: {e}"))?;
    let mut resources = config::mesh_resources(shop, extra);
    resources.push_str(extra);
    control
        .apply("sinew-up-mesh.yaml", &resources)
        .await
        .map_err(|e| format!("cannot apply the mesh: {e}"))?;
    Ok(control)
}

/// The app and the sidecar of one instance.
fn child_specs(exe: &Path, work: &WorkDir, instance: &Instance, token: &Path) -> [ChildSpec; 2] {
    let p = &instance.ports;
    let (program, args, env) = match &instance.app {
        App::Demo { fail_ratio, calls } => {
            let mut args = vec![
                "demo-app".to_owned(),
                "--name".to_owned(),
                instance.service.clone(),
                "--listen".to_owned(),
                p.app.to_string(),
                "--version".to_owned(),
                instance.version.clone(),
                "--instance".to_owned(),
                instance.name.clone(),
                "--fail-ratio".to_owned(),
                fail_ratio.to_string(),
                "--exit-on-stdin-eof".to_owned(),
            ];
            for service in calls {
                args.push("--call".to_owned());
                args.push(format!("{service}={}", p.outbound));
            }
            if instance.service == shop::PUBLISHER {
                // Every call places an order: an event through orders' sidecar.
                args.push("--publish".to_owned());
                args.push(format!("{}={}", config::ORDERS_TOPIC, p.api));
            }
            (exe.to_owned(), args, Vec::new())
        }
        App::User { command, env, .. } => {
            let port = p.app.port().to_string();
            let (program, args) = match command {
                sinew_model::Command::Argv(argv) => (
                    std::path::PathBuf::from(argv[0].replace("{port}", &port)),
                    argv[1..]
                        .iter()
                        .map(|a| a.replace("{port}", &port))
                        .collect(),
                ),
                sinew_model::Command::Shell(line) => (
                    std::path::PathBuf::from("sh"),
                    vec!["-c".to_owned(), line.replace("{port}", &port)],
                ),
            };
            // What a meshed app needs to know; the user's own env wins.
            let mut vars = vec![
                ("PORT".to_owned(), port),
                ("SINEW_SERVICE".to_owned(), instance.service.clone()),
                ("SINEW_INSTANCE".to_owned(), instance.name.clone()),
                (
                    "SINEW_OUTBOUND".to_owned(),
                    format!("http://{}", p.outbound),
                ),
                ("SINEW_API".to_owned(), format!("http://{}", p.api)),
            ];
            vars.retain(|(k, _)| !env.contains_key(k));
            vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
            (program, args, vars)
        }
    };
    let config = config::config_path(work.path(), instance);
    [
        ChildSpec {
            name: format!("{}/app", instance.name),
            program,
            args,
            env,
            log: work.logs().join(format!("{}.app.log", instance.name)),
        },
        ChildSpec {
            name: format!("{}/sidecar", instance.name),
            program: exe.to_owned(),
            args: vec![
                "proxy".to_owned(),
                "--config".to_owned(),
                config.display().to_string(),
                "--token-file".to_owned(),
                token.display().to_string(),
                "--exit-on-stdin-eof".to_owned(),
            ],
            env: Vec::new(),
            log: work.logs().join(format!("{}.sidecar.log", instance.name)),
        },
    ]
}

/// The gateway: a sidecar binary with an ingress listener and no app.
fn gateway_spec(exe: &Path, work: &WorkDir, token: &Path) -> ChildSpec {
    ChildSpec {
        name: format!("{}/gateway", shop::GATEWAY),
        program: exe.to_owned(),
        args: vec![
            "proxy".to_owned(),
            "--config".to_owned(),
            config::gateway_path(work.path()).display().to_string(),
            "--token-file".to_owned(),
            token.display().to_string(),
            "--exit-on-stdin-eof".to_owned(),
        ],
        env: Vec::new(),
        log: work.logs().join(format!("{}.sidecar.log", shop::GATEWAY)),
    }
}

/// How the user's shell reaches this binary: `sinew` when that is what
/// `PATH` finds, else its path relative to the working directory (as
/// `./target/release/sinew` after `cargo run --release`), else in full.
fn shell_name(exe: &Path) -> String {
    let exe = exe.canonicalize().unwrap_or_else(|_| exe.to_owned());
    let on_path = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("sinew"))
            .any(|candidate| candidate.canonicalize().is_ok_and(|c| c == exe))
    });
    if on_path {
        return "sinew".to_owned();
    }
    if let Some(relative) = std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf))
    {
        return format!("./{}", relative.display());
    }
    exe.display().to_string()
}

/// SIGINT (Ctrl-C) and SIGTERM.
#[derive(Debug)]
struct Stop {
    int: Signal,
    term: Signal,
}

impl Stop {
    fn install() -> std::io::Result<Stop> {
        Ok(Stop {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM.
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => tracing::info!("SIGINT received"),
            _ = self.term.recv() => tracing::info!("SIGTERM received"),
        }
    }
}

/// Writes to stdout now (the banner and status lines are the command's output).
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_are_the_demo_app_and_its_sidecar() {
        let shop = Shop::demo(PortSource::Base(33000)).expect("ports");
        let work = WorkDir::create().expect("work dir");
        let catalog = shop.instances_of("catalog").next().expect("catalog");
        let token = work.path().join("control/join.token");
        let [app, sidecar] = child_specs(Path::new("sinew"), &work, catalog, &token);
        assert_eq!(app.args[0], "demo-app");
        let call = format!("inventory={}", catalog.ports.outbound);
        assert!(
            app.args.windows(2).any(|w| w == ["--call", call.as_str()]),
            "{:?}",
            app.args
        );
        assert!(app
            .args
            .windows(2)
            .any(|w| w == ["--listen", &catalog.ports.app.to_string()]));
        assert_eq!(sidecar.args[..2], ["proxy", "--config"]);
        assert_eq!(
            sidecar.args[2],
            config::config_path(work.path(), catalog)
                .display()
                .to_string()
        );
        assert!(sidecar
            .args
            .windows(2)
            .any(|w| w == ["--token-file", &token.display().to_string()]));
        assert_ne!(app.log, sidecar.log);
    }
}
