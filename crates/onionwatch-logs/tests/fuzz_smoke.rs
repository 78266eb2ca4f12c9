//! The fuzz targets' bodies (`fuzz/bodies`) on the seed corpus
//! (`fuzz/seeds`) and on deterministic mutations of it: a few seconds of
//! what `cargo fuzz` does for hours, run by every `cargo test`
//! (RELIABILITY.md, Fuzzing, says how to fuzz for real).

#[path = "../fuzz/bodies/access_line.rs"]
mod access_line;
#[path = "../fuzz/bodies/policy_config.rs"]
mod policy_config;

use onionwatch_test_support::fuzz::smoke;

/// Bytes the access-log parsers treat specially.
const LINE_BYTES: &[u8] = b" \"\\[]$-{}:/|\n\r\t0123456789.,\xff\x00";
/// Bytes YAML treats specially.
const YAML_BYTES: &[u8] = b"\n :-#&*!|>'\"[]{},?%@`\t0123456789\xff";

#[test]
fn access_line_body_survives_mutated_seeds() {
    smoke(
        env!("CARGO_MANIFEST_DIR"),
        "access_line",
        access_line::run,
        LINE_BYTES,
        5_000,
    );
}

#[test]
fn policy_config_body_survives_mutated_seeds() {
    smoke(
        env!("CARGO_MANIFEST_DIR"),
        "policy_config",
        policy_config::run,
        YAML_BYTES,
        2_000,
    );
}
