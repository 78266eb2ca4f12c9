//! The fuzz targets' bodies (`fuzz/bodies`) on the seed corpus
//! (`fuzz/seeds`) and on deterministic mutations of it: a few seconds of
//! what `cargo fuzz` does for hours, run by every `cargo test`
//! (RELIABILITY.md, Fuzzing, says how to fuzz for real).

#[path = "../fuzz/bodies/gateway_config.rs"]
mod gateway_config;
#[path = "../fuzz/bodies/request_head.rs"]
mod request_head;

use onionwatch_test_support::fuzz::smoke;

/// Bytes PROXY headers and HTTP heads treat specially.
const HEAD_BYTES: &[u8] = b"\r\n :_-,;=\t/[]@0123456789\x00\x7f\xff";
/// Bytes YAML treats specially.
const YAML_BYTES: &[u8] = b"\n :-#&*!|>'\"[]{},?%@`\t0123456789\xff";

#[test]
fn request_head_body_survives_mutated_seeds() {
    smoke(
        env!("CARGO_MANIFEST_DIR"),
        "request_head",
        request_head::run,
        HEAD_BYTES,
        3_000,
    );
}

#[test]
fn gateway_config_body_survives_mutated_seeds() {
    smoke(
        env!("CARGO_MANIFEST_DIR"),
        "gateway_config",
        gateway_config::run,
        YAML_BYTES,
        2_000,
    );
}

/// The harness reaches the header checks: a seed with two requests is two
/// heads, read one byte at a time as from a slow client.
#[tokio::test]
async fn request_head_harness_serves_every_request() {
    use onionwatch_gateway::{fuzzing::connection, ProxyProtocol};
    let seed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fuzz/seeds/request_head/keepalive_chunked.txt"
    ))
    .unwrap();
    let (header, heads) = connection(&seed[1..], ProxyProtocol::Require, 1, false)
        .await
        .unwrap();
    assert_eq!(header.unwrap().circuit_id().unwrap().0, 48);
    assert_eq!(heads, 2);
    let plain = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert!(connection(plain, ProxyProtocol::Require, 64, false)
        .await
        .is_err());
    let (header, heads) = connection(plain, ProxyProtocol::Optional, 64, false)
        .await
        .unwrap();
    assert!(header.is_none());
    assert_eq!(heads, 1);
}
