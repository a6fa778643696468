//! `sinew delete KIND NAME`: delete one resource from the control plane.

use super::client::{self, ServerArgs};
use super::get::{kind_path, print_out, resolve_kind};

/// Delete a resource from the control plane.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The kind: service, route, proxy, mesh, authorizationpolicy, subscription
    /// (any case, singular or plural).
    kind: String,
    /// The resource's name.
    name: String,
    /// The namespace.
    #[arg(short = 'n', long, value_name = "NAMESPACE", default_value = "default")]
    namespace: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub(crate) fn run(args: Args) -> Result<(), String> {
    let kind = kind_path(resolve_kind(&args.kind)?);
    let client = args.server.client()?;
    let path = format!(
        "/v1/resources/{kind}/{}/{}",
        client::segment(&args.namespace),
        client::segment(&args.name)
    );
    let reply = client::block_on(client.delete(&path))?;
    match reply.status.as_u16() {
        200 => print_out(&format!(
            "{kind}/{}/{} deleted\n",
            args.namespace, args.name
        )),
        // No such resource, or another one refers to it: the server's sentence says which.
        404 | 409 => Err(reply.error()),
        _ => Err(reply.unexpected()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn kind_and_name_are_required_and_namespace_defaults() {
        assert!(Cli::try_parse_from(["delete", "route"]).is_err());
        let cli = Cli::try_parse_from(["delete", "route", "reviews"]).unwrap();
        assert_eq!(cli.args.namespace, "default");
        let cli = Cli::try_parse_from(["delete", "Routes", "reviews", "-n", "shop"]).unwrap();
        assert_eq!(cli.args.namespace, "shop");
        assert_eq!(kind_path(resolve_kind(&cli.args.kind).unwrap()), "route");
    }
}
