//! Entry points of the cargo-fuzz targets in `fuzz/`, one function per target.
//!
//! Compiled only with `--cfg fuzzing` (cargo-fuzz sets it) and in this
//! crate's tests, which replay the committed seed corpora (`fuzz/corpus/`)
//! through the same functions on the stable toolchain: not part of the
//! crate's API. Each takes the fuzzer's bytes and panics when a property
//! fails; the code under test refusing its input is never a failure.

mod config;
mod path;
#[cfg(test)]
mod replay;
mod route;

pub use crate::http1::fuzz::{request_head as http1_head, response_head as http1_response};
pub use config::config_parser;
pub use path::path_normalizer;
pub use route::route_matcher;
