//! A site over one access log: built, served, asked, stopped.

use std::time::Duration;

use onionwatch_inside::targets::{Flags, Settings};
use onionwatch_server::EndpointConfig;
use onionwatch_site::{Site, SiteConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LINE: &str = r#"fc00:dead:beef:4dad::0:30 - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8""#;

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn serves_the_logs_and_saves_their_positions_when_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, format!("{LINE}\n")).unwrap();
    let state = dir.path().join("state.json");
    let flags = Flags {
        access_logs: vec![format!("shop={}", log.display())],
        log_state: Some(state.clone()),
        ..Flags::default()
    };
    let site = Site::build(SiteConfig {
        settings: Settings::build(None, &flags).unwrap(),
        endpoint: EndpointConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..EndpointConfig::default()
        },
        policy: None,
        state_dir: None,
        probe: None,
    })
    .unwrap();
    let site = site.serve().await.unwrap();
    let addr = site.local_addr();

    let mut logs = String::new();
    for _ in 0..100 {
        logs = get(addr, "/api/v1/logs").await;
        if logs.contains(r#""requests":1"#) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(logs.contains(r#""project":"shop""#), "{logs}");
    assert!(logs.contains(r#""requests":1"#), "{logs}");
    let metrics = get(addr, "/metrics").await;
    assert!(
        metrics.contains("onionwatch_log_requests_total{project=\"shop\",status_class=\"2xx\"} 1"),
        "{metrics}"
    );
    assert!(get(addr, "/api/v1/warnings")
        .await
        .starts_with("HTTP/1.1 200"));
    assert!(get(addr, "/").await.starts_with("HTTP/1.1 200"));

    site.stop().await.unwrap();
    assert!(state.exists(), "the positions are saved when stopped");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped serving"
    );
}

#[tokio::test]
async fn the_dashboard_offers_the_ranges_and_retention_of_the_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(&log, format!("{LINE}\n")).unwrap();
    let config = onionwatch_inside::targets::Config::from_yaml(
        &format!(
            "projects:\n  shop:\n    access_logs: [{}]\n\
             dashboard:\n  retention_days: 3\n  bucket_seconds: 600\n  ranges: [30m, 3d]\n",
            log.display()
        ),
        "watch.yaml",
    )
    .unwrap();
    let site = Site::build(SiteConfig {
        settings: Settings::build(Some(config), &Flags::default()).unwrap(),
        endpoint: EndpointConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..EndpointConfig::default()
        },
        policy: None,
        state_dir: None,
        probe: None,
    })
    .unwrap();
    let site = site.serve().await.unwrap();
    let reply = get(site.local_addr(), "/api/v1/dashboard?range=259200").await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains(
            r#""ranges":[{"seconds":1800,"label":"30 min"},{"seconds":259200,"label":"3 d"}]"#
        ),
        "{reply}"
    );
    assert!(reply.contains(r#""range_seconds":259200"#), "{reply}");
    site.stop().await.unwrap();
}
