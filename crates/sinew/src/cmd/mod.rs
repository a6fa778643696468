//! The subcommands, one module each.

pub(crate) mod apply;
pub(crate) mod broker;
pub(crate) mod client;
pub(crate) mod control;
pub(crate) mod delete;
pub(crate) mod demo;
pub(crate) mod events;
pub(crate) mod explain;
pub(crate) mod get;
pub(crate) mod proxy;
pub(crate) mod status;
pub(crate) mod top;
pub(crate) mod up;
pub(crate) mod validate;

/// A multi-threaded runtime of `workers` threads (at least one) named `name`.
pub(crate) fn runtime(workers: usize, name: &str) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
}

/// Returns at `SIGINT` or `SIGTERM`.
pub(crate) async fn until_stopped() -> Result<(), String> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}
