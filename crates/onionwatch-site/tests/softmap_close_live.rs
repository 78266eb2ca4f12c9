//! The log policy closes a circuit on the tor that owns it, on the private
//! Tor network: two tors serve one project (as Onionspray's softmap
//! workers do), each onion service's `HiddenServicePort` pointing at a
//! listener of its own on one real nginx (PROXY protocol, circuit ids
//! exported). nginx logs `$server_addr $server_port`; the follower and the
//! abuse guard of `watch` read the log, map the listener to the worker
//! (from the workers' real torrc files) and send `CLOSECIRCUIT` to that
//! worker's control port only: worker 2's abusive circuit is gone from
//! worker 2's `GETINFO circuit-status`, while worker 1 keeps its circuits
//! (the same id included, if it has one) and its client keeps working.
//!
//! Needs Debian's `tor` and `nginx`; run under `flock /tmp/ow-tornet.lock`.
//! Every wait is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use onionwatch_logs::access::LogFormat;
use onionwatch_logs::follow::{FollowConfig, Follower, LogKind, Source};
use onionwatch_logs::guard::{Listener, ProjectTors, TorOwner};
use onionwatch_logs::policy::{Action, PolicyConfig};
use onionwatch_logs::tail::TailState;
use onionwatch_metrics::Collect;
use onionwatch_onionspray::torrc::Torrc;
use onionwatch_testnet::nginx::{Nginx, NginxConfig};
use onionwatch_testnet::{
    shared_network, BackendKind, NetworkConfig, NetworkInfo, OnionInfo, ServiceConfig,
    ServiceTorConfig,
};
use onionwatch_tor::control::{ConnectOptions, ControlTarget};
use onionwatch_tor::socks::{self, Isolation};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
const FORMAT: &str =
    r#"$server_addr $server_port $proxy_protocol_addr [$time_local] "$request" $status"#;
const MAX_REQUESTS: u32 = 3;

fn net(workers: [SocketAddr; 2]) -> &'static NetworkInfo {
    shared_network(move || NetworkConfig {
        service_tors: workers
            .iter()
            .map(|&backend| ServiceTorConfig {
                services: vec![ServiceConfig {
                    export_circuit_id: true,
                    backend: BackendKind::Address(backend),
                    ..ServiceConfig::default()
                }],
                ..ServiceTorConfig::default()
            })
            .collect(),
        ..NetworkConfig::default()
    })
}

/// A worker as `watch` sees it: its control port, and the listeners its
/// torrc's `HiddenServicePort` lines point at.
fn worker(info: &NetworkInfo, onion: &OnionInfo, name: &str) -> TorOwner {
    let torrc = Torrc::read(&info.dir.join(&onion.tor).join("torrc")).unwrap();
    let listeners: Vec<Listener> = torrc
        .onion_services()
        .iter()
        .flat_map(|hs| hs.ports())
        .filter_map(|(_, target)| Listener::from_target(&target))
        .collect();
    assert_eq!(listeners, [Listener::Tcp(onion.backend)]);
    let mut control = ControlTarget::new(onion.control.parse().unwrap());
    control.control_cookie = Some(onion.cookie.clone());
    TorOwner {
        name: name.into(),
        control: Some(control),
        listeners,
    }
}

/// A keep-alive HTTP/1.1 connection through the client on its own circuit.
struct Conn {
    stream: TcpStream,
    host: String,
}

impl Conn {
    async fn open(info: &NetworkInfo, onion: &OnionInfo, token: &str) -> Conn {
        let host = onion.address.clone();
        let iso = Isolation::new(token);
        let stream = socks::connect_timeout(info.client.socks, &host, 80, Some(&iso), WAIT)
            .await
            .unwrap_or_else(|e| panic!("connect {host} as {token}: {e}"));
        Conn { stream, host }
    }

    async fn get(&mut self) -> std::io::Result<u16> {
        let req = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", self.host);
        let exchange = async {
            self.stream.write_all(req.as_bytes()).await?;
            onionwatch_test_support::read_response(&mut self.stream).await
        };
        tokio::time::timeout(WAIT, exchange)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("no answer within the time limit")))
    }
}

/// The circuit id of the last request nginx logged on `listener`'s port.
async fn last_circuit(nginx: &mut Nginx, port: u16, after: usize) -> u32 {
    let format = LogFormat::compile(FORMAT).unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        nginx.check_alive().unwrap();
        let text = std::fs::read(nginx.access_log()).unwrap_or_default();
        let text = String::from_utf8_lossy(&text[after.min(text.len())..]).into_owned();
        let found = text.lines().rev().find_map(|l| {
            let r = format.parse(l.as_bytes()).ok()?;
            (r.server_port == Some(port)).then(|| r.circuit_id())?
        });
        if let Some(id) = found {
            return id.0;
        }
        assert!(
            Instant::now() < deadline,
            "no request on port {port} logged:\n{text}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The ids of the circuits a tor has now.
async fn circuits(tor: &TorOwner) -> Vec<u32> {
    let control = tor.control.as_ref().unwrap();
    let (client, _events) = control.connect(ConnectOptions::default()).await.unwrap();
    client
        .circuit_status()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect()
}

fn metrics(guard: &dyn Collect) -> String {
    let mut out = Vec::new();
    guard.collect(&mut out);
    onionwatch_metrics::render(&out, onionwatch_metrics::Format::Prometheus)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_is_closed_on_the_worker_whose_listener_served_it() {
    let second = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port2 = second.local_addr().unwrap().port();
    drop(second);
    let mut nginx = Nginx::start(&NginxConfig {
        proxy_protocol: true,
        server_directives: format!("listen 127.0.0.1:{port2} proxy_protocol;"),
        log_format: Some(FORMAT.into()),
        ..NginxConfig::default()
    })
    .expect("nginx starts (apt-get install nginx)");
    let listen2 = SocketAddr::from(([127, 0, 0, 1], port2));
    let port1 = nginx.addr().port();
    let info = net([nginx.addr(), listen2]);
    assert_eq!(info.onions.len(), 2);
    assert_ne!(info.onions[0].tor, info.onions[1].tor, "two tors");
    let hs1 = worker(info, &info.onions[0], "hs-1");
    let hs2 = worker(info, &info.onions[1], "hs-2");

    // watch's guard on the followed access log (from its end: the
    // network's readiness requests are in it), with both workers.
    let tors = ProjectTors {
        tors: vec![hs1.clone(), hs2.clone()],
    };
    let mut config = FollowConfig::default();
    config.tail.start_at_end = true;
    let follower = Follower::new(
        config,
        LogFormat::compile(FORMAT).unwrap(),
        vec![Source {
            project: "shop".into(),
            kind: LogKind::Access,
            pattern: nginx.access_log(),
        }],
        TailState::default(),
    );
    let policy = PolicyConfig {
        max_requests: MAX_REQUESTS,
        window_secs: 3600,
        action: Action::Close,
        i_understand_closing_circuits: true,
        ..PolicyConfig::default()
    };
    let guard =
        onionwatch_site::guard::attach(policy, &follower, Box::new(move |_| tors.clone())).unwrap();
    let follow = follower.spawn().unwrap();
    let deadline = Instant::now() + WAIT;
    while !follower.caught_up() {
        assert!(
            Instant::now() < deadline,
            "the follower never reached the log's end"
        );
        tokio::time::sleep(POLL).await;
    }

    // One circuit to each worker, one request each; their ids as tor
    // exported them.
    let start = std::fs::metadata(nginx.access_log()).map_or(0, |m| m.len() as usize);
    let mut a = Conn::open(info, &info.onions[0], "worker-1").await;
    assert_eq!(a.get().await.unwrap(), 200);
    let mut b = Conn::open(info, &info.onions[1], "worker-2").await;
    assert_eq!(b.get().await.unwrap(), 200);
    let x = last_circuit(&mut nginx, port1, start).await;
    let y = last_circuit(&mut nginx, port2, start).await;
    let before1 = circuits(&hs1).await;
    assert!(
        before1.contains(&x),
        "worker 1 has no circuit {x}: {before1:?}"
    );
    assert!(circuits(&hs2).await.contains(&y));
    eprintln!("worker 1's circuit {x}, worker 2's circuit {y}; worker 1 has {before1:?}");

    // Worker 1's circuit stays under the limit; worker 2's goes over it.
    assert_eq!(a.get().await.unwrap(), 200);
    for _ in 1..MAX_REQUESTS {
        assert_eq!(b.get().await.unwrap(), 200);
    }
    let _ = b.get().await; // the one over the limit; it may race the close
    let deadline = Instant::now() + WAIT;
    let m = loop {
        let m = metrics(guard.as_ref());
        if m.contains("onionwatch_log_circuit_closes_total{project=\"shop\",result=\"closed\"} 1\n")
        {
            break m;
        }
        assert!(Instant::now() < deadline, "never closed:\n{m}");
        tokio::time::sleep(POLL).await;
    };
    assert!(
        !m.contains("onionwatch_log_circuit_closes_skipped_total"),
        "{m}"
    );
    // Gone from worker 2 (tor may take a moment to tear it down).
    let deadline = Instant::now() + WAIT;
    while circuits(&hs2).await.contains(&y) {
        assert!(Instant::now() < deadline, "worker 2 still has circuit {y}");
        tokio::time::sleep(POLL).await;
    }
    // Worker 1 still has its circuit, and circuit {y} if it had one, and
    // its client still gets answers on it.
    let after1 = circuits(&hs1).await;
    assert!(after1.contains(&x), "worker 1 lost circuit {x}: {after1:?}");
    if before1.contains(&y) {
        assert!(after1.contains(&y), "worker 1's circuit {y} was closed");
    }
    assert_eq!(a.get().await.unwrap(), 200);
    assert_eq!(last_circuit(&mut nginx, port1, start).await, x);
    follow.stop();
}
