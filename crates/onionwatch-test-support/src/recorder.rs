//! A loopback HTTP receiver that records every request (webhook, ntfy
//! and other push targets), and can play a receiver that is down.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// One request a [`Recorder`] got.
#[derive(Debug, Clone)]
pub struct Received {
    /// `POST`, `GET`, …
    pub method: String,
    /// Path and query of the request line.
    pub path: String,
    /// Headers as received (names lower-cased).
    pub headers: Vec<(String, String)>,
    /// The body (by `Content-Length`).
    pub body: Vec<u8>,
}

impl Received {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics when it is not).
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// A loopback HTTP/1.x server on a thread of its own: it records each
/// request and answers `503` to the first `fail_first` of them (a
/// receiver that is down), `200` after. Lives as long as the process
/// (tests are short).
#[derive(Debug)]
pub struct Recorder {
    /// Where it listens.
    pub addr: SocketAddr,
    rx: Mutex<mpsc::Receiver<Received>>,
    answered: Arc<AtomicUsize>,
}

impl Recorder {
    /// On a free 127.0.0.1 port.
    pub fn start(fail_first: usize) -> Recorder {
        Recorder::on(TcpListener::bind("127.0.0.1:0").unwrap(), fail_first)
    }

    /// On `listener` (e.g. bound to the port a [`crate::DeadAddr`] held).
    pub fn on(listener: TcpListener, fail_first: usize) -> Recorder {
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let answered = Arc::new(AtomicUsize::new(0));
        let count = answered.clone();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let Some(req) = read_request(&s) else {
                    continue;
                };
                let n = count.fetch_add(1, Ordering::SeqCst);
                let status = if n < fail_first {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let mut s = s;
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
                let _ = s.flush();
                if n >= fail_first && tx.send(req).is_err() {
                    return;
                }
            }
        });
        Recorder {
            addr,
            rx: Mutex::new(rx),
            answered,
        }
    }

    /// `http://ADDR` plus `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request answered `200` (30 s at most, then panic).
    #[track_caller]
    pub fn next(&self) -> Received {
        self.rx
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
            .expect("no request within 30 s")
    }

    /// The next request answered `200`, if one comes within `limit`.
    pub fn next_within(&self, limit: Duration) -> Option<Received> {
        self.rx.lock().unwrap().recv_timeout(limit).ok()
    }

    /// Requests answered so far, `503` ones included.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
    }
}

/// Read one HTTP/1.x request from `s` (`None` when it is not one).
pub fn read_request(s: &std::net::TcpStream) -> Option<Received> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len.min(16 << 20)];
    r.read_exact(&mut body).ok()?;
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}
