//! The proxy's active health-check verdicts, reported to the control plane
//! as `EndpointHealth` messages: every checked endpoint when a session
//! starts, then each endpoint whose state changed.
//!
//! The session samples the checker's shared states (`health::EndpointHealth`)
//! every [`SAMPLE`], so a change reaches the control plane within that.

use crate::config::Runtime;
use sinew_proto::EndpointState;
use std::{collections::HashMap, time::Duration};

/// How often the health states are sampled.
pub(super) const SAMPLE: Duration = Duration::from_secs(1);

type Key = (String, String, String);

/// The verdict of every endpoint this proxy checks under `runtime`, for
/// endpoints probed at least once (an unprobed state is only a guess).
pub(super) fn sample(runtime: &Runtime) -> Vec<EndpointState> {
    let namespaces: HashMap<&str, &str> = runtime
        .config
        .snapshot
        .services()
        .values()
        .map(|s| (s.metadata.name.as_str(), s.metadata.namespace.as_str()))
        .collect();
    runtime
        .health_targets
        .iter()
        .filter_map(|t| {
            let snap = t.state.snapshot();
            snap.last_check?;
            Some(EndpointState {
                namespace: namespaces
                    .get(&*t.service)
                    .copied()
                    .unwrap_or(sinew_model::DEFAULT_NAMESPACE)
                    .to_owned(),
                service: t.service.to_string(),
                address: t.addr.to_string(),
                healthy: snap.healthy,
            })
        })
        .collect()
}

/// What was last reported, per endpoint.
#[derive(Debug, Default)]
pub(super) struct Reported {
    sent: HashMap<Key, bool>,
}

impl Reported {
    /// The states of `now` that differ from what was reported (all of them
    /// the first time), recorded as reported. Endpoints no longer in `now`
    /// are forgotten, so they are reported again if they come back.
    pub(super) fn changes(&mut self, now: Vec<EndpointState>) -> Vec<EndpointState> {
        let mut next = HashMap::with_capacity(now.len());
        let mut changed = Vec::new();
        for state in now {
            let key = (
                state.namespace.clone(),
                state.service.clone(),
                state.address.clone(),
            );
            let differs = self.sent.get(&key) != Some(&state.healthy);
            next.insert(key, state.healthy);
            if differs {
                changed.push(state);
            }
        }
        self.sent = next;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(address: &str, healthy: bool) -> EndpointState {
        EndpointState {
            namespace: "default".into(),
            service: "web".into(),
            address: address.into(),
            healthy,
        }
    }

    #[test]
    fn reports_everything_first_then_only_changes() {
        let mut reported = Reported::default();
        let first = vec![state("10.0.0.1:80", true), state("10.0.0.2:80", false)];
        assert_eq!(reported.changes(first.clone()), first);
        assert!(reported.changes(first).is_empty());
        let flipped = vec![state("10.0.0.1:80", false), state("10.0.0.2:80", false)];
        assert_eq!(reported.changes(flipped), vec![state("10.0.0.1:80", false)]);
    }

    #[test]
    fn an_endpoint_that_left_and_came_back_is_reported_again() {
        let mut reported = Reported::default();
        let _ = reported.changes(vec![state("10.0.0.1:80", true)]);
        assert!(reported.changes(vec![]).is_empty());
        assert_eq!(
            reported.changes(vec![state("10.0.0.1:80", true)]),
            vec![state("10.0.0.1:80", true)]
        );
    }
}
