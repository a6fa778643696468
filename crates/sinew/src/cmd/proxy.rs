//! `sinew proxy --config FILE`: run a sidecar in static mode.

use sinew_model::ProxyConfig;
use sinew_proxy::{api, reload, Server};
use std::{path::PathBuf, sync::Arc, time::Duration};

/// Run a sidecar proxy from a config file (static mode).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The config file: one Proxy resource plus the Services and Routes it needs.
    #[arg(short = 'c', long = "config")]
    config: PathBuf,
    /// Worker threads (overrides `spec.workers`).
    #[arg(long)]
    workers: Option<u16>,
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
    if spec.control.is_some() {
        tracing::warn!("spec.control is set but this build runs static mode only; serving the file's resources");
    }

    let server = Server::start(config).map_err(|e| e.to_string())?;
    let shared = server.shared().clone();
    tracing::info!(
        service = %spec.service,
        outbound = %spec.listen.outbound,
        inbound = %spec.listen.inbound,
        api = %spec.listen.api,
        workers = spec.workers,
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
        tokio::spawn(api::serve(listener, shared.clone()));
        tokio::spawn(reload::watch(args.config.clone(), shared.clone()));
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
