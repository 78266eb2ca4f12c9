//! `onionwatch logs --policy` end to end on the private Tor network: an
//! onion service with `HiddenServiceExportCircuitID haproxy` in front of a
//! real nginx (PROXY protocol, real IP from it, `combined` access log), a
//! client on three isolated circuits with one keep-alive connection each,
//! `onionwatch logs` following the access log: it reports 3 unique
//! circuits and closes the one abusive circuit through the onion-service
//! tor's control port, while the other two keep working.
//!
//! Needs Debian's `tor` and `nginx`. Every wait is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onionwatch_logs::access::LogFormat;
use onionwatch_test_support as support;
use onionwatch_testnet::nginx::{Nginx, NginxConfig};
use onionwatch_testnet::{
    shared_network, BackendKind, NetworkConfig, NetworkInfo, ServiceConfig, ServiceTorConfig,
};
use onionwatch_tor::socks::{self, Isolation};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

/// The policy's limit, the requests of each well-behaved circuit, and of
/// the abusive one: exactly one over the limit, since onionwatch closes its
/// circuit as soon as that request is logged (a further request on it could
/// race with the close).
const MAX_REQUESTS: u32 = 5;
const NORMAL_REQUESTS: usize = 2;
const ABUSIVE_REQUESTS: usize = MAX_REQUESTS as usize + 1;

/// One network per test binary; its onion service's backend is `nginx`.
fn net(nginx: &Nginx) -> &'static NetworkInfo {
    let backend = nginx.addr();
    shared_network(move || NetworkConfig {
        service_tors: vec![ServiceTorConfig {
            services: vec![ServiceConfig {
                export_circuit_id: true,
                backend: BackendKind::Address(backend),
                ..ServiceConfig::default()
            }],
            ..ServiceTorConfig::default()
        }],
        ..NetworkConfig::default()
    })
}

/// A keep-alive HTTP/1.1 connection through tor on its own circuit.
struct Conn {
    stream: TcpStream,
    host: String,
}

impl Conn {
    async fn open(info: &NetworkInfo, token: &str) -> Conn {
        let host = info.onions[0].address.clone();
        let iso = Isolation::new(token);
        let stream = socks::connect_timeout(info.client.socks, &host, 80, Some(&iso), WAIT)
            .await
            .unwrap_or_else(|e| panic!("connect {host} as {token}: {e}"));
        Conn { stream, host }
    }

    /// One GET on this connection; the status, or the I/O failure.
    async fn get(&mut self, path: &str) -> std::io::Result<u16> {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: log-policy-test\r\n\r\n",
            self.host
        );
        let exchange = async {
            self.stream.write_all(req.as_bytes()).await?;
            support::read_response(&mut self.stream).await
        };
        tokio::time::timeout(WAIT, exchange)
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("no answer within the time limit")))
    }
}

/// The access log's lines after byte `offset`, once there are at least `n`.
async fn log_lines(nginx: &mut Nginx, offset: usize, n: usize) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    loop {
        nginx.check_alive().unwrap();
        let text = std::fs::read(nginx.access_log()).unwrap_or_default();
        let lines: Vec<String> = String::from_utf8_lossy(&text[offset.min(text.len())..])
            .lines()
            .map(str::to_owned)
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "access log has {} of {n} lines after {WAIT:?}: {lines:#?}",
            lines.len()
        );
        tokio::time::sleep(POLL).await;
    }
}

fn log_len(nginx: &Nginx) -> usize {
    std::fs::metadata(nginx.access_log()).map_or(0, |m| m.len() as usize)
}

/// Requests per circuit in `lines`.
fn per_circuit(lines: &[String]) -> BTreeMap<u32, usize> {
    let format = LogFormat::combined();
    let mut out = BTreeMap::new();
    for l in lines {
        let r = format.parse(l.as_bytes()).unwrap();
        let id = r
            .circuit_id()
            .unwrap_or_else(|| panic!("no circuit id: {l}"));
        *out.entry(id.0).or_default() += 1;
    }
    out
}

/// Poll `/metrics` until `done` holds; the last text on timeout.
async fn metrics_until(addr: SocketAddr, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = tokio::task::spawn_blocking(move || support::get(addr, "/metrics"))
            .await
            .unwrap();
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{m}");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusive_circuit_is_closed_and_the_others_keep_working() {
    let mut nginx = Nginx::start(&NginxConfig {
        proxy_protocol: true,
        ..NginxConfig::default()
    })
    .expect("nginx starts (apt-get install nginx)");
    let info = net(&nginx);
    let onion = &info.onions[0];
    assert!(onion.export_circuit_id);

    // Follow the access log from its end: the network's own readiness
    // requests are in it already.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "max_requests: {MAX_REQUESTS}\nwindow_secs: 3600\naction: close\ni_understand_closing_circuits: true\n"
        ),
    )
    .unwrap();
    let port = support::free_port();
    let metrics = SocketAddr::from(([127, 0, 0, 1], port));
    let _logs = support::Running(
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .arg("logs")
            .arg(nginx.access_log())
            .args(["--project", "shop", "--from-end", "--poll-interval", "50"])
            .arg("--policy")
            .arg(&policy)
            .args(["--control-port", &onion.control])
            .arg("--control-cookie")
            .arg(&onion.cookie)
            .args(["--listen", &metrics.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    metrics_until(metrics, "following the access log", |m| {
        support::value(m, "onionwatch_log_tail_files ") == Some(1.0)
    })
    .await;
    let offset = log_len(&nginx);

    // Three circuits, one keep-alive connection each.
    let run = std::process::id();
    let mut abusive = Conn::open(info, &format!("abusive-{run}")).await;
    let mut normal = vec![
        Conn::open(info, &format!("normal-a-{run}")).await,
        Conn::open(info, &format!("normal-b-{run}")).await,
    ];
    for i in 0..ABUSIVE_REQUESTS {
        assert_eq!(abusive.get(&format!("/a{i}")).await.unwrap(), 200);
    }
    for (n, c) in normal.iter_mut().enumerate() {
        for i in 0..NORMAL_REQUESTS {
            assert_eq!(c.get(&format!("/n{n}-{i}")).await.unwrap(), 200);
        }
    }
    let total = ABUSIVE_REQUESTS + 2 * NORMAL_REQUESTS;
    let lines = log_lines(&mut nginx, offset, total).await;
    assert_eq!(lines.len(), total, "{lines:#?}");
    let counts = per_circuit(&lines);
    let mut sizes: Vec<usize> = counts.values().copied().collect();
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        vec![NORMAL_REQUESTS, NORMAL_REQUESTS, ABUSIVE_REQUESTS]
    );
    let abusive_id = *counts
        .iter()
        .find(|(_, &n)| n == ABUSIVE_REQUESTS)
        .unwrap()
        .0;

    // onionwatch saw every request, 3 circuits, and closed one.
    let m = metrics_until(metrics, "counting the requests and closing", |m| {
        support::value(
            m,
            "onionwatch_log_requests_total{project=\"shop\",status_class=\"2xx\"}",
        ) == Some(total as f64)
            && support::value(
                m,
                "onionwatch_log_circuit_closes_total{project=\"shop\",result=\"closed\"}",
            ) == Some(1.0)
    })
    .await;
    assert_eq!(
        support::value(
            &m,
            "onionwatch_log_unique_circuits{project=\"shop\",window=\"all\"}"
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        support::value(
            &m,
            "onionwatch_log_abusive_circuits_total{project=\"shop\",action=\"close\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // No circuit id as a label value (bucket bounds aside). Not a substring
    // test: a small id such as 31 also appears in values and timestamps.
    let id = abusive_id.to_string();
    let as_label = m
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('{')?.1.split_once('}').map(|(ls, _)| ls))
        .flat_map(|ls| ls.split(','))
        .filter_map(|pair| pair.split_once('='))
        .any(|(k, v)| k != "le" && k != "quantile" && v.trim_matches('"') == id);
    assert!(!as_label, "circuit id {id} as a label:\n{m}");

    // The abusive circuit's connection is gone: its next request fails.
    let after_close = abusive.get("/after-close").await;
    assert!(
        after_close.is_err(),
        "a request on the closed circuit answered {after_close:?}"
    );
    // The others keep working on their own circuits (same connections).
    let before_more = log_len(&nginx);
    for c in &mut normal {
        assert_eq!(c.get("/after-close").await.unwrap(), 200);
    }
    let more = log_lines(&mut nginx, before_more, 2).await;
    let more_counts = per_circuit(&more);
    assert_eq!(more_counts.len(), 2, "{more:#?}");
    for id in more_counts.keys() {
        assert!(counts.contains_key(id) && *id != abusive_id, "{more:#?}");
    }
    // The abusive client can come back, but only on a new circuit.
    let before_back = log_len(&nginx);
    let mut back = Conn::open(info, &format!("abusive-{run}")).await;
    assert_eq!(back.get("/back").await.unwrap(), 200);
    let back_lines = log_lines(&mut nginx, before_back, 1).await;
    let back_counts = per_circuit(&back_lines);
    assert_eq!(back_counts.len(), 1);
    assert!(!back_counts.contains_key(&abusive_id), "{back_lines:#?}");
}
