//! The fuzz targets' bodies (`fuzz/bodies`) on the seed corpus
//! (`fuzz/seeds`) and on deterministic mutations of it: a few seconds of
//! what `cargo fuzz` does for hours, run by every `cargo test` (README,
//! Testing, says how to fuzz for real).

#[path = "../fuzz/bodies/control_reply.rs"]
mod control_reply;
#[path = "../fuzz/bodies/proxy_header.rs"]
mod proxy_header;

use onionwatch_test_support::fuzz::smoke;

/// Mutated inputs per seed.
const ROUNDS: usize = 10_000;
/// Bytes the parsers treat specially.
const BYTES: &[u8] = b"\r\n +-.=\"\\:~$,0123456789\xff\x00";

#[test]
fn control_reply_body_survives_mutated_seeds() {
    smoke(
        env!("CARGO_MANIFEST_DIR"),
        "control_reply",
        control_reply::run,
        BYTES,
        ROUNDS,
    );
}

#[test]
fn proxy_header_body_survives_mutated_seeds() {
    smoke(
        env!("CARGO_MANIFEST_DIR"),
        "proxy_header",
        proxy_header::run,
        BYTES,
        ROUNDS,
    );
}
