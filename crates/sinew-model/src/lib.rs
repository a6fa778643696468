//! Sinew's resources: the Kubernetes-shaped types users write, parsed from
//! YAML or JSON with file:line:field errors, validated as a whole, and frozen
//! into an immutable, versioned [`Snapshot`].
#![forbid(unsafe_code)]

pub mod access;
mod config;
mod digest;
mod duration;
mod error;
mod parse;
mod pattern;
mod snapshot;
mod types;

pub use config::ProxyConfig;
pub use duration::{Duration, DurationError};
pub use error::{Error, ErrorKind, Errors};
pub use parse::{parse_file, parse_str, parse_up_file, parse_up_str};
pub use pattern::Pattern;
pub use snapshot::Snapshot;
pub use types::*;

#[cfg(test)]
mod tests;
