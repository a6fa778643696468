//! HTTP/1 request heads and chunked bodies as read downstream, and the head written upstream.
//! The checks live in `sinew_proxy::fuzzing::http1_head` (crates/sinew-proxy/src/fuzzing/).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinew_proxy::fuzzing::http1_head(data));
