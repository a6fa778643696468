//! `sinew`: the one binary — sidecar proxy, local mesh, and (later) control
//! plane and CLI.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod cmd;
mod logging;

/// mimalloc, not glibc's malloc: decoded events are allocated on one
/// thread and freed on another in bursts, which glibc serves from its slow
/// paths (ARCHITECTURE.md, Decisions).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sinew: a service mesh and event mesh in one small binary.
#[derive(Debug, Parser)]
#[command(name = "sinew", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a sidecar proxy from a config file (static mode).
    Proxy(cmd::proxy::Args),
    /// Start a local mesh: the demo shop (or your services with -f), each with its sidecar.
    Up(cmd::up::Args),
    /// Run the control plane: resource store, registry, push to proxies, REST API.
    Control(cmd::control::Args),
    /// Run the event broker alone: its log, gRPC API and token, no control plane.
    Broker(cmd::broker::Args),
    /// Check config files without running anything.
    Validate(cmd::validate::Args),
    /// Apply resources from a file to the control plane (all or nothing).
    Apply(cmd::apply::Args),
    /// Show resources stored in the control plane.
    Get(cmd::get::Args),
    /// Delete a resource from the control plane.
    Delete(cmd::delete::Args),
    /// Show every proxy of the control plane: connected, config versions, last NACK.
    Status(cmd::status::Args),
    /// Inspect the event broker: topics, tail, a key's history, dead letters and replay.
    Events(cmd::events::Args),
    /// Explain how a sidecar routes a request: rules, backends, authorization, endpoints.
    Explain(cmd::explain::Args),
    /// Live golden metrics per service and edge (requests/s, success, latency).
    Top(cmd::top::Args),
    /// A built-in demo application (used by `sinew up`).
    #[command(hide = true)]
    DemoApp(cmd::demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Proxy(args) => cmd::proxy::run(args),
        Command::Up(args) => cmd::up::run(args),
        Command::Control(args) => cmd::control::run(args),
        Command::Broker(args) => cmd::broker::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Apply(args) => cmd::apply::run(args),
        Command::Get(args) => cmd::get::run(args),
        Command::Delete(args) => cmd::delete::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Events(args) => cmd::events::run(args),
        Command::Explain(args) => cmd::explain::run(args),
        Command::Top(args) => cmd::top::run(args),
        Command::DemoApp(args) => cmd::demo::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
