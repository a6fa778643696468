//! `sinew control`: run one control-plane replica.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use sinew_control::{ControlPlane, EventsSpec, Options, StoreSpec};

/// Run the control plane.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// `embedded:DIR` (redb in DIR, one replica) or `etcd:URL[,URL…]` (any number of replicas).
    #[arg(long, default_value = "embedded:./sinew-data")]
    store: StoreSpec,
    /// Address of the gRPC API (proxies' streams and locks).
    #[arg(long, default_value = "127.0.0.1:7701")]
    grpc_listen: SocketAddr,
    /// Address of the REST API (the CLI, `/openapi.json`).
    #[arg(long, default_value = "127.0.0.1:7700")]
    http_listen: SocketAddr,
    /// Where `admin.token` and `join.token` are written; default the embedded store's directory (required with etcd).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// How long a proxy's endpoint stays registered after its stream ends.
    #[arg(long, default_value = "10s")]
    deregister_grace: sinew_model::Duration,
    /// This replica's name (default: hostname-pid).
    #[arg(long)]
    replica: Option<String>,
    /// The mesh CA's signing certificate (PEM: a root, or an intermediate followed
    /// by its chain); default: a root made on first start and kept in the store.
    #[arg(long, requires = "ca_key")]
    ca_cert: Option<PathBuf>,
    /// The key of `--ca-cert` (PEM).
    #[arg(long, requires = "ca_cert")]
    ca_key: Option<PathBuf>,
    /// The roots proxies trust (PEM); default: the last certificate of `--ca-cert`.
    #[arg(long, requires = "ca_cert")]
    ca_bundle: Option<PathBuf>,
    /// Where events are kept: `auto` (the embedded broker with the embedded
    /// store, none with etcd), `embedded`, `jetstream:nats://HOST:4222` (streams
    /// on a NATS JetStream server, shared by every replica),
    /// `broker:https://HOST:PORT` (a `sinew broker`, shared by every replica;
    /// with --broker-token-file and --broker-cert) or `none`.
    #[arg(long, default_value = "auto")]
    events: EventsSpec,
    /// Partitions of each topic created from now on, 1 to 1024 (a topic keeps
    /// the count it was created with). Partitions are the unit of ordering and
    /// of sharing among a service's replicas: a topic with N partitions feeds
    /// at most N replicas at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    events_partitions: u32,
    /// The token of the `sinew broker` in `--events broker:URL` (its DIR/broker.token).
    #[arg(long)]
    broker_token_file: Option<PathBuf>,
    /// The certificate of the `sinew broker` in `--events broker:URL` (its DIR/broker.pem).
    #[arg(long)]
    broker_cert: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    crate::logging::init();
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let ca = match (&args.ca_cert, &args.ca_key) {
        (Some(cert), Some(key)) => Some(sinew_control::UserCa {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
            bundle_pem: args.ca_bundle.as_ref().map(read).transpose()?,
        }),
        _ => None,
    };
    let broker = match (&args.events, &args.broker_token_file, &args.broker_cert) {
        (EventsSpec::Broker(_), Some(token), Some(cert)) => {
            Some(sinew_control::BrokerCredentials {
                token: read(token)?.trim().to_owned(),
                cert_pem: read(cert)?,
            })
        }
        (EventsSpec::Broker(_), _, _) => {
            return Err(
                "--events broker:URL needs --broker-token-file (the broker's DIR/broker.token) and --broker-cert (its DIR/broker.pem)"
                    .into(),
            )
        }
        _ => None,
    };
    let options = Options {
        store: args.store,
        grpc_listen: args.grpc_listen,
        http_listen: args.http_listen,
        data_dir: args.data_dir,
        grace: Duration::from(args.deregister_grace),
        replica_id: args.replica,
        ca,
        events: args.events,
        event_partitions: args.events_partitions,
        broker,
    };
    let runtime = super::runtime(args.workers, "sinew-control")?;
    runtime.block_on(async {
        let plane = ControlPlane::start(options)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "sinew control: REST on http://{}, gRPC on {}, admin token in {}",
            plane.http_addr,
            plane.grpc_addr,
            plane.admin_token_file.display()
        );
        super::until_stopped().await?;
        tracing::info!("stopping");
        plane.stop();
        Ok::<(), String>(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}
