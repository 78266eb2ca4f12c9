//! `onionwatch audit` run as a binary on the fixture configurations of
//! onionwatch-onionspray: exit codes, text and JSON output, `--suggest-ports`;
//! and the binary-wide conventions it relies on: usage errors exit 3
//! (Nagios' UNKNOWN), `--help`/`--version` exit 0, and a closed standard
//! output ends a command quietly.

use std::path::PathBuf;
use std::process::{Command, Output};

fn onionwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn usage_errors_exit_3_and_help_and_version_exit_0() {
    for args in [
        &["audit"][..],
        &["audit", "--no-such-flag", "x"],
        &["audit", "--format", "xml", "x"],
        &["audit", "--base-port", "9000", "x"], // needs --suggest-ports
        &["watch", "--interval", "soon"],
        &["probe", "--concurrency", "-1"],
        &["no-such-command"],
        &[],
    ] {
        let out = onionwatch(args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}: says what is wrong");
    }
    for args in [
        &["--help"][..],
        &["audit", "--help"],
        &["--version"],
        &["help"],
    ] {
        let out = onionwatch(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("onionwatch"), "{args:?}: {stdout}");
    }
    // The exit codes are documented where operators look.
    let help = String::from_utf8_lossy(&onionwatch(&["audit", "--help"]).stdout).into_owned();
    assert!(
        help.contains("2 critical findings, 3 an input could not be read or bad\nusage"),
        "{help}"
    );
    let help = String::from_utf8_lossy(&onionwatch(&["probe", "--help"]).stdout).into_owned();
    assert!(help.contains("3 on bad usage"), "{help}");
}

/// `p` in a copy of the fixtures whose files are all as old as the copy
/// (`configuration-not-applied` compares modification times).
fn fixture(p: &str) -> PathBuf {
    onionwatch_test_support::fs::fresh_copy(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../onionwatch-onionspray/tests/fixtures"),
        env!("CARGO_TARGET_TMPDIR"),
    )
    .join(p)
}

#[test]
fn a_closed_stdout_ends_commands_quietly() {
    let tree = fixture("onionspray-bad");
    let log = fixture("onionspray/projects/news/log/nginx-access.log");
    for args in [
        vec!["audit", "--format", "json", tree.to_str().unwrap()],
        vec!["audit", "--suggest-ports", tree.to_str().unwrap()],
        vec!["logs", "--once", "--format", "json", log.to_str().unwrap()],
    ] {
        // The reading end is closed before the command starts: its first
        // write fails with EPIPE, with no race against a reader.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args(&args)
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

fn audit(args: &[&str], paths: &[&str]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onionwatch"));
    cmd.arg("audit").args(args);
    for p in paths {
        cmd.arg(fixture(p));
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn exit_codes_follow_the_worst_finding() {
    let (code, stdout, _) = audit(&[], &["audit/control-password.torrc", "onionspray"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("0 critical, 0 warning(s)"), "{stdout}");

    let (code, stdout, _) = audit(&[], &["audit/policy-missing.torrc"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("WARNING metrics-policy-missing [policy-missing.torrc/tor]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  fix: MetricsPortPolicy accept 127.0.0.1\n"),
        "{stdout}"
    );

    // A warning and a critical finding: critical wins.
    let (code, stdout, _) = audit(
        &[],
        &["audit/control-no-auth.torrc", "audit/metrics-exposed.torrc"],
    );
    assert_eq!(code, Some(2), "{stdout}");
    assert!(
        stdout.contains("CRITICAL metrics-port-exposed [metrics-exposed.torrc/tor]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  fix: MetricsPort 127.0.0.1:9035 "),
        "{stdout}"
    );
    assert!(stdout.contains("1 critical, 1 warning(s)"), "{stdout}");

    // An input that cannot be read: 3 (UNKNOWN), whatever else was found.
    let (code, stdout, stderr) =
        audit(&[], &["audit/metrics-exposed.torrc", "audit/no-such.torrc"]);
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("cannot read") && stderr.contains("no-such.torrc"),
        "{stderr}"
    );
}

#[test]
fn json_has_every_finding() {
    let (code, stdout, _) = audit(&["--format", "json"], &["onionspray-bad"]);
    assert_eq!(code, Some(2));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    let mut rules: Vec<&str> = findings
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            "control-port-no-auth",
            "control-port-no-auth",
            "control-port-shared",
            "export-circuit-id-without-proxy-protocol",
            "metrics-port-shared",
            "proxy-protocol-without-export-circuit-id",
        ]
    );
    let export = findings
        .iter()
        .find(|f| f["rule"] == "export-circuit-id-without-proxy-protocol")
        .unwrap();
    assert_eq!(export["severity"], "critical");
    assert_eq!(export["project"], "a");
    assert!(export["fix"].as_str().unwrap().contains("proxy_protocol"));
    assert!(export["location"]
        .as_str()
        .unwrap()
        .ends_with("projects/a/tor.conf:21"));
    assert_eq!(v["checked"], 2);
}

#[test]
fn suggest_ports_text_and_json() {
    let (code, stdout, _) = audit(&["--suggest-ports"], &["onionspray"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("# project blog\nset tor_metrics_port 127.0.0.1:9038\nset tor_metrics_port_policy accept 127.0.0.1\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("#   hs-1/tor.conf: MetricsPort 127.0.0.1:9036 (current)\n"),
        "{stdout}"
    );

    let (code, stdout, _) = audit(
        &["--suggest-ports", "--format", "json", "--base-port", "9100"],
        &["onionspray"],
    );
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let projects = v[0]["projects"].as_array().unwrap();
    let ports: Vec<(&str, &str, &str)> = projects
        .iter()
        .flat_map(|p| {
            p["tor_instances"].as_array().unwrap().iter().map(|i| {
                (
                    p["project"].as_str().unwrap(),
                    i["instance"].as_str().unwrap(),
                    i["tor_metrics_port"].as_str().unwrap(),
                )
            })
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("blog", "tor", "127.0.0.1:9100"),
            ("news", "tor", "127.0.0.1:9035"),
            ("shop", "hs-1", "127.0.0.1:9036"),
            ("shop", "hs-2", "127.0.0.1:9037"),
        ]
    );

    // Not an installation: 3.
    let (code, _, stderr) = audit(&["--suggest-ports"], &["audit"]);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(stderr.contains("no projects/ directory"), "{stderr}");
}
