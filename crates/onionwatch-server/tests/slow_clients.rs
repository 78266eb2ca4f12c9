//! Slow clients against the endpoint: one that never finishes its request
//! head is disconnected, more of them than the connection cap leave
//! `/metrics` answering (the oldest are closed to make room), and so does
//! one that never reads its response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use onionwatch_metrics::{Collect, Family};
use onionwatch_server::{router, start, ConnectionLimits, EndpointConfig, Registry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Up;
impl Collect for Up {
    fn collect(&self, out: &mut Vec<Family>) {
        let mut f = Family::gauge("onionwatch_slow_test_up", "Test series.");
        f.push(&[], 1.0);
        out.push(f);
    }
}

/// Bounds a wait that the server must end; reaching it means the server
/// kept a connection it should have closed (a hang, not a speed check).
const HANG: Duration = Duration::from_secs(60);

async fn endpoint(connections: ConnectionLimits) -> onionwatch_server::RunningServer {
    let registry = Arc::new(Registry::default());
    registry.register(Arc::new(Up));
    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        connections,
        ..EndpointConfig::default()
    };
    start(&config, router(registry)).await.unwrap()
}

/// A connection that has sent the start of a request head and no end.
async fn slow_client(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: a")
        .await
        .unwrap();
    s
}

/// Read until the server closes `s` (EOF or reset); what it sent.
async fn until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(HANG, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server kept the connection open");
    out
}

async fn get_metrics(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    String::from_utf8(until_closed(&mut s).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let server = endpoint(ConnectionLimits {
        header_timeout_secs: 0.5,
        ..ConnectionLimits::default()
    })
    .await;
    let mut s = slow_client(server.local_addr()).await;
    // Keep trickling a byte now and then, as a slowloris client does.
    let (mut rd, mut wr) = s.split();
    let trickle = async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(b"a").await.is_err() {
                return;
            }
        }
    };
    let closed = tokio::time::timeout(HANG, async {
        tokio::select! {
            _ = trickle => {}
            _ = async {
                let mut buf = [0u8; 1024];
                while let Ok(n) = rd.read(&mut buf).await {
                    if n == 0 { break; }
                }
            } => {}
        }
    })
    .await;
    assert!(closed.is_ok(), "the slow client was never disconnected");
    // The endpoint itself is fine.
    assert!(get_metrics(server.local_addr())
        .await
        .contains("onionwatch_slow_test_up 1"));
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_slow_clients_than_the_cap_leave_metrics_answering() {
    const CAP: usize = 4;
    const SLOW: usize = 20;
    // A header timeout far beyond the test: only the cap can free slots.
    let server = endpoint(ConnectionLimits {
        max_connections: CAP,
        header_timeout_secs: 3600.0,
        ..ConnectionLimits::default()
    })
    .await;
    let addr = server.local_addr();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        slow.push(slow_client(addr).await);
    }
    let text = get_metrics(addr).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("onionwatch_slow_test_up 1"), "{text}");
    // Each connection past the cap closed the oldest idle one: all but the
    // CAP - 1 newest slow clients (the GET took the last slot).
    for s in &mut slow[..SLOW - (CAP - 1)] {
        until_closed(s).await;
    }
    // The newest is still open and served once it finishes its head.
    let newest = slow.last_mut().unwrap();
    newest
        .write_all(b"\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(until_closed(newest).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_its_response_does_not_hold_its_slot() {
    use axum::routing::get;
    // One slot, taken by a client that stops reading a big response. The
    // response is handed to hyper whole, so the connection counts as idle
    // (only its write-out is left) and the next client evicts it.
    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        connections: ConnectionLimits {
            max_connections: 1,
            header_timeout_secs: 3600.0,
            ..ConnectionLimits::default()
        },
        ..EndpointConfig::default()
    };
    // Far more than the loopback socket buffers hold.
    let app = axum::Router::new()
        .route("/big", get(|| async { vec![b'x'; 64 << 20] }))
        .route("/small", get(|| async { "small" }));
    let server = start(&config, app).await.unwrap();
    let addr = server.local_addr();
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    // Its response has started, and then it stops reading.
    let mut head = [0u8; 12];
    stalled.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let mut next = TcpStream::connect(addr).await.unwrap();
    next.write_all(b"GET /small HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = String::from_utf8(until_closed(&mut next).await).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("small"),
        "{answer}"
    );
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}
