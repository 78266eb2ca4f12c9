//! The shared private network of this test binary and the servers behind
//! its onion services.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use onionwatch_probe::config::Config;
use onionwatch_probe::{ProbeMetrics, Prober, Settings, Tor};
use onionwatch_testnet::{
    shared_network, BackendKind, NetworkConfig, NetworkInfo, ServiceConfig, ServiceTorConfig,
};
use onionwatch_tor::control::{Auth, ControlAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The client tor's control password (Onionprobe can use it too).
pub const PASSWORD: &str = "onionwatch probe tests";
/// A real v3 address (the Tor Project's website) this network never saw.
pub const UNPUBLISHED: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";
/// The body marker of the healthy backend.
pub const HEALTHY_MARKER: &str = "onionwatch healthy marker";
/// The banner of the TCP backend.
pub const TCP_BANNER: &[u8] = b"SSH-2.0-onionwatch-test\r\n";
/// Validity left on the HTTPS backend's certificate.
pub const CERT_DAYS_LEFT: i64 = 2;

/// Our servers, in onion-service order.
#[derive(Debug, Clone, Copy)]
pub struct Backends {
    /// 200 with [`HEALTHY_MARKER`].
    pub healthy: SocketAddr,
    /// 500.
    pub error500: SocketAddr,
    /// 200 without the marker.
    pub mismatch: SocketAddr,
    /// HTTPS, self-signed, no SAN, expiring in [`CERT_DAYS_LEFT`] days.
    pub https: SocketAddr,
    /// A TCP banner.
    pub tcp: SocketAddr,
    /// Drops (closes unanswered) the next [`FLAKY_DROPS`] connections, then
    /// answers 200 with [`FLAKY_MARKER`].
    pub flaky: SocketAddr,
    /// HTTPS with a certificate for the SNI name, signed by [`test_ca`].
    pub ca_https: SocketAddr,
    /// Redirects by path ([`redirect_server`]).
    pub redirect: SocketAddr,
    /// Closes every connection at once, counting them in [`REFUSER_ACCEPTED`].
    pub refuser: SocketAddr,
    /// 200 until [`stop_backend`] closes its port.
    pub stoppable: SocketAddr,
}

/// Asks the stoppable backend to close its listening port; it answers once
/// the port is closed.
static STOP: OnceLock<tokio::sync::mpsc::UnboundedSender<tokio::sync::oneshot::Sender<()>>> =
    OnceLock::new();

/// Close the stoppable backend's port (connections to it are refused from
/// then on); returns once it is closed.
pub async fn stop_backend() {
    let _ = backends();
    let (tx, rx) = tokio::sync::oneshot::channel();
    STOP.get()
        .expect("the backends started")
        .send(tx)
        .expect("the stoppable backend runs");
    rx.await.expect("the stoppable backend closed its port");
}

/// Requests for `/loop/…` the redirecting backend answered.
pub static LOOP_REQUESTS: AtomicU32 = AtomicU32::new(0);

/// Held by the tests that kill or stop an onion-service tor of the shared
/// network, one at a time: a stopped tor slows the network's circuits for
/// the other's round (seen: a killed service's probe waiting out its
/// 60 s connect timeout while another test held `hs2` stopped).
pub static DISTURBING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Connections the refusing backend accepted (and closed).
pub static REFUSER_ACCEPTED: AtomicU32 = AtomicU32::new(0);
/// The body marker behind the redirects.
pub const REDIRECT_MARKER: &str = "redirect final marker";

/// Connections the flaky backend still closes without answering.
pub static FLAKY_DROPS: AtomicU32 = AtomicU32::new(0);
/// Connections the flaky backend accepted (dropped or answered).
pub static FLAKY_ACCEPTED: AtomicU32 = AtomicU32::new(0);
/// The body marker of the flaky backend.
pub const FLAKY_MARKER: &str = "flaky but up";

/// The test certificate authority behind [`Backends::ca_https`].
#[derive(Debug)]
pub struct TestCa {
    /// Its certificate, PEM (what `tls_ca_file` points to).
    pub pem: String,
    /// notAfter of every leaf it issues, POSIX seconds.
    pub leaf_not_after: i64,
}

static CA: OnceLock<TestCa> = OnceLock::new();

/// The test CA (the backends start with it).
pub fn test_ca() -> &'static TestCa {
    backends();
    CA.get().expect("set when the backends start")
}

/// Onion addresses by role.
#[derive(Debug, Clone)]
pub struct Onions {
    pub healthy: String,
    pub error500: String,
    pub mismatch: String,
    pub https: String,
    pub tcp: String,
    pub flaky: String,
    pub ca_https: String,
    pub redirect: String,
    pub refuser: String,
    /// Behind [`Backends::stoppable`].
    pub stoppable: String,
    /// The one onion service of `hs1`.
    pub killed_tor: String,
    /// The one onion service of `hs2`, which a test stops (SIGSTOP) and
    /// continues.
    pub stalled_tor: String,
}

async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) {
    read_head_text(s).await;
}

/// The request head read (up to 16 KiB, or what came within 30 s).
async fn read_head_text<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while buf.len() < 16 * 1024 && !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Redirects as an Onionspray site might: `/` → `/final` (relative to the
/// root), `/abs` → `http://HOST/final` (absolute, from the Host header),
/// `/rel/x` → `../final`, `/loop/N` → `/loop/N+1` forever, `/away` → a
/// clearnet site; `/final` answers 200 with [`REDIRECT_MARKER`].
async fn redirect_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let head = read_head_text(&mut s).await;
                let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                let host = head
                    .lines()
                    .find_map(|l| l.strip_prefix("host: ").or(l.strip_prefix("Host: ")))
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                let redirect = |status: &str, to: &str| {
                    format!("HTTP/1.1 {status}\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .into_bytes()
                };
                let answer = match path.as_str() {
                    "/" => redirect("302 Found", "/final"),
                    "/abs" => redirect("301 Moved Permanently", &format!("http://{host}/final")),
                    "/rel/x" => redirect("307 Temporary Redirect", "../final"),
                    "/away" => redirect("302 Found", "http://example.com/"),
                    "/final" => response("200 OK", REDIRECT_MARKER),
                    p if p.starts_with("/loop/") => {
                        LOOP_REQUESTS.fetch_add(1, Ordering::SeqCst);
                        let n: u32 = p["/loop/".len()..].parse().unwrap_or(0);
                        redirect("302 Found", &format!("/loop/{}", n + 1))
                    }
                    _ => response("404 Not Found", "no such page"),
                };
                let _ = s.write_all(&answer).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Accepts and closes at once: every TLS handshake through it fails.
async fn refusing_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok((s, _)) = l.accept().await {
                REFUSER_ACCEPTED.fetch_add(1, Ordering::SeqCst);
                drop(s);
            }
        }
    });
    addr
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn http_server(status: &'static str, body: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                read_head(&mut s).await;
                let _ = s.write_all(&response(status, body)).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

async fn stoppable_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, mut stop) = tokio::sync::mpsc::unbounded_channel();
    STOP.set(tx).expect("one stoppable backend");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                done = stop.recv() => {
                    drop(l);
                    if let Some(done) = done {
                        let _: Result<(), ()> = done.send(());
                    }
                    return;
                }
                accepted = l.accept() => {
                    let Ok((mut s, _)) = accepted else { continue };
                    tokio::spawn(async move {
                        read_head(&mut s).await;
                        let _ = s.write_all(&response("200 OK", "up until stopped")).await;
                        let _ = s.shutdown().await;
                    });
                }
            }
        }
    });
    addr
}

async fn https_server() -> SocketAddr {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "onionwatch self-signed test");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(CERT_DAYS_LEFT);
    let cert = params.self_signed(&key).unwrap();
    let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key_der)
    .unwrap();
    tls_server(config, "secure onionwatch page").await
}

async fn flaky_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            FLAKY_ACCEPTED.fetch_add(1, Ordering::SeqCst);
            let drop_it = FLAKY_DROPS
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if drop_it {
                drop(s);
                continue;
            }
            tokio::spawn(async move {
                read_head(&mut s).await;
                let _ = s.write_all(&response("200 OK", FLAKY_MARKER)).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// Issues (and caches) a leaf certificate for each SNI name, signed by the
/// test CA.
struct CaResolver {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    not_after: i64,
    cache: Mutex<HashMap<String, Arc<rustls::sign::CertifiedKey>>>,
}

impl std::fmt::Debug for CaResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaResolver").finish_non_exhaustive()
    }
}

impl CaResolver {
    fn issue(&self, name: &str) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let key = rcgen::KeyPair::generate().ok()?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).ok()?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name.to_owned());
        let not_after = time::OffsetDateTime::from_unix_timestamp(self.not_after).ok()?;
        params.not_before = not_after - time::Duration::days(60);
        params.not_after = not_after;
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).ok()?;
        let signing = rustls::crypto::ring::default_provider()
            .key_provider
            .load_private_key(rustls::pki_types::PrivateKeyDer::Pkcs8(
                key.serialize_der().into(),
            ))
            .ok()?;
        Some(Arc::new(rustls::sign::CertifiedKey::new(
            vec![cert.der().clone()],
            signing,
        )))
    }
}

impl rustls::server::ResolvesServerCert for CaResolver {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let name = hello.server_name()?.to_owned();
        let mut cache = self.cache.lock().unwrap();
        if let Some(k) = cache.get(&name) {
            return Some(k.clone());
        }
        let k = self.issue(&name)?;
        cache.insert(name, k.clone());
        Some(k)
    }
}

async fn ca_https_server() -> SocketAddr {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "onionwatch test CA");
    let now = time::OffsetDateTime::now_utc();
    ca.not_before = now - time::Duration::days(1);
    ca.not_after = now + time::Duration::days(365);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_not_after = now.unix_timestamp() + 30 * 86_400;
    let _ = CA.set(TestCa {
        pem: ca_cert.pem(),
        leaf_not_after,
    });
    let resolver = CaResolver {
        issuer: rcgen::Issuer::new(ca, ca_key),
        not_after: leaf_not_after,
        cache: Mutex::new(HashMap::new()),
    };
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(resolver));
    tls_server(config, "CA-signed onionwatch page").await
}

async fn tls_server(config: rustls::ServerConfig, body: &'static str) -> SocketAddr {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(Ok(mut tls)) =
                    tokio::time::timeout(Duration::from_secs(30), acceptor.accept(s)).await
                else {
                    return;
                };
                read_head(&mut tls).await;
                let _ = tls.write_all(&response("200 OK", body)).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

async fn tcp_server() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let _ = s.write_all(TCP_BANNER).await;
                let mut sink = [0u8; 256];
                let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut sink)).await;
            });
        }
    });
    addr
}

/// Start the servers once, on a runtime thread that lives as long as the
/// test binary (each `#[tokio::test]` has its own short-lived runtime).
pub fn backends() -> &'static Backends {
    static B: OnceLock<Backends> = OnceLock::new();
    B.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("test-backends".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let b = Backends {
                        healthy: http_server(
                            "200 OK",
                            "<html><title>onionwatch</title>onionwatch healthy marker</html>",
                        )
                        .await,
                        error500: http_server("500 Internal Server Error", "broken").await,
                        mismatch: http_server("200 OK", "<html>nothing to see here</html>").await,
                        https: https_server().await,
                        tcp: tcp_server().await,
                        flaky: flaky_server().await,
                        ca_https: ca_https_server().await,
                        redirect: redirect_server().await,
                        refuser: refusing_server().await,
                        stoppable: stoppable_server().await,
                    };
                    tx.send(b).unwrap();
                    std::future::pending::<()>().await;
                });
            })
            .unwrap();
        rx.recv_timeout(Duration::from_secs(60))
            .expect("backends started")
    })
}

/// One tor (`hs0`) hosting the ten onion services of [`Backends`] (the
/// healthy one with PoW defences), a second one (`hs1`, killed by a test)
/// and a third (`hs2`, stopped and continued by a test) hosting one onion
/// service each with the built-in backend, the client
/// accepting [`PASSWORD`] too.
pub fn net() -> &'static NetworkInfo {
    let b = *backends();
    shared_network(move || {
        let svc = |addr, pow| ServiceConfig {
            backend: BackendKind::Address(addr),
            pow_defenses: pow,
            ..ServiceConfig::default()
        };
        NetworkConfig {
            service_tors: vec![
                ServiceTorConfig {
                    services: vec![
                        svc(b.healthy, true),
                        svc(b.error500, false),
                        svc(b.mismatch, false),
                        svc(b.https, false),
                        svc(b.tcp, false),
                        svc(b.flaky, false),
                        svc(b.ca_https, false),
                        svc(b.redirect, false),
                        svc(b.refuser, false),
                        svc(b.stoppable, false),
                    ],
                    ..ServiceTorConfig::default()
                },
                ServiceTorConfig::default(),
                ServiceTorConfig::default(),
            ],
            client_password: Some(PASSWORD.into()),
            ready_timeout: Duration::from_secs(180),
            ..NetworkConfig::default()
        }
    })
}

/// The onion addresses by role.
pub fn onions() -> Onions {
    let o = &net().onions;
    Onions {
        healthy: o[0].address.clone(),
        error500: o[1].address.clone(),
        mismatch: o[2].address.clone(),
        https: o[3].address.clone(),
        tcp: o[4].address.clone(),
        flaky: o[5].address.clone(),
        ca_https: o[6].address.clone(),
        redirect: o[7].address.clone(),
        refuser: o[8].address.clone(),
        stoppable: o[9].address.clone(),
        killed_tor: o
            .iter()
            .find(|x| x.tor == "hs1")
            .expect("hs1 hosts an onion service")
            .address
            .clone(),
        stalled_tor: o
            .iter()
            .find(|x| x.tor == "hs2")
            .expect("hs2 hosts an onion service")
            .address
            .clone(),
    }
}

/// YAML endpoints for every case (Onionprobe syntax; `tcp` is ours).
pub fn endpoints_yaml(with_tcp: bool) -> String {
    let o = onions();
    let mut s = format!(
        r#"endpoints:
  healthy:
    address: {healthy}
    protocol: http
    port: 80
    paths:
      - path: /
        pattern: 'healthy marker'
        allowed_statuses: [200]
  status500:
    address: {e500}
    protocol: http
    port: 80
    paths:
      - path: /
        allowed_statuses: [200]
  mismatch:
    address: {mismatch}
    protocol: http
    port: 80
    paths:
      - path: /
        pattern: 'healthy marker'
        allowed_statuses: [200]
  selfsigned:
    address: {https}
    protocol: https
    port: 80
    tls_verify: false
    test_tls_connection: true
    paths:
      - path: /
        allowed_statuses: [200]
  unpublished:
    address: {UNPUBLISHED}
    protocol: http
    port: 80
    paths:
      - path: /
        allowed_statuses: [200]
"#,
        healthy = o.healthy,
        e500 = o.error500,
        mismatch = o.mismatch,
        https = o.https,
    );
    if with_tcp {
        s.push_str(&format!(
            "  ssh:\n    address: {}\n    protocol: tcp\n    port: 80\n",
            o.tcp
        ));
    }
    s
}

/// Options every test config shares: fast, deterministic, bounded.
pub const FAST: &str = "launch_tor: false\nshuffle: false\nrandomize: false\ninterval: 0\nsleep: 0\ndescriptor_max_retries: 2\ndescriptor_timeout: 60\nhttp_connect_timeout: 60\nhttp_read_timeout: 30\nhttp_connect_max_retries: 2\ntls_connect_max_retries: 0\n";

/// The network's client tor, through its control port and SOCKS port.
pub async fn client_tor() -> Tor {
    let info = net();
    Tor::connect(
        &ControlAddr::Tcp(info.client.control),
        Auth::Cookie {
            path: Some(info.client.cookie.clone()),
        },
        info.client.socks,
    )
    .await
    .unwrap()
}

/// A prober on the network's client tor.
pub async fn prober(yaml: &str) -> (Arc<Prober>, Vec<onionwatch_probe::Target>) {
    let (config, _) = Config::from_yaml(yaml, "test").unwrap();
    let targets = config.targets().unwrap();
    let p = Prober::new(
        Arc::new(client_tor().await),
        Arc::new(ProbeMetrics::new()),
        Settings::from_config(&config),
    );
    (p, targets)
}
