//! Endpoint health states by (service, address), shared by every config
//! version: a reload that keeps an endpoint keeps what its checks learned.

use super::EndpointHealth;
use crate::config::Kept;
use sinew_model::InitialHealth;
use std::{net::SocketAddr, sync::Arc};

/// The registry of health states, by (service, endpoint address).
#[derive(Debug, Default)]
pub struct HealthStates {
    states: Kept<(Arc<str>, SocketAddr), EndpointHealth>,
}

impl HealthStates {
    /// The state of `service`'s endpoint `addr`, created as `initial` when no
    /// live config holds it.
    pub fn get(
        &self,
        service: &str,
        addr: SocketAddr,
        initial: InitialHealth,
    ) -> Arc<EndpointHealth> {
        self.states
            .get_or_insert_with((Arc::from(service), addr), || {
                Arc::new(EndpointHealth::initial(initial))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_outlives_a_config_that_keeps_it() {
        let states = HealthStates::default();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap_or_else(|_| unreachable!());
        let first = states.get("a", addr, InitialHealth::Healthy);
        first.record(
            false,
            crate::health::Thresholds {
                unhealthy: 1,
                healthy: 1,
            },
        );
        let again = states.get("a", addr, InitialHealth::Healthy);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!again.is_healthy());
        assert!(!Arc::ptr_eq(
            &first,
            &states.get("b", addr, InitialHealth::Healthy)
        ));
    }
}
