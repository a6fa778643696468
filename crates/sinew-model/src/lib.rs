//! Sinew's resources: the Kubernetes-shaped types users write, parsed from
//! YAML or JSON with file:line:field errors, validated as a whole, and frozen
//! into an immutable, versioned snapshot.
#![forbid(unsafe_code)]

mod duration;
mod pattern;
mod types;

pub use duration::{Duration, DurationError};
pub use pattern::Pattern;
pub use types::*;
