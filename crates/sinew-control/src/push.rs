//! The gRPC side: each proxy's stream (registration, liveness, pushed
//! updates, ACK/NACK) and the lock calls sidecars make for their apps.

use std::{pin::Pin, sync::Arc, time::Duration};

use futures_util::Stream;
use sinew_proto::{
    control_message, control_server, proxy_message, AcquireLockRequest, CertificateReply,
    CertificateRequest, ControlMessage, EndpointHealth, Hello, LockLease, ProxyMessage,
    ReleaseLockReply, ReleaseLockRequest, RenewLockRequest,
};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use crate::caller::Caller;
use crate::plan::{diff, Sent};
use crate::{
    keys, lock,
    registry::{Registration, Source},
    replica::Replica,
    status::{Nack, ProxyStatus},
    store::{Compare, Op},
};

/// How long a new stream has to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Updates queued to one proxy before the session waits for it.
const OUTBOUND_QUEUE: usize = 4;

/// The `sinew.v1.Control` service.
#[derive(Debug, Clone)]
pub(crate) struct ControlService {
    replica: Arc<Replica>,
}

impl ControlService {
    pub(crate) fn new(replica: Arc<Replica>) -> Self {
        ControlService { replica }
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        Caller::of(&self.replica, request)
    }
}

/// A lock owner as stored: the caller's identity and the owner it named.
/// A workload can then only ever hold, renew or release a lock as itself:
/// naming another's owner string does not make it that owner.
fn lock_owner(caller: &Caller, owner: &str) -> Result<String, Status> {
    if owner.is_empty() || owner.len() > 253 {
        return Err(Status::invalid_argument(
            "`owner` must be 1 to 253 characters",
        ));
    }
    Ok(match caller {
        Caller::Workload(id) => format!("{id}#{owner}"),
        Caller::Token => format!("token#{owner}"),
    })
}

fn lock_status(e: lock::LockError) -> Status {
    match e {
        // Who holds it is not the caller's to know: another workload's
        // owner string would be all it needs to pose as it elsewhere.
        lock::LockError::Held { .. } => {
            Status::failed_precondition("the lock is held by another owner")
        }
        lock::LockError::Lost => Status::not_found(e.to_string()),
        lock::LockError::Invalid(m) => Status::invalid_argument(m),
        lock::LockError::Store(s) => Status::unavailable(s.to_string()),
    }
}

/// The lease as the caller knows it: with the owner it named.
fn lease_reply(l: lock::Lease, owner: String) -> Response<LockLease> {
    Response::new(LockLease {
        name: l.name,
        owner,
        token: l.token,
        ttl_ms: l.ttl_ms,
    })
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl control_server::Control for ControlService {
    type StreamStream = UpdateStream;

    async fn stream(
        &self,
        request: Request<Streaming<ProxyMessage>>,
    ) -> Result<Response<UpdateStream>, Status> {
        let caller = self.authorize(&request)?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await;
        let hello = match first {
            Ok(Ok(Some(ProxyMessage {
                message: Some(proxy_message::Message::Hello(h)),
            }))) => h,
            Ok(Err(status)) => return Err(status),
            _ => return Err(Status::invalid_argument("the first message must be Hello")),
        };
        let peer = Peer::from_hello(hello)?;
        caller.check_acting_as(&self.replica, &peer.namespace, &peer.service)?;
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let authenticated = match caller {
            Caller::Workload(_) => "certificate",
            Caller::Token => "token",
        };
        tokio::spawn(session(
            self.replica.clone(),
            peer,
            authenticated,
            inbound,
            tx,
        ));
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn acquire_lock(
        &self,
        request: Request<AcquireLockRequest>,
    ) -> Result<Response<LockLease>, Status> {
        let caller = self.authorize(&request)?;
        let r = request.into_inner();
        let owner = lock_owner(&caller, &r.owner)?;
        let ttl = Duration::from_millis(r.ttl_ms);
        lock::acquire(&*self.replica.store, &r.name, &owner, ttl)
            .await
            .map(|l| lease_reply(l, r.owner))
            .map_err(lock_status)
    }

    async fn renew_lock(
        &self,
        request: Request<RenewLockRequest>,
    ) -> Result<Response<LockLease>, Status> {
        let caller = self.authorize(&request)?;
        let r = request.into_inner();
        let owner = lock_owner(&caller, &r.owner)?;
        lock::renew(&*self.replica.store, &r.name, &owner, r.token)
            .await
            .map(|l| lease_reply(l, r.owner))
            .map_err(lock_status)
    }

    async fn issue_certificate(
        &self,
        request: Request<CertificateRequest>,
    ) -> Result<Response<CertificateReply>, Status> {
        let caller = self.authorize(&request)?;
        let r = request.into_inner();
        let namespace = crate::view::namespace_or_default(Some(&r.namespace)).to_owned();
        caller.check_acting_as(&self.replica, &namespace, &r.service)?;
        for (field, value) in [("namespace", &namespace), ("service", &r.service)] {
            if !keys::valid_segment(value) {
                return Err(Status::invalid_argument(format!(
                    "CertificateRequest.{field} `{value}` is not a valid name"
                )));
            }
        }
        let (domain, ttl) = self.replica.mesh_identity();
        let identity = crate::ca::spiffe_id(&domain, &namespace, &r.service);
        let ca = self
            .replica
            .ca()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let issued = ca
            .issue(&r.csr_der, &identity, ttl)
            .map_err(Status::invalid_argument)?;
        tracing::info!(proxy = %r.proxy, %identity, not_after_ms = issued.not_after_ms, "certificate issued");
        Ok(Response::new(CertificateReply {
            certificate_chain_pem: issued.chain_pem,
            trust_bundle_pem: issued.bundle_pem,
            identity: issued.identity,
            not_before_ms: issued.not_before_ms,
            not_after_ms: issued.not_after_ms,
        }))
    }

    async fn release_lock(
        &self,
        request: Request<ReleaseLockRequest>,
    ) -> Result<Response<ReleaseLockReply>, Status> {
        let caller = self.authorize(&request)?;
        let r = request.into_inner();
        let owner = lock_owner(&caller, &r.owner)?;
        lock::release(&*self.replica.store, &r.name, &owner, r.token)
            .await
            .map(|released| Response::new(ReleaseLockReply { released }))
            .map_err(lock_status)
    }
}

/// A proxy as it introduced itself.
#[derive(Debug)]
struct Peer {
    name: String,
    namespace: String,
    service: String,
    address: Option<std::net::SocketAddr>,
    labels: std::collections::BTreeMap<String, String>,
    weight: u32,
    applied_version: u64,
    api: String,
}

impl Peer {
    fn from_hello(h: Hello) -> Result<Peer, Status> {
        let namespace = crate::view::namespace_or_default(Some(&h.namespace)).to_owned();
        for (field, value) in [
            ("proxy", &h.proxy),
            ("namespace", &namespace),
            ("service", &h.service),
        ] {
            if !keys::valid_segment(value) {
                return Err(Status::invalid_argument(format!(
                    "Hello.{field} `{value}` is not a valid name"
                )));
            }
        }
        let address = if h.address.is_empty() {
            None
        } else {
            Some(h.address.parse().map_err(|_| {
                Status::invalid_argument(format!("Hello.address `{}` is not ip:port", h.address))
            })?)
        };
        Ok(Peer {
            name: h.proxy,
            namespace,
            service: h.service,
            address,
            labels: h.labels.into_iter().collect(),
            weight: h.weight.max(1),
            applied_version: h.applied_version,
            // Shown to operators (`sinew explain` finds sidecars by it); an
            // address or nothing.
            api: h
                .api
                .parse::<std::net::SocketAddr>()
                .map(|a| a.to_string())
                .unwrap_or_default(),
        })
    }
}

/// One proxy's stream, from `Hello` to its end.
async fn session(
    replica: Arc<Replica>,
    peer: Peer,
    authenticated: &'static str,
    mut inbound: Streaming<ProxyMessage>,
    tx: mpsc::Sender<Result<ControlMessage, Status>>,
) {
    let session = replica.next_session();
    let proxy_id = format!("{}/{}", peer.namespace, peer.name);
    tracing::info!(proxy = %proxy_id, service = %peer.service, session, "proxy connected");
    let mut status = ProxyStatus {
        name: peer.name.clone(),
        namespace: peer.namespace.clone(),
        service: peer.service.clone(),
        address: peer.address.map(|a| a.to_string()).unwrap_or_default(),
        connected: true,
        replica: replica.id.clone(),
        session: session.clone(),
        desired_version: 0,
        applied_version: peer.applied_version,
        last_nack: None,
        last_seen_ms: keys::now_ms(),
        authenticated: authenticated.to_owned(),
        api: peer.api.clone(),
    };
    replica.status.write(status.clone());

    let (trust_domain, _) = replica.mesh_identity();
    let identity = crate::ca::spiffe_id(&trust_domain, &peer.namespace, &peer.service);
    let mut registration = peer.address.map(|address| {
        let r = Registration {
            identity: Some(identity),
            address,
            labels: peer.labels.clone(),
            weight: peer.weight,
            source: Source::Proxy,
            check: None,
            healthy: true,
            heartbeat_ms: keys::now_ms(),
            disconnected_ms: None,
            session: Some(session.clone()),
            proxy: Some(proxy_id.clone()),
        };
        let key = keys::registration(&peer.namespace, &peer.service, &peer.name);
        (key, r, Vec::new())
    });
    let mut lease_rx = replica.lease.clone();
    let lease = *lease_rx.borrow_and_update();
    if let Some((key, r, written)) = registration.as_mut() {
        *written = register(&replica, key, r, lease).await;
    }

    let mut view_rx = replica.view.clone();
    // A proxy that connects after a change is not served an older config:
    // the first update waits (briefly) for this replica's view to catch up
    // with the store as of now (its watch may lag an apply by a moment).
    if let Ok((now, _)) = replica.store.range("/sinew/.revision-probe/").await {
        let caught_up = view_rx.wait_for(|v| v.version >= now);
        let _ = tokio::time::timeout(Duration::from_secs(2), caught_up).await;
    }
    view_rx.mark_changed();
    let mut sent = Sent::default();
    loop {
        tokio::select! {
            changed = view_rx.changed() => {
                if changed.is_err() {
                    break;
                }
                let view = view_rx.borrow_and_update().clone();
                if view.version == 0 {
                    continue; // the store has not been read yet: never push an empty config
                }
                if let Some(plan) = diff(&view, &mut sent, &peer.namespace, &peer.service) {
                    let version = plan.version;
                    let mut closed = false;
                    for part in plan.parts() {
                        let message = ControlMessage { message: Some(control_message::Message::Update(part)) };
                        if tx.send(Ok(message)).await.is_err() {
                            closed = true;
                            break;
                        }
                    }
                    if closed {
                        break;
                    }
                    status.desired_version = version;
                    replica.status.write(status.clone());
                }
            }
            message = inbound.message() => {
                let message = match message {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(error) => {
                        tracing::debug!(proxy = %proxy_id, %error, "proxy stream error");
                        break;
                    }
                };
                if let Some(proxy_message::Message::Stats(report)) = message.message {
                    // Every 2 s: kept in memory, no status write.
                    replica.stats.record(&proxy_id, &peer.namespace, &peer.service, report);
                    continue;
                }
                status.last_seen_ms = keys::now_ms();
                match message.message {
                    Some(proxy_message::Message::Ack(a)) => {
                        status.applied_version = a.version;
                        if status.last_nack.as_ref().is_some_and(|n| n.version <= a.version) {
                            status.last_nack = None;
                        }
                    }
                    Some(proxy_message::Message::Nack(n)) => {
                        tracing::warn!(proxy = %proxy_id, version = n.version, error = %n.error, "proxy refused a version");
                        status.last_nack = Some(Nack { version: n.version, error: n.error });
                    }
                    Some(proxy_message::Message::Health(h)) => health(&replica, &proxy_id, h).await,
                    Some(proxy_message::Message::Hello(_) | proxy_message::Message::Stats(_)) | None => {}
                }
                replica.status.write(status.clone());
            }
            lease = lease_rx.changed() => {
                if lease.is_err() {
                    break;
                }
                // The replica's lease was renewed after a loss: our
                // registration died with the old one; put it back.
                let lease = *lease_rx.borrow_and_update();
                if let Some((key, r, written)) = registration.as_mut() {
                    *written = register(&replica, key, r, lease).await;
                }
            }
            () = tx.closed() => break,
        }
    }
    tracing::info!(proxy = %proxy_id, session, "proxy disconnected");
    status.connected = false;
    replica.status.write(status);
    if let Some((key, mut r, written)) = registration {
        r.disconnected_ms = Some(keys::now_ms());
        let lease = *lease_rx.borrow();
        if let Ok(value) = serde_json::to_vec(&r) {
            // Only if it is still ours: a newer session (here or on another
            // replica) may have registered the proxy again.
            let guard = vec![Compare::Value(key.clone(), written)];
            let put = Op::Put { key, value, lease };
            if let Err(error) = replica.store.txn(guard, vec![put]).await {
                tracing::warn!(%error, proxy = %proxy_id, "cannot mark the registration disconnected");
            }
        }
    }
}

/// Puts the registration on the replica's lease; returns the bytes written.
async fn register(replica: &Replica, key: &str, r: &Registration, lease: i64) -> Vec<u8> {
    let value = serde_json::to_vec(r).unwrap_or_default();
    let put = Op::Put {
        key: key.to_owned(),
        value: value.clone(),
        lease,
    };
    for attempt in 0..5u32 {
        match replica.store.txn(Vec::new(), vec![put.clone()]).await {
            Ok(_) => return value,
            Err(error) => {
                tracing::warn!(%error, key, "cannot register the proxy's endpoint; retrying");
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
    }
    value
}

/// Whether a verdict names a service (in a namespace) and an IP and port.
fn well_formed(e: &sinew_proto::EndpointState) -> bool {
    keys::valid_segment(&e.service)
        && (e.namespace.is_empty() || keys::valid_segment(&e.namespace))
        && e.address.parse::<std::net::SocketAddr>().is_ok()
}

/// Most verdicts one health report may carry; the rest are dropped.
const MAX_HEALTH_VERDICTS: usize = 1024;

/// Records a sidecar's health-check verdicts, on the replica's lease. Only
/// well-formed ones: a namespace and a service that are names, an address
/// that is an IP and port (each verdict is a store key).
async fn health(replica: &Replica, reporter: &str, h: EndpointHealth) {
    let lease = *replica.lease.borrow();
    let reporter = reporter.replace('/', ".");
    if h.endpoints.len() > MAX_HEALTH_VERDICTS {
        tracing::warn!(
            reporter,
            verdicts = h.endpoints.len(),
            "a health report over the limit; the rest is dropped"
        );
    }
    let ops: Vec<Op> = h
        .endpoints
        .into_iter()
        .take(MAX_HEALTH_VERDICTS)
        .filter(well_formed)
        .map(|e| {
            let ns = crate::view::namespace_or_default(Some(&e.namespace));
            Op::Put {
                key: keys::health(ns, &e.service, &e.address, &reporter),
                value: if e.healthy {
                    b"1".to_vec()
                } else {
                    b"0".to_vec()
                },
                lease,
            }
        })
        .collect();
    for chunk in ops.chunks(100) {
        if let Err(error) = replica.store.txn(Vec::new(), chunk.to_vec()).await {
            tracing::warn!(%error, "cannot record endpoint health");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_health_verdicts_are_kept() {
        let state = |namespace: &str, service: &str, address: &str| sinew_proto::EndpointState {
            namespace: namespace.into(),
            service: service.into(),
            address: address.into(),
            healthy: true,
        };
        assert!(well_formed(&state("", "web", "10.0.0.1:80")));
        assert!(well_formed(&state("shop", "web", "[::1]:80")));
        assert!(
            !well_formed(&state("a/b", "web", "10.0.0.1:80")),
            "a namespace with `/`"
        );
        assert!(!well_formed(&state("", "web", "not-an-address")));
        assert!(!well_formed(&state("", "web", "10.0.0.1:80/x")));
        assert!(!well_formed(&state("", "", "10.0.0.1:80")));
    }
}
