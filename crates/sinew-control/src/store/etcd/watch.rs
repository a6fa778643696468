//! Watches: one `/v3/watch` stream per watch, its responses cut into
//! per-revision batches and fed to the caller's channel.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use super::{
    gateway::{Gateway, Lines, Replay},
    wire::{b64, prefix_range, StreamLine, WatchResponse},
};
use crate::store::{Revision, StoreError, Watch};

/// Batches queued for the caller; when it lags, the stream waits (and etcd
/// buffers) instead of dropping anything.
const WATCH_QUEUE: usize = 1024;
/// Bound on waiting for the watch to be confirmed, or for the compaction
/// notice etcd sends (from its 100 ms sync loop) for a compacted start.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts watching `prefix` from revision `from` (0: from now on).
///
/// A start older than etcd keeps is found here, as [`StoreError::Compacted`],
/// when it is known before the watch began; a compaction racing the start
/// comes as the stream's one error instead.
pub(super) async fn open(
    gateway: &Gateway,
    prefix: &str,
    from: Revision,
) -> Result<Watch, StoreError> {
    let mut create = prefix_range(prefix);
    create["start_revision"] = json!(from.to_string());
    let mut lines = gateway
        .stream("/v3/watch", &json!({ "create_request": create }))
        .await?;
    let confirmed = tokio::time::timeout(CONFIRM_TIMEOUT, read(&mut lines))
        .await
        .map_err(|_| StoreError::Unavailable("etcd did not confirm the watch".into()))??;
    if !confirmed.created {
        return Err(StoreError::Internal(
            "etcd's first watch message was not its confirmation".into(),
        ));
    }
    // A start within etcd's history replays it. Whether that history is
    // still there is asked with a read at `from`, which fails fast when it is
    // not; etcd's own notice (with the oldest revision) then follows on the stream.
    if from > 0 && from <= confirmed.header.revision {
        let probe = json!({ "key": b64(&[0]), "revision": from.to_string(), "count_only": true });
        let read_at_from = gateway
            .call::<serde_json::Value>("/v3/kv/range", &probe, Replay::Safe, 0)
            .await;
        match read_at_from {
            Ok(_) => {}
            Err(StoreError::Compacted { .. }) => {
                let oldest = compaction_notice(&mut lines).await.unwrap_or(from + 1);
                return Err(StoreError::Compacted { oldest });
            }
            Err(e) => return Err(e),
        }
    }
    let (tx, rx) = mpsc::channel(WATCH_QUEUE);
    tokio::spawn(pump(lines, tx));
    Ok(rx)
}

/// The oldest revision etcd names when it cancels a compacted watch.
async fn compaction_notice(lines: &mut Lines) -> Option<Revision> {
    let wait = async {
        loop {
            match read(lines).await {
                Ok(_) => continue,
                Err(StoreError::Compacted { oldest }) => return Some(oldest),
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(CONFIRM_TIMEOUT, wait)
        .await
        .ok()
        .flatten()
}

/// Feeds the caller until the stream ends (then one error) or the caller
/// drops its receiver (then the stream is dropped, which ends etcd's watch).
async fn pump(mut lines: Lines, tx: mpsc::Sender<Result<Vec<crate::store::Event>, StoreError>>) {
    loop {
        let message = tokio::select! {
            message = read(&mut lines) => message,
            () = tx.closed() => return,
        };
        match message.and_then(WatchResponse::batches) {
            Ok(batches) => {
                for batch in batches {
                    if tx.send(Ok(batch)).await.is_err() {
                        return;
                    }
                }
            }
            Err(error) => {
                let _ = tx.send(Err(error)).await;
                return;
            }
        }
    }
}

/// The next watch message; the end of the stream, a stream error and a
/// cancellation are all errors, since each ends the watch.
async fn read(lines: &mut Lines) -> Result<WatchResponse, StoreError> {
    let line = lines
        .next()
        .await?
        .ok_or_else(|| StoreError::Unavailable("etcd closed the watch stream".into()))?;
    let message: StreamLine<WatchResponse> = serde_json::from_slice(&line)
        .map_err(|e| StoreError::Internal(format!("bad watch message from etcd: {e}")))?;
    if let Some(error) = message.error {
        return Err(error.into_store_error(0));
    }
    let response = message
        .result
        .ok_or_else(|| StoreError::Internal("empty watch message from etcd".into()))?;
    if response.canceled {
        return Err(if response.compact_revision > 0 {
            StoreError::Compacted {
                oldest: response.compact_revision,
            }
        } else {
            StoreError::Internal(format!(
                "etcd canceled the watch: {}",
                response.cancel_reason
            ))
        });
    }
    Ok(response)
}
