//! Endpoint health states by (service, address), shared by every config
//! version: a reload that keeps an endpoint keeps what its checks learned.

use super::EndpointHealth;
use sinew_model::InitialHealth;
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError, Weak},
};

/// A (service, endpoint address) pair.
type Key = (Arc<str>, SocketAddr);

/// The registry of health states.
#[derive(Debug, Default)]
pub struct HealthStates {
    states: Mutex<HashMap<Key, Weak<EndpointHealth>>>,
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
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (Arc::<str>::from(service), addr);
        if let Some(state) = states.get(&key).and_then(Weak::upgrade) {
            return state;
        }
        states.retain(|_, weak| weak.strong_count() > 0);
        let state = Arc::new(EndpointHealth::initial(initial));
        states.insert(key, Arc::downgrade(&state));
        state
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
