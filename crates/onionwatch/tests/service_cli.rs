//! What a service manager and a shell see of onionwatch: completions and man
//! pages generated from the command line's definition, the readiness message
//! to systemd (`Type=notify`), and log lines without a timestamp of their
//! own under journald.

use std::io::Read;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

use onionwatch_test_support::get;
use onionwatch_test_support::notify::NotifySocket;
use onionwatch_test_support::process::have;
use onionwatch_test_support::process::{wait_exit, Running};

const BIN: &str = env!("CARGO_BIN_EXE_onionwatch");

fn output(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completion_scripts_name_every_subcommand_and_bash_parses_its_own() {
    for shell in ["bash", "zsh", "fish"] {
        let script = output(&["completions", shell]);
        for sub in [
            "watch",
            "probe",
            "logs",
            "gateway",
            "expose-onion",
            "completions",
        ] {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
        // Options of a subcommand, not only the top level.
        assert!(
            script.contains("state-dir"),
            "{shell}: no watch --state-dir"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("onionwatch");
    std::fs::write(&bash, output(&["completions", "bash"])).unwrap();
    let check = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
    assert!(check.status.success(), "bash -n: {check:?}");
    // Loaded, it defines the completion function and registers it.
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p onionwatch",
            bash.display()
        ))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("onionwatch"),
        "{loaded:?}"
    );
    let bad = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(3),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_are_written_for_each_subcommand_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    output(&["manpages", "--out-dir", out.to_str().unwrap()]);
    let mut pages: Vec<String> = onionwatch_test_support::file_names(&out);
    pages.sort();
    for page in [
        "onionwatch.1",
        "onionwatch-watch.1",
        "onionwatch-probe.1",
        "onionwatch-logs.1",
        "onionwatch-gateway.1",
        "onionwatch-expose-onion.1",
        "onionwatch-scrape-gateway.1",
        "onionwatch-audit.1",
        "onionwatch-testnet-up.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "no {page} in {pages:?}");
    }
    assert!(!pages.iter().any(|p| p.contains("manpages")), "{pages:?}");
    let probe = std::fs::read_to_string(out.join("onionwatch-probe.1")).unwrap();
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS"] {
        assert!(
            probe.contains(section),
            "onionwatch-probe.1 has no {section}"
        );
    }
    if !have("groff") {
        return;
    }
    for page in &pages {
        // -ww: every warning; a page that does not render well warns.
        // -k: through preconv, as man(1) does (the help has UTF-8).
        let rendered = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-P-cbou", "-ww"])
            .arg(out.join(page))
            .output()
            .unwrap();
        assert!(rendered.status.success(), "{page}: {rendered:?}");
        let stderr = String::from_utf8_lossy(&rendered.stderr);
        assert!(stderr.is_empty(), "{page}: groff warns: {stderr}");
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(text.contains("SYNOPSIS"), "{page} renders no synopsis");
    }
    let text = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-P-cbou"])
        .arg(out.join("onionwatch-watch.1"))
        .output()
        .unwrap()
        .stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("--state-dir"), "{text}");
}

/// Start `onionwatch ARGS` under a fake systemd and return it with the
/// address its READY=1 names, which must answer at once: READY comes after
/// the listen.
fn start_notified(args: &[&str], notify: &NotifySocket) -> (Running, SocketAddr) {
    let child = Command::new(BIN)
        .args(args)
        .env("NOTIFY_SOCKET", notify.env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = Running(child);
    let addr = notify.recv_ready();
    (running, addr)
}

fn stop_and_expect_stopping(mut running: Running, notify: &NotifySocket) {
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe { libc::kill(running.0.id() as i32, libc::SIGTERM) };
    assert_eq!(notify.recv(), "STOPPING=1");
    assert!(wait_exit(&mut running.0).success());
}

#[test]
fn logs_tells_systemd_it_is_ready_once_its_endpoint_answers() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, "").unwrap();
    let notify = NotifySocket::path();
    let (running, addr) = start_notified(
        &["logs", "--listen", "127.0.0.1:0", log.to_str().unwrap()],
        &notify,
    );
    let health = get(addr, "/healthz");
    assert!(health.starts_with("HTTP/1.0 200"), "{addr}: {health:?}");
    stop_and_expect_stopping(running, &notify);
}

#[test]
fn watch_notifies_through_an_abstract_socket() {
    let dead = onionwatch_test_support::dead_addr();
    let notify = NotifySocket::abstract_name();
    let target = format!("p={}", dead.addr);
    let (running, addr) = start_notified(
        &[
            "watch",
            "--listen",
            "127.0.0.1:0",
            "--metrics-port",
            &target,
        ],
        &notify,
    );
    let health = get(addr, "/healthz");
    assert!(health.starts_with("HTTP/1.0 200"), "{addr}: {health:?}");
    stop_and_expect_stopping(running, &notify);
}

#[test]
fn gateway_is_ready_when_its_metrics_endpoint_answers() {
    let notify = NotifySocket::path();
    let (running, addr) = start_notified(
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--proxy-protocol",
            "optional",
        ],
        &notify,
    );
    assert!(
        get(addr, "/metrics").contains("onionwatch_gateway_"),
        "{addr}"
    );
    stop_and_expect_stopping(running, &notify);
}

/// The stderr of `logs --once` on a file with a line that does not parse
/// (one warning), with `JOURNAL_STREAM` naming that stderr file or not.
fn warning_line(journal: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, "not an access log line\n").unwrap();
    let stderr_path = dir.path().join("stderr");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let meta = stderr.metadata().unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["logs", "--once"])
        .arg(&log)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(stderr);
    if journal {
        cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
    } else {
        // A stream that is not our stderr (inherited from a parent service).
        cmd.env(
            "JOURNAL_STREAM",
            format!("{}:{}", meta.dev(), meta.ino() + 1),
        );
    }
    assert!(cmd.status().unwrap().success());
    let mut text = String::new();
    std::fs::File::open(&stderr_path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("did not parse"))
        .unwrap_or_else(|| panic!("no warning in {text:?}"));
    line.to_owned()
}

#[test]
fn under_journald_log_lines_carry_no_second_timestamp() {
    let journal = warning_line(true);
    assert!(journal.trim_start().starts_with("WARN"), "{journal:?}");
    // Elsewhere each line starts with its time (RFC 3339, the year first).
    let plain = warning_line(false);
    assert!(
        plain.starts_with(|c: char| c.is_ascii_digit()) && plain.contains("WARN"),
        "{plain:?}"
    );
}
