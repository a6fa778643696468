//! Hot reload of a static config file: on a change of the file (polled, so
//! editors that replace the file by rename are seen too) or on `SIGHUP`, the
//! file is parsed and validated; a bad file is refused with its errors
//! logged and the running config keeps serving.

use crate::server::Shared;
use sinew_model::ProxyConfig;
use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

/// How often the file's metadata is checked.
const POLL: Duration = Duration::from_millis(250);

/// What identifies a version of the file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// Reloads `path` once; logs the outcome. Returns the applied version.
pub fn reload_once(path: &Path, shared: &Shared) -> Option<u64> {
    let next = shared.runtime().version + 1;
    match ProxyConfig::load(path, next) {
        Ok(config) => match shared.apply(config) {
            Ok(version) => {
                tracing::info!(version, file = %path.display(), "config reloaded");
                Some(version)
            }
            Err(error) => {
                tracing::error!(%error, file = %path.display(), "config refused; the previous config keeps serving");
                None
            }
        },
        Err(errors) => {
            shared.metrics().config_reloaded(
                crate::telemetry::ReloadResult::Rejected,
                shared.runtime().version,
            );
            for error in errors.iter() {
                tracing::error!(%error, "config refused; the previous config keeps serving");
            }
            None
        }
    }
}

/// Watches `path` and listens for `SIGHUP` until the proxy drains.
pub async fn watch(path: PathBuf, shared: Arc<Shared>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; reloading on file changes only");
            None
        }
    };
    let mut last = stamp(&path);
    let mut tick = tokio::time::interval(POLL);
    let mut drain = shared.drain_signal();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = stamp(&path);
                if now.is_some() && now != last {
                    last = now;
                    reload_once(&path, &shared);
                }
            }
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                last = stamp(&path);
                reload_once(&path, &shared);
            }
            _ = drain.changed() => return,
        }
    }
}
