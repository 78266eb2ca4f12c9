//! `onionwatch logs --once` as a user runs it, on the fixture in
//! crates/onionwatch-logs/tests/fixtures/ whose counts are known exactly.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../onionwatch-logs/tests/fixtures/access-small.log")
}

fn onionwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run onionwatch")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "exit {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::str::from_utf8(&out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "exactly one line: {text}");
    serde_json::from_str(text).expect("JSON")
}

#[test]
fn once_json_has_exact_counts() {
    let path = fixture();
    let v = json(&onionwatch(&["logs", "--once", path.to_str().unwrap()]));
    assert_eq!(v["lines"], 17);
    assert_eq!(v["requests"], 12);
    assert_eq!(v["parse_errors"], 5);
    assert_eq!(
        v["parse_errors_by_reason"],
        serde_json::json!({"bad_status": 1, "bad_time": 1, "empty": 1, "truncated": 2})
    );
    assert_eq!(
        v["requests_by_status"],
        serde_json::json!({"200": 6, "302": 1, "304": 1, "400": 1, "404": 1, "405": 1, "500": 1})
    );
    assert_eq!(v["requests_by_status_class"]["4xx"], 3);
    assert_eq!(
        v["requests_by_method"],
        serde_json::json!({"GET": 8, "HEAD": 1, "OTHER": 2, "POST": 1})
    );
    assert_eq!(v["bytes"], 1712);
    assert_eq!(v["unique_circuits"], 8);
    assert_eq!(v["unique_circuits_exact"], true);
    assert_eq!(v["requests_without_circuit"], 1);
    assert_eq!(v["unique_circuits_windows"]["1m"], 2);
    assert_eq!(v["unique_circuits_windows"]["1h"], 8);
    assert_eq!(v["first_time"], "2024-01-11T17:08:43Z");
    assert_eq!(
        v["previous_circuit_window"]["top_circuits"][0]["circuit"],
        48
    );
    assert_eq!(
        v["previous_circuit_window"]["top_circuits"][0]["requests"],
        3
    );
    assert_eq!(v["files"][0]["lines"], 17);
    assert_eq!(
        v["files"][0]["bytes_read"],
        std::fs::metadata(&path).unwrap().len()
    );
    assert!(v.get("project").is_none());
}

#[test]
fn gzip_and_stdin_and_several_files_add_up() {
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("access.log-20240111.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(fixture()).unwrap()).unwrap();
    enc.finish().unwrap();
    let plain = fixture();
    let v = json(&onionwatch(&[
        "logs",
        "--once",
        "--project",
        "shop",
        plain.to_str().unwrap(),
        gz.to_str().unwrap(),
    ]));
    assert_eq!(v["project"], "shop");
    assert_eq!(v["lines"], 34);
    assert_eq!(v["requests_by_status"]["200"], 12);
    assert_eq!(v["bytes"], 3424);
    assert_eq!(v["unique_circuits"], 8, "the same circuits twice");
    assert_eq!(v["files"][1]["lines"], 17);

    let mut child = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args(["logs", "--once", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(fixture()).unwrap())
        .unwrap();
    let v = json(&child.wait_with_output().unwrap());
    assert_eq!(v["lines"], 17);
}

#[test]
fn overlong_lines_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.log");
    let mut data = vec![b'x'; 1 << 20];
    data.push(b'\n');
    data.extend_from_slice(
        b"fc00:dead:beef:4dad::0:30 - - [11/Jan/2024:17:08:43 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"-\"",
    );
    std::fs::write(&path, &data).unwrap();
    let v = json(&onionwatch(&["logs", "--once", path.to_str().unwrap()]));
    assert_eq!(v["lines"], 2);
    assert_eq!(v["parse_errors_by_reason"]["too_long"], 1);
    assert_eq!(v["requests_by_status"]["200"], 1);
}

#[test]
fn prometheus_output_has_project_and_no_circuit_labels() {
    let path = fixture();
    let out = onionwatch(&[
        "logs",
        "--once",
        "--format",
        "prometheus",
        "--project",
        "shop",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("onionwatch_log_lines_total{project=\"shop\"} 17\n"),
        "{text}"
    );
    assert!(text
        .contains("onionwatch_log_parse_errors_total{project=\"shop\",reason=\"truncated\"} 2\n"));
    assert!(
        text.contains("onionwatch_log_requests_total{project=\"shop\",status_class=\"2xx\"} 6\n")
    );
    assert!(text.contains("onionwatch_log_unique_circuits{project=\"shop\",window=\"all\"} 8\n"));
    for leak in ["fc00", "127.0.0.1", "/login", "circuit=", "\"48\""] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
}

#[test]
fn errors_name_the_file_and_exit_1() {
    let out = onionwatch(&["logs", "--once", "/nonexistent/access.log"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/access.log"), "{err}");
    assert!(err.contains("check the path"), "{err}");

    let path = fixture();
    let out = onionwatch(&[
        "logs",
        "--once",
        "--log-format",
        "$a$b",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid --log-format"), "{err}");
    assert!(err.contains("put a separator"), "{err}");

    // Without --once the command follows its files (logs_follow_cli.rs);
    // follow-only options are usage errors with it, and so is no input.
    let out = onionwatch(&["logs", "--once", "--tor-log", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "--tor-log is for follow mode");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--once"));
    let out = onionwatch(&["logs", "--once"]);
    assert_eq!(out.status.code(), Some(3), "no FILE");

    let out = onionwatch(&["logs", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("onionwatch logs --once"), "{help}");
}

#[test]
fn a_custom_format_parses_the_wrong_format_warns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("custom.log");
    std::fs::write(
        &path,
        "fc00:dead:beef:4dad::0:30 [11/Jan/2024:17:08:43 +0000] \"GET / HTTP/1.1\" 200 5 0.120\n\
         fc00:dead:beef:4dad::0:31 [11/Jan/2024:17:08:44 +0000] \"GET / HTTP/1.1\" 502 0 2.000\n",
    )
    .unwrap();
    let format = r#"$remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time"#;
    let v = json(&onionwatch(&[
        "logs",
        "--once",
        "--log-format",
        format,
        path.to_str().unwrap(),
    ]));
    assert_eq!(v["requests"], 2);
    assert_eq!(v["unique_circuits"], 2);
    assert_eq!(v["request_duration"]["count"], 2);
    assert_eq!(v["request_duration"]["sum_seconds"], 2.12);

    // Read as combined, nothing parses: counted, and stderr says why.
    let out = onionwatch(&["logs", "--once", path.to_str().unwrap()]);
    let v = json(&out);
    assert_eq!(v["parse_errors"], 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is --log-format the one"), "{err}");
}
