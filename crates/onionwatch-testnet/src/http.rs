//! A minimal HTTP/1.0 GET through tor's SOCKS port, for readiness checks and
//! tests. The real prober lives elsewhere; this only has to be obviously right.

use std::net::SocketAddr;

use onionwatch_tor::socks::{self, Isolation};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest response read; test backends answer with a few hundred bytes.
const MAX_RESPONSE: u64 = 1024 * 1024;

/// Status code and body of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Body, lossily decoded as UTF-8.
    pub body: String,
}

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The SOCKS connection failed (tor's reply code inside).
    #[error(transparent)]
    Socks(#[from] socks::SocksError),
    /// The stream failed after connecting.
    #[error("HTTP exchange with {target} failed: {source}")]
    Io {
        /// `host:port`.
        target: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The answer was not HTTP.
    #[error("{target} answered something that is not HTTP: {head:?}")]
    NotHttp {
        /// `host:port`.
        target: String,
        /// Its first bytes.
        head: String,
    },
}

/// `GET http://host:port/path` through the SOCKS port `socks`, on a circuit
/// of its own when `isolation` is given.
pub async fn get(
    socks_addr: SocketAddr,
    host: &str,
    port: u16,
    path: &str,
    isolation: Option<&Isolation>,
) -> Result<Response, GetError> {
    let target = format!("{host}:{port}");
    let mut stream = socks::connect(socks_addr, host, port, isolation).await?;
    let io = |source| GetError::Io {
        target: target.clone(),
        source,
    };
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.map_err(io)?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE)
        .read_to_end(&mut raw)
        .await
        .map_err(io)?;
    parse(&raw).ok_or_else(|| GetError::NotHttp {
        target: target.clone(),
        head: String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned(),
    })
}

fn parse(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status_line = head.lines().next()?;
    let mut parts = status_line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = parts.next()?.parse().ok()?;
    Some(Response {
        status,
        body: String::from_utf8_lossy(&raw[end + 4..]).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses_and_rejects_junk() {
        let r = parse(b"HTTP/1.1 404 Not Found\r\nA: b\r\n\r\nbody").unwrap();
        assert_eq!((r.status, r.body.as_str()), (404, "body"));
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\n"), None);
        assert_eq!(parse(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(parse(b"HTTP/1.1 abc OK\r\n\r\n"), None);
        assert_eq!(parse(b"\xff\xfe\r\n\r\n"), None);
        assert_eq!(parse(b""), None);
    }
}
