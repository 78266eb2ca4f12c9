//! A small HTTP/1.0 GET client for local metrics endpoints.
//!
//! tor's MetricsPort speaks HTTP/1.0 only and closes after each answer, and
//! nginx answers an HTTP/1.0 request without chunked encoding, so one
//! request per connection and reading to EOF (or to `Content-Length`) is all
//! either needs. The head is bounded ([`MAX_HEADER`]) and scanned once, byte
//! by byte across reads, however slowly it arrives; bodies are bounded, and
//! a `Content-Length` beyond the bound is refused before reading it. Callers
//! bound the time with [`tokio::time::timeout`].
//!
//! A URL can name a unix socket the way nginx's `proxy_pass` does,
//! `http://unix:/path/to/nginx-status.sock:/nginx_status`: Onionspray's
//! nginx listens on unix sockets only.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest response header block accepted (status line and headers).
pub const MAX_HEADER: usize = 16 * 1024;

/// An `http://host:port/path` URL, or `http://unix:/socket:/path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HttpUrl {
    /// Host name or IP address (IPv6 without brackets); `localhost` for a
    /// unix socket.
    pub host: String,
    /// Port (80 when omitted, and for a unix socket).
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// The unix socket to connect to instead of `host:port`.
    pub unix: Option<PathBuf>,
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
        if let Some(socket) = rest.strip_prefix("unix:") {
            // nginx's syntax: the socket path ends at the first `:`.
            let (socket, path) = match socket.split_once(':') {
                Some((sock, path)) => (sock, path),
                None => (socket, "/"),
            };
            if !socket.starts_with('/')
                || !path.starts_with('/')
                || path.contains([' ', '\r', '\n'])
            {
                return Err(UrlError::Invalid(s.to_owned()));
            }
            return Ok(HttpUrl {
                host: "localhost".into(),
                port: 80,
                path: path.to_owned(),
                unix: Some(PathBuf::from(socket)),
            });
        }
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
            unix: None,
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
            unix: s.unix,
        }
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(socket) = &self.unix {
            write!(f, "http://unix:{}:{}", socket.display(), self.path)
        } else if self.host.contains(':') {
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
    if let Some(socket) = &url.unix {
        let target = format!("unix:{}", socket.display());
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .map_err(|source| HttpError::Connect {
                target: target.clone(),
                source,
            })?;
        return exchange(stream, target, url, max_body).await;
    }
    let target = format!("{}:{}", url.host, url.port);
    let stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|source| HttpError::Connect {
            target: target.clone(),
            source,
        })?;
    exchange(stream, target, url, max_body).await
}

/// The request and the answer on a connected stream.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    target: String,
    url: &HttpUrl,
    max_body: usize,
) -> Result<Vec<u8>, HttpError> {
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
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 16 * 1024];
    let mut head = HeadScanner::default();
    // The head's end and the length the answer announces, once known.
    let mut framing: Option<(HeadEnd, Option<usize>)> = None;
    let not_http = |detail: String| HttpError::NotHttp {
        target: target.clone(),
        detail,
    };
    let too_large = || HttpError::TooLarge {
        url: url.to_string(),
        limit: max_body,
    };
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
        buf.extend_from_slice(&chunk[..n]);
        if framing.is_none() {
            // Only the bytes not scanned yet are looked at: a head
            // trickled a byte at a time costs linear time, not quadratic.
            match head.feed(&buf) {
                Some(end) => {
                    let length = content_length(&buf[..end.head]).map_err(&not_http)?;
                    framing = Some((end, length));
                }
                None if buf.len() > MAX_HEADER => {
                    return Err(not_http(format!(
                        "no end of headers in the first {MAX_HEADER} bytes"
                    )))
                }
                None => continue,
            }
        }
        let Some((end, length)) = framing else {
            continue;
        };
        let body_len = buf.len() - end.body;
        match length {
            // Refused before reading it: a length beyond the limit (or
            // beyond any memory) is never waited for.
            Some(len) if len > max_body => return Err(too_large()),
            // tor's MetricsPort does not always close after its answer:
            // stop once Content-Length bytes of body are in.
            Some(len) if body_len >= len => break,
            _ if body_len > max_body => return Err(too_large()),
            _ => {}
        }
    }
    if buf.is_empty() {
        return Err(HttpError::NoAnswer { target });
    }
    let (end, length) = match framing {
        Some(f) => f,
        None => return Err(not_http("no end of headers".into())),
    };
    let mut body = buf.split_off(end.body);
    let head = std::str::from_utf8(&buf[..end.head])
        .map_err(|_| not_http("headers are not text".into()))?;
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(not_http(format!("status line {:?}", truncate(status_line))));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| not_http(format!("status line {:?}", truncate(status_line))))?;
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
                return Err(not_http("chunked answer to an HTTP/1.0 request".into()));
            }
        }
    }
    if let Some(len) = length {
        if body.len() < len {
            return Err(not_http(format!(
                "the body ended after {} of {len} bytes",
                body.len()
            )));
        }
        body.truncate(len);
    }
    if body.len() > max_body {
        return Err(too_large());
    }
    Ok(body)
}

/// Where a response head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeadEnd {
    /// End of the head's text (without the blank line).
    head: usize,
    /// Start of the body.
    body: usize,
}

/// Finds the blank line ending a response head (`\r\n\r\n`, or bare
/// `\n\n` as some servers write it) across reads, looking at each byte
/// once: it remembers how far it has scanned.
#[derive(Debug, Default)]
struct HeadScanner {
    /// Bytes before this offset hold no head end (a line break at the very
    /// end is looked at again once the bytes after it are in).
    scanned: usize,
}

impl HeadScanner {
    /// The head's end in `buf` (which only grows between calls), if it is
    /// in yet.
    fn feed(&mut self, buf: &[u8]) -> Option<HeadEnd> {
        while let Some(i) = buf[self.scanned..].iter().position(|&b| b == b'\n') {
            let i = self.scanned + i;
            // The line that ended at `i` is followed by an empty one?
            let after = match buf.get(i + 1..) {
                Some([b'\n', ..]) => Some(i + 2),
                Some([b'\r', b'\n', ..]) => Some(i + 3),
                // Not enough bytes yet to tell: look again next time.
                Some([]) | Some([b'\r']) | None => {
                    self.scanned = i;
                    return None;
                }
                Some(_) => None,
            };
            if let Some(body) = after {
                let head = if i > 0 && buf[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                return Some(HeadEnd { head, body });
            }
            self.scanned = i + 1;
        }
        self.scanned = buf.len();
        None
    }
}

/// The `Content-Length` of a head, if it names one. Values that are not
/// a number, or several different values, are not HTTP we can frame.
fn content_length(head: &[u8]) -> Result<Option<usize>, String> {
    let head = std::str::from_utf8(head).map_err(|_| "headers are not text".to_owned())?;
    let mut found = None;
    for l in head.lines().skip(1) {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("content-length") {
            continue;
        }
        let v = v.trim();
        // A number too large for usize is too large for any limit.
        let len = match v.parse::<u64>() {
            Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
            Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => usize::MAX,
            Err(_) => return Err(format!("Content-Length {:?} is not a number", truncate(v))),
        };
        match found {
            Some(prev) if prev != len => {
                return Err("two different Content-Length headers".to_owned())
            }
            _ => found = Some(len),
        }
    }
    Ok(found)
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
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
        let u: HttpUrl = "http://unix:/p/news/nginx-status.sock:/nginx_status"
            .parse()
            .unwrap();
        assert_eq!(
            u.unix.as_deref(),
            Some(std::path::Path::new("/p/news/nginx-status.sock"))
        );
        assert_eq!(u.path, "/nginx_status");
        assert_eq!(
            u.to_string(),
            "http://unix:/p/news/nginx-status.sock:/nginx_status"
        );
        assert_eq!("http://unix:/s.sock".parse::<HttpUrl>().unwrap().path, "/");
        for bad in [
            "http://unix:relative.sock:/x",
            "http://unix:/s.sock:x",
            "http://unix::/x",
        ] {
            assert!(bad.parse::<HttpUrl>().is_err(), "{bad}");
        }
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

    /// Answers one request with `answer` (a byte per write when `trickle`),
    /// then keeps the connection open until the client closes it, as tor's
    /// MetricsPort sometimes does: the reader must stop on its own.
    async fn serve_held(answer: Vec<u8>, trickle: bool) -> HttpUrl {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            if trickle {
                for b in &answer {
                    if s.write_all(std::slice::from_ref(b)).await.is_err() {
                        return;
                    }
                }
            } else if s.write_all(&answer).await.is_err() {
                return;
            }
            while matches!(s.read(&mut req).await, Ok(n) if n > 0) {}
        });
        format!("http://{addr}/metrics").parse().unwrap()
    }

    /// `get`, bounded so that a reader that waits for a close that never
    /// comes fails the test instead of hanging it.
    async fn get_bounded(u: &HttpUrl, max_body: usize) -> Result<Vec<u8>, HttpError> {
        tokio::time::timeout(std::time::Duration::from_secs(60), get(u, max_body))
            .await
            .expect("the reader waited for a close that never comes")
    }

    #[tokio::test]
    async fn a_trickled_bare_lf_answer_ends_at_its_content_length() {
        let u = serve_held(
            b"HTTP/1.0 200 OK\nContent-Type: text/plain\nContent-Length: 6\n\nup 1\nX".to_vec(),
            true,
        )
        .await;
        assert_eq!(get_bounded(&u, 100).await.unwrap(), b"up 1\nX");
    }

    #[tokio::test]
    async fn a_head_without_end_is_refused_after_the_header_limit() {
        let mut answer = b"HTTP/1.0 200 OK\n".to_vec();
        while answer.len() <= 2 * MAX_HEADER {
            answer.extend_from_slice(b"X-Filler: y\n");
        }
        let u = serve_held(answer, false).await;
        let err = get_bounded(&u, 1 << 20).await.unwrap_err();
        assert!(
            err.to_string().contains("no end of headers in the first"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn huge_content_lengths_are_refused_without_overflow_or_waiting() {
        for len in [
            "18446744073709551615",
            "18446744073709551616000",
            &(usize::MAX - 10).to_string(),
            "101",
        ] {
            let answer = format!("HTTP/1.0 200 OK\r\nContent-Length: {len}\r\n\r\nabc");
            let u = serve_held(answer.into_bytes(), false).await;
            assert!(
                matches!(
                    get_bounded(&u, 100).await,
                    Err(HttpError::TooLarge { limit: 100, .. })
                ),
                "Content-Length {len}"
            );
        }
        let u = serve_held(
            b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(),
            false,
        )
        .await;
        let err = get_bounded(&u, 100).await.unwrap_err();
        assert!(err.to_string().contains("two different"), "{err}");
    }

    #[test]
    fn the_head_scanner_finds_the_blank_line_and_never_looks_back() {
        let whole = b"HTTP/1.0 200 OK\r\nA: b\nC: d\r\n\r\nbody\n\nmore";
        for step in 1..whole.len() {
            let mut sc = HeadScanner::default();
            let mut found = None;
            for end in (step..whole.len() + step).step_by(step) {
                let buf = &whole[..end.min(whole.len())];
                found = sc.feed(buf);
                if found.is_some() {
                    break;
                }
                // Everything but a trailing line break (and `\r`) is done.
                assert!(sc.scanned + 2 >= buf.len(), "step {step}: rescans");
            }
            let end = found.unwrap_or_else(|| panic!("step {step}: no head end"));
            assert_eq!(&whole[..end.head], b"HTTP/1.0 200 OK\r\nA: b\nC: d");
            assert_eq!(&whole[end.body..], b"body\n\nmore");
        }
        let mut sc = HeadScanner::default();
        let end = sc.feed(b"HTTP/1.0 200 OK\n\nx").unwrap();
        assert_eq!((end.head, end.body), (15, 17));
        let end = HeadScanner::default()
            .feed(b"HTTP/1.0 200 OK\n\r\nx")
            .unwrap();
        assert_eq!((end.head, end.body), (15, 18));
        assert_eq!(HeadScanner::default().feed(b"a\r\nb\r\n"), None);
    }
}
