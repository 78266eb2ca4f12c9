//! `onionwatch testnet up` as a user runs it: its output (one JSON line, or
//! text), its flags reaching tor, and no tor left after SIGINT/SIGTERM,
//! whether the network was ready or still starting.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use onionwatch_test_support as support;
use onionwatch_tor::control::{Auth, ControlAddr, ControlClient};

/// Longest wait for a network to become ready (cold start is 15-40 s).
const READY: Duration = Duration::from_secs(300);

fn onionwatch_up(dir: &Path, args: &[&str]) -> support::Running {
    support::Running(
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args(["testnet", "up"])
            .args(args)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run onionwatch"),
    )
}

/// Its stdout, line by line, from a thread (so reads can time out).
fn stdout_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.expect("UTF-8 output")).is_err() {
                break;
            }
        }
    });
    rx
}

/// Every line left until stdout closes (it must within 10 s).
fn rest(rx: &mpsc::Receiver<String>) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut lines = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => lines.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return lines,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("stdout still open: {lines:?}"),
        }
    }
}

/// Pids of the processes whose command line (NUL-separated) contains `needle`.
fn processes_with(needle: &[u8]) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse().ok()) else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            if cmdline.windows(needle.len()).any(|w| w == needle) && pid != std::process::id() {
                pids.push(pid);
            }
        }
    }
    pids
}

/// The tors of the network in `dir` (`tor -f DIR/NODE/torrc`), pid file or not.
fn tors_in(dir: &Path) -> Vec<u32> {
    processes_with(format!("-f\0{}/", dir.display()).as_bytes())
}

/// Fails unless no process mentioning `dir` (tor, or a key-generating
/// helper) is left within 5 s.
fn assert_no_tor_in(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_with(dir.to_str().unwrap().as_bytes());
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "tor processes left: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(child: &Child, sig: i32) {
    unsafe { libc::kill(child.id() as i32, sig) };
}

#[test]
fn testnet_up_prints_one_json_line_and_sigint_leaves_no_tor() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = onionwatch_up(
        dir.path(),
        &[
            "--onions",
            "2",
            "--onions-per-tor",
            "2",
            "--control",
            "unix",
            "--export-circuit-id",
            "--format",
            "json",
        ],
    );
    let rx = stdout_lines(&mut child.0);
    let line = rx
        .recv_timeout(READY)
        .unwrap_or_else(|e| panic!("no JSON line from testnet up: {e}"));
    let v: serde_json::Value = serde_json::from_str(&line).expect("one line of JSON");

    let client = &v["client"];
    for key in ["socks", "control"] {
        assert!(
            client[key].as_str().unwrap().starts_with("127.0.0.1:"),
            "{v}"
        );
    }
    assert!(Path::new(client["cookie"].as_str().unwrap()).exists());
    let onions = v["onions"].as_array().unwrap();
    assert_eq!(onions.len(), 2);
    for o in onions {
        let address = o["address"].as_str().unwrap();
        assert!(
            address.len() == 62 && address.ends_with(".onion"),
            "{address}"
        );
        // Both services share one tor, so they share its control socket.
        assert_eq!(o["control"], onions[0]["control"]);
        assert!(o["control"].as_str().unwrap().starts_with("unix:"), "{o}");
        assert!(o["metrics"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(o["backend"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(o["cookie"].is_string());
    }
    // 3 authorities, 2 relays, 1 onion-service tor, 1 client.
    assert_eq!(tors_in(dir.path()).len(), 7);

    signal(&child.0, libc::SIGINT);
    assert_eq!(
        support::wait_exit(&mut child.0).code(),
        Some(0),
        "exit code after SIGINT"
    );
    assert_eq!(
        rest(&rx),
        Vec::<String>::new(),
        "stdout after the JSON line"
    );
    assert_no_tor_in(dir.path());
}

/// The text after `label` on the first line of `lines` starting with it,
/// up to the next space.
fn field<'a>(lines: &'a [String], label: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(label))
        .map(|rest| rest.split_whitespace().next().unwrap())
        .collect()
}

#[tokio::test]
async fn testnet_up_prints_text_and_its_service_flags_reach_tor() {
    let backend = support::serve("external backend\n");
    let dir = tempfile::tempdir().unwrap();
    let mut child = onionwatch_up(
        dir.path(),
        &[
            "--onions",
            "2",
            "--pow",
            "--intro-dos-rate",
            "30",
            "--intro-dos-burst",
            "60",
            "--metrics-policy",
            "accept 127.0.0.0/8",
            "--backend",
            &backend.to_string(),
        ],
    );
    let rx = stdout_lines(&mut child.0);
    let deadline = Instant::now() + READY;
    let mut lines = Vec::new();
    while lines.last().map(String::as_str) != Some("Ctrl-C stops every tor.") {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(e) => panic!("testnet up printed {lines:?}, then {e}"),
        }
    }
    let text = lines.join("\n");

    let socks: SocketAddr = field(&lines, "client SOCKS:")[0].parse().expect(&text);
    let control: SocketAddr = field(&lines, "client control:")[0].parse().expect(&text);
    assert!(
        socks.ip().is_loopback() && control.ip().is_loopback(),
        "{text}"
    );
    let addresses = field(&lines, "onion service:");
    let controls: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(": control ").map(|(_, c)| c))
        .map(|c| c.split_whitespace().next().unwrap())
        .collect();
    let metrics = field(&lines, "  MetricsPort:");
    assert_eq!(addresses.len(), 2, "{text}");
    assert_ne!(addresses[0], addresses[1], "{text}");
    // One tor per onion service, each with its own control and MetricsPort.
    assert_eq!(controls.len(), 2, "{text}");
    assert_ne!(controls[0], controls[1], "{text}");
    assert_eq!(metrics.len(), 2, "{text}");
    assert_ne!(metrics[0], metrics[1], "{text}");
    let backend_text = backend.to_string();
    assert_eq!(
        field(&lines, "  backend:"),
        [backend_text.as_str(); 2],
        "{text}"
    );

    for ((address, control), metrics) in addresses.iter().zip(&controls).zip(&metrics) {
        assert!(address.len() == 62 && address.ends_with(".onion"), "{text}");
        // The settings are in the running tor's configuration.
        let control: ControlAddr = control.parse().unwrap();
        let (tor, _) = ControlClient::connect(&control, Auth::default())
            .await
            .expect("the onion-service tor's control port");
        let conf = tor
            .get_conf(&["HiddenServiceOptions", "MetricsPortPolicy"])
            .await
            .unwrap();
        let want = |k: &str, v: &str| (k.to_owned(), Some(v.to_owned()));
        for expected in [
            want("HiddenServicePort", &format!("80 {backend}")),
            want("HiddenServicePoWDefensesEnabled", "1"),
            want("HiddenServiceEnableIntroDoSDefense", "1"),
            want("HiddenServiceEnableIntroDoSRatePerSec", "30"),
            want("HiddenServiceEnableIntroDoSBurstPerSec", "60"),
            want("MetricsPortPolicy", "accept 127.0.0.0/8"),
        ] {
            assert!(conf.contains(&expected), "{expected:?} not in {conf:?}");
        }
        let url = metrics.strip_prefix("http://").unwrap();
        let page = support::get(
            url.trim_end_matches("/metrics").parse().unwrap(),
            "/metrics",
        );
        assert!(page.contains("tor_hs_"), "{metrics}: {page}");
        // Through the onion service to the given backend.
        let r = onionwatch_testnet::http::get(socks, address, 80, "/", None)
            .await
            .expect("GET through the onion service");
        assert_eq!(r.body, "external backend\n");
    }

    signal(&child.0, libc::SIGTERM);
    assert_eq!(
        support::wait_exit(&mut child.0).code(),
        Some(0),
        "exit code after SIGTERM"
    );
    assert_eq!(rest(&rx), Vec::<String>::new(), "stdout after the text");
    assert_no_tor_in(dir.path());
}

#[test]
fn a_signal_during_start_up_leaves_no_tor() {
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = onionwatch_up(dir.path(), &["--format", "json"]);
        let rx = stdout_lines(&mut child.0);
        // An authority's tor is running: stop long before any consensus.
        let deadline = Instant::now() + Duration::from_secs(60);
        while tors_in(dir.path()).is_empty() {
            assert!(Instant::now() < deadline, "no tor started");
            std::thread::sleep(Duration::from_millis(20));
        }
        signal(&child.0, sig);
        assert_eq!(
            support::wait_exit(&mut child.0).code(),
            Some(code),
            "signal {sig}"
        );
        assert_eq!(rest(&rx), Vec::<String>::new(), "nothing printed");
        assert_no_tor_in(dir.path());
    }
}

#[test]
fn help_lists_only_working_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("testnet"), "{help}");
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("onionwatch "));
}
