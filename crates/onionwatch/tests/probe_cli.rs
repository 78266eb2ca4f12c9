//! `onionwatch probe` as a process: the tor it launches dies with it, bad
//! usage fails clearly, log_level applies; on a private Tor network (one for
//! this binary): SIGHUP reloads the endpoints, and the table shows on a
//! terminal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use onionwatch_test_support::{self as support, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_onionwatch");
const TPO: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

fn find_pidfile(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let p = e.path().join("tor.pid");
        let name = e.file_name().to_string_lossy().into_owned();
        (name.starts_with("onionwatch-tor-") && std::fs::metadata(&p).is_ok_and(|m| m.len() > 0))
            .then_some(p)
    })
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn sigterm_kills_the_launched_tor() {
    if Command::new("tor").arg("--version").output().is_err() {
        eprintln!("SKIPPED: tor is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // DisableNetwork keeps the launched tor bootstrapping forever.
    let mut child = Command::new(BIN)
        .args(["probe", "-e", TPO, "--tor_config", "DisableNetwork 1"])
        .args(["--socks_port", &support::free_port().to_string()])
        .args(["--control_port", &support::free_port().to_string()])
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pidfile = wait_for(Duration::from_secs(60), || find_pidfile(tmp.path()))
        .expect("the launched tor wrote its pid file");
    let tor_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(tor_pid));
    // SAFETY: plain signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = wait_for(Duration::from_secs(30), || child.try_wait().unwrap())
        .expect("onionwatch exits on SIGTERM");
    assert_eq!(status.code(), Some(143), "{status}");
    assert!(
        wait_for(Duration::from_secs(30), || (!alive(tor_pid)).then_some(())).is_some(),
        "the launched tor {tor_pid} is still running"
    );
    assert!(
        wait_for(Duration::from_secs(10), || find_pidfile(tmp.path())
            .is_none()
            .then_some(()))
        .is_some(),
        "the temporary DataDirectory is removed"
    );
}

#[test]
fn bad_usage_fails_with_a_clear_message() {
    let out = Command::new(BIN).args(["probe"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to probe"));

    let out = Command::new(BIN)
        .args(["probe", "-e", "http://not-an-onion.example/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("onion service address"));

    let out = Command::new(BIN)
        .args(["probe", "--check", "-e", "http://not-an-onion.example/"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "UNKNOWN for --check");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ONIONWATCH UNKNOWN"));

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.yaml");
    std::fs::write(&cfg, "endpoints:\n  x:\n    address: nope.onion\n").unwrap();
    let out = Command::new(BIN)
        .args(["probe", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("endpoints") && err.contains("address"),
        "{err}"
    );
}

/// Run `onionwatch probe` with a config whose tor cannot start (it fails
/// right after logging at info level) and an unknown key (a warning);
/// returns stderr.
fn probe_stderr(log_level: Option<&str>, args: &[&str], rust_log: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probe.yaml");
    let level = log_level
        .map(|l| format!("log_level: {l}\n"))
        .unwrap_or_default();
    std::fs::write(
        &cfg,
        format!(
            "{level}no_such_onionprobe_key: 1\ntor_binary: {}\nendpoints:\n  tpo:\n    address: {TPO}\n",
            dir.path().join("no-tor-here").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.env_remove("RUST_LOG")
        .args(["probe", "-c", cfg.to_str().unwrap()])
        .args(args)
        .args(["--socks_port", &support::free_port().to_string()])
        .args(["--control_port", &support::free_port().to_string()]);
    if let Some(v) = rust_log {
        cmd.env("RUST_LOG", v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "tor cannot start: {out:?}");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("cannot launch tor"), "{err}");
    err
}

const INFO_LINE: &str = "launching a private tor";
const WARN_LINE: &str = "no_such_onionprobe_key";

#[test]
fn log_level_from_the_config_is_applied() {
    // Default (no log_level): info.
    let e = probe_stderr(None, &[], None);
    assert!(e.contains(INFO_LINE) && e.contains(WARN_LINE), "{e}");
    let e = probe_stderr(Some("info"), &[], None);
    assert!(e.contains(INFO_LINE) && e.contains(WARN_LINE), "{e}");
    // warning: the warning, not the info line.
    let e = probe_stderr(Some("warning"), &[], None);
    assert!(!e.contains(INFO_LINE) && e.contains(WARN_LINE), "{e}");
    // error and critical: neither (the final error is printed anyway).
    for level in ["error", "CRITICAL"] {
        let e = probe_stderr(Some(level), &[], None);
        assert!(
            !e.contains(INFO_LINE) && !e.contains(WARN_LINE),
            "{level}: {e}"
        );
    }
    // debug: debug lines appear.
    let e = probe_stderr(Some("debug"), &[], None);
    assert!(e.contains(" DEBUG ") && e.contains(INFO_LINE), "{e}");
    let e = probe_stderr(Some("info"), &[], None);
    assert!(!e.contains(" DEBUG "), "{e}");
    // --log_level overrides the file.
    let e = probe_stderr(Some("error"), &["--log_level", "info"], None);
    assert!(e.contains(INFO_LINE), "{e}");
}

#[test]
fn rust_log_and_verbose_win_over_log_level() {
    let e = probe_stderr(Some("error"), &[], Some("info"));
    assert!(
        e.contains(INFO_LINE) && e.contains(WARN_LINE),
        "RUST_LOG wins: {e}"
    );
    let e = probe_stderr(Some("info"), &[], Some("error"));
    assert!(!e.contains(INFO_LINE), "RUST_LOG wins: {e}");
    let e = probe_stderr(Some("error"), &["-v"], None);
    assert!(
        e.contains(" DEBUG ") && e.contains(INFO_LINE),
        "-v wins: {e}"
    );
}

#[test]
fn an_invalid_log_level_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probe.yaml");
    std::fs::write(
        &cfg,
        format!("log_level: loud\nendpoints:\n  tpo:\n    address: {TPO}\n"),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["probe", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("log_level"), "{err}");
}

#[test]
fn a_control_password_in_argv_is_warned_about_and_a_file_is_not() {
    let e = probe_stderr(None, &["--control_password", "hunter2-argv"], None);
    assert!(
        e.contains("process list") && e.contains("--control_password_file"),
        "{e}"
    );
    assert!(!e.contains("hunter2-argv"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "hunter2-file\n").unwrap();
    let e = probe_stderr(
        None,
        &["--control_password_file", file.to_str().unwrap()],
        None,
    );
    assert!(!e.contains("process list") && !e.contains("hunter2"), "{e}");

    let out = Command::new(BIN)
        .args(["probe", "-e", TPO, "--control_password_file"])
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--control_password_file") && err.contains("missing"),
        "{err}"
    );
}

// ------------------------------------------------ on the private network

/// One tor with three onion services on built-in backends: 200, 500, 200.
fn net() -> &'static onionwatch_testnet::NetworkInfo {
    use onionwatch_testnet::{BuiltInResponse, NetworkConfig, ServiceConfig, ServiceTorConfig};
    onionwatch_testnet::shared_network(|| {
        let svc = |status| ServiceConfig {
            response: BuiltInResponse {
                status,
                ..BuiltInResponse::default()
            },
            ..ServiceConfig::default()
        };
        NetworkConfig {
            service_tors: vec![ServiceTorConfig {
                services: vec![svc(200), svc(500), svc(200)],
                ..ServiceTorConfig::default()
            }],
            ready_timeout: Duration::from_secs(240),
            ..NetworkConfig::default()
        }
    })
}

/// Options for a run on the network's client tor; fast and deterministic.
fn network_options() -> String {
    let n = net();
    format!(
        "launch_tor: false\ntor_address: 127.0.0.1\nsocks_port: {}\ncontrol_port: {}\nshuffle: false\nrandomize: false\ninterval: 0\ndescriptor_max_retries: 3\ndescriptor_timeout: 60\nhttp_connect_timeout: 60\nhttp_read_timeout: 30\nhttp_connect_max_retries: 1\n",
        n.client.socks.port(),
        n.client.control.port()
    )
}

fn endpoint(name: &str, address: &str) -> String {
    format!("  {name}:\n    address: {address}\n    protocol: http\n    port: 80\n    paths:\n      - path: /\n        allowed_statuses: [200]\n")
}

/// Every wait on the network is bounded by this.
const NETWORK_LIMIT: Duration = Duration::from_secs(300);

#[test]
fn sighup_reloads_the_endpoints_in_loop_mode() {
    let n = net();
    let (first, second) = (&n.onions[0].address, &n.onions[2].address);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probe.yaml");
    let port = support::free_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let common_opts = format!(
        "{}loop: true\nsleep: 1\nprometheus_exporter: true\nprometheus_exporter_port: {port}\n",
        network_options()
    );
    std::fs::write(
        &cfg,
        format!(
            "{common_opts}log_level: info\nendpoints:\n{}",
            endpoint("first", first)
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = support::Running(
        Command::new(BIN)
            .env_remove("RUST_LOG")
            .args(["probe", "-c", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    let reachable = |name: &str, address: &str| {
        format!("onion_service_reachable{{name=\"{name}\",address=\"{address}\",protocol=\"http\",port=\"80\",path=\"/\"}} 1")
    };
    let want = reachable("first", first);
    let body = wait_for(NETWORK_LIMIT, || {
        let b = support::get(metrics, "/metrics");
        b.contains(&want).then_some(b)
    })
    .unwrap_or_else(|| panic!("first was never reachable; stderr:\n{}", stderr()));
    assert!(!body.contains("name=\"second\""));
    // /-/ready says 200 only once a round completed.
    wait_for(NETWORK_LIMIT, || {
        support::get(metrics, "/-/ready")
            .contains(" 200 ")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("never ready; stderr:\n{}", stderr()));
    let rounds = support::value(
        &support::get(metrics, "/metrics"),
        "onionwatch_rounds_total ",
    );
    assert!(rounds.is_some_and(|r| r >= 1.0), "{rounds:?}");
    assert!(
        stderr()
            .lines()
            .any(|l| l.contains(" INFO ") && l.contains("first")),
        "info lines before the reload: {}",
        stderr()
    );

    // New file: "first" replaced by "second", log_level raised to warning.
    std::fs::write(
        &cfg,
        format!(
            "{common_opts}log_level: warning\nendpoints:\n{}",
            endpoint("second", second)
        ),
    )
    .unwrap();
    // SAFETY: a plain signal to our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    let want = reachable("second", second);
    let body = wait_for(NETWORK_LIMIT, || {
        let b = support::get(metrics, "/metrics");
        b.contains(&want).then_some(b)
    })
    .unwrap_or_else(|| panic!("second never appeared after SIGHUP; stderr:\n{}", stderr()));
    assert!(
        !body.contains("name=\"first\""),
        "the removed endpoint's series are gone:\n{body}"
    );
    assert!(
        !stderr()
            .lines()
            .any(|l| l.contains(" INFO ") && l.contains("second")),
        "the reloaded log_level (warning) applies: {}",
        stderr()
    );
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "still running after the reload"
    );
}

#[test]
fn the_table_shows_every_result_on_a_terminal() {
    let n = net();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probe.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{}endpoints:\n{}{}",
            network_options(),
            endpoint("fine-site", &n.onions[0].address),
            endpoint("broken-site", &n.onions[1].address)
        ),
    )
    .unwrap();
    let command = format!("{BIN} probe -c {}", cfg.display());
    // `script` runs the command on a pseudo-terminal (stdout and stderr).
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script (util-linux) runs");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = std::io::Read::read_to_end(&mut out, &mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let status = wait_for(NETWORK_LIMIT, || child.try_wait().unwrap()).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the probe did not finish in time")
    });
    let text = reader.join().unwrap();
    assert_eq!(status.code(), Some(1), "one probe fails: {text}");
    let row = |name: &str| {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
            .to_owned()
    };
    assert!(text.contains("NAME") && text.contains("RESULT"), "{text}");
    let fine = row("fine-site");
    assert!(fine.contains(" OK ") && fine.contains(" 200 "), "{fine}");
    let broken = row("broken-site");
    assert!(
        broken.contains(" FAIL ")
            && broken.contains(" 500 ")
            && broken.contains("unexpected_status"),
        "{broken}"
    );
    assert!(text.contains("1/2 probes passed"), "{text}");
    // The progress bar (stderr is the terminal too).
    assert!(text.contains("round 1 ["), "{text}");
}
