//! The private Tor network against real tor: one network for the happy path,
//! and failure cases, most of them cheap (they fail before the first
//! consensus); a tor dying at start-up needs one, as onion-service tors start
//! only once the consensus lists every relay.

use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onionwatch_testnet::{http, Error, NetworkConfig, PortHook, ServiceTorConfig, TestNetwork};
use onionwatch_tor::socks::Isolation;

/// The error and its sources, joined as anyhow's `{:#}` does.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        text = format!("{text}: {e}");
        source = e.source();
    }
    text
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The pids in `dir/*/pid`: every tor writes one once it has bound its ports.
fn pid_files(dir: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        if let Ok(pid) = std::fs::read_to_string(entry.unwrap().path().join("pid")) {
            pids.push(pid.trim().parse().unwrap());
        }
    }
    pids
}

/// Fails unless every one of `pids` is gone within 5 s.
fn assert_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "tor processes left: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Every port the harness picks, by node: `(nickname, ports)` in order.
type Picked = Arc<Mutex<Vec<(String, Vec<u16>)>>>;

/// A hook that records every pick and takes the first port of the first
/// `times` picks of each node in `nodes`, as another process would between
/// the pick and tor's bind. The listeners stay open as long as the hook.
fn take_ports(nodes: &'static [&'static str], times: usize) -> (PortHook, Picked) {
    let picked: Picked = Arc::default();
    let held = Mutex::new(Vec::<TcpListener>::new());
    let record = picked.clone();
    let hook = PortHook::new(move |nick: &str, ports: &[u16]| {
        let mut picked = record.lock().unwrap();
        picked.push((nick.to_owned(), ports.to_vec()));
        let seen = picked.iter().filter(|(n, _)| n == nick).count();
        if nodes.contains(&nick) && seen <= times {
            let taken = TcpListener::bind(("127.0.0.1", ports[0])).expect("take the port");
            held.lock().unwrap().push(taken);
        }
    });
    (hook, picked)
}

fn picks(picked: &Picked, nick: &str) -> Vec<Vec<u16>> {
    let picked = picked.lock().unwrap();
    picked
        .iter()
        .filter(|(n, _)| n == nick)
        .map(|(_, p)| p.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_onion_services_answer_through_the_client_and_dropping_kills_every_tor() {
    let net = TestNetwork::start(NetworkConfig::with_onions(2, 1))
        .await
        .expect("test network starts");
    let info = net.info().clone();
    assert_eq!(info.onions.len(), 2);
    assert_ne!(info.onions[0].address, info.onions[1].address);
    // 3 authorities + 2 relays + 2 onion-service tors + 1 client.
    let pids = net.pids();
    assert_eq!(pids.len(), 8);
    assert!(pids.iter().all(|p| alive(*p)));

    for (i, onion) in info.onions.iter().enumerate() {
        assert_eq!(onion.address.len(), 62, "{}", onion.address);
        let path = format!("/probe/{i}");
        let iso = Isolation::new(format!("test-{i}"));
        let r = http::get(info.client.socks, &onion.address, 80, &path, Some(&iso))
            .await
            .expect("GET through the onion service");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.body,
            onionwatch_testnet::Backend::body_for(&format!("hs{i}-0"), &path)
        );
        assert!(onion.metrics.is_some());
        assert!(onion.cookie.ends_with(format!("hs{i}/control_auth_cookie")));
    }
    assert!(info.client.cookie.exists());

    // Dropped without shutdown(), as a test that just ends does.
    let dir = info.dir.clone();
    drop(net);
    assert_gone(&pids);
    assert!(!dir.exists(), "temporary directory {} left", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taken_ports_are_retried_once_and_a_panicking_test_leaves_no_tor() {
    // An authority (all three restart) and the client (alone) find a port
    // taken on their first try.
    let (hook, picked) = take_ports(&["auth1", "client"], 1);
    let net = TestNetwork::start(NetworkConfig {
        port_hook: Some(hook),
        ..NetworkConfig::default()
    })
    .await
    .expect("the network starts on fresh ports");
    let info = net.info().clone();
    for nick in ["auth0", "auth1", "auth2", "client"] {
        let tries = picks(&picked, nick);
        assert_eq!(tries.len(), 2, "{nick}: {tries:?}");
        assert_ne!(tries[0], tries[1], "{nick}");
    }
    assert_eq!(picks(&picked, "relay0").len(), 1);
    let client = &picks(&picked, "client")[1];
    assert_eq!(info.client.socks.port(), client[0]);
    assert_eq!(info.client.control.port(), client[1]);
    let r = http::get(info.client.socks, &info.onions[0].address, 80, "/", None)
        .await
        .expect("GET through the onion service");
    assert_eq!(r.status, 200);

    // A test body that panics while it holds the network.
    let pids = net.pids();
    assert_eq!(pids.len(), 7);
    let body = std::thread::spawn(move || {
        let _held = net;
        panic!("a failing test body (expected)");
    });
    assert!(body.join().is_err());
    assert_gone(&pids);
    assert!(!info.dir.exists(), "{} left", info.dir.display());
}

#[tokio::test]
async fn a_port_taken_twice_names_the_node_and_the_address_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let (hook, picked) = take_ports(&["relay0"], 2);
    let err = TestNetwork::start(NetworkConfig {
        dir: Some(dir.path().to_owned()),
        port_hook: Some(hook),
        ..NetworkConfig::default()
    })
    .await
    .unwrap_err();
    match &err {
        Error::PortClash { node, tail, .. } => {
            assert_eq!(node, "relay0");
            assert!(tail.contains("Address already in use"), "{tail}");
        }
        other => panic!("expected PortClash, got {other}"),
    }
    assert_eq!(picks(&picked, "relay0").len(), 2);
    // The authorities had started, relay1 too (perhaps without its pid file
    // yet: it starts beside relay0); relay0 never wrote one.
    assert!(!dir.path().join("relay0").join("pid").exists());
    let pids = pid_files(dir.path());
    assert!(pids.len() >= 3, "{pids:?}");
    assert_gone(&pids);
}

#[tokio::test]
async fn a_tor_that_dies_at_start_up_is_named_with_its_log_and_the_others_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    let config = NetworkConfig {
        dir: Some(dir.path().to_owned()),
        service_tors: vec![ServiceTorConfig {
            metrics_policy: "not-a-policy".into(),
            ..ServiceTorConfig::default()
        }],
        ..NetworkConfig::default()
    };
    let err = TestNetwork::start(config).await.unwrap_err();
    match &err {
        Error::NodeDied { node, tail, .. } => {
            assert_eq!(node, "hs0");
            assert!(
                tail.contains("MetricsPortPolicy") || tail.contains("policy"),
                "{tail}"
            );
        }
        other => panic!("expected NodeDied, got {other}"),
    }
    // At least the 3 authorities and 2 relays ran (hs0 writes its pid
    // file before it rejects the policy, so the client may have started too).
    let pids = pid_files(dir.path());
    assert!(pids.len() >= 5, "{pids:?}");
    assert_gone(&pids);
}

#[tokio::test]
async fn a_missing_tor_says_how_to_install_it() {
    let config = NetworkConfig {
        tor: "/nonexistent/bin/tor".into(),
        ..NetworkConfig::default()
    };
    let err = TestNetwork::start(config).await.unwrap_err();
    // As the CLI prints it: the error and its sources.
    let text = chain(&err);
    assert!(text.contains("apt-get install -y tor"), "{text}");
    assert_eq!(text.matches("No such file").count(), 1, "{text}");
}

#[tokio::test]
async fn a_too_short_readiness_timeout_names_what_is_not_ready_and_kills_every_tor() {
    let dir = tempfile::tempdir().unwrap();
    let config = NetworkConfig {
        dir: Some(dir.path().to_owned()),
        // Over before the authorities' keys are made (seconds of RSA), so
        // the first tor started cannot have bound its ports in time.
        ready_timeout: Duration::from_millis(10),
        ..NetworkConfig::default()
    };
    let err = TestNetwork::start(config).await.unwrap_err();
    match &err {
        Error::Timeout { what, .. } => {
            assert!(what.contains("tor node auth0 to bind its ports"), "{err}")
        }
        other => panic!("expected Timeout, got {other}"),
    }
    // No relay was started; whichever authority wrote its pid file is gone.
    assert!(!dir.path().join("relay0").exists());
    assert_gone(&pid_files(dir.path()));
}
