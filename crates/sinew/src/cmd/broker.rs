//! `sinew broker`: the event broker alone, in its own process.

use std::{net::SocketAddr, path::PathBuf};

use sinew_control::{BrokerOptions, StandaloneBroker};

/// Run the event broker alone.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Where the log (`events/`), the token (`broker.token`) and the
    /// certificate (`broker.pem`, `broker.key`) are kept.
    #[arg(long, default_value = "./sinew-broker")]
    data_dir: PathBuf,
    /// Address of the gRPC API (TLS, bearer token).
    #[arg(long, default_value = "127.0.0.1:7450")]
    listen: SocketAddr,
    /// Partitions of each topic created from now on, 1 to 1024 (a topic keeps
    /// the count it was created with).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    partitions: u32,
    /// A further DNS name or address for the certificate (repeatable; used
    /// when the certificate is first made), besides localhost, 127.0.0.1, ::1
    /// and the listen address.
    #[arg(long = "hostname")]
    hostnames: Vec<String>,
    /// Address of the admin listener (plain HTTP: `/live`, `/ready`,
    /// `/metrics`); loopback only unless --admin-allow-non-loopback.
    #[arg(long, default_value = "127.0.0.1:7451")]
    admin_listen: SocketAddr,
    /// Let --admin-listen be an address other machines reach (to scrape
    /// /metrics from elsewhere).
    #[arg(long)]
    admin_allow_non_loopback: bool,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    crate::logging::init();
    let options = BrokerOptions {
        data_dir: args.data_dir,
        listen: args.listen,
        partitions: args.partitions,
        hostnames: args.hostnames,
        admin_listen: args.admin_listen,
        admin_allow_non_loopback: args.admin_allow_non_loopback,
    };
    let runtime = super::runtime(args.workers, "sinew-broker")?;
    runtime.block_on(async {
        let broker = StandaloneBroker::start(options)
            .await
            .map_err(|e| e.to_string())?;
        eprintln!(
            "sinew broker: gRPC on https://{}, certificate {}, token in {}; /metrics on http://{}",
            broker.addr,
            broker.cert_file.display(),
            broker.token_file.display(),
            broker.admin_addr
        );
        super::until_stopped().await?;
        tracing::info!("stopping");
        broker.stop().await;
        Ok::<(), String>(())
    })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}
