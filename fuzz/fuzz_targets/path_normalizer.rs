//! Request paths through `normalize_path`: what it accepts comes out canonical.
//! The checks live in `sinew_proxy::fuzzing::path_normalizer` (crates/sinew-proxy/src/fuzzing/).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinew_proxy::fuzzing::path_normalizer(data));
