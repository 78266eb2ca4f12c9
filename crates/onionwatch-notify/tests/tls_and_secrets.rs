//! HTTPS receivers (trusted through `ca_file`, or refused), basic
//! authentication, and secrets kept out of logs.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use onionwatch_notify::Notifiers;
use onionwatch_test_support::{dead_addr, Recorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTPS receiver on 127.0.0.1 with a self-signed certificate: it
/// answers `200` and sends each request's head and body on the channel.
/// Returns its port and the certificate's PEM.
async fn https_receiver() -> (u16, String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let Ok(mut s) = acceptor.accept(tcp).await else {
                continue;
            };
            // Connection: close from the client: read until it has sent
            // its head and the body its Content-Length announces.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break;
                    }
                }
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            let _ = s.shutdown().await;
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        }
    });
    (port, cert.pem(), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_receiver_is_trusted_through_ca_file() {
    let (port, pem, mut rx) = https_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let n = Notifiers::start(vec![config(&format!(
        "type: webhook\nname: hook\nurl: https://127.0.0.1:{port}/hook\nca_file: {}\n",
        ca.display()
    ))])
    .unwrap();
    n.notify(group(
        "g",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    let req = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(req.starts_with("POST /hook HTTP/1.1\r\n"), "{req}");
    assert!(req.contains("\"groupKey\":\"g\""), "{req}");
    wait_counts(&n, "hook", (1, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_https_receiver_is_refused() {
    let (port, _, mut rx) = https_receiver().await;
    let n = Notifiers::start(vec![config(&format!(
        "type: webhook\nname: hook\nurl: https://127.0.0.1:{port}/hook\nmax_attempts: 1\n"
    ))])
    .unwrap();
    n.notify(group(
        "g",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    wait_counts(&n, "hook", (0, 1, 1));
    assert!(rx.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_authentication_from_the_url_or_the_config() {
    let rx = Recorder::start(0);
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "hunter2\n").unwrap();
    let n = Notifiers::start(vec![
        config(&format!(
            "type: webhook\nname: a\nurl: http://user:pa55@{}/a\n",
            rx.addr
        )),
        config(&format!(
            "type: webhook\nname: b\nurl: {}\nbasic_auth: {{username: ops, password: {{file: {}}}}}\n",
            rx.url("/b"),
            pw.display()
        )),
    ])
    .unwrap();
    n.notify(group(
        "g",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    let mut got: Vec<(String, String)> = (0..2)
        .map(|_| {
            let r = rx.next();
            (
                r.path.clone(),
                r.header("authorization").unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    // base64("user:pa55"), base64("ops:hunter2")
    assert_eq!(
        got,
        [
            ("/a".to_owned(), "Basic dXNlcjpwYTU1".to_owned()),
            ("/b".to_owned(), "Basic b3BzOmh1bnRlcjI=".to_owned()),
        ]
    );
}

#[test]
fn start_outside_a_runtime_is_an_error() {
    let e = Notifiers::start(vec![]).unwrap_err().to_string();
    assert!(e.contains("tokio runtime"), "{e}");
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A current-thread runtime runs the notifier tasks on this thread,
/// where the capturing subscriber is the default.
#[tokio::test]
async fn logs_name_urls_by_scheme_and_host_only() {
    let logs = Captured::default();
    let w = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || w.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let dead = dead_addr();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("t");
    std::fs::write(&token, "B34R3R").unwrap();
    let n = Notifiers::start(vec![config(&format!(
        "type: webhook\nname: hook\nurl: http://u:PA55W0RD@{}/hooks/T0K3N?key=K3Y\nbearer_token: {{file: {}}}\nheaders: {{X-Key: H34D3R}}\nmax_attempts: 2\nretry_initial: 1ms\n",
        dead.addr,
        token.display()
    ))])
    .unwrap();
    n.notify(group(
        "g",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    n.shutdown(Duration::from_secs(30)).await;
    assert_eq!(n.counts("hook"), Some((0, 2, 1)));
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains(&format!("target=http://{}", dead.addr)),
        "{text}"
    );
    assert!(text.contains("given up after 2 attempts"), "{text}");
    for secret in ["PA55W0RD", "T0K3N", "K3Y", "B34R3R", "H34D3R", "hooks"] {
        assert!(!text.contains(secret), "{secret} logged:\n{text}");
    }
}
