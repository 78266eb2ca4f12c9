//! The endpoint's safety rules as a user meets them on the command line.

use std::process::Command;

#[test]
fn watch_refuses_a_public_address_without_tls_and_auth() {
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args([
            "watch",
            "--metrics-port",
            "p=127.0.0.1:9",
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("TLS"),
        "{err}"
    );
}

#[test]
fn tls_needs_both_certificate_and_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args([
            "watch",
            "--metrics-port",
            "p=127.0.0.1:9",
            "--tls-cert",
            "c.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "a usage error");
}

#[test]
fn allowed_host_names_reach_the_endpoint_and_are_checked() {
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args([
            "watch",
            "--metrics-port",
            "p=127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
            "--allowed-host",
            "metrics.example.org",
            "--allowed-host",
            "metrics.example.org:443",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid allowed host \"metrics.example.org:443\""),
        "{err}"
    );
}
