//! A small HTTP/1.0 GET client for local metrics endpoints.
//!
//! tor's MetricsPort speaks HTTP/1.0 only and closes after each answer, and
//! nginx answers an HTTP/1.0 request without chunked encoding, so one
//! request per connection and reading to EOF is all either needs. Bodies are
//! bounded; callers bound the time with [`tokio::time::timeout`].

use std::fmt;
use std::str::FromStr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest response header block accepted.
const MAX_HEADER: usize = 16 * 1024;

/// An `http://host:port/path` URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HttpUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (80 when omitted).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Why a text is not an [`HttpUrl`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Another scheme than `http://`.
    #[error("{0:?} is not an http:// URL (stub_status and MetricsPort are plain HTTP on loopback; https is not supported)")]
    NotHttp(String),
    /// `[` without `]` around an IPv6 host.
    #[error("{0:?}: unclosed [ in the host")]
    UnclosedBracket(String),
    /// A port that is not a number from 0 to 65535.
    #[error("{url:?}: invalid port {port:?}")]
    Port {
        /// The URL.
        url: String,
        /// The port as written.
        port: String,
    },
    /// No host, or a space or line break in it.
    #[error("{0:?} is not a valid http:// URL")]
    Invalid(String),
}

impl FromStr for HttpUrl {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, UrlError> {
        let rest = s
            .strip_prefix("http://")
            .ok_or_else(|| UrlError::NotHttp(s.to_owned()))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let port = |p: &str| {
            p.parse().map_err(|_| UrlError::Port {
                url: s.to_owned(),
                port: p.to_owned(),
            })
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| UrlError::UnclosedBracket(s.to_owned()))?;
            let port = match after.strip_prefix(':') {
                Some(p) => port(p)?,
                None => 80,
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_owned(), port(p)?),
                None => (authority.to_owned(), 80),
            }
        };
        if host.is_empty() || host.contains(['@', ' ']) || path.contains([' ', '\r', '\n']) {
            return Err(UrlError::Invalid(s.to_owned()));
        }
        Ok(HttpUrl {
            host,
            port,
            path: path.to_owned(),
        })
    }
}

/// The URL of a `stub_status` an Onionspray project's `nginx.conf` serves.
impl From<onionwatch_onionspray::nginx_conf::StubStatus> for HttpUrl {
    fn from(s: onionwatch_onionspray::nginx_conf::StubStatus) -> Self {
        HttpUrl {
            host: s.host,
            port: s.port,
            path: s.path,
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "http://[{}]:{}{}", self.host, self.port, self.path)
        } else {
            write!(f, "http://{}:{}{}", self.host, self.port, self.path)
        }
    }
}

/// Why a GET failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TCP connection failed.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// `host:port`.
        target: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Reading or writing failed.
    #[error("{target}: {source}")]
    Io {
        /// `host:port`.
        target: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The peer closed the connection without sending anything.
    #[error("{target} closed the connection without an answer")]
    NoAnswer {
        /// `host:port`.
        target: String,
    },
    /// Not an HTTP response.
    #[error("{target} did not answer HTTP: {detail}")]
    NotHttp {
        /// `host:port`.
        target: String,
        /// What was wrong.
        detail: String,
    },
    /// A status other than 200.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The body exceeds the limit.
    #[error("{url} sent more than {limit} bytes")]
    TooLarge {
        /// The URL.
        url: String,
        /// The limit.
        limit: usize,
    },
}

/// GET `url` and return the body of a 200 answer (at most `max_body` bytes).
pub async fn get(url: &HttpUrl, max_body: usize) -> Result<Vec<u8>, HttpError> {
    let target = format!("{}:{}", url.host, url.port);
    let mut stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| HttpError::Connect {
            target: target.clone(),
            source,
        })?;
    let host = if url.host.contains(':') {
        format!("[{}]", url.host)
    } else {
        url.host.clone()
    };
    let req = format!(
        "GET {} HTTP/1.0\r\nHost: {host}:{}\r\nUser-Agent: onionwatch\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        url.path, url.port
    );
    stream
        .write_all(req.as_bytes())
        .await
        .map_err(|source| HttpError::Io {
            target: target.clone(),
            source,
        })?;
    let limit = max_body + MAX_HEADER;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // tor resets rather than closes sometimes; keep what came.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !buf.is_empty() => 0,
            Err(source) => {
                return Err(HttpError::Io {
                    target: target.clone(),
                    source,
                })
            }
        };
        if n == 0 {
            break;
        }
        if buf.len() + n > limit {
            return Err(HttpError::TooLarge {
                url: url.to_string(),
                limit: max_body,
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        // tor's MetricsPort does not always close after its answer: stop
        // once Content-Length bytes of body are in.
        if let Some(total) = complete_length(&buf) {
            if buf.len() >= total {
                break;
            }
        }
    }
    if buf.is_empty() {
        return Err(HttpError::NoAnswer { target });
    }
    let not_http = |detail: &str| HttpError::NotHttp {
        target: target.clone(),
        detail: detail.to_owned(),
    };
    let end = find(&buf, b"\r\n\r\n")
        .map(|i| (i, i + 4))
        .or_else(|| find(&buf, b"\n\n").map(|i| (i, i + 2)))
        .ok_or_else(|| not_http("no end of headers"))?;
    let mut body = buf.split_off(end.1);
    let head = std::str::from_utf8(&buf[..end.0]).map_err(|_| not_http("headers are not text"))?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(not_http(&format!(
            "status line {:?}",
            truncate(status_line)
        )));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| not_http(&format!("status line {:?}", truncate(status_line))))?;
    if status != 200 {
        return Err(HttpError::Status {
            url: url.to_string(),
            status,
        });
    }
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim(), v.trim());
            if k.eq_ignore_ascii_case("transfer-encoding") && !v.eq_ignore_ascii_case("identity") {
                return Err(not_http("chunked answer to an HTTP/1.0 request"));
            }
            if k.eq_ignore_ascii_case("content-length") {
                if let Ok(len) = v.parse::<usize>() {
                    if body.len() < len {
                        return Err(not_http(&format!(
                            "the body ended after {} of {len} bytes",
                            body.len()
                        )));
                    }
                    body.truncate(len);
                }
            }
        }
    }
    if body.len() > max_body {
        return Err(HttpError::TooLarge {
            url: url.to_string(),
            limit: max_body,
        });
    }
    Ok(body)
}

/// Header length plus Content-Length, once the headers are complete and
/// name a length.
fn complete_length(buf: &[u8]) -> Option<usize> {
    let end = find(buf, b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
            .map(|len| end + len)
    })
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn parses_urls() {
        let u: HttpUrl = "http://127.0.0.1:8080/stub_status".parse().unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/stub_status")
        );
        assert_eq!(u.to_string(), "http://127.0.0.1:8080/stub_status");
        let u: HttpUrl = "http://[::1]:9/".parse().unwrap();
        assert_eq!(u.host, "::1");
        assert_eq!("http://localhost".parse::<HttpUrl>().unwrap().port, 80);
        assert!("https://x/"
            .parse::<HttpUrl>()
            .unwrap_err()
            .to_string()
            .contains("https"));
        assert!("http://x:99999/".parse::<HttpUrl>().is_err());
        assert!("http:///".parse::<HttpUrl>().is_err());
    }

    async fn serve_once(answer: &'static [u8]) -> HttpUrl {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            s.write_all(answer).await.unwrap();
        });
        format!("http://{addr}/metrics").parse().unwrap()
    }

    #[tokio::test]
    async fn reads_bodies_and_reports_failures() {
        let u = serve_once(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").await;
        assert_eq!(get(&u, 100).await.unwrap(), b"abc");
        let u = serve_once(b"HTTP/1.0 404 Not Found\r\n\r\n").await;
        assert!(matches!(
            get(&u, 100).await,
            Err(HttpError::Status { status: 404, .. })
        ));
        let u = serve_once(b"").await;
        assert!(matches!(
            get(&u, 100).await,
            Err(HttpError::NoAnswer { .. })
        ));
        let u = serve_once(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        assert!(matches!(get(&u, 100).await, Err(HttpError::NotHttp { .. })));
        let u = serve_once(b"HTTP/1.0 200 OK\r\n\r\n0123456789").await;
        assert!(matches!(get(&u, 5).await, Err(HttpError::TooLarge { .. })));
        let u = serve_once(b"HTTP/1.0 200 OK\r\nContent-Length: 30\r\n\r\nshort").await;
        assert!(matches!(get(&u, 100).await, Err(HttpError::NotHttp { .. })));
    }
}
