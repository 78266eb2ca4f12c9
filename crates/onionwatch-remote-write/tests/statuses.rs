//! What each answer of a receiver does, with a loopback HTTP server that
//! answers a script of statuses (Prometheus itself never sends 429 or
//! 503): 429 and 5xx are retried with backoff, the batch kept at the head
//! of the queue; other 4xx drop it; the request carries the protocol's
//! headers and the credentials.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onionwatch_metrics::{Collect, Family};
use onionwatch_remote_write::batch::decode_body;
use onionwatch_remote_write::{Options, RemoteWrite, RemoteWriteConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct One;

impl Collect for One {
    fn collect(&self, out: &mut Vec<Family>) {
        let mut g = Family::gauge("rw_status_test", "");
        g.push(&[("a", "b")], 1.0);
        out.push(g);
    }
}

#[derive(Default)]
struct Seen {
    /// (status answered, request head, body)
    requests: Vec<(u16, String, Vec<u8>)>,
    /// When each request arrived.
    at: Vec<Instant>,
}

/// Serve HTTP/1.1 on 127.0.0.1, answering `script` in order, then 200.
async fn scripted(script: Vec<u16>) -> (std::net::SocketAddr, Arc<Mutex<Seen>>) {
    scripted_with(script.into_iter().map(|s| (s, "")).collect()).await
}

/// [`scripted`], each status with extra header lines (`Name: value\r\n`).
async fn scripted_with(
    script: Vec<(u16, &'static str)>,
) -> (std::net::SocketAddr, Arc<Mutex<Seen>>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let script = Arc::new(Mutex::new(script.into_iter()));
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = l.accept().await else {
                continue;
            };
            let (seen, script) = (s.clone(), script.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: head, then Content-Length bytes.
                    let mut chunk = [0u8; 65536];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match c.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match c.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buf[head_end..head_end + len].to_vec();
                    buf.drain(..head_end + len);
                    let (status, extra) = script.lock().unwrap().next().unwrap_or((200, ""));
                    {
                        let mut s = seen.lock().unwrap();
                        s.requests.push((status, head, body));
                        s.at.push(Instant::now());
                    }
                    let reply =
                        format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: 4\r\n\r\nnope");
                    if c.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One receiver, one collection an hour (the first at once).
fn start(c: RemoteWriteConfig) -> RemoteWrite {
    RemoteWrite::start(
        &[c],
        Arc::new(One),
        Options {
            state_dir: None,
            default_interval: Duration::from_secs(3600),
        },
    )
    .unwrap()
}

fn config(addr: std::net::SocketAddr) -> RemoteWriteConfig {
    let mut c = RemoteWriteConfig::from_url(format!("http://{addr}/push?tenant=x"));
    c.interval_seconds = Some(3600.0);
    c
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_in_order() {
    let (addr, seen) = scripted(vec![429, 503, 500]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken\n").unwrap();
    let mut c = config(addr);
    c.bearer_token_file = Some(token);
    c.headers.insert("X-Scope-OrgID".into(), "probes".into());
    let rw = start(c);
    let stats = rw.stats()[0].1.clone();
    wait_until("the fourth attempt accepted", || {
        stats.sent.load(Relaxed) == 1
    })
    .await;
    assert_eq!(stats.retries.load(Relaxed), 3);
    assert_eq!(stats.failed.load(Relaxed), 0);
    {
        let seen = seen.lock().unwrap();
        let statuses: Vec<u16> = seen.requests.iter().map(|r| r.0).collect();
        assert_eq!(statuses, [429, 503, 500, 200]);
        // The same batch every time, with the protocol's headers.
        let bodies: Vec<&Vec<u8>> = seen.requests.iter().map(|r| &r.2).collect();
        assert!(bodies.windows(2).all(|w| w[0] == w[1]));
        let (_, head, body) = &seen.requests[0];
        let head = head.to_ascii_lowercase();
        for h in [
            "post /push?tenant=x http/1.1",
            "content-encoding: snappy",
            "content-type: application/x-protobuf",
            "x-prometheus-remote-write-version: 0.1.0",
            "user-agent: onionwatch/",
            "authorization: bearer t0ken",
            "x-scope-orgid: probes",
        ] {
            assert!(head.contains(h), "{h} missing in\n{head}");
        }
        let series = decode_body(body).unwrap();
        assert_eq!(
            series[0].labels,
            [
                ("__name__".to_string(), "rw_status_test".to_string()),
                ("a".to_string(), "b".to_string())
            ]
        );
    }
    rw.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn other_client_errors_drop_the_batch_and_the_queue_goes_on() {
    let (addr, seen) = scripted(vec![413, 400]).await;
    let rw = start(config(addr));
    let stats = rw.stats()[0].1.clone();
    wait_until("the first batch refused", || {
        stats.failed.load(Relaxed) == 1
    })
    .await;
    assert_eq!(stats.retries.load(Relaxed), 0);
    // stop() buffers one more collection: refused (400), then nothing left.
    rw.stop(Duration::from_secs(5)).await;
    assert_eq!(stats.failed.load(Relaxed), 2);
    assert_eq!(stats.sent.load(Relaxed), 0);
    assert_eq!(seen.lock().unwrap().requests.len(), 2);
}

#[tokio::test]
async fn a_receivers_retry_after_is_waited_for() {
    // Our backoff starts at 0.1 s: without Retry-After the second request
    // would follow at once.
    let (addr, seen) = scripted_with(vec![(503, "Retry-After: 2\r\n")]).await;
    let rw = start(config(addr));
    let stats = rw.stats()[0].1.clone();
    wait_until("the batch sent after the 503", || {
        stats.sent.load(Relaxed) > 0
    })
    .await;
    rw.stop(Duration::from_secs(1)).await;
    let s = seen.lock().unwrap();
    assert_eq!(s.requests[0].0, 503);
    assert_eq!(s.requests[1].0, 200);
    let waited = s.at[1] - s.at[0];
    assert!(waited >= Duration::from_secs(2), "retried after {waited:?}");
}
