//! The private Tor network against real tor: one network for the happy path,
//! and failure cases, most of them cheap (they fail before the first
//! consensus); a tor dying at start-up needs one, as onion-service tors start
//! only once the consensus lists every relay.

use std::path::Path;

use onionwatch_testnet::{http, Error, NetworkConfig, ServiceTorConfig, TestNetwork};
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_onion_services_answer_through_the_client_and_teardown_kills_every_tor() {
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

    let dir = info.dir.clone();
    net.shutdown();
    let survivors: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(survivors.is_empty(), "tor processes left: {survivors:?}");
    assert!(!dir.exists(), "temporary directory {} left", dir.display());
}

#[tokio::test]
async fn a_tor_that_dies_at_start_up_is_named_with_its_log() {
    let config = NetworkConfig {
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
