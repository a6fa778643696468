//! The subcommands, one module each.

pub(crate) mod demo;
pub(crate) mod proxy;
pub(crate) mod up;
pub(crate) mod validate;
