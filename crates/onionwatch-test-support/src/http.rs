//! Loopback HTTP for tests: ports, a fixed-body server, a blocking
//! HTTP/1.0 client and polling an endpoint.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::poll::wait_for;

/// Bound on the `*_until` helpers: generous, only reached when broken.
const UNTIL: Duration = Duration::from_secs(30);

/// A free loopback port (for a child process to bind).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` over HTTP/1.0: the whole response (head and body), empty on
/// any failure.
pub fn get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `GET path` until every needle is in the answer (30 s at most).
#[track_caller]
pub fn get_until(addr: SocketAddr, path: &str, needles: &[&str]) -> String {
    let mut last = String::new();
    wait_for(UNTIL, || {
        last = get(addr, path);
        needles
            .iter()
            .all(|n| last.contains(n))
            .then(|| last.clone())
    })
    .unwrap_or_else(|| panic!("timed out waiting for {needles:?} in {path}:\n{last}"))
}

/// `GET path` until its JSON body satisfies `done` (30 s at most); that body.
#[track_caller]
pub fn json_until(
    addr: SocketAddr,
    path: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = String::new();
    wait_for(UNTIL, || {
        last = get(addr, path);
        last.split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .filter(&done)
    })
    .unwrap_or_else(|| panic!("timed out waiting on {path}:\n{last}"))
}

/// The value of the first sample line starting with `prefix` in a
/// Prometheus exposition.
pub fn value(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A loopback HTTP/1.0 server answering every request with `200` and
/// `body` (a fake MetricsPort or stub_status), on a thread of its own.
pub fn serve(body: &'static str) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            // The whole head: closing with unread bytes would reset the
            // connection and lose the answer (`get` writes in pieces).
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 64 * 1024 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// A loopback address whose connections are refused while this lives.
#[derive(Debug)]
pub struct DeadAddr {
    /// The address.
    pub addr: SocketAddr,
    /// Bound but not listening (and without SO_REUSEADDR): it holds the
    /// port, so no other process can listen there, and refuses connections.
    _socket: tokio::net::TcpSocket,
}

/// A [`DeadAddr`] on 127.0.0.1.
pub fn dead_addr() -> DeadAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    DeadAddr {
        addr: socket.local_addr().unwrap(),
        _socket: socket,
    }
}

/// Read one response with a `Content-Length` body; EOF before its end is an
/// error. Its status; the body is read and dropped (a keep-alive
/// connection is ready for the next request).
pub async fn read_response(s: &mut tokio::net::TcpStream) -> std::io::Result<u16> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if tokio::io::AsyncReadExt::read(s, &mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
        if buf.len() > 16 * 1024 {
            return Err(std::io::Error::other("response head too long"));
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let bad = || std::io::Error::other(format!("not an HTTP response: {head:?}"));
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(bad)?;
    let mut body = vec![0u8; len];
    tokio::io::AsyncReadExt::read_exact(s, &mut body).await?;
    Ok(status)
}
