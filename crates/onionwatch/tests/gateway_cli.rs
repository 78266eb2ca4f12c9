//! `onionwatch gateway` serves its metrics on the shared endpoint, which
//! refuses to go public without TLS and authentication.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onionwatch_test_support::{self as support, EchoAddr, EchoServer};

/// One request as tor sends it: a PROXY header carrying circuit id `id`.
fn request_on_circuit(gateway: SocketAddr, id: u32) -> String {
    let mut s = TcpStream::connect(gateway).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PROXY TCP6 fc00:dead:beef:4dad::{:x}:{:x} ::1 1 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        id >> 16,
        id & 0xffff
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn gateway_metrics_are_served_on_the_shared_endpoint() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let echo = rt
        .block_on(EchoServer::start(&EchoAddr::loopback(), false))
        .unwrap();
    let (listen, metrics) = (support::free_port(), support::free_port());
    let _gateway = support::Running(
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args([
                "gateway",
                "--listen",
                &format!("127.0.0.1:{listen}"),
                "--upstream",
                &echo.addr().to_string(),
                "--metrics-listen",
                &format!("127.0.0.1:{metrics}"),
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics));
    let start = Instant::now();
    while !support::get(metrics, "/healthz").contains("ok") {
        assert!(start.elapsed() < Duration::from_secs(30), "no endpoint");
        std::thread::sleep(Duration::from_millis(50));
    }
    let answer = request_on_circuit(SocketAddr::from(([127, 0, 0, 1], listen)), 0x1_0002);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-onion-circuitid: 65538"),
        "the upstream saw the circuit id: {answer}"
    );
    let text = support::get(metrics, "/metrics");
    for want in [
        "onionwatch_gateway_requests_total{status=\"2xx\"} 1\n",
        "onionwatch_gateway_unique_circuits 1\n",
        "onionwatch_gateway_upstream_latency_seconds_count 1\n",
        "# TYPE onionwatch_gateway_upstream_latency_seconds histogram\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("65538"), "no circuit ids as labels");
}

#[test]
fn a_public_metrics_endpoint_needs_tls_and_authentication() {
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args([
            "gateway",
            "--listen",
            &format!("127.0.0.1:{}", support::free_port()),
            "--metrics-listen",
            "0.0.0.0:9",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
}

#[test]
fn closing_circuits_from_a_public_listener_needs_trusted_proxy_sources() {
    let check = |extra: &[&str]| {
        let mut args = vec![
            "gateway",
            "--listen",
            "0.0.0.0:8080",
            "--close-abusive",
            "--control-port",
            "127.0.0.1:9051",
            "--rate",
            "1",
            "--check",
        ];
        args.extend_from_slice(extra);
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args(args)
            .output()
            .unwrap()
    };
    let out = check(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("trusted_proxy_sources") && err.contains("0.0.0.0:8080"),
        "{err}"
    );
    let out = check(&[
        "--trusted-proxy-source",
        "10.1.2.0/24",
        "--trusted-proxy-source",
        "127.0.0.1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = check(&["--trusted-proxy-source", "10.1.2.0/99"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--trusted-proxy-source"), "{err}");
}

#[test]
fn check_prints_the_configuration_without_the_control_password() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "limits:\n  rate: 5\nescalation:\n  enabled: true\n  control_port: 127.0.0.1:9051\n  control_password: \"hunter2-secret\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args(["gateway", "--check", "-c", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("configuration OK"), "{text}");
    assert!(text.contains("control_password: Some("), "{text}");
    assert!(text.contains("<secret>"), "{text}");
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains("hunter2-secret"), "{all}");
}
