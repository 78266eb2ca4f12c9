//! The fuzz target's body (`fuzz/bodies`) on the seed corpus
//! (`fuzz/seeds`) and on deterministic mutations of it: a few seconds of
//! what `cargo fuzz` does for hours, run by every `cargo test`
//! (RELIABILITY.md, Fuzzing, says how to fuzz for real).

#[path = "../fuzz/bodies/watch_config.rs"]
mod watch_config;

use onionwatch_test_support::fuzz::smoke;

/// Bytes YAML treats specially.
const YAML_BYTES: &[u8] = b"\n :-#&*!|>'\"[]{},?%@`\t0123456789\xff";

#[test]
fn watch_config_body_survives_mutated_seeds() {
    smoke(
        env!("CARGO_MANIFEST_DIR"),
        "watch_config",
        watch_config::run,
        YAML_BYTES,
        2_000,
    );
}
