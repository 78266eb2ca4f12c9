//! `onionwatch probe` notifying by itself on a private Tor network: a
//! killed onion-service tor fires `OnionServiceUnreachable` at a real
//! webhook receiver within the configured rounds, a restart of the prober
//! while it fires sends no second "firing", and starting the tor again
//! resolves it; an onion service failing one round in five sends nothing
//! with the default window; a webhook that never answers does not hold
//! the rounds up.
//!
//! Run under `flock /tmp/ow-tornet.lock`: one network for the binary.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use onionwatch_test_support::{self as support, Received, Recorder, Running};
use onionwatch_testnet::{
    shared_network, with_shared_network, BackendKind, NetworkConfig, NetworkInfo, ServiceConfig,
    ServiceTorConfig,
};

/// Requests the flapping backend got.
static FLAPPY_REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A loopback HTTP backend answering 500 to every fifth request, 200 to
/// the others.
fn flappy_backend() -> SocketAddr {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let mut r = BufReader::new(&s);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let n = FLAPPY_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let status = if n % 5 == 4 { "500 Oops" } else { "200 OK" };
            let mut s = &s;
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    addr
}

fn net() -> &'static NetworkInfo {
    // Two onion services on tors of their own (one is killed), and a third
    // whose backend fails one request in five.
    shared_network(|| {
        let mut config = NetworkConfig::with_onions(2, 1);
        config.service_tors.push(ServiceTorConfig {
            services: vec![ServiceConfig {
                backend: BackendKind::Address(flappy_backend()),
                ..ServiceConfig::default()
            }],
            ..ServiceTorConfig::default()
        });
        config
    })
}

/// Onionprobe options reaching the network through its client tor, rounds
/// back to back, metrics and the alert API on `port`.
fn options(info: &NetworkInfo, port: u16) -> String {
    format!(
        "launch_tor: false\ntor_address: 127.0.0.1\nsocks_port: {}\ncontrol_port: {}\n\
         sleep: 1\ninterval: 0\nrandomize: false\nshuffle: false\n\
         descriptor_max_retries: 0\ndescriptor_timeout: 20\nhttp_connect_timeout: 20\n\
         http_connect_max_retries: 0\nhttp_read_timeout: 20\n\
         prometheus_exporter: true\nprometheus_exporter_port: {port}\n",
        info.client.socks.port(),
        info.client.control.port(),
    )
}

/// `onionwatch probe -c CONFIG ARGS`, its log in `log`.
fn probe(config: &Path, args: &[&str], log: &Path) -> Running {
    let child = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args(["probe", "-c", config.to_str().unwrap()])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Running(child)
}

/// SIGTERM, then an exit.
fn stop(mut child: Running) {
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    support::wait_exit(&mut child.0);
}

fn rounds(addr: SocketAddr) -> f64 {
    support::value(&support::get(addr, "/metrics"), "onionwatch_rounds_total").unwrap_or(0.0)
}

/// Wait (5 minutes at most) for `f`; a killed or restarted tor makes
/// rounds slow, not stuck.
#[track_caller]
fn within_minutes<T>(what: &str, log: &Path, f: impl FnMut() -> Option<T>) -> T {
    support::wait_for(Duration::from_secs(300), f).unwrap_or_else(|| {
        panic!(
            "{what}: not in 5 minutes; the prober's log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

fn next(hook: &Recorder, log: &Path) -> serde_json::Value {
    let r: Received = within_minutes("a notification", log, || {
        hook.next_within(Duration::from_secs(1))
    });
    r.json()
}

#[test]
fn a_killed_onion_service_tor_fires_once_across_a_prober_restart_and_resolves_when_back() {
    let info = net();
    let (up, down) = (&info.onions[0], &info.onions[1]);
    let hook = Recorder::start(0);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = dir.path().join("probe.yaml");
    std::fs::write(
        &config,
        format!(
            "{}endpoints:\n  up:\n    address: {}\n  down:\n    address: {}\n\
             alerts:\n  rules:\n    OnionServiceUnreachable: {{window: 2 of 3}}\n    \
             OnionServiceDescriptorUnreachable: {{disabled: true}}\n",
            options(info, port),
            up.address,
            down.address,
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let url = hook.url("/hook");
    let args = [
        "--notify-webhook",
        url.as_str(),
        "--state-dir",
        state.to_str().unwrap(),
        "--vantage",
        "eu-1",
    ];
    let log = dir.path().join("probe1.log");
    let child = probe(&config, &args, &log);
    within_minutes("a first round with both up", &log, || {
        let m = support::get(addr, "/metrics");
        (support::value(&m, "onionwatch_rounds_total")? >= 1.0
            && support::value(&m, "onion_service_reachable{name=\"down\"")? == 1.0)
            .then_some(())
    });

    with_shared_network(|n| n.kill_node(&down.tor))
        .expect("the shared network runs")
        .expect("the tor is killed");
    let killed_at = rounds(addr);
    let firing = next(&hook, &log);
    assert_eq!(firing["status"], "firing", "{firing}");
    assert_eq!(firing["groupKey"], "{name=\"down\"}", "{firing}");
    let alerts = firing["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{firing}");
    assert_eq!(alerts[0]["labels"]["alertname"], "OnionServiceUnreachable");
    assert_eq!(alerts[0]["labels"]["address"], down.address.as_str());
    // Alerts carry the labels of the series they are about, the vantage too.
    assert_eq!(alerts[0]["labels"]["vantage"], "eu-1", "{firing}");
    // Within the window: 2 failed rounds, plus the one under way at the kill.
    let fired_at = rounds(addr);
    assert!(
        fired_at - killed_at <= 3.0,
        "fired after {} rounds",
        fired_at - killed_at
    );

    // A restart while it fires: the alert is still there, and not sent again.
    stop(child);
    let log2 = dir.path().join("probe2.log");
    let child = probe(&config, &args, &log2);
    within_minutes("3 rounds after the restart", &log2, || {
        (rounds(addr) >= 3.0).then_some(())
    });
    let listed = support::get(addr, "/api/v1/alerts");
    assert!(listed.contains("OnionServiceUnreachable"), "{listed}");

    // Back: the next notification is the resolution (a duplicate "firing"
    // would come first).
    with_shared_network(|n| n.restart_node(&down.tor))
        .expect("the shared network runs")
        .expect("the tor restarts");
    let resolved = next(&hook, &log2);
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["groupKey"], "{name=\"down\"}", "{resolved}");
    assert_eq!(
        resolved["alerts"][0]["labels"]["alertname"],
        "OnionServiceUnreachable"
    );
    let m = support::get(addr, "/metrics");
    assert!(
        // The engine's families are labelled as the prober's.
        m.contains(
            "onionwatch_alerts_firing{alertname=\"OnionServiceUnreachable\",vantage=\"eu-1\"} 0\n"
        ),
        "{m}"
    );
    stop(child);
}

#[test]
fn a_webhook_that_never_answers_does_not_hold_the_rounds_up() {
    let info = net();
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = dir.path().join("probe.yaml");
    // Reachable, but answering a status that is not allowed: unreachable
    // for the prober in every round, so the alert fires at once.
    std::fs::write(
        &config,
        format!(
            "{}endpoints:\n  picky:\n    address: {}\n    paths:\n      - path: /\n        allowed_statuses: [299]\n\
             alerts:\n  rules:\n    OnionServiceUnreachable: {{window: 1 of 1}}\n",
            options(info, port),
            info.onions[0].address,
        ),
    )
    .unwrap();
    let log = dir.path().join("probe.log");
    let child = probe(&config, &["--notify-webhook", &url], &log);
    within_minutes("the alert", &log, || {
        support::get(addr, "/metrics")
            .contains("onionwatch_alerts_firing{alertname=\"OnionServiceUnreachable\"} 1\n")
            .then_some(())
    });
    // Its notification is stuck in flight; the rounds go on regardless.
    let from = rounds(addr);
    within_minutes("5 more rounds", &log, || {
        (rounds(addr) >= from + 5.0).then_some(())
    });
    let m = support::get(addr, "/metrics");
    assert!(
        !m.contains("result=\"success\"} 1"),
        "a never-answering webhook cannot have succeeded:\n{m}"
    );
    stop(child);
}

#[test]
fn an_onion_service_failing_one_round_in_five_sends_nothing() {
    let info = net();
    let hook = Recorder::start(0);
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = dir.path().join("probe.yaml");
    // The default rules and windows.
    std::fs::write(
        &config,
        format!(
            "{}endpoints:\n  flappy:\n    address: {}\n",
            options(info, port),
            info.onions[2].address,
        ),
    )
    .unwrap();
    let log = dir.path().join("probe.log");
    let url = hook.url("/hook");
    let child = probe(&config, &["--notify-webhook", &url], &log);
    // 30 rounds, of which one in five failed (the backend says 500).
    let m = within_minutes("30 rounds", &log, || {
        let m = support::get(addr, "/metrics");
        (support::value(&m, "onionwatch_rounds_total")? >= 30.0).then_some(m)
    });
    let failed = support::value(&m, "onion_service_unexpected_status_code{name=\"flappy\"");
    let requests = FLAPPY_REQUESTS.load(std::sync::atomic::Ordering::SeqCst);
    assert!(requests >= 30, "{requests} requests");
    assert!(failed.is_some(), "{m}");
    let errors: f64 = m
        .lines()
        .filter(|l| l.starts_with("onionwatch_probe_failures_total{name=\"flappy\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        errors >= 5.0,
        "one round in five failed: {errors} failures\n{m}"
    );
    assert!(
        m.contains("onionwatch_alerts_firing{alertname=\"OnionServiceUnreachable\"} 0\n"),
        "{m}"
    );
    stop(child);
    assert_eq!(hook.answered(), 0, "a notification was sent");
}
