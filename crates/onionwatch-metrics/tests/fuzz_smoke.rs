//! The fuzz targets' bodies (`fuzz/bodies`) on the seed corpus
//! (`fuzz/seeds`) and on deterministic mutations of it: a few seconds of
//! what `cargo fuzz` does for hours, run by every `cargo test` (README,
//! Testing, says how to fuzz for real).

#[path = "../fuzz/bodies/exposition.rs"]
mod exposition;

use onionwatch_test_support::fuzz::smoke;

/// Mutated inputs per seed.
const ROUNDS: usize = 3000;
/// Bytes the parsers treat specially.
const BYTES: &[u8] = b"\n #{}=,\"\\.-+eE0123456789_\xff\x00";

#[test]
fn exposition_body_survives_mutated_seeds() {
    smoke(
        env!("CARGO_MANIFEST_DIR"),
        "exposition",
        exposition::run,
        BYTES,
        ROUNDS,
    );
}
