//! Arbitrary bytes as a config file: parse, snapshot, route table, proxy config, compile.
//! The checks live in `sinew_proxy::fuzzing::config_parser` (crates/sinew-proxy/src/fuzzing/).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sinew_proxy::fuzzing::config_parser(data));
