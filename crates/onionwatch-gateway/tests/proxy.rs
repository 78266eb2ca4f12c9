//! The gateway in process, in front of an in-process echo upstream: header
//! handling, hostile input, keep-alive, streaming, upgrades, unix sockets,
//! limits, escalation, metrics, reload and shutdown.

mod common;

use common::{proxy_line, start, start_with, Client, Logs, WAIT};
use onionwatch_gateway::{EscalationResult, ListenAddr, RejectReason};
use onionwatch_test_support::{EchoAddr, EchoServer};
use tokio::io::AsyncWriteExt;
use tokio::time::timeout;

/// Run `f` with the bounded wait every test uses.
async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    timeout(WAIT, f)
        .await
        .expect("the test finished within its bound")
}

#[tokio::test]
async fn injects_the_circuit_id_and_removes_every_spoofed_spelling() {
    let env = start(|_| {}).await;
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(48)).await;
        let r = c
            .get(
                "/",
                "X-Onion-CircuitID: 999\r\nx-onion-circuitid: 1\r\nX-ONION-CIRCUITID: 2\r\n\
                 X_Onion_CircuitID: 3\r\nX-Onion-CircuitId: 4\r\nX-Other: kept\r\n",
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.echoed("x-onion-circuitid"), vec!["48"], "{}", r.text());
        assert!(r.echoed("x_onion_circuitid").is_empty(), "{}", r.text());
        assert_eq!(r.echoed("x-other"), vec!["kept"]);
        assert_eq!(r.echoed("host"), vec!["test.onion"]);
    })
    .await;
    let m = env.handle.metrics();
    assert_eq!(m.responses(2), 1);
    assert_eq!(m.unique_circuits(), 1);
}

#[tokio::test]
async fn a_connection_without_proxy_header_is_refused_and_logged_without_upstream_request() {
    let (logs, _guard) = Logs::capture();
    let env = start(|_| {}).await;
    bounded(async {
        let mut c = Client::tcp(&env.addr, None).await;
        c.stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(c.until_closed().await, b"", "closed without an answer");
    })
    .await;
    assert_eq!(env.echo.requests(), 0);
    let m = env.handle.metrics();
    assert_eq!(m.rejected(RejectReason::NoProxyHeader), 1);
    let text = logs.text();
    assert!(
        text.contains("refused connection") && text.contains("no PROXY header"),
        "{text}"
    );
    assert!(text.contains("HiddenServiceExportCircuitID"), "{text}");
}

#[tokio::test]
async fn garbage_headers_are_refused() {
    let env = start(|_| {}).await;
    bounded(async {
        for garbage in [
            &b"PROXY TCP6 not-an-address ::1 1 80\r\nGET / HTTP/1.1\r\n\r\n"[..],
            b"PROXY TCP6 ::1 ::1 1 80\nGET / HTTP/1.1\r\n\r\n",
            b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c",
            &[0xffu8; 3000][..],
        ] {
            let mut c = Client::tcp(&env.addr, None).await;
            // The gateway may close while we still write: ignore that error.
            let _ = c.stream.write_all(garbage).await;
            assert_eq!(c.until_closed().await, b"");
        }
    })
    .await;
    let m = env.handle.metrics();
    assert_eq!(m.rejected(RejectReason::BadProxyHeader), 2);
    assert_eq!(m.rejected(RejectReason::NoProxyHeader), 2);
    assert_eq!(env.echo.requests(), 0);
}

#[tokio::test]
async fn a_header_split_across_writes_is_read_whole() {
    let env = start(|_| {}).await;
    bounded(async {
        let ListenAddr::Tcp(a) = env.addr else {
            unreachable!()
        };
        let mut s = tokio::net::TcpStream::connect(a).await.unwrap();
        s.set_nodelay(true).unwrap();
        let line = proxy_line(0x1_0030);
        let bytes = line.as_bytes();
        for piece in [&bytes[..3], &bytes[3..20], &bytes[20..bytes.len() - 1]] {
            s.write_all(piece).await.unwrap();
            s.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        // The final LF arrives with the request.
        let mut rest = vec![b'\n'];
        rest.extend_from_slice(b"GET /split HTTP/1.1\r\nHost: x\r\n\r\n");
        s.write_all(&rest).await.unwrap();
        let mut c = Client::new(s);
        let r = c.response().await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.echoed("x-onion-circuitid"),
            vec![(0x1_0030u32).to_string()]
        );
        assert!(r.text().starts_with("GET /split"), "{}", r.text());
    })
    .await;
}

#[tokio::test]
async fn a_header_that_never_ends_is_cut_by_the_header_timeout() {
    let (logs, _guard) = Logs::capture();
    let env = start(|c| c.header_timeout_secs = 0.3).await;
    bounded(async {
        // Slowloris: a valid beginning, then silence.
        let mut slow = Client::tcp(&env.addr, None).await;
        slow.stream
            .write_all(b"PROXY TCP6 fc00:dead")
            .await
            .unwrap();
        assert_eq!(slow.until_closed().await, b"");
        // A signature followed by a flood: cut after 107 bytes, not buffered.
        let mut flood = Client::tcp(&env.addr, None).await;
        let mut data = b"PROXY ".to_vec();
        data.resize(1 << 20, b'a');
        let _ = flood.stream.write_all(&data).await;
        assert_eq!(flood.until_closed().await, b"");
    })
    .await;
    let m = env.handle.metrics();
    assert_eq!(m.rejected(RejectReason::HeaderTimeout), 1);
    assert_eq!(m.rejected(RejectReason::BadProxyHeader), 1);
    assert!(
        logs.text().contains("no complete PROXY header within"),
        "{}",
        logs.text()
    );
    // The gateway still serves.
    let r = bounded(async { Client::tcp(&env.addr, Some(5)).await.get("/", "").await }).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn slow_request_heads_and_idle_connections_are_closed_by_the_request_timeout() {
    let env = start(|c| c.request_header_timeout_secs = 0.3).await;
    bounded(async {
        // A request head that never ends, after a valid PROXY header.
        let mut slow = Client::tcp(&env.addr, Some(40)).await;
        slow.stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        let answer = slow.until_closed().await;
        // hyper may answer 408 before closing; it never forwards anything.
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
            "{answer:?}"
        );
        // An idle keep-alive connection is closed too.
        let mut idle = Client::tcp(&env.addr, Some(41)).await;
        assert_eq!(idle.get("/", "").await.status, 200);
        assert_eq!(idle.until_closed().await, b"");
    })
    .await;
    assert_eq!(env.echo.requests(), 1);
}

#[tokio::test]
async fn keep_alive_carries_several_requests_on_one_connection_each_side() {
    let env = start(|_| {}).await;
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(77)).await;
        for i in 0..5 {
            let r = c.get(&format!("/r{i}"), "").await;
            assert_eq!(r.status, 200);
            assert!(r.text().starts_with(&format!("GET /r{i}")));
            assert_eq!(r.echoed("x-onion-circuitid"), vec!["77"]);
        }
    })
    .await;
    let m = env.handle.metrics();
    assert_eq!(
        m.connections_total
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        m.upstream_connections_total
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(m.responses(2), 5);
    assert_eq!(m.upstream_latency.count(), 5);
}

#[tokio::test]
async fn requests_with_duplicate_or_missing_host_get_400_and_are_not_forwarded() {
    let env = start(|_| {}).await;
    bounded(async {
        for (request, why) in [
            (
                "GET / HTTP/1.1\r\nHost: a.onion\r\nHost: b.onion\r\n\r\n",
                "more than one Host",
            ),
            (
                "GET / HTTP/1.1\r\nHost: a.onion\r\nX-A: 1\r\nhost: a.onion\r\n\r\n",
                "more than one Host",
            ),
            ("GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", "without a Host"),
            ("GET http://a.onion/ HTTP/1.1\r\n\r\n", "without a Host"),
            ("GET / HTTP/1.0\r\n\r\n", "HTTP/1.0 request without a Host"),
            (
                "GET / HTTP/1.1\r\nHost: user@a.onion\r\n\r\n",
                "not a valid",
            ),
        ] {
            let mut c = Client::tcp(&env.addr, Some(14)).await;
            c.stream.write_all(request.as_bytes()).await.unwrap();
            let r = c.response().await.expect("an answer");
            assert_eq!(r.status, 400, "{request:?}: {}", r.text());
            assert!(r.text().contains(why), "{request:?}: {}", r.text());
            assert_eq!(c.until_closed().await, b"", "closed after the 400");
        }
        // One valid Host, in either version, is forwarded as before.
        let mut c = Client::tcp(&env.addr, Some(14)).await;
        c.stream
            .write_all(b"GET /ten HTTP/1.0\r\nHost: a.onion\r\n\r\n")
            .await
            .unwrap();
        let r = c.response().await.unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.echoed("host"), vec!["a.onion"]);
    })
    .await;
    assert_eq!(
        env.echo.requests(),
        1,
        "no invalid request reached the upstream"
    );
    assert_eq!(env.handle.metrics().responses(4), 6);
}

#[tokio::test]
async fn connections_from_untrusted_sources_are_refused_before_their_proxy_header() {
    let (logs, _guard) = Logs::capture();
    // Tests may only bind loopback: trust 127.0.0.2 alone and connect from
    // 127.0.0.1, as an attacker reaching a public listener would.
    let env = start(|c| {
        c.trusted_proxy_sources = vec!["127.0.0.2/32".parse().unwrap()];
        c.limits.rate = 0.01;
        c.limits.burst = 1;
        c.escalation.enabled = true;
        c.escalation.dry_run = true;
        c.escalation.rejections = 1;
    })
    .await;
    let mut events = env.handle.escalations();
    bounded(async {
        for _ in 0..3 {
            // A forged header naming circuit 5, then requests that would be
            // refused (and escalated) if the header were believed.
            let mut c = Client::tcp(&env.addr, Some(5)).await;
            let _ = c
                .stream
                .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            assert_eq!(c.until_closed().await, b"", "closed without an answer");
        }
    })
    .await;
    let m = env.handle.metrics();
    assert_eq!(m.rejected(RejectReason::UntrustedSource), 3);
    assert_eq!(m.rejected(RejectReason::RateLimited), 0);
    assert_eq!(m.unique_circuits(), 0, "the PROXY header was never read");
    assert_eq!(env.echo.requests(), 0);
    assert!(events.try_recv().is_err(), "nothing escalated");
    assert!(
        logs.text().contains("not in trusted_proxy_sources"),
        "{}",
        logs.text()
    );
    // Listed, the same source is served (the list applies on reload).
    let mut config = (*env.handle.config()).clone();
    config.trusted_proxy_sources = vec![
        "127.0.0.2/32".parse().unwrap(),
        "127.0.0.1".parse().unwrap(),
    ];
    env.handle.reload(config).unwrap();
    let r = bounded(async { Client::tcp(&env.addr, Some(5)).await.get("/", "").await }).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("x-onion-circuitid"), vec!["5"]);
}

#[tokio::test]
async fn request_and_response_bodies_stream_without_buffering() {
    let env = start(|_| {}).await;
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(3)).await;
        c.stream
            .write_all(b"POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        // Each chunk comes back before the next one is sent: nothing waits
        // for the whole body.
        for (i, part) in ["first", "second", "third"].iter().enumerate() {
            c.stream
                .write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
                .await
                .unwrap();
            if i == 0 {
                let head = c.response_head().await;
                assert_eq!(head, 200);
            }
            assert_eq!(c.chunk().await.unwrap(), part.as_bytes());
        }
        c.stream.write_all(b"0\r\n\r\n").await.unwrap();
        assert_eq!(c.chunk().await.unwrap(), b"");
        // The connection is still usable.
        assert_eq!(c.get("/", "").await.status, 200);
    })
    .await;
}

#[tokio::test]
async fn an_upgrade_tunnels_raw_bytes_both_ways() {
    let env = start(|_| {}).await;
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(12)).await;
        c.stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        let r = c.response().await.unwrap();
        assert_eq!(r.status, 101);
        assert_eq!(r.header("upgrade"), Some("websocket"));
        for msg in [
            &b"hello"[..],
            &[0u8, 1, 2, 0xff, b'\r', b'\n'],
            &[0x81; 5000],
        ] {
            c.stream.write_all(msg).await.unwrap();
            assert_eq!(c.raw(msg.len()).await, msg);
        }
    })
    .await;
    let m = env.handle.metrics();
    assert_eq!(
        m.upgrades_total.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(m.responses(1), 1);
}

#[tokio::test]
async fn unix_sockets_work_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let up = EchoAddr::Unix(dir.path().join("upstream.sock"));
    let gw_path = dir.path().join("gateway.sock");
    let echo = EchoServer::start(&up, false).await.unwrap();
    let gw = gw_path.clone();
    let env = start_with(echo, move |c| c.listen = ListenAddr::Unix(gw)).await;
    assert_eq!(env.addr, ListenAddr::Unix(gw_path.clone()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&gw_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    bounded(async {
        let mut s = tokio::net::UnixStream::connect(&gw_path).await.unwrap();
        s.write_all(proxy_line(21).as_bytes()).await.unwrap();
        let mut c = Client::new(s);
        let r = c.get("/unix", "").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.echoed("x-onion-circuitid"), vec!["21"]);
        drop(c);
        env.handle.shutdown();
        env.run.await.unwrap().unwrap();
    })
    .await;
    assert!(!gw_path.exists(), "the socket file is removed at shutdown");
}

#[tokio::test]
async fn a_fast_circuit_gets_429_with_retry_after_while_another_is_served() {
    let env = start(|c| {
        c.limits.rate = 0.01;
        c.limits.burst = 2;
    })
    .await;
    bounded(async {
        let mut a = Client::tcp(&env.addr, Some(100)).await;
        assert_eq!(a.get("/", "").await.status, 200);
        assert_eq!(a.get("/", "").await.status, 200);
        let r = a.get("/", "").await;
        assert_eq!(r.status, 429, "{}", r.text());
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!(retry >= 1, "{retry}");
        // The 429 keeps the connection open.
        assert_eq!(a.get("/", "").await.status, 429);

        let mut b = Client::tcp(&env.addr, Some(101)).await;
        let r = b.get("/", "").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.echoed("x-onion-circuitid"), vec!["101"]);
        // A new connection of the limited circuit is still limited.
        let mut a2 = Client::tcp(&env.addr, Some(100)).await;
        assert_eq!(a2.get("/", "").await.status, 429);
    })
    .await;
    let m = env.handle.metrics();
    assert_eq!(m.rejected(RejectReason::RateLimited), 3);
    assert_eq!(m.responses(4), 3);
    assert_eq!(env.echo.requests(), 3);
    let mut families = Vec::new();
    onionwatch_metrics::Collect::collect(&*m, &mut families);
    let text = onionwatch_metrics::render(&families, onionwatch_metrics::Format::Prometheus);
    assert!(text.contains("onionwatch_gateway_rejected_total{reason=\"rate_limited\"} 3"));
    assert!(
        !text.contains("\"100\"") && !text.contains("\"101\""),
        "no circuit ids as labels"
    );
}

#[tokio::test]
async fn connections_per_circuit_are_capped() {
    let env = start(|c| c.limits.max_connections_per_circuit = 2).await;
    let open = bounded(async {
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut c = Client::tcp(&env.addr, Some(7)).await;
            assert_eq!(c.get("/", "").await.status, 200);
            held.push(c);
        }
        let mut third = Client::tcp(&env.addr, Some(7)).await;
        let r = third.get("/", "").await;
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(third.until_closed().await, b"");
        // Another circuit is not affected.
        let mut other = Client::tcp(&env.addr, Some(8)).await;
        assert_eq!(other.get("/", "").await.status, 200);
        // Both held connections still work.
        for c in &mut held {
            assert_eq!(c.get("/", "").await.status, 200);
        }
        // Still open while the gauge is read: connections are served on
        // worker threads, which would otherwise see them close meanwhile.
        (held, other)
    })
    .await;
    let m = env.handle.metrics();
    assert_eq!(m.rejected(RejectReason::TooManyConnections), 1);
    assert_eq!(
        m.active_circuits.load(std::sync::atomic::Ordering::Relaxed),
        2
    );
    drop(open);
}

#[tokio::test]
async fn requests_in_flight_per_circuit_are_capped() {
    let env = start(|c| c.limits.max_requests_per_circuit = 1).await;
    bounded(async {
        let mut slow = Client::tcp(&env.addr, Some(9)).await;
        slow.stream
            .write_all(b"POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            .await
            .unwrap();
        assert_eq!(slow.response_head().await, 200);
        let mut second = Client::tcp(&env.addr, Some(9)).await;
        let r = second.get("/", "").await;
        assert_eq!(r.status, 429);
        assert!(r.text().contains("in flight"), "{}", r.text());
        slow.stream.write_all(b"0\r\n\r\n").await.unwrap();
        assert_eq!(slow.chunk().await.unwrap(), b"hello");
        assert_eq!(slow.chunk().await.unwrap(), b"");
        // The body is done, so the slot is free again.
        assert_eq!(second.get("/", "").await.status, 200);
    })
    .await;
    assert_eq!(
        env.handle.metrics().rejected(RejectReason::TooManyRequests),
        1
    );
}

#[tokio::test]
async fn the_proxy_header_can_be_forwarded_upstream() {
    let echo = EchoServer::start(&EchoAddr::loopback(), true)
        .await
        .unwrap();
    let env = start_with(echo, |c| c.send_proxy_header = true).await;
    let r = bounded(async { Client::tcp(&env.addr, Some(48)).await.get("/", "").await }).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.echoed("proxy"),
        vec!["PROXY TCP6 fc00:dead:beef:4dad::30 ::1 48 80"]
    );
    assert_eq!(r.echoed("x-onion-circuitid"), vec!["48"]);
}

#[tokio::test]
async fn optional_mode_serves_plain_http_without_a_circuit_id() {
    let env = start(|c| c.proxy_protocol = onionwatch_gateway::ProxyProtocol::Optional).await;
    bounded(async {
        let mut plain = Client::tcp(&env.addr, None).await;
        let r = plain.get("/", "X-Onion-CircuitID: 5\r\n").await;
        assert_eq!(r.status, 200);
        assert!(r.echoed("x-onion-circuitid").is_empty(), "{}", r.text());
        let mut with = Client::tcp(&env.addr, Some(6)).await;
        assert_eq!(
            with.get("/", "").await.echoed("x-onion-circuitid"),
            vec!["6"]
        );
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_upstream_gives_502() {
    // A port that was free a moment ago: nothing listens there.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let env = start(|c| c.upstream = onionwatch_gateway::UpstreamAddr::Tcp(free.to_string())).await;
    let r = bounded(async { Client::tcp(&env.addr, Some(1)).await.get("/", "").await }).await;
    assert_eq!(r.status, 502);
    assert!(
        !r.text().contains(&free.to_string()),
        "no upstream address leaks"
    );
    let m = env.handle.metrics();
    assert_eq!(
        m.upstream_errors_total
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(m.responses(5), 1);
}

/// An upstream that answers `GET /` at once and never answers `/hang`.
async fn hanging_upstream() -> std::net::SocketAddr {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head: Vec<u8> = buf.drain(..end + 4).collect();
                        if head.starts_with(b"GET /hang ") {
                            // Hold the connection open, answer nothing.
                            std::future::pending::<()>().await;
                        }
                        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(ok).await.is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

/// A raw upstream: `/endless` answers with a chunked body that never ends
/// and reports on `cut` when the gateway stops taking it; any other request
/// gets `ok` once its whole `Content-Length` body has arrived.
async fn slow_test_upstream() -> (std::net::SocketAddr, tokio::sync::mpsc::Receiver<()>) {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (cut_tx, cut) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let cut_tx = cut_tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let end = loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                if head.starts_with("get /endless ") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                        .await;
                    let mut piece = format!("{:x}\r\n", 1 << 16).into_bytes();
                    piece.extend_from_slice(&[b'x'; 1 << 16]);
                    piece.extend_from_slice(b"\r\n");
                    while s.write_all(&piece).await.is_ok() {}
                    let _ = cut_tx.send(()).await;
                    return;
                }
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while buf.len() < end + len {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            let _ = cut_tx.send(()).await;
                            return;
                        }
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
                // Keep the connection until the gateway closes it.
                while matches!(s.read(&mut chunk).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, cut)
}

#[tokio::test]
async fn a_stalled_request_body_is_cut_by_the_body_timeout() {
    let (up, mut cut) = slow_test_upstream().await;
    let env = start(|c| {
        c.upstream = onionwatch_gateway::UpstreamAddr::Tcp(up.to_string());
        c.body_timeout_secs = 0.3;
    })
    .await;
    bounded(async {
        // A complete body is forwarded and answered.
        let mut c = Client::tcp(&env.addr, Some(2)).await;
        c.stream
            .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nfull")
            .await
            .unwrap();
        assert_eq!(c.response().await.unwrap().status, 200);
        // 10 of 100 bytes, then silence: the upstream sees the body end,
        // the client gets 408 and the connection closes.
        let mut slow = Client::tcp(&env.addr, Some(3)).await;
        slow.stream
            .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        let r = slow.response().await.expect("an answer");
        assert_eq!(r.status, 408, "{}", r.text());
        assert_eq!(slow.until_closed().await, b"");
        cut.recv().await.unwrap();
    })
    .await;
    assert_eq!(env.handle.metrics().rejected(RejectReason::BodyTimeout), 1);

    // A body already being answered (streamed back) is cut too.
    let env = start(|c| c.body_timeout_secs = 0.3).await;
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(4)).await;
        c.stream
            .write_all(b"POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await
            .unwrap();
        assert_eq!(c.response_head().await, 200);
        assert_eq!(c.chunk().await.unwrap(), b"first");
        // Nothing more: the gateway closes the connection without the
        // final chunk.
        assert_eq!(c.until_closed().await, b"");
    })
    .await;
    assert_eq!(env.handle.metrics().rejected(RejectReason::BodyTimeout), 1);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_by_the_send_timeout() {
    let (up, mut cut) = slow_test_upstream().await;
    let env = start(|c| {
        c.upstream = onionwatch_gateway::UpstreamAddr::Tcp(up.to_string());
        c.send_timeout_secs = 0.3;
    })
    .await;
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(8)).await;
        c.stream
            .write_all(b"GET /endless HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(c.response_head().await, 200);
        // Read nothing more: once every buffer is full the gateway waits on
        // us, gives up, and drops the upstream response.
        cut.recv().await.unwrap();
        // What was buffered, then the end.
        c.until_closed().await;
    })
    .await;
    assert_eq!(env.handle.metrics().rejected(RejectReason::SendTimeout), 1);
}

#[tokio::test]
async fn an_oversized_request_head_gets_431_and_is_not_forwarded() {
    let env = start(|_| {}).await;
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(10)).await;
        let fits = format!("X-Big: {}\r\n", "a".repeat(40_000));
        assert_eq!(c.get("/", &fits).await.status, 200);
        let mut c = Client::tcp(&env.addr, Some(11)).await;
        let huge = format!("X-Big: {}\r\n", "a".repeat(100_000));
        let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{huge}\r\n");
        // The gateway may close while we still write.
        let _ = c.stream.write_all(req.as_bytes()).await;
        let answer = c.until_closed().await;
        assert!(
            answer.starts_with(b"HTTP/1.1 431"),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    })
    .await;
    assert_eq!(env.echo.requests(), 1);
}

#[tokio::test]
async fn a_connection_over_the_circuit_cap_cannot_hold_its_slot() {
    let env = start(|c| {
        c.limits.max_connections_per_circuit = 1;
        c.header_timeout_secs = 0.3;
    })
    .await;
    bounded(async {
        let mut held = Client::tcp(&env.addr, Some(12)).await;
        assert_eq!(held.get("/", "").await.status, 200);
        // Refused, and silent: closed after header_timeout_secs, not after
        // request_header_timeout_secs (30 s, past the test's bound).
        let mut silent = Client::tcp(&env.addr, Some(12)).await;
        let answer = silent.until_closed().await;
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
            "{answer:?}"
        );
        assert_eq!(held.get("/", "").await.status, 200);
    })
    .await;
}

/// One slow connection of an attacking circuit: a streamed upload that
/// never ends; with `unread`, a large first part whose echo it never reads.
/// `Some(client)` while it holds a slot, `None` when refused with 429.
async fn slow_connection(
    addr: &ListenAddr,
    circuit: u32,
    unread: bool,
) -> Option<Client<tokio::net::TcpStream>> {
    let mut c = Client::tcp(addr, Some(circuit)).await;
    let part = if unread { 256 * 1024 } else { 5 };
    let mut req =
        b"POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    req.extend_from_slice(format!("{part:x}\r\n").as_bytes());
    req.resize(req.len() + part, b's');
    req.extend_from_slice(b"\r\n");
    c.stream.write_all(&req).await.unwrap();
    match c.response_head().await {
        200 => Some(c),
        429 => None,
        other => panic!("unexpected status {other}"),
    }
}

#[tokio::test]
async fn five_slow_circuits_cannot_delay_a_sixth() {
    // The defaults, except a total small enough to fill in a test: every
    // connection the five attackers could hold, plus one.
    let cap = onionwatch_gateway::Limits::default().max_connections_per_circuit;
    assert!(cap > 0, "connections per circuit are capped by default");
    let total = 5 * cap as usize + 1;
    let env = start(|c| c.max_connections = total).await;
    let held = bounded(async {
        let mut held = Vec::new();
        for circuit in 1..=5u32 {
            // Each takes every connection it can (at most all of them).
            let mut refused = false;
            for i in 0..total {
                // Only admitted ones send a large part: a refused one is
                // closed after its 429, and unread data there would reset it.
                let unread = i % 2 == 1 && i < cap as usize;
                match slow_connection(&env.addr, circuit, unread).await {
                    Some(c) => held.push(c),
                    None => {
                        refused = true;
                        break;
                    }
                }
            }
            assert!(refused, "circuit {circuit} was refused at its cap");
        }
        held
    })
    .await;
    assert_eq!(held.len(), 5 * cap as usize);
    // The sixth circuit is answered at once, the five still stalled.
    let r = bounded(async { Client::tcp(&env.addr, Some(6)).await.get("/", "").await }).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echoed("x-onion-circuitid"), vec!["6"]);
    let m = env.handle.metrics();
    assert_eq!(m.rejected(RejectReason::TooManyConnections), 5);
    assert_eq!(m.rejected(RejectReason::BodyTimeout), 0);
    assert_eq!(m.rejected(RejectReason::SendTimeout), 0);
    // Every stalled connection was still open and forwarding: its next
    // part comes back after what it had left unread.
    bounded(async {
        for (i, mut c) in held.into_iter().enumerate() {
            c.stream.write_all(b"3\r\nend\r\n0\r\n\r\n").await.unwrap();
            let mut echoed = Vec::new();
            loop {
                let chunk = c.chunk().await.expect("still open");
                if chunk.is_empty() {
                    break;
                }
                echoed.extend_from_slice(&chunk);
            }
            let first = if i % 2 == 1 { 256 * 1024 } else { 5 };
            assert_eq!(echoed.len(), first + 3);
            assert!(echoed.ends_with(b"end"));
        }
    })
    .await;
}

#[tokio::test]
async fn an_upstream_that_does_not_answer_in_time_gives_504() {
    let up = hanging_upstream().await;
    let env = start(|c| {
        c.upstream = onionwatch_gateway::UpstreamAddr::Tcp(up.to_string());
        c.upstream_timeout_secs = 0.5;
    })
    .await;
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(1)).await;
        // Answered requests first: each moves the deadline on, and the
        // timeout still counts from the start of the request that hangs.
        for _ in 0..3 {
            assert_eq!(c.get("/", "").await.status, 200);
        }
        let started = std::time::Instant::now();
        let r = c.get("/hang", "").await;
        assert_eq!(r.status, 504, "{}", r.text());
        assert!(started.elapsed() >= std::time::Duration::from_millis(500));
        // The connection to the client stays usable; a new upstream one serves it.
        assert_eq!(c.get("/", "").await.status, 200);
    })
    .await;
    let m = env.handle.metrics();
    assert_eq!(
        m.upstream_errors_total
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drains_the_request_in_flight() {
    let env = start(|_| {}).await;
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(31)).await;
        c.stream
            .write_all(b"POST /stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhalf\r\n")
            .await
            .unwrap();
        assert_eq!(c.response_head().await, 200);
        env.handle.shutdown();
        // The listener goes away; the request in flight still completes.
        let ListenAddr::Tcp(a) = env.addr else { unreachable!() };
        loop {
            match tokio::net::TcpStream::connect(a).await {
                Err(_) => break,
                Ok(s) => {
                    // Accepted by the kernel before the close: it must not
                    // be served. Wait for the listener to go.
                    drop(s);
                    tokio::task::yield_now().await;
                }
            }
        }
        c.stream.write_all(b"4\r\ndone\r\n0\r\n\r\n").await.unwrap();
        assert_eq!(c.chunk().await.unwrap(), b"half");
        assert_eq!(c.chunk().await.unwrap(), b"done");
        assert_eq!(c.chunk().await.unwrap(), b"");
        // After its response, the connection is closed, and run() returns.
        assert_eq!(c.until_closed().await, b"");
    })
    .await;
    bounded(env.run).await.unwrap().unwrap();
}

#[tokio::test]
async fn reload_applies_new_settings_and_refuses_a_new_listen_address() {
    let env = start(|_| {}).await;
    let mut config = (*env.handle.config()).clone();
    config.header_name = "X-Circuit".into();
    config.limits.rate = 0.01;
    config.limits.burst = 1;
    env.handle.reload(config.clone()).unwrap();
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(55)).await;
        let r = c.get("/", "X-Circuit: 1\r\nX-Onion-CircuitID: 2\r\n").await;
        assert_eq!(r.echoed("x-circuit"), vec!["55"], "{}", r.text());
        // The old name is no longer ours: it passes through.
        assert_eq!(r.echoed("x-onion-circuitid"), vec!["2"]);
        assert_eq!(c.get("/", "").await.status, 429);
    })
    .await;
    config.listen = "127.0.0.1:1".parse().unwrap();
    let e = env.handle.reload(config.clone()).unwrap_err();
    assert!(e.to_string().contains("restart"), "{e}");
    config.listen = env.handle.config().listen.clone();
    config.header_name = "bad name".into();
    let e = env.handle.reload(config).unwrap_err();
    assert!(e.to_string().contains("header_name"), "{e}");
    assert_eq!(env.handle.config().header_name, "X-Circuit");
}

#[tokio::test]
async fn sustained_abuse_escalates_once_in_dry_run_and_fails_cleanly_without_tor() {
    let (logs, _guard) = Logs::capture();
    let env = start(|c| {
        c.limits.rate = 0.01;
        c.limits.burst = 1;
        c.escalation.enabled = true;
        c.escalation.dry_run = true;
        c.escalation.rejections = 3;
    })
    .await;
    let mut events = env.handle.escalations();
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(66)).await;
        assert_eq!(c.get("/", "").await.status, 200);
        for _ in 0..5 {
            assert_eq!(c.get("/", "").await.status, 429);
        }
        let e = events.recv().await.unwrap();
        assert_eq!((e.circuit, e.result), (66, EscalationResult::DryRun));
    })
    .await;
    assert!(
        logs.text().contains("would close abusive circuit"),
        "{}",
        logs.text()
    );
    assert!(
        logs.text().contains("3 requests refused (rate_limited)"),
        "{}",
        logs.text()
    );

    // Now for real, against a control port where nothing listens.
    let mut config = (*env.handle.config()).clone();
    config.escalation.dry_run = false;
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.escalation.control_port = Some(onionwatch_tor::control::ControlAddr::Tcp(free));
    env.handle.reload(config).unwrap();
    bounded(async {
        let mut c = Client::tcp(&env.addr, Some(67)).await;
        assert_eq!(c.get("/", "").await.status, 200);
        for _ in 0..3 {
            assert_eq!(c.get("/", "").await.status, 429);
        }
        let e = events.recv().await.unwrap();
        assert_eq!((e.circuit, e.result), (67, EscalationResult::Failed));
    })
    .await;
    assert!(
        logs.text().contains("cannot connect to tor's control port"),
        "{}",
        logs.text()
    );
    let m = env.handle.metrics();
    assert_eq!(m.escalations(EscalationResult::DryRun), 1);
    assert_eq!(m.escalations(EscalationResult::Failed), 1);
}
