//! `onionwatch probe` as a process: the tor it launches dies with it, bad
//! usage fails clearly, log_level applies; on a private Tor network (one for
//! this binary): SIGHUP reloads the endpoints, the table shows on a
//! terminal, and systemd hears READY=1 once the exporter answers.

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

/// `GET /metrics` on `addr` with this `Authorization` header (none if
/// empty): the whole answer ("" if nothing answers).
fn get_with_auth(addr: SocketAddr, authorization: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let header = if authorization.is_empty() {
        String::new()
    } else {
        format!("Authorization: {authorization}\r\n")
    };
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\n{header}Connection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn exporter_settings_are_checked_before_tor_starts() {
    // The tor binary does not exist: reaching it would fail differently.
    let probe = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["probe", "-e", TPO, "--prometheus_exporter"])
            .args(["--tor_binary", "/nonexistent/tor"])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(!err.contains("/nonexistent/tor"), "tor was tried: {err}");
        err
    };
    let err = probe(&["--auth-file", "/nonexistent/auth.yaml"]);
    assert!(err.contains("/nonexistent/auth.yaml"), "{err}");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let err = probe(&["--prometheus_exporter_port", &port]);
    assert!(err.contains("cannot listen"), "{err}");
}

#[test]
fn the_exporter_serves_while_tor_starts_and_requires_the_token() {
    if Command::new("tor").arg("--version").output().is_err() {
        eprintln!("SKIPPED: tor is not installed");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let auth = tmp.path().join("auth.yaml");
    // `printf %s old-token | sha256sum`
    std::fs::write(
        &auth,
        "bearer_token_sha256: [9bdf10a691a1cfda89d9ff66629d1609ab176cec9b6a3146a8929f28937a9fce]\n",
    )
    .unwrap();
    let port = support::free_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    // DisableNetwork keeps the launched tor bootstrapping forever.
    let mut child = support::Running(
        Command::new(BIN)
            .args(["probe", "-e", TPO, "--tor_config", "DisableNetwork 1"])
            .args(["--socks_port", &support::free_port().to_string()])
            .args(["--control_port", &support::free_port().to_string()])
            .args(["--prometheus_exporter", "--prometheus_exporter_port"])
            .arg(port.to_string())
            .arg("--auth-file")
            .arg(&auth)
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let ok = wait_for(Duration::from_secs(60), || {
        let answer = get_with_auth(metrics, "Bearer old-token");
        answer.starts_with("HTTP/1.1 200").then_some(answer)
    })
    .expect("the exporter answered while tor bootstraps");
    assert!(ok.contains("onionprobe_state"), "{ok}");
    assert!(get_with_auth(metrics, "").starts_with("HTTP/1.1 401"));
    assert!(get_with_auth(metrics, "Bearer wrong").starts_with("HTTP/1.1 401"));
    // SAFETY: plain signal to our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = wait_for(Duration::from_secs(30), || child.0.try_wait().unwrap())
        .expect("onionwatch exits on SIGTERM");
    assert_eq!(status.code(), Some(143), "{status}");
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

    // New file: "first" replaced by "second", log_level raised to warning,
    // and two settings that apply only at a restart changed.
    let restart_only = common_opts
        .replace(
            &format!("prometheus_exporter_port: {port}"),
            &format!("prometheus_exporter_port: {}", port.wrapping_add(1).max(1)),
        )
        .replace(
            &format!("socks_port: {}", n.client.socks.port()),
            "socks_port: 1",
        );
    assert_ne!(restart_only, common_opts);
    std::fs::write(
        &cfg,
        format!(
            "{restart_only}log_level: warning\nendpoints:\n{}",
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
    assert!(
        stderr().lines().any(|l| l.contains(" WARN ")
            && l.contains("socks_port, prometheus_exporter_port")
            && l.contains("restart")),
        "the reload names the settings that need a restart: {}",
        stderr()
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
            && broken.contains(" http_status ")
            && broken.contains("unexpected_status"),
        "{broken}"
    );
    assert!(text.contains("1/2 probes passed"), "{text}");
    // The progress bar (stderr is the terminal too).
    assert!(text.contains("round 1 ["), "{text}");
}

#[test]
fn systemd_hears_ready_once_the_exporter_answers() {
    let n = net();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probe.yaml");
    let port = support::free_port();
    std::fs::write(
        &cfg,
        format!(
            "{}loop: true\nsleep: 60\nprometheus_exporter: true\nprometheus_exporter_port: {port}\nendpoints:\n{}",
            network_options(),
            endpoint("fine-site", &n.onions[0].address)
        ),
    )
    .unwrap();
    let notify = support::notify::NotifySocket::path();
    let mut child = support::Running(
        Command::new(BIN)
            .args(["probe", "-c", cfg.to_str().unwrap()])
            .env("NOTIFY_SOCKET", notify.env())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = notify.recv_ready();
    assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], port)));
    let metrics = support::get(addr, "/metrics");
    assert!(metrics.starts_with("HTTP/1.0 200"), "{metrics}");
    // SAFETY: a plain signal to our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    assert_eq!(notify.recv(), "STOPPING=1");
    support::process::wait_exit(&mut child.0);
}
