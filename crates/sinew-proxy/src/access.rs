//! The owned facts of a request an access log line needs, captured from the
//! request head only when an access log is configured.

use crate::listen::Peer;
use crate::telemetry::{
    AccessEntry, AccessFlags, AccessLog, Direction, ProxyErrorKind, TraceContext,
};
use std::{net::SocketAddr, sync::Arc, time::Duration, time::SystemTime};

/// A request being served, as the access log will describe it.
#[derive(Debug)]
pub(crate) struct Record {
    timestamp: SystemTime,
    direction: Direction,
    remote: SocketAddr,
    peer_identity: Option<Arc<str>>,
    method: String,
    authority: String,
    path: String,
    user_agent: Option<String>,
    pub(crate) trace: Option<TraceContext>,
    pub(crate) upstream: Option<SocketAddr>,
    pub(crate) service: String,
    pub(crate) route: String,
    /// Why the proxy failed the request, if it did.
    pub(crate) error: Option<ProxyErrorKind>,
    /// The AuthorizationPolicy that refused it (403), if one did.
    pub(crate) policy: Option<Box<str>>,
    pub(crate) flags: AccessFlags,
}

impl Record {
    pub(crate) fn new(
        direction: Direction,
        peer: &Peer,
        method: &str,
        authority: Option<&str>,
        path: &str,
        user_agent: Option<&[u8]>,
    ) -> Self {
        Self {
            timestamp: SystemTime::now(),
            direction,
            remote: peer.addr,
            peer_identity: peer.identity.clone(),
            method: method.to_owned(),
            authority: authority.unwrap_or_default().to_owned(),
            path: path.to_owned(),
            user_agent: user_agent.map(|v| String::from_utf8_lossy(v).into_owned()),
            trace: None,
            upstream: None,
            service: String::new(),
            route: String::new(),
            error: None,
            policy: None,
            flags: AccessFlags::NONE,
        }
    }

    /// Notes that the proxy failed the request with `error`.
    pub(crate) fn failed(&mut self, error: &crate::error::ProxyError) {
        self.error = Some(error.metric_kind());
        self.policy = error.denied_by().map(Into::into);
    }

    /// Writes the line.
    pub(crate) fn log(
        &self,
        log: &AccessLog,
        status: u16,
        duration: Duration,
        bytes_out: Option<u64>,
    ) {
        log.log(&AccessEntry {
            timestamp: self.timestamp,
            direction: self.direction,
            method: &self.method,
            authority: &self.authority,
            path: &self.path,
            status,
            duration,
            bytes_in: None,
            bytes_out,
            upstream: self.upstream,
            service: &self.service,
            route: &self.route,
            trace: self.trace,
            remote: Some(self.remote),
            peer_identity: self.peer_identity.as_deref(),
            user_agent: self.user_agent.as_deref(),
            error: self.error,
            policy: self.policy.as_deref(),
            flags: self.flags,
        });
    }
}
