//! Waiting, with a deadline, until every sidecar's `/ready` answers 200.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::client;

/// Time between two probes of one sidecar.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// A sidecar that was not ready by the deadline, and what its last probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotReady {
    /// The sidecar's name.
    pub(crate) name: String,
    /// Its API address.
    pub(crate) api: SocketAddr,
    /// The last probe's outcome, e.g. `status 503` or `connect failed: …`.
    pub(crate) last: String,
}

/// Probes each `(name, api)` until all answer `/ready` with 200, or `within` passes.
pub(crate) async fn wait_all(
    targets: &[(String, SocketAddr)],
    within: Duration,
) -> Result<(), Vec<NotReady>> {
    let deadline = Instant::now() + within;
    let probes: Vec<_> = targets
        .iter()
        .map(|(name, api)| tokio::spawn(wait_one(name.clone(), *api, deadline)))
        .collect();
    let mut failed = Vec::new();
    for (probe, (name, api)) in probes.into_iter().zip(targets) {
        match probe.await {
            Ok(Ok(())) => {}
            Ok(Err(not_ready)) => failed.push(not_ready),
            Err(error) => failed.push(NotReady {
                name: name.clone(),
                api: *api,
                last: format!("probe task failed: {error}"),
            }),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed)
    }
}

async fn wait_one(name: String, api: SocketAddr, deadline: Instant) -> Result<(), NotReady> {
    loop {
        let last = match client::get(api, "localhost", "/ready", Duration::from_secs(1)).await {
            Ok(reply) if reply.status == 200 => return Ok(()),
            Ok(reply) => format!("status {}", reply.status),
            Err(error) => error.to_string(),
        };
        if Instant::now() + PROBE_EVERY >= deadline {
            return Err(NotReady { name, api, last });
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinew_testkit::Backend;

    #[tokio::test]
    async fn ready_when_every_api_answers_200() {
        let a = Backend::http().spawn().await;
        let b = Backend::http().spawn().await;
        let targets = [("a".to_owned(), a.addr()), ("b".to_owned(), b.addr())];
        assert_eq!(wait_all(&targets, Duration::from_secs(10)).await, Ok(()));
        assert!(a.requests_to("/ready") >= 1);
    }

    #[tokio::test]
    async fn names_what_is_not_ready_and_why() {
        let ok = Backend::http().spawn().await;
        let unready = Backend::http().fail("/ready", 503).spawn().await;
        let closed = sinew_testkit::free_port();
        let targets = [
            ("ok".to_owned(), ok.addr()),
            ("unready".to_owned(), unready.addr()),
            ("closed".to_owned(), closed),
        ];
        let failed = wait_all(&targets, Duration::from_millis(500))
            .await
            .expect_err("two never ready");
        let names: Vec<&str> = failed.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["unready", "closed"]);
        assert_eq!(failed[0].last, "status 503");
        assert!(
            failed[1].last.starts_with("connect failed"),
            "{}",
            failed[1].last
        );
    }
}
