//! `onionwatch logs` in follow mode as a user runs it: append, rotate,
//! restart from the state file, and read exact counts from /metrics.

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use onionwatch_test_support as support;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../onionwatch-logs/tests/fixtures/access-small.log")
}

fn line(circuit: u32, status: u16) -> String {
    format!(
        "fc00:dead:beef:4dad::{circuit:x} - - [11/Jan/2024:18:00:00 +0000] \"GET / HTTP/1.1\" {status} 10 \"-\" \"t\"\n"
    )
}

/// Start `onionwatch logs --listen 127.0.0.1:0 --poll-interval 20 ARGS` and
/// return it with the address it printed.
fn start(args: &[&str]) -> (support::Running, SocketAddr) {
    let args = [&["--poll-interval", "20"], args].concat();
    let (running, addr, _) = support::start_logs(env!("CARGO_BIN_EXE_onionwatch"), &args);
    (running, addr)
}

#[test]
fn follow_mode_counts_exactly_across_rotation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nginx-access.log");
    let tor = dir.path().join("tor.log");
    let state = dir.path().join("state.json");
    fs::copy(fixture(), &log).unwrap();
    support::append(
        &tor,
        "Nov 25 09:00:00.000 [notice] Bootstrapped 100% (done): Done\n\
         Nov 25 09:00:01.000 [warn] Your system clock just jumped\n",
    );
    let pattern = dir.path().join("nginx-access*.log");
    let args = [
        "--project",
        "shop",
        "--state",
        state.to_str().unwrap(),
        "--tor-log",
        tor.to_str().unwrap(),
        pattern.to_str().unwrap(),
    ];
    let (running, addr) = start(&args);
    assert!(support::get(addr, "/healthz").ends_with("ok\n"));
    // The fixture's counts, as --once reports them.
    support::get_until(
        addr,
        "/metrics",
        &[
            "onionwatch_log_lines_total{project=\"shop\"} 17\n",
            "onionwatch_log_requests_total{project=\"shop\",status_class=\"2xx\"} 6\n",
            "onionwatch_log_parse_errors_total{project=\"shop\",reason=\"truncated\"} 2\n",
            "onionwatch_log_unique_circuits{project=\"shop\",window=\"all\"} 8\n",
            "onionwatch_log_severity_lines_total{project=\"shop\",log=\"tor\",severity=\"warn\"} 1\n",
            "onionwatch_log_tail_files 2\n",
        ],
    );

    let warnings: serde_json::Value = serde_json::from_str(
        support::get(addr, "/api/v1/warnings")
            .split("\r\n\r\n")
            .nth(1)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(warnings["shop"]["tor"][0]["severity"], "warn", "{warnings}");
    // Busiest circuits are in the API (never metric labels).
    let logs: serde_json::Value = serde_json::from_str(
        support::get(addr, "/api/v1/logs")
            .split("\r\n\r\n")
            .nth(1)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(logs[0]["project"], "shop", "{logs}");
    assert_eq!(logs[0]["unique_circuits"], 8, "{logs}");
    assert!(
        logs[0]["previous_circuit_window"]["top_circuits"][0]["requests"].as_u64() >= Some(1),
        "{logs}"
    );

    // Append, with a partial line, then rotate (rename and create).
    support::append(&log, &line(0x100, 200));
    support::append(&log, &line(0x101, 503));
    let partial = line(0x102, 200);
    let (head, tail) = partial.split_at(20);
    support::append(&log, head);
    support::get_until(
        addr,
        "/metrics",
        &["onionwatch_log_lines_total{project=\"shop\"} 19\n"],
    );
    let rotated = dir.path().join("nginx-access.log-2024011118");
    fs::rename(&log, &rotated).unwrap();
    support::append(&log, &line(0x103, 404));
    // nginx writes to the old file until it reopens its logs.
    support::append(&rotated, tail);
    let body = support::get_until(
        addr,
        "/metrics",
        &[
            "onionwatch_log_lines_total{project=\"shop\"} 21\n",
            "onionwatch_log_requests_total{project=\"shop\",status_class=\"5xx\"} 2\n",
            "onionwatch_log_requests_total{project=\"shop\",status_class=\"4xx\"} 4\n",
            "onionwatch_log_tail_rotations_total 1\n",
            "onionwatch_log_unique_circuits{project=\"shop\",window=\"all\"} 12\n",
        ],
    );
    assert!(
        body.contains("onionwatch_log_tail_truncations_total 0\n"),
        "{body}"
    );
    assert!(
        body.contains("onionwatch_log_tail_read_errors_total 0\n"),
        "{body}"
    );
    assert!(!body.contains("fc00"), "no circuit address in metrics");

    // Stop (SIGINT): the state is saved.
    drop(running);
    let saved: serde_json::Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["files"].as_array().unwrap().len(), 2, "{saved}");

    // While stopped: one line in each log. After the restart only those
    // count.
    support::append(&log, &line(0x104, 200));
    support::append(&tor, "Nov 25 09:00:02.000 [err] bad\n");
    let (_running, addr) = start(&args);
    let body = support::get_until(
        addr,
        "/metrics",
        &[
            "onionwatch_log_lines_total{project=\"shop\"} 1\n",
            "onionwatch_log_severity_lines_total{project=\"shop\",log=\"tor\",severity=\"err\"} 1\n",
        ],
    );
    assert!(body.contains("severity=\"notice\"} 0\n"), "{body}");
    assert!(
        body.contains("onionwatch_log_tail_lines_total 2\n"),
        "{body}"
    );
}

#[test]
fn follow_mode_rejects_what_it_cannot_follow() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    fs::write(&state, "{not json").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args(["logs", "--listen", "127.0.0.1:0", "--state"])
        .arg(&state)
        .arg(fixture())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("state.json") && err.contains("corrupt"),
        "{err}"
    );
    assert!(err.contains("delete it"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args(["logs", "--listen", "127.0.0.1:0", "-"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--once"));

    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args([
            "logs",
            "--listen",
            "127.0.0.1:0",
            "access.log-2024011118.gz",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("compressed"));

    // Off loopback without TLS and authentication: refused.
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args(["logs", "--listen", "0.0.0.0:0"])
        .arg(fixture())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn the_policy_never_closes_a_circuit_a_client_named() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nginx-access.log");
    let policy = dir.path().join("policy.yaml");
    fs::write(
        &policy,
        "max_requests: 2\nwindow_secs: 3600\naction: close\ni_understand_closing_circuits: true\n",
    )
    .unwrap();
    let request = r#"[11/Jan/2024:18:00:00 +0000] "GET / HTTP/1.1" 200 10 "-" "t""#;
    let mut text = String::new();
    for _ in 0..3 {
        // Tor's circuit 48 sending `X-Onion-CircuitID: 7`: 48 is closed.
        text += &format!("fc00:dead:beef:4dad::30 - - {request} \"7\"\n");
    }
    for _ in 0..3 {
        // No circuit in the address, a Basic-auth user `evil [x` and the
        // header 9: counted, decided, never sent to tor.
        text += &format!("127.0.0.1 - evil [x {request} \"9\"\n");
    }
    fs::write(&log, text).unwrap();
    let control = support::dead_addr();
    let (_running, addr) = start(&[
        "--project",
        "shop",
        "--log-format",
        r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_onion_circuitid""#,
        "--policy",
        policy.to_str().unwrap(),
        "--control-port",
        &control.addr.to_string(),
        log.to_str().unwrap(),
    ]);
    let body = support::get_until(
        addr,
        "/metrics",
        &[
            "onionwatch_log_requests_total{project=\"shop\",status_class=\"2xx\"} 6\n",
            "onionwatch_log_abusive_circuits_total{project=\"shop\",action=\"close\"} 2\n",
            "onionwatch_log_abusive_circuits_untrusted_total{project=\"shop\"} 1\n",
            // The one close attempted, on circuit 48, fails: nothing listens.
            "onionwatch_log_circuit_closes_total{project=\"shop\",result=\"failed\"} 1\n",
        ],
    );
    assert!(
        body.contains(
            "onionwatch_log_circuit_closes_total{project=\"shop\",result=\"closed\"} 0\n"
        ),
        "{body}"
    );
}
