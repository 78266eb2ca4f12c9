//! `--remote-write` / `remote_write:` of `watch` and `probe`, into a real
//! Prometheus started with `--web.enable-remote-write-receiver`, all on
//! 127.0.0.1. The probe test runs on the private Tor network: run this
//! binary under `flock /tmp/ow-tornet.lock`.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use onionwatch_test_support::{self as support, wait_for};
use onionwatch_testnet::prometheus::Prometheus;

const BIN: &str = env!("CARGO_BIN_EXE_onionwatch");

fn receiver() -> (Prometheus, tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let p = Prometheus::start_receiver(dir.path(), addr).unwrap();
    let url = format!("http://{addr}/api/v1/write");
    (p, dir, url)
}

/// The `result` of an instant query, as JSON values.
fn query(p: &Prometheus, expr: &str) -> Vec<serde_json::Value> {
    let body = p.query(expr).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

fn sigterm(child: &support::Running) {
    // SAFETY: a plain signal to our own child.
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
}

#[test]
fn watch_pushes_what_it_serves_with_its_own_counters() {
    let (p, _pdir, url) = receiver();
    let (p2, _pdir2, url2) = receiver();
    let tor = support::serve(
        "# TYPE tor_hs_app_write_bytes_total counter\ntor_hs_app_write_bytes_total{onion=\"x\"} 5\n",
    );
    let state = tempfile::tempdir().unwrap();
    let config = state.path().join("watch.yaml");
    // The YAML list and the flag together: two receivers.
    std::fs::write(
        &config,
        format!("remote_write:\n  - url: {url}\n    name: central\n    headers: {{X-Scope-OrgID: onionwatch}}\n"),
    )
    .unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let mut child = support::Running(
        Command::new(BIN)
            .args(["watch", "--interval", "1", "--timeout", "1"])
            .arg("--config")
            .arg(&config)
            .args(["--listen", &listen.to_string()])
            .args(["--metrics-port", &format!("news={tor}")])
            .args(["--remote-write", &url2])
            .arg("--state-dir")
            .arg(state.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pushed = wait_for(Duration::from_secs(60), || {
        let r = query(&p, "tor_hs_app_write_bytes_total{project=\"news\"}");
        (!r.is_empty()).then_some(r)
    })
    .expect("the tor family reached Prometheus");
    assert_eq!(pushed[0]["value"][1], "5", "{pushed:?}");
    wait_for(Duration::from_secs(60), || {
        (!query(&p2, "tor_hs_app_write_bytes_total{project=\"news\"}").is_empty()).then_some(())
    })
    .expect("the second receiver has it too");
    // Its own counters are pushed too, per receiver name, without the URL.
    let own = wait_for(Duration::from_secs(60), || {
        let r = query(
            &p,
            "onionwatch_remote_write_samples_total{result=\"sent\"} > 0",
        );
        (r.len() == 2).then_some(r)
    })
    .expect("both receivers report samples sent");
    let mut remotes: Vec<String> = own
        .iter()
        .map(|s| s["metric"]["remote"].as_str().unwrap_or("").to_owned())
        .collect();
    remotes.sort();
    assert_eq!(remotes, ["1", "central"]);
    let metrics = support::get(listen, "/metrics");
    assert!(
        metrics.contains("onionwatch_remote_write_buffer_bytes{remote=\"central\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("api/v1/write"), "no URL in the metrics");
    // The buffers live in the state directory, one per receiver.
    let buffers = std::fs::read_dir(state.path().join("remote-write"))
        .unwrap()
        .count();
    assert_eq!(buffers, 2);
    sigterm(&child);
    let status = wait_for(Duration::from_secs(30), || child.0.try_wait().unwrap())
        .expect("watch exits on SIGTERM");
    assert!(status.code().is_some(), "{status}");
}

fn watch(
    tor: SocketAddr,
    listen: SocketAddr,
    url: &str,
    state: &std::path::Path,
) -> support::Running {
    support::Running(
        Command::new(BIN)
            .args(["watch", "--interval", "1", "--timeout", "1"])
            .args(["--listen", &listen.to_string()])
            .args(["--metrics-port", &format!("news={tor}")])
            .args(["--remote-write", url])
            .arg("--state-dir")
            .arg(state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn stop(mut child: support::Running) {
    sigterm(&child);
    wait_for(Duration::from_secs(30), || child.0.try_wait().unwrap())
        .expect("watch exits on SIGTERM");
}

#[test]
fn samples_buffered_before_a_restart_of_watch_are_delivered_after_it() {
    let tor = support::serve(
        "# TYPE tor_hs_app_write_bytes_total counter\ntor_hs_app_write_bytes_total{onion=\"x\"} 5\n",
    );
    let state = tempfile::tempdir().unwrap();
    let pdir = tempfile::tempdir().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let url = format!("http://{addr}/api/v1/write");
    // The receiver is not there yet: the first run only buffers.
    let listen = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let first = watch(tor, listen, &url, state.path());
    wait_for(Duration::from_secs(60), || {
        let m = support::get(listen, "/metrics");
        support::value(&m, "onionwatch_remote_write_buffer_samples{remote=\"0\"}")
            .filter(|v| *v >= 10.0)
    })
    .expect("samples buffered while the receiver is down");
    stop(first);
    let restart_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    let p = Prometheus::start_receiver(pdir.path(), addr).unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let second = watch(tor, listen, &url, state.path());
    // The first run's samples arrive: timestamps from before the restart.
    let oldest = wait_for(Duration::from_secs(60), || {
        let body = p
            .api(&format!(
                "/api/v1/query?query={}",
                onionwatch_testnet::prometheus::url_encode(
                    "tor_hs_app_write_bytes_total{project=\"news\"}[1h]"
                )
            ))
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["result"][0]["values"][0][0]
            .as_f64()
            .map(|t| t * 1000.0)
    })
    .expect("samples reached Prometheus");
    assert!(
        oldest < restart_ms,
        "the oldest sample ({oldest}) comes from the first run (before {restart_ms})"
    );
    stop(second);
}

// ------------------------------------------------ on the private network

/// One tor hosting one onion service that answers 200.
fn net() -> &'static onionwatch_testnet::NetworkInfo {
    use onionwatch_testnet::{NetworkConfig, ServiceConfig, ServiceTorConfig};
    onionwatch_testnet::shared_network(|| NetworkConfig {
        service_tors: vec![ServiceTorConfig {
            services: vec![ServiceConfig::default()],
            ..ServiceTorConfig::default()
        }],
        ready_timeout: Duration::from_secs(240),
        ..NetworkConfig::default()
    })
}

#[test]
fn three_vantage_points_push_to_one_prometheus() {
    let n = net();
    let (p, _pdir, url) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let vantages = ["eu-1", "us-1", "asia-1"];
    let mut children = Vec::new();
    for (i, vantage) in vantages.iter().enumerate() {
        let cfg = dir.path().join(format!("{vantage}.yaml"));
        // The first prober also serves /metrics; the others push only.
        let exporter = if i == 0 {
            format!(
                "prometheus_exporter: true\nprometheus_exporter_port: {}\n",
                support::free_port()
            )
        } else {
            String::new()
        };
        std::fs::write(
            &cfg,
            format!(
                "launch_tor: false\ntor_address: 127.0.0.1\nsocks_port: {}\ncontrol_port: {}\n\
                 loop: true\nsleep: 1\ninterval: 0\nshuffle: false\nrandomize: false\n\
                 descriptor_timeout: 60\nhttp_connect_timeout: 60\n{exporter}\
                 endpoints:\n  site:\n    address: {}\n    protocol: http\n    port: 80\n",
                n.client.socks.port(),
                n.client.control.port(),
                n.onions[0].address
            ),
        )
        .unwrap();
        let log = dir.path().join(format!("{vantage}.log"));
        children.push((
            log.clone(),
            support::Running(
                Command::new(BIN)
                    .args(["probe", "-c", cfg.to_str().unwrap()])
                    .args(["--vantage", vantage, "--remote-write", &url])
                    .arg("--state-dir")
                    .arg(dir.path().join(vantage))
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .unwrap(),
            ),
        ));
    }
    let logs = || {
        children
            .iter()
            .map(|(log, _)| std::fs::read_to_string(log).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let seen = wait_for(Duration::from_secs(300), || {
        let r = query(&p, "onion_service_reachable{name=\"site\"} == 1");
        let mut v: Vec<String> = r
            .iter()
            .map(|s| s["metric"]["vantage"].as_str().unwrap_or("").to_owned())
            .collect();
        v.sort();
        (v.len() == 3).then_some(v)
    })
    .unwrap_or_else(|| panic!("not every vantage point arrived; stderr:\n{}", logs()));
    assert_eq!(seen, ["asia-1", "eu-1", "us-1"]);
    // Every series of a prober carries its vantage, its own counters too.
    let own = query(
        &p,
        "count by (vantage) (onionwatch_remote_write_samples_total{result=\"sent\"})",
    );
    assert_eq!(own.len(), 3, "{own:?}");
    for (_, child) in &children {
        sigterm(child);
    }
    for (_, child) in &mut children {
        wait_for(Duration::from_secs(30), || child.0.try_wait().unwrap())
            .expect("probe exits on SIGTERM");
    }
}
