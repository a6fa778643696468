//! Who calls the proxies' gRPC API (control and events): a workload, by the
//! SPIFFE ID of the certificate it connected with (checked by TLS against
//! the CA), else the holder of the join or admin token.

use tonic::{Request, Status};

use crate::grpc_tls::PeerIdentity;
use crate::replica::Replica;

/// Who is calling.
#[derive(Debug)]
pub(crate) enum Caller {
    /// A workload, by the SPIFFE ID of the certificate it connected with.
    Workload(String),
    /// The holder of the join (or admin) token.
    Token,
}

impl Caller {
    /// Authenticates `request`: its connection's certificate, else its token.
    pub(crate) fn of<T>(replica: &Replica, request: &Request<T>) -> Result<Caller, Status> {
        if let Some(PeerIdentity(Some(id))) = request.extensions().get::<PeerIdentity>() {
            return Ok(Caller::Workload(id.clone()));
        }
        let header = request
            .metadata()
            .get(sinew_proto::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if replica.tokens.proxy_may(header) {
            Ok(Caller::Token)
        } else {
            Err(Status::unauthenticated(
                "no workload certificate and a missing or wrong token: send `authorization: Bearer TOKEN` (the join or admin token)",
            ))
        }
    }

    /// Refuses a certificate-authenticated caller acting as another
    /// workload than its certificate names.
    pub(crate) fn check_acting_as(
        &self,
        replica: &Replica,
        namespace: &str,
        service: &str,
    ) -> Result<(), Status> {
        let Caller::Workload(id) = self else {
            return Ok(());
        };
        let (domain, _) = replica.mesh_identity();
        let claimed = crate::ca::spiffe_id(&domain, namespace, service);
        if *id == claimed {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "the certificate names {id}; it may not act as {claimed}"
            )))
        }
    }
}
