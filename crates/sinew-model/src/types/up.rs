//! What `sinew up -f FILE` runs: the user's services (a command per
//! replica, each beside its own sidecar) and the Sinew resources that go
//! with them. Not a resource: the control plane never sees this part.

use std::collections::BTreeMap;

use super::resource::Resource;

/// A parsed `sinew up` file.
#[derive(Debug, Clone, PartialEq)]
pub struct UpFile {
    /// The services to run, in the order written (started in that order).
    pub services: Vec<UpService>,
    /// The service the local gateway sends `localhost` traffic to; default
    /// the first service.
    pub entry: Option<String>,
    /// The other documents of the file: Sinew resources applied as they are
    /// (a `Service` named like one of `services` replaces the generated one).
    pub resources: Vec<Resource>,
}

/// One service of an [`UpFile`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpService {
    /// The service name (a DNS label).
    pub name: String,
    /// The program and its arguments; `{port}` in an argument is replaced by
    /// the replica's port. A single string runs with `sh -c`.
    pub command: Command,
    /// The port the app listens on; `None`: a free port per replica, given
    /// as `PORT` (and `{port}`). A fixed port needs `replicas: 1`.
    pub port: Option<u16>,
    /// How many instances run, each with its sidecar. Default 1.
    pub replicas: u32,
    /// Extra environment variables of the app.
    pub env: BTreeMap<String, String>,
    /// The `version` label of its sidecars (subsets). Default `v1`.
    pub version: String,
    /// The app's health-check path, checked by callers' sidecars. Default none.
    pub health_path: Option<String>,
}

/// How an app is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `[program, args…]`, run directly.
    Argv(Vec<String>),
    /// A shell command line, run with `sh -c`.
    Shell(String),
}
