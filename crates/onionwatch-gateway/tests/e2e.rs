//! End to end on the private Tor network: client tor → onion service with
//! `HiddenServiceExportCircuitID haproxy` → gateway → echo upstream.
//!
//! One network for the whole binary, with two onion services in one tor:
//! onion 0 → gateway A (rate limits), onion 1 → gateway B (limits, then
//! escalation once the control port is known). The gateways and the echo
//! upstream run on a runtime thread of their own for the whole binary, and
//! are listening before the network's readiness check connects to them.

mod common;

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use common::{Client, Resp};
use onionwatch_gateway::{Config, EscalationResult, Gateway, GatewayHandle, ListenAddr};
use onionwatch_test_support::{EchoAddr, EchoServer};
use onionwatch_testnet::{
    shared_network, BackendKind, NetworkConfig, NetworkInfo, ServiceConfig, ServiceTorConfig,
};
use onionwatch_tor::control::{Auth, ControlAddr, ControlClient};
use onionwatch_tor::socks::{self, Isolation};
use tokio::time::timeout;

/// Bound on each test: tor on loopback answers in well under a second, but
/// a fresh circuit after a close can take several.
const WAIT: Duration = Duration::from_secs(120);

struct Gateways {
    a: (SocketAddr, GatewayHandle),
    b: (SocketAddr, GatewayHandle),
}

fn config(upstream: &EchoAddr, rate: f64, burst: u32) -> Config {
    let mut c = common::test_config(upstream);
    c.limits.rate = rate;
    c.limits.burst = burst;
    c
}

/// The gateways, started once on their own runtime thread.
fn gateways() -> &'static Gateways {
    static GATEWAYS: OnceLock<Gateways> = OnceLock::new();
    GATEWAYS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("gateways".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("a runtime for the gateways");
                rt.block_on(async move {
                    let echo = EchoServer::start(&EchoAddr::loopback(), false)
                        .await
                        .expect("echo upstream");
                    let mut started = Vec::new();
                    // A: a slow refill so a few quick requests exhaust it.
                    // B: the same, escalation configured by its test.
                    for (rate, burst) in [(0.02, 3), (0.02, 2)] {
                        let gw = Gateway::bind(config(echo.addr(), rate, burst))
                            .await
                            .expect("gateway binds");
                        let ListenAddr::Tcp(addr) = gw.local_addr().clone() else {
                            unreachable!()
                        };
                        started.push((addr, gw.handle()));
                        tokio::spawn(gw.run());
                    }
                    let b = started.pop().unwrap();
                    let a = started.pop().unwrap();
                    tx.send(Gateways { a, b }).unwrap();
                    // Serve until the test binary exits.
                    let _echo = echo;
                    std::future::pending::<()>().await;
                });
            })
            .expect("spawn the gateway thread");
        rx.recv().expect("the gateways started")
    })
}

fn net() -> &'static NetworkInfo {
    let gw = gateways();
    shared_network(|| NetworkConfig {
        service_tors: vec![ServiceTorConfig {
            services: [gw.a.0, gw.b.0]
                .into_iter()
                .map(|addr| ServiceConfig {
                    export_circuit_id: true,
                    backend: BackendKind::Address(addr),
                    ..ServiceConfig::default()
                })
                .collect(),
            ..ServiceTorConfig::default()
        }],
        ..NetworkConfig::default()
    })
}

/// One request on a new stream through tor (on the isolation's circuit).
async fn get(onion: usize, iso: &str, extra: &str) -> Result<Resp, socks::SocksError> {
    Ok(try_get(onion, iso, extra)
        .await?
        .expect("a response before the stream closed"))
}

/// [`get`], with `None` when the stream closes without a response.
async fn try_get(onion: usize, iso: &str, extra: &str) -> Result<Option<Resp>, socks::SocksError> {
    use tokio::io::AsyncWriteExt;
    let info = net();
    let stream = socks::connect(
        info.client.socks,
        &info.onions[onion].address,
        80,
        Some(&Isolation::new(iso)),
    )
    .await?;
    let mut client = Client::new(stream);
    let req = format!("GET / HTTP/1.1\r\nHost: x.onion\r\n{extra}\r\n");
    if client.stream.write_all(req.as_bytes()).await.is_err() {
        return Ok(None);
    }
    Ok(client.response().await)
}

fn circuit_of(r: &Resp) -> u32 {
    let ids = r.echoed("x-onion-circuitid");
    assert_eq!(ids.len(), 1, "exactly one circuit header: {}", r.text());
    ids[0].parse().expect("a decimal circuit id")
}

async fn service_control() -> ControlClient {
    let control: ControlAddr = net().onions[0].control.parse().unwrap();
    ControlClient::connect(&control, Auth::default())
        .await
        .expect("the service tor's control port")
        .0
}

#[tokio::test]
async fn the_upstream_sees_the_real_circuit_id_and_never_the_clients() {
    timeout(WAIT, async {
        let r = get(
            0,
            "id",
            "X-Onion-CircuitID: 4242\r\nx_onion_circuitid: 4243\r\n",
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let id = circuit_of(&r);
        assert_ne!(id, 4242);
        assert!(r.echoed("x_onion_circuitid").is_empty(), "{}", r.text());

        let tor = service_control().await;
        let circuits = tor.circuit_status().await.unwrap();
        let circuit = circuits
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("circuit {id} not in {circuits:?}"));
        assert_eq!(circuit.status.as_str(), "BUILT", "{circuit:?}");

        // Another stream on the same isolation rides the same circuit.
        let again = get(0, "id", "").await.unwrap();
        assert_eq!(circuit_of(&again), id);
    })
    .await
    .expect("within the bound");
}

#[tokio::test]
async fn a_fast_circuit_gets_429_while_another_circuit_is_served() {
    timeout(WAIT, async {
        let mut seen = Vec::new();
        let limited = loop {
            let r = get(0, "a", "").await.unwrap();
            seen.push(r.status);
            if r.status == 429 {
                break r;
            }
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(seen.len() < 10, "no 429 after {seen:?}");
        };
        // Burst 3 at 0.02/s: the 4th quick request is refused.
        assert_eq!(seen, vec![200, 200, 200, 429]);
        let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
        assert!(retry >= 1);
        // Circuit "a" is still limited, circuit "b" is served.
        assert_eq!(get(0, "a", "").await.unwrap().status, 429);
        let b = get(0, "b", "").await.unwrap();
        assert_eq!(b.status, 200, "{}", b.text());
        circuit_of(&b);
    })
    .await
    .expect("within the bound");
    let m = gateways().a.1.metrics();
    assert!(m.rejected(onionwatch_gateway::RejectReason::RateLimited) >= 2);
}

#[tokio::test]
async fn sustained_abuse_closes_the_circuit() {
    let info = net();
    let handle = &gateways().b.1;
    let mut c = (*handle.config()).clone();
    c.escalation.enabled = true;
    c.escalation.control_port = Some(info.onions[1].control.parse().unwrap());
    c.escalation.rejections = 3;
    c.escalation.window_secs = 600.0;
    handle.reload(c).unwrap();
    let mut events = handle.escalations();
    timeout(WAIT, async {
        let first = get(1, "abuser", "").await.unwrap();
        assert_eq!(first.status, 200, "{}", first.text());
        let id = circuit_of(&first);
        assert_eq!(get(1, "abuser", "").await.unwrap().status, 200);
        for _ in 0..2 {
            assert_eq!(get(1, "abuser", "").await.unwrap().status, 429);
        }
        // The third refusal closes the circuit, which may cut its own 429.
        if let Some(r) = try_get(1, "abuser", "").await.unwrap() {
            assert_eq!(r.status, 429);
        }
        let e = events.recv().await.unwrap();
        assert_eq!(e.circuit, id);
        assert_eq!(e.result, EscalationResult::Closed);

        let tor = service_control().await;
        let circuits = tor.circuit_status().await.unwrap();
        assert!(
            !circuits
                .iter()
                .any(|c| c.id == id && c.status.as_str() == "BUILT"),
            "circuit {id} still built: {circuits:?}"
        );
        // The same isolation needs a new circuit: a new id, not limited.
        // The first attempt may still race the closing circuit.
        let mut fresh = None;
        for _ in 0..3 {
            match try_get(1, "abuser", "").await {
                Ok(Some(r)) => {
                    fresh = Some(r);
                    break;
                }
                Ok(None) => eprintln!("retrying after the close: stream closed"),
                Err(e) => eprintln!("retrying after the close: {e}"),
            }
        }
        let fresh = fresh.expect("a new circuit after the close");
        assert_eq!(fresh.status, 200, "{}", fresh.text());
        assert_ne!(circuit_of(&fresh), id);
    })
    .await
    .expect("within the bound");
    assert_eq!(handle.metrics().escalations(EscalationResult::Closed), 1);
}
