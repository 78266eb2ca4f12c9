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
    watcher.start().unwrap();
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

/// An Onionspray tree with one hardmap project per name, each tor with a
/// MetricsPort (nothing listens there: discovery only).
fn tree(projects: &[(&str, u16)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, port) in projects {
        let p = dir.path().join("projects").join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("tor.conf"),
            format!("MetricsPort 127.0.0.1:{port}\nMetricsPortPolicy accept 127.0.0.1\n"),
        )
        .unwrap();
    }
    dir
}

fn projects(w: &Watcher) -> Vec<String> {
    w.target_states().into_iter().map(|s| s.project).collect()
}

#[tokio::test]
async fn start_up_fails_on_a_missing_or_empty_tree() {
    let settings = |root: &std::path::Path| {
        let flags = Flags {
            onionspray: vec![root.to_owned()],
            ..Flags::default()
        };
        Settings::build(None, &flags).unwrap()
    };
    let missing = std::path::Path::new("/nonexistent/onionspray");
    let err = Watcher::new(settings(missing)).start().unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read /nonexistent/onionspray"),
        "{err}"
    );
    let empty = tree(&[]);
    std::fs::create_dir(empty.path().join("projects")).unwrap();
    let err = Watcher::new(settings(empty.path())).start().unwrap_err();
    assert!(err.to_string().contains("nothing to watch"), "{err}");
}

#[tokio::test]
async fn a_tree_that_fails_later_keeps_only_its_own_targets() {
    let a = tree(&[("a", 1)]);
    let b = tree(&[("b", 2), ("c", 3)]);
    let flags = Flags {
        onionspray: vec![a.path().to_owned(), b.path().to_owned()],
        interval_seconds: Some(3600.0),
        ..Flags::default()
    };
    let watcher = Watcher::new(Settings::build(None, &flags).unwrap());
    watcher.start().unwrap();
    assert_eq!(projects(&watcher), ["a", "b", "c"]);

    // Tree a becomes unreadable, c leaves tree b: a keeps its target, c goes.
    let moved = a.path().with_extension("moved");
    std::fs::rename(a.path(), &moved).unwrap();
    std::fs::remove_dir_all(b.path().join("projects/c")).unwrap();
    watcher.rediscover();
    assert_eq!(projects(&watcher), ["a", "b"]);

    // Once it is back, a new project of tree a shows up.
    std::fs::rename(&moved, a.path()).unwrap();
    std::fs::create_dir(a.path().join("projects/d")).unwrap();
    std::fs::write(
        a.path().join("projects/d/tor.conf"),
        "MetricsPort 127.0.0.1:4\n",
    )
    .unwrap();
    watcher.rediscover();
    assert_eq!(projects(&watcher), ["a", "b", "d"]);
}
