//! An arbitrary request (host, method, target, headers) routed through a fixed table.
//! The checks live in `sinew_proxy::fuzzing::route_matcher` (crates/sinew-proxy/src/fuzzing/).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinew_proxy::fuzzing::route_matcher(data));
