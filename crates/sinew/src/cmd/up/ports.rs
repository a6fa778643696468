//! Loopback ports for the local mesh: free ones picked by the OS, or a
//! consecutive block from `--port-base`.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// Where ports come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortSource {
    /// Ports the OS reports free (bind `127.0.0.1:0`, read the port, release).
    Free,
    /// `base`, `base + 1`, … in order.
    Base(u16),
}

/// `count` distinct loopback addresses from `source`.
pub(crate) fn allocate(source: PortSource, count: usize) -> io::Result<Vec<SocketAddr>> {
    match source {
        PortSource::Base(base) => {
            let last = usize::from(base) + count.saturating_sub(1);
            if base == 0 || last > usize::from(u16::MAX) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "--port-base {base} leaves no room for {count} ports (1 to {})",
                        u16::MAX
                    ),
                ));
            }
            Ok((0..count).map(|i| loopback(base + i as u16)).collect())
        }
        PortSource::Free => {
            // Hold every listener until all are chosen so no port is handed out twice.
            let held = (0..count)
                .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
                .collect::<io::Result<Vec<_>>>()?;
            held.iter().map(TcpListener::local_addr).collect()
        }
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_gives_a_consecutive_block() {
        let ports = allocate(PortSource::Base(20000), 3).expect("room");
        let numbers: Vec<u16> = ports.iter().map(SocketAddr::port).collect();
        assert_eq!(numbers, [20000, 20001, 20002]);
        assert!(ports.iter().all(|a| a.ip().is_loopback()));
        assert!(allocate(PortSource::Base(65534), 3).is_err());
        assert!(allocate(PortSource::Base(0), 1).is_err());
    }

    #[test]
    fn free_ports_are_distinct_and_loopback() {
        let ports = allocate(PortSource::Free, 8).expect("free ports");
        let mut numbers: Vec<u16> = ports.iter().map(SocketAddr::port).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), 8);
        assert!(ports.iter().all(|a| a.ip().is_loopback() && a.port() != 0));
    }
}
