//! Fault injection for users' chaos testing: a route rule's `fault` delays
//! and/or aborts a share of its requests before they are forwarded (delay
//! first, then abort, as Envoy does).

use sinew_model::Fault;
use std::time::Duration;

/// What to do to one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Injected {
    /// Wait this long before going on.
    pub(crate) delay: Option<Duration>,
    /// Answer with this status instead of forwarding.
    pub(crate) abort: Option<http::StatusCode>,
}

impl Injected {
    /// Rolls the dice for one request under `fault`.
    pub(crate) fn roll(fault: &Fault) -> Injected {
        Injected {
            delay: fault
                .delay
                .as_ref()
                .filter(|d| hit(d.percent))
                .map(|d| d.fixed.into()),
            abort: fault
                .abort
                .as_ref()
                .filter(|a| hit(a.percent))
                .and_then(|a| http::StatusCode::from_u16(a.status).ok()),
        }
    }
}

/// True for `percent` % of calls.
fn hit(percent: f64) -> bool {
    percent >= 100.0 || (percent > 0.0 && fastrand::f64() * 100.0 < percent)
}

/// The header marking a response the fault filter produced.
pub(crate) const FAULT_HEADER: &str = "x-sinew-fault";

#[cfg(test)]
mod tests {
    use super::*;
    use sinew_model::{FaultAbort, FaultDelay};

    fn fault(delay_percent: f64, abort_percent: f64) -> Fault {
        Fault {
            delay: Some(FaultDelay {
                fixed: sinew_model::Duration::from_millis(5),
                percent: delay_percent,
            }),
            abort: Some(FaultAbort {
                status: 503,
                percent: abort_percent,
            }),
        }
    }

    #[test]
    fn all_or_nothing() {
        let always = Injected::roll(&fault(100.0, 100.0));
        assert_eq!(always.delay, Some(Duration::from_millis(5)));
        assert_eq!(always.abort, Some(http::StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(Injected::roll(&fault(0.0, 0.0)), Injected::default());
    }

    #[test]
    fn percent_is_a_share_of_requests() {
        fastrand::seed(7);
        let f = fault(0.0, 30.0);
        let aborted = (0..10_000)
            .filter(|_| Injected::roll(&f).abort.is_some())
            .count();
        assert!((2_700..3_300).contains(&aborted), "{aborted}");
    }
}
