//! Free loopback port allocator that never hands the same port out twice in one test process.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, OnceLock};

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A free `127.0.0.1` address for a process that binds it later.
///
/// The port is found by binding port 0 and releasing it; ports already handed
/// out by this process are skipped, so parallel tests never share one.
pub fn free_port() -> SocketAddr {
    for _ in 0..1000 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
        let addr = listener
            .local_addr()
            .expect("local address of a bound listener");
        let mut seen = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if seen.insert(addr.port()) {
            return addr;
        }
    }
    panic!("no free loopback port after 1000 attempts");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let a = free_port();
        let b = free_port();
        assert_ne!(a.port(), b.port());
        assert!(a.ip().is_loopback());
        TcpListener::bind(a).expect("allocated port can be bound");
    }
}
