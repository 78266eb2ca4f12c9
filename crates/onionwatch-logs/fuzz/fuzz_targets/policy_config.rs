//! libFuzzer entry point; the body is in `fuzz/bodies`, shared with the
//! crate's `tests/fuzz_smoke.rs`.
#![no_main]

#[path = "../bodies/policy_config.rs"]
mod body;

libfuzzer_sys::fuzz_target!(|data: &[u8]| body::run(data));
