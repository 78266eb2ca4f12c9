//! Metrics through an authenticated onion service, end to end on the private
//! Tor network: expose-onion on the service's tor, scrape-gateway on the
//! client's, and a real Prometheus scraping through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onionwatch_expose::{expose, ClientKey, ScrapeProxy};
use onionwatch_metrics::{Collect, Family};
use onionwatch_server::{router, start, EndpointConfig, Registry, RunningServer};
use onionwatch_testnet::prometheus::Prometheus;
use onionwatch_testnet::{shared_network, NetworkConfig};
use onionwatch_tor::control::{Auth, ControlAddr, ControlClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(120);

struct Marker;
impl Collect for Marker {
    fn collect(&self, out: &mut Vec<Family>) {
        let mut f = Family::gauge(
            "onionwatch_expose_test_marker",
            "Proves the scrape crossed Tor.",
        );
        f.push(&[], 42.0);
        out.push(f);
    }
}

async fn serve(app: axum::Router) -> RunningServer {
    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..EndpointConfig::default()
    };
    start(&config, app).await.unwrap()
}

/// `GET path` over plain HTTP/1.0: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let status = raw.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Poll `GET path` until `done(status, body)` or the wait runs out.
async fn poll(addr: SocketAddr, path: &str, done: impl Fn(u16, &str) -> bool) -> (u16, String) {
    let start = Instant::now();
    loop {
        let (status, body) = get(addr, path).await;
        if done(status, &body) || start.elapsed() > WAIT {
            return (status, body);
        }
        // Readiness polling: the descriptor publication gives no signal here.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_through_an_authenticated_onion_service_and_fails_without_the_key() {
    let net = shared_network(NetworkConfig::default);
    let registry = Arc::new(Registry::default());
    registry.register(Arc::new(Marker));
    let endpoint = serve(router(registry)).await;

    // The monitored host: its tor publishes the endpoint with client auth.
    let service_ctl: ControlAddr = net.onions[0].control.parse().unwrap();
    let (service_tor, _e) = ControlClient::connect(&service_ctl, Auth::default())
        .await
        .unwrap();
    let keys = tempfile::tempdir().unwrap();
    let exposed = expose(&service_tor, endpoint.local_addr(), 80, keys.path())
        .await
        .unwrap();
    let (address, key) = ClientKey::from_auth_private(&exposed.client_line).unwrap();
    assert_eq!(address, exposed.address);
    assert!(exposed.client_key_written, "a new client key");
    assert_eq!(
        std::fs::read_to_string(&exposed.client_key_file).unwrap(),
        exposed.client_line
    );

    // The keys are kept: exposing again (e.g. after a restart) gives the same address.
    drop(service_tor);
    let (service_tor, _e) = ControlClient::connect(&service_ctl, Auth::default())
        .await
        .unwrap();
    let again = expose(&service_tor, endpoint.local_addr(), 80, keys.path())
        .await
        .unwrap();
    assert_eq!(again.address, exposed.address);
    assert_eq!(again.client_line, exposed.client_line);
    // Nothing new for the scraping side: the command does not print the key again.
    assert!(!again.client_key_written);

    // The Prometheus side, first without the key: tor finds the descriptor
    // but cannot read it.
    let client_ctl = ControlAddr::Tcp(net.client.control);
    let (client_tor, _e) = ControlClient::connect(&client_ctl, Auth::default())
        .await
        .unwrap();
    let keyless = ScrapeProxy::new(&client_tor, net.client.socks, &address, 80, None)
        .await
        .unwrap();
    let keyless = serve(keyless.router()).await;
    let (status, body) = poll(keyless.local_addr(), "/metrics", |_, b| {
        b.contains("client authorization")
    })
    .await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("client authorization"), "{body}");
    assert!(!body.contains("onionwatch_expose_test_marker"));

    // With the key.
    let proxy = ScrapeProxy::new(&client_tor, net.client.socks, &address, 80, Some(&key))
        .await
        .unwrap();
    let gateway = serve(proxy.router()).await;
    let (status, body) = poll(gateway.local_addr(), "/metrics", |s, _| s == 200).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("onionwatch_expose_test_marker 42"), "{body}");

    // A real Prometheus scraping the gateway gets the series.
    let target = gateway.local_addr();
    let answer = tokio::task::spawn_blocking(move || {
        let prometheus = Prometheus::start(&[target], Duration::from_secs(5)).unwrap();
        let start = Instant::now();
        loop {
            let answer = prometheus
                .query("onionwatch_expose_test_marker")
                .unwrap_or_default();
            if answer.contains("\"42\"") || start.elapsed() > WAIT {
                return answer;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await
    .unwrap();
    assert!(answer.contains("\"job\":\"onionwatch\""), "{answer}");
    assert!(answer.contains("\"42\""), "{answer}");
}
