//! `onionwatch watch` probing from the outside on a private Tor network:
//! `--probe-config` (an Onionprobe YAML) with a live and a never-published
//! onion service, and the onion services found in an Onionspray tree (laid
//! out as Onionspray writes it, its hostname files holding the network's
//! real onion services) probed through the network's client tor, the
//! probe families on watch's own /metrics.
//!
//! Run under `flock /tmp/ow-tornet.lock`: one network for the binary.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onionwatch_site::demo::OFFLINE;
use onionwatch_test_support::onionspray::{SprayProject, SprayTree};
use onionwatch_test_support::process::tor_children;
use onionwatch_test_support::{self as support, Running};
use onionwatch_testnet::{shared_network, NetworkConfig, NetworkInfo};

fn net() -> &'static NetworkInfo {
    // Two onion-service tors with two onion services each: a hardmap
    // project's two and a softmap project's two workers.
    shared_network(|| NetworkConfig::with_onions(4, 2))
}

/// Onionprobe options reaching the network through its client tor.
fn client_options(info: &NetworkInfo) -> String {
    format!(
        "launch_tor: false\ntor_address: 127.0.0.1\nsocks_port: {}\ncontrol_port: {}\n\
         sleep: 1\ninterval: 0\nrandomize: false\nshuffle: false\n\
         descriptor_max_retries: 1\ndescriptor_timeout: 30\nhttp_connect_timeout: 30\n\
         http_connect_max_retries: 0\nhttp_read_timeout: 30\n",
        info.client.socks.port(),
        info.client.control.port(),
    )
}

/// `onionwatch watch ARGS` on a free port, its log in `log`.
fn watch(args: &[&str], log: &Path) -> (Running, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let child = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args([
            "watch",
            "--listen",
            &addr.to_string(),
            "--interval",
            "2",
            "--timeout",
            "1",
        ])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    (Running(child), addr)
}

/// /metrics once `done` holds for it (3 minutes at most).
fn metrics_until(
    addr: SocketAddr,
    child: &mut Running,
    log: &Path,
    done: impl Fn(&str) -> bool,
) -> String {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!(
                "watch exited ({status}); its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let m = support::get(addr, "/metrics");
        if done(&m) {
            return m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "never complete:\n{m}\nwatch's log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn reachable(m: &str, name: &str) -> Option<f64> {
    support::value(m, &format!("onion_service_reachable{{name=\"{name}\""))
}

/// SIGTERM, then a clean exit.
fn stop(mut child: Running) {
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn probe_config_gives_reachable_1_for_a_live_and_0_for_a_never_published_onion_service() {
    let info = net();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("onionprobe.yaml");
    std::fs::write(
        &config,
        format!(
            "{}endpoints:\n  live:\n    address: {}\n    paths:\n      - path: /\n        pattern: 'onionwatch testnet backend'\n  offline:\n    address: {OFFLINE}\n",
            client_options(info),
            info.onions[0].address
        ),
    )
    .unwrap();
    let log = dir.path().join("watch.log");
    let control = format!("hs={}", info.onions[0].control);
    let (mut child, addr) = watch(
        &[
            "--control-port",
            &control,
            "--probe-config",
            config.to_str().unwrap(),
        ],
        &log,
    );
    let m = metrics_until(addr, &mut child, &log, |m| {
        reachable(m, "live") == Some(1.0) && reachable(m, "offline") == Some(0.0)
    });
    // Beside the inside families, under the names `onionwatch probe` uses.
    for family in [
        "onionwatch_scrape_up{collector=\"tor_control\",project=\"hs\"",
        "onion_service_descriptor_reachable{name=\"offline\"",
        "onion_service_latency_seconds{name=\"live\"",
    ] {
        assert!(m.contains(family), "{family} missing from\n{m}");
    }
    assert_eq!(
        support::value(&m, "onion_service_descriptor_reachable{name=\"offline\""),
        Some(0.0)
    );
    // The dashboard's outside table has both.
    let api = support::get(addr, "/api/v1/dashboard");
    assert!(
        api.contains("\"name\":\"live\"") && api.contains("\"name\":\"offline\""),
        "{api}"
    );
    stop(child);
}

#[test]
fn every_onion_service_of_an_onionspray_tree_is_probed_and_rediscovery_adds_new_ones() {
    let info = net();
    let id = |i: usize| info.onions[i].address.trim_end_matches(".onion").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("onionspray");
    let news = SprayProject {
        onions: vec![id(0), id(1)],
        ..SprayProject::hardmap("news", &["example.com", "example.net"])
    };
    let shop = SprayProject {
        onions: vec![id(2), id(3)],
        ..SprayProject::softmap("shop", &["example.org"], 2)
    };
    SprayTree::build(&root, std::slice::from_ref(&news));
    // Onionprobe's options inline in watch's file (no endpoint named:
    // only what the tree holds).
    let options: String = client_options(info)
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    let yaml = dir.path().join("watch.yaml");
    std::fs::write(
        &yaml,
        format!(
            "onionspray: ['{}']\nrediscover_seconds: 3600\nprobe:\n{options}",
            root.display()
        ),
    )
    .unwrap();
    let log = dir.path().join("watch.log");
    let (mut child, addr) = watch(&["--config", yaml.to_str().unwrap()], &log);

    let name = |project: &str, i: usize| format!("{project}/{}", &id(i)[..16]);
    // Port 80 of each onion service answers; 443 is probed too (the
    // network's services expose only 80, so it is unreachable).
    let all_probed = |m: &str, services: &[(&str, usize)]| {
        services.iter().all(|(p, i)| {
            reachable(m, &name(p, *i)) == Some(1.0)
                && reachable(m, &format!("{}:443", name(p, *i))).is_some()
        })
    };
    let m = metrics_until(addr, &mut child, &log, |m| {
        all_probed(m, &[("news", 0), ("news", 1)])
    });
    assert_eq!(
        support::value(
            &m,
            &format!("onion_service_reachable{{name=\"{}:443\"", name("news", 0))
        ),
        Some(0.0),
        "{m}"
    );
    assert!(!m.contains("name=\"shop/"), "{m}");

    // A softmap project appears: SIGHUP rediscovers it, and its workers'
    // onion services are probed from the next round.
    SprayTree::build(&root, &[news, shop]);
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };
    metrics_until(addr, &mut child, &log, |m| {
        all_probed(m, &[("news", 0), ("news", 1), ("shop", 2), ("shop", 3)])
    });
    stop(child);
}

#[test]
fn without_a_tor_to_use_watch_launches_one_probes_through_it_and_stops_it() {
    let info = net();
    let id = |i: usize| info.onions[i].address.trim_end_matches(".onion").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("onionspray");
    SprayTree::build(
        &root,
        &[SprayProject {
            onions: vec![id(0)],
            ..SprayProject::hardmap("news", &["example.com"])
        }],
    );
    // Onionprobe's launch_tor (the default), on free ports, joined to the
    // private network with the network client's own torrc lines.
    let client_torrc = std::fs::read_to_string(info.dir.join("client/torrc")).unwrap();
    let network_lines: Vec<String> = client_torrc
        .lines()
        .filter(|l| {
            let key = l.split_whitespace().next().unwrap_or("");
            key == "DirAuthority"
                || key.starts_with("Testing")
                || [
                    "AssumeReachable",
                    "PathsNeededToBuildCircuits",
                    "V3AuthNIntervalsValid",
                ]
                .contains(&key)
        })
        .map(|l| format!("    - '{l}'\n"))
        .collect();
    let yaml = dir.path().join("watch.yaml");
    std::fs::write(
        &yaml,
        format!(
            "onionspray: ['{}']\nprobe:\n  socks_port: {}\n  control_port: {}\n  sleep: 1\n  http_connect_max_retries: 0\n  tor_config:\n{}",
            root.display(),
            support::free_port(),
            support::free_port(),
            network_lines.concat()
        ),
    )
    .unwrap();
    let log = dir.path().join("watch.log");
    let (mut child, addr) = watch(&["--config", yaml.to_str().unwrap()], &log);
    let name = format!("news/{}", &id(0)[..16]);
    metrics_until(addr, &mut child, &log, |m| reachable(m, &name) == Some(1.0));
    let tors = tor_children(child.0.id());
    assert_eq!(tors.len(), 1, "one launched tor: {tors:?}");
    stop(child);
    let left: Vec<String> = tors
        .into_iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .collect();
    assert!(
        left.is_empty(),
        "tor processes left: {left:?}; watch's log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}
