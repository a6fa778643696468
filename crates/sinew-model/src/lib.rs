//! Sinew's resources: the Kubernetes-shaped types users write, parsed from
//! YAML or JSON with file:line:field errors, validated as a whole, and frozen
//! into an immutable, versioned [`Snapshot`].
#![forbid(unsafe_code)]
