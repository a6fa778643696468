//! The subcommands, one module each.

pub(crate) mod apply;
pub(crate) mod broker;
pub(crate) mod client;
pub(crate) mod control;
pub(crate) mod delete;
pub(crate) mod demo;
pub(crate) mod events;
pub(crate) mod explain;
pub(crate) mod get;
pub(crate) mod proxy;
pub(crate) mod status;
pub(crate) mod top;
pub(crate) mod up;
pub(crate) mod validate;
