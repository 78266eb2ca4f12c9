//! `onionwatch audit` run as a binary on the fixture configurations of
//! onionwatch-inside: exit codes, text and JSON output, `--suggest-ports`;
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

fn fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../onionwatch-inside/tests/fixtures")
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
