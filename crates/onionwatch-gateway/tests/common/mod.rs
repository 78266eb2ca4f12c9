//! Helpers shared by the gateway's integration tests: a raw HTTP/1.1
//! client that sends a PROXY header first, and a gateway + echo upstream.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::{Arc, Mutex};
use std::time::Duration;

use onionwatch_gateway::{Config, Gateway, GatewayHandle, ListenAddr};
use onionwatch_test_support::{EchoAddr, EchoServer};
use onionwatch_tor::circuit_id::CircuitId;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bound on every wait in these tests: generous, only hit when broken.
pub const WAIT: Duration = Duration::from_secs(20);

/// The PROXY line tor would send for circuit `id`.
pub fn proxy_line(id: u32) -> String {
    format!(
        "PROXY TCP6 {} ::1 {} 80\r\n",
        CircuitId(id).to_tor_string(),
        id & 0xffff
    )
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Lines of the echo body that start with `name:` (case-insensitive).
    pub fn echoed(&self, name: &str) -> Vec<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.text()
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
            .collect()
    }
}

/// A keep-alive HTTP/1.1 client over any stream.
pub struct Client<S> {
    pub stream: S,
    buf: Vec<u8>,
}

impl Client<tokio::net::TcpStream> {
    /// Connect to a TCP gateway and send the PROXY line of `circuit`.
    pub async fn tcp(addr: &ListenAddr, circuit: Option<u32>) -> Self {
        let ListenAddr::Tcp(a) = addr else {
            panic!("not TCP: {addr}")
        };
        let mut stream = tokio::net::TcpStream::connect(a).await.unwrap();
        stream.set_nodelay(true).unwrap();
        if let Some(id) = circuit {
            stream.write_all(proxy_line(id).as_bytes()).await.unwrap();
        }
        Client::new(stream)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// `GET path` with extra header lines (each ending in CRLF).
    pub async fn get(&mut self, path: &str, extra: &str) -> Resp {
        let req = format!("GET {path} HTTP/1.1\r\nHost: test.onion\r\n{extra}\r\n");
        self.stream.write_all(req.as_bytes()).await.unwrap();
        self.response()
            .await
            .expect("a response before the connection closed")
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next response; `None` if the connection closed first.
    pub async fn response(&mut self) -> Option<Resp> {
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 101 || status == 204 || status == 304 {
            return Some(resp);
        }
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                if !self.fill().await {
                    return None;
                }
            }
            resp.body = self.buf.drain(..len).collect();
        } else if resp
            .header("transfer-encoding")
            .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
        {
            loop {
                let chunk = self.chunk().await?;
                if chunk.is_empty() {
                    break;
                }
                resp.body.extend_from_slice(&chunk);
            }
        }
        Some(resp)
    }

    /// Only the head of the next response (its status); read a chunked
    /// body afterwards with [`Client::chunk`].
    pub async fn response_head(&mut self) -> u16 {
        let end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            assert!(self.fill().await, "closed before a response head");
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        head.split(' ').nth(1).unwrap().parse().unwrap()
    }

    /// One chunk of a chunked body (empty for the last one).
    pub async fn chunk(&mut self) -> Option<Vec<u8>> {
        let line_end = loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                break p;
            }
            if !self.fill().await {
                return None;
            }
        };
        let size_text = String::from_utf8(self.buf[..line_end].to_vec()).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        self.buf.drain(..line_end + 2);
        while self.buf.len() < size + 2 {
            if !self.fill().await {
                return None;
            }
        }
        let data: Vec<u8> = self.buf.drain(..size).collect();
        self.buf.drain(..2);
        Some(data)
    }

    /// Read until the peer closes; the bytes received meanwhile.
    pub async fn until_closed(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    /// Exactly `n` raw bytes (e.g. after a 101).
    pub async fn raw(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "closed before {n} bytes");
        }
        self.buf.drain(..n).collect()
    }
}

/// A gateway on 127.0.0.1:0 in front of an echo upstream, running on the
/// test's runtime.
pub struct Env {
    pub addr: ListenAddr,
    pub handle: GatewayHandle,
    pub echo: EchoServer,
    pub run: tokio::task::JoinHandle<Result<(), onionwatch_gateway::Error>>,
}

/// A configuration for tests: loopback, in front of `upstream`.
pub fn test_config(upstream: &EchoAddr) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: upstream.to_string().parse().unwrap(),
        ..Config::default()
    }
}

/// Start an echo upstream and a gateway configured by `tweak`.
pub async fn start(tweak: impl FnOnce(&mut Config)) -> Env {
    let echo = EchoServer::start(&EchoAddr::loopback(), false)
        .await
        .unwrap();
    start_with(echo, tweak).await
}

/// Start a gateway in front of `echo`.
pub async fn start_with(echo: EchoServer, tweak: impl FnOnce(&mut Config)) -> Env {
    let mut config = test_config(echo.addr());
    tweak(&mut config);
    config.validate().unwrap();
    let gw = Gateway::bind(config).await.unwrap();
    let addr = gw.local_addr().clone();
    let handle = gw.handle();
    let run = tokio::spawn(gw.run());
    Env {
        addr,
        handle,
        echo,
        run,
    }
}

/// Log lines captured from `tracing` on the current thread.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Capture this thread's logs until the guard is dropped (a
    /// current-thread `#[tokio::test]` runs every task on this thread).
    pub fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        (logs.clone(), tracing::subscriber::set_default(subscriber))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;
    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}
