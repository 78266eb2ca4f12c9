//! The built-in HTTP backend behind each test onion service.
//!
//! Deliberately tiny: one response per connection, enough to prove that a
//! request crossed the Tor network and to show what tor put in front of it.
//! Like the nginx of an Onionspray project, it can write an access log in
//! nginx's `combined` format, the client address being the circuit-id
//! address tor put in the PROXY header.

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Duration};

use crate::config::BuiltInResponse;

/// Longest request head we read; anything longer is answered with 431.
const MAX_HEAD: usize = 16 * 1024;

/// Requests for this path get their answer but no close from the backend.
pub const HOLD_PATH: &str = "/hold";

/// A running backend; dropping it stops the server.
#[derive(Debug)]
pub struct Backend {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Backend {
    /// Listen on a free 127.0.0.1 port and answer every request with
    /// [`Backend::body_for`]`(name, path)`, preceded by `proxy: <line>` when
    /// tor sent a PROXY header (`HiddenServiceExportCircuitID haproxy`).
    ///
    /// For the path [`HOLD_PATH`] the connection then stays open (until the
    /// client closes it, or 30 s), so a test can act on a live stream.
    ///
    /// With `access_log`, every answered request is appended there as one
    /// nginx `combined` line.
    pub async fn start(
        name: String,
        response: BuiltInResponse,
        access_log: Option<&Path>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = match access_log {
            Some(path) => Some(Arc::new(Mutex::new(
                File::options().create(true).append(true).open(path)?,
            ))),
            None => None,
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let name = name.clone();
                let log = log.clone();
                tokio::spawn(async move {
                    // A stalled client must not pin a task forever.
                    let limit = Duration::from_secs(30) + response.delay;
                    let served = serve(stream, &name, response, peer, log.as_deref());
                    let _ = timeout(limit, served).await;
                });
            }
        });
        Ok(Self { addr, task })
    }

    /// The address tor's `HiddenServicePort` points at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The body served for `path` by the backend called `name`.
    pub fn body_for(name: &str, path: &str) -> String {
        format!("onionwatch testnet backend {name}\npath: {path}\n")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    name: &str,
    response: BuiltInResponse,
    peer: SocketAddr,
    log: Option<&Mutex<File>>,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let head_end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break Some(end);
        }
        if buf.len() > MAX_HEAD {
            break None;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let Some(head_end) = head_end else {
        return respond(
            &mut stream,
            "431 Request Header Fields Too Large",
            "too large\n",
        )
        .await;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default();
    let mut proxy = None;
    if first.starts_with("PROXY ") {
        proxy = Some(first.to_owned());
        first = lines.next().unwrap_or_default();
    }
    let mut parts = first.split(' ');
    let (Some(_method), Some(path)) = (parts.next(), parts.next()) else {
        respond(&mut stream, "400 Bad Request", "bad request line\n").await?;
        return stream.shutdown().await;
    };
    let mut body = String::new();
    if let Some(proxy) = &proxy {
        body.push_str(&format!("proxy: {proxy}\n"));
    }
    body.push_str(&Backend::body_for(name, path));
    // The slow site of a demo: this is the behaviour, not synchronisation.
    tokio::time::sleep(response.delay).await;
    respond(&mut stream, &status_line(response.status), &body).await?;
    if let Some(log) = log {
        // PROXY TCP6 <source> <destination> …: the source carries the circuit.
        let client = proxy
            .as_deref()
            .and_then(|p| p.split(' ').nth(2))
            .map_or_else(|| peer.ip().to_string(), str::to_owned);
        let header = |name: &str| {
            lines
                .clone()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map_or("-", |(_, v)| v.trim())
        };
        let line = combined_line(
            &client,
            first,
            response.status,
            body.len(),
            header("referer"),
            header("user-agent"),
        );
        // One short write under a lock: lines never interleave.
        let _ = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(line.as_bytes());
    }
    if path == HOLD_PATH {
        // Wait for the client to close (or the caller's timeout).
        let _ = stream.read(&mut chunk).await;
    }
    stream.shutdown().await
}

async fn respond(stream: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(msg.as_bytes()).await?;
    stream.flush().await
}

fn status_line(status: u16) -> String {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    };
    format!("{status} {reason}")
}

/// One nginx `combined` log line, timestamped now (UTC), quotes escaped
/// the way nginx does (`\x22`).
fn combined_line(
    client: &str,
    request: &str,
    status: u16,
    bytes: usize,
    referer: &str,
    agent: &str,
) -> String {
    let now = time::OffsetDateTime::now_utc();
    let esc = |s: &str| s.replace('\\', "\\x5C").replace('"', "\\x22");
    format!(
        "{client} - - [{:02}/{}/{}:{:02}:{:02}:{:02} +0000] \"{}\" {status} {bytes} \"{}\" \"{}\"\n",
        now.day(),
        &now.month().to_string()[..3],
        now.year(),
        now.hour(),
        now.minute(),
        now.second(),
        esc(request),
        esc(referer),
        esc(agent),
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, raw: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(raw).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_with_name_path_and_proxy_line() {
        let b = Backend::start("svc".into(), BuiltInResponse::default(), None)
            .await
            .unwrap();
        let out = get(b.addr(), b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with(&Backend::body_for("svc", "/x")), "{out}");

        let out = get(
            b.addr(),
            b"PROXY TCP6 fc00:dead:beef:4dad::0:23 ::1 35 80\r\nGET / HTTP/1.1\r\n\r\n",
        )
        .await;
        assert!(
            out.contains("proxy: PROXY TCP6 fc00:dead:beef:4dad::0:23 ::1 35 80\n"),
            "{out}"
        );
    }

    #[tokio::test]
    async fn access_log_is_nginx_combined_with_the_circuit_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let b = Backend::start("svc".into(), BuiltInResponse::default(), Some(&path))
            .await
            .unwrap();
        get(
            b.addr(),
            b"PROXY TCP6 fc00:dead:beef:4dad::0:23 ::1 35 80\r\nGET /a HTTP/1.1\r\nUser-Agent: t\"x\r\n\r\n",
        )
        .await;
        get(b.addr(), b"GET /b HTTP/1.1\r\nReferer: http://r/\r\n\r\n").await;
        let log = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 2, "{log}");
        let body = Backend::body_for("svc", "/a").len()
            + "proxy: PROXY TCP6 fc00:dead:beef:4dad::0:23 ::1 35 80\n".len();
        assert!(
            lines[0].starts_with("fc00:dead:beef:4dad::0:23 - - ["),
            "{log}"
        );
        assert!(
            lines[0].ends_with(&format!(
                "+0000] \"GET /a HTTP/1.1\" 200 {body} \"-\" \"t\\x22x\""
            )),
            "{log}"
        );
        assert!(lines[1].starts_with("127.0.0.1 - - ["), "{log}");
        assert!(lines[1].ends_with("\"http://r/\" \"-\""), "{log}");
    }

    #[tokio::test]
    async fn configured_status_is_answered() {
        let response = BuiltInResponse {
            status: 500,
            delay: Duration::from_millis(1),
        };
        let b = Backend::start("bad".into(), response, None).await.unwrap();
        let out = get(b.addr(), b"GET / HTTP/1.1\r\n\r\n").await;
        assert!(
            out.starts_with("HTTP/1.1 500 Internal Server Error\r\n"),
            "{out}"
        );
        assert!(out.ends_with(&Backend::body_for("bad", "/")), "{out}");
    }

    #[tokio::test]
    async fn hold_keeps_the_connection_open_until_the_client_closes() {
        let b = Backend::start("svc".into(), BuiltInResponse::default(), None)
            .await
            .unwrap();
        let mut s = TcpStream::connect(b.addr()).await.unwrap();
        s.write_all(b"GET /hold HTTP/1.1\r\n\r\n").await.unwrap();
        let want = Backend::body_for("svc", HOLD_PATH);
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        while !String::from_utf8_lossy(&seen).ends_with(&want) {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the whole answer");
            seen.extend_from_slice(&buf[..n]);
        }
        // Still open: a read does not end within a short bound.
        let still_open = timeout(Duration::from_millis(300), s.read(&mut buf)).await;
        assert!(still_open.is_err(), "{still_open:?}");
    }

    #[tokio::test]
    async fn hostile_requests_get_errors() {
        let b = Backend::start("svc".into(), BuiltInResponse::default(), None)
            .await
            .unwrap();
        let out = get(b.addr(), b"\r\n\r\n").await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        // Exactly one byte over the limit, so the server reads all we send
        // and closes without a reset.
        let out = get(b.addr(), &vec![b'a'; MAX_HEAD + 1]).await;
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
    }
}
