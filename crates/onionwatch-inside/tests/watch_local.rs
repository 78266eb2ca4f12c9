//! The watch runtime against local fake endpoints: a MetricsPort serving a
//! real tor page, one that accepts and never answers, and one refusing
//! connections. The slow and dead ones must not hold back the rest.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onionwatch_inside::targets::{Flags, Settings};
use onionwatch_inside::watch::Watcher;
use onionwatch_metrics::{render, Format};
use onionwatch_server::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const TOR_PAGE: &str =
    include_str!("../../onionwatch-metrics/tests/data/tor-0.4.9-metricsport-2onions.txt");

async fn tor_like_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req).await;
                let head = format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n", TOR_PAGE.len());
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(TOR_PAGE.as_bytes()).await;
                // Like tor, do not close: the client must stop at Content-Length.
                let _ = s.read(&mut req).await;
            });
        }
    });
    addr
}

async fn silent_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s); // never answer
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_slow_or_dead_target_does_not_block_the_others() {
    let good = tor_like_server().await;
    let (slow, _slow_task) = silent_server().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap() // closed when `l` drops: connection refused
    };
    let flags = Flags {
        metrics_ports: vec![
            format!("good={good}"),
            format!("slow={slow}"),
            format!("dead={dead}"),
        ],
        interval_seconds: Some(0.5),
        timeout_seconds: Some(0.4),
        ..Flags::default()
    };
    let watcher = Watcher::new(Settings::build(None, &flags).unwrap());
    watcher.start();
    let registry = Arc::new(Registry::default());
    registry.register(watcher.collector());

    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = render(&registry.gather(), Format::Prometheus);
        if ["good", "slow", "dead"]
            .iter()
            .all(|p| text.contains(&format!("collector=\"tor_metrics\",project=\"{p}\"")))
        {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "targets not scraped in time:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let up = |p: &str| {
        format!("onionwatch_scrape_up{{collector=\"tor_metrics\",project=\"{p}\",tor_instance=\"tor\"}}")
    };
    assert!(text.contains(&format!("{} 1\n", up("good"))), "{text}");
    assert!(text.contains(&format!("{} 0\n", up("slow"))), "{text}");
    assert!(text.contains(&format!("{} 0\n", up("dead"))), "{text}");
    // The good tor's families, relabelled, one declaration each.
    assert!(text.contains("tor_relay_traffic_bytes{direction=\"read\",project=\"good\",tor_instance=\"tor\"} 184921\n"), "{text}");
    assert_eq!(
        text.matches("# TYPE tor_hs_intro_num_total counter")
            .count(),
        1
    );

    let states = watcher.target_states();
    let slow_state = states.iter().find(|s| s.project == "slow").unwrap();
    assert!(
        slow_state
            .last_error
            .as_deref()
            .unwrap()
            .contains("did not answer within"),
        "{slow_state:?}"
    );
    let dead_state = states.iter().find(|s| s.project == "dead").unwrap();
    assert!(
        dead_state
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot connect to tor's MetricsPort"),
        "{dead_state:?}"
    );

    // Targets removed at runtime stop being exported.
    watcher.set_targets(Vec::new());
    let text = render(&registry.gather(), Format::Prometheus);
    assert!(!text.contains("project=\"good\""), "{text}");
}
