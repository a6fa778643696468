//! `sinew proxy --config FILE`: run a sidecar, in static mode (resources from
//! the file, hot reloaded) or, when the Proxy's `spec.control` is set, in
//! control mode (resources pushed by `sinew control`, cached on disk).

use sinew_model::{Proxy, ProxyConfig};
use sinew_proxy::control::{Bootstrap, Control, ControlOptions};
use sinew_proxy::{api, reload, Server};
use std::{path::PathBuf, sync::Arc, time::Duration};

/// Environment variable holding the control-plane token when `--token-file` is absent.
const TOKEN_ENV: &str = "SINEW_TOKEN";
/// Environment variable naming the control plane's trust bundle when `--control-ca` is absent.
const CONTROL_CA_ENV: &str = "SINEW_CONTROL_CA";

/// Run a sidecar proxy from a config file, or from a control plane when the
/// Proxy's `spec.control` is set.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The config file: one Proxy resource plus (static mode) the Services and Routes it needs.
    #[arg(short = 'c', long = "config")]
    config: PathBuf,
    /// Worker threads (overrides `spec.workers`).
    #[arg(long)]
    workers: Option<u16>,
    /// Control mode: a file holding the bearer token for the control plane
    /// (default: the SINEW_TOKEN environment variable).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Control mode: the PEM roots the control plane's TLS certificate must
    /// chain to — the `ca.pem` it writes into its data directory (default:
    /// the SINEW_CONTROL_CA environment variable, else `ca.pem` beside
    /// `--token-file`).
    #[arg(long, value_name = "FILE")]
    control_ca: Option<PathBuf>,
    /// Control mode: where the last applied resources are kept across
    /// restarts (default: `.<proxy name>.sinew-cache.json` beside the config file).
    #[arg(long, value_name = "FILE")]
    cache: Option<PathBuf>,
    /// Control mode: the IP:PORT other sidecars reach this one at (default:
    /// the inbound listen address, an unspecified IP as 127.0.0.1).
    #[arg(long, value_name = "IP:PORT")]
    advertise: Option<String>,
    /// Drain and exit when standard input closes: a supervisor that holds
    /// the pipe open (like `sinew up`) takes its sidecars with it if it dies.
    #[arg(long, hide = true)]
    exit_on_stdin_eof: bool,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    let mut config = ProxyConfig::load(&args.config, 1)
        .map_err(|errors| format!("{} is invalid:\n{errors}", args.config.display()))?;
    if let Some(workers) = args.workers {
        config.proxy.spec.workers = workers.max(1);
    }
    crate::logging::init();
    let spec = config.proxy.spec.clone();

    // `None`: static mode (the file, hot reloaded); else the control plane's
    // settings and the bootstrap served first.
    let (server, control) = if spec.control.is_some() {
        let options = control_options(&args, &config.proxy)?;
        if !config.snapshot.is_empty() {
            tracing::warn!(
                resources = config.snapshot.len(),
                "spec.control is set: the file's other resources are ignored; they come from the control plane"
            );
        }
        let bootstrap = Bootstrap::load(config.proxy.clone(), &options.cache);
        let (server, bootstrap) = match Server::start(bootstrap.config()) {
            // A cache that no longer compiles must not keep the proxy down.
            Err(error)
                if bootstrap.is_cached() && error.kind() == std::io::ErrorKind::InvalidInput =>
            {
                tracing::warn!(%error, cache = %options.cache.display(), "ignoring a cache this build refuses");
                let empty = Bootstrap::empty(config.proxy.clone());
                (Server::start(empty.config()), empty)
            }
            started => (started, bootstrap),
        };
        let server = server.map_err(|e| e.to_string())?;
        (server, Some((options, bootstrap)))
    } else {
        if args.token_file.is_some()
            || args.cache.is_some()
            || args.advertise.is_some()
            || args.control_ca.is_some()
        {
            tracing::warn!("--token-file, --control-ca, --cache and --advertise apply to control mode only (spec.control is not set); ignored");
        }
        let server = Server::start(config).map_err(|e| e.to_string())?;
        (server, None)
    };
    let shared = server.shared().clone();
    tracing::info!(
        service = %spec.service,
        outbound = %spec.listen.outbound,
        inbound = %spec.listen.inbound,
        api = %spec.listen.api,
        workers = spec.workers,
        control = spec.control.as_deref().unwrap_or("none (static)"),
        "sinew proxy serving"
    );

    if args.exit_on_stdin_eof {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("sinew-stdin-watch".into())
            .spawn(move || {
                use std::io::Read;
                let mut buf = [0u8; 256];
                while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
                tracing::info!("standard input closed; draining");
                shared.start_drain();
            })
            .map_err(|e| e.to_string())?;
    }

    let admin = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    admin.block_on(async {
        let listener = tokio::net::TcpListener::bind(spec.listen.api)
            .await
            .map_err(|e| format!("cannot listen on {} (api): {e}", spec.listen.api))?;
        match control {
            None => {
                tokio::spawn(api::serve(listener, shared.clone()));
                tokio::spawn(reload::watch(args.config.clone(), shared.clone()));
            }
            Some((options, bootstrap)) => {
                // No file watching: the control plane is the source of truth.
                let control = Control::spawn(shared.clone(), bootstrap, options)?;
                // The Subscriptions of this proxy's service: consume and deliver.
                sinew_proxy::events::spawn(shared.clone(), control.clone());
                tokio::spawn(api::serve_with_control(
                    listener,
                    shared.clone(),
                    Some(control),
                ));
            }
        }
        wait_for_stop(&shared).await;
        Ok::<(), String>(())
    })?;
    tracing::info!(timeout = ?Duration::from(spec.drain_timeout), "draining");
    let shared: Arc<_> = shared;
    drop(shared);
    server.shutdown(spec.drain_timeout.into());
    tracing::info!("stopped");
    Ok(())
}

/// The control-mode settings: `spec.control` and the flags, or their defaults.
fn control_options(args: &Args, proxy: &Proxy) -> Result<ControlOptions, String> {
    let mut options = ControlOptions::for_proxy(proxy, &args.config)
        .map_err(|e| format!("{}: spec.control: {e}", args.config.display()))?;
    options.token = token(args)?;
    options.trust_bundle = control_ca(args)?;
    if options.trust_bundle.is_none() {
        return Err(format!(
            "the control plane's gRPC API is TLS: give --control-ca FILE (or {CONTROL_CA_ENV}), \
             the ca.pem `sinew control` writes into its data directory"
        ));
    }
    if options.token.is_none() {
        tracing::warn!("no control-plane token (--token-file or {TOKEN_ENV}); the control plane will refuse the session");
    }
    if let Some(cache) = &args.cache {
        options.cache = cache.clone();
    }
    if let Some(advertise) = &args.advertise {
        // Endpoints are addresses, not names: the control plane registers an IP and port.
        let addr: std::net::SocketAddr = advertise.parse().map_err(|_| {
            format!("--advertise {advertise}: expected IP:PORT (e.g. 10.0.0.5:4143)")
        })?;
        options.advertise = addr.to_string();
    }
    Ok(options)
}

/// The control plane's trust bundle: `--control-ca`, else `SINEW_CONTROL_CA`,
/// else `ca.pem` beside `--token-file` when it exists.
fn control_ca(args: &Args) -> Result<Option<String>, String> {
    let path = args
        .control_ca
        .clone()
        .or_else(|| std::env::var_os(CONTROL_CA_ENV).map(PathBuf::from))
        .or_else(|| {
            let beside = args.token_file.as_ref()?.parent()?.join("ca.pem");
            beside.is_file().then_some(beside)
        });
    let Some(path) = path else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the control-plane CA {}: {e}", path.display()))?;
    if !pem.contains("BEGIN CERTIFICATE") {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(Some(pem))
}

/// The token from `--token-file` (trimmed), else from `SINEW_TOKEN`.
fn token(args: &Args) -> Result<Option<String>, String> {
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --token-file {}: {e}", path.display()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(format!("--token-file {} is empty", path.display()));
        }
        return Ok(Some(token.to_owned()));
    }
    Ok(std::env::var(TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}

/// Returns on SIGTERM, SIGINT or `POST /shutdown`, with draining started.
async fn wait_for_stop(shared: &Arc<sinew_proxy::Shared>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut drain = shared.drain_signal();
    // `wait_for` sees a drain that started before this point too.
    let drained = drain.wait_for(|draining| *draining);
    tokio::select! {
        _ = async { match term.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        _ = async { match int.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
        _ = drained => {}
    }
    shared.start_drain();
}
