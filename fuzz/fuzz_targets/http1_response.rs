//! HTTP/1 response heads as read upstream, and the head written downstream.
//! The checks live in `sinew_proxy::fuzzing::http1_response` (crates/sinew-proxy/src/fuzzing/).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinew_proxy::fuzzing::http1_response(data));
