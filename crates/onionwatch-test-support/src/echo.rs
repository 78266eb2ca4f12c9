//! An upstream for tests and benchmarks that shows what it received.
//!
//! - Any request: `200`, body = request line, then one `name: value` line
//!   per header as received (after a `proxy: <line>` line when the server
//!   expects a PROXY header).
//! - `/stream`: `200`, body = the request body, streamed back as it arrives.
//! - A request with `Connection: upgrade` + `Upgrade`: `101`, then every
//!   byte received on the upgraded connection is sent back.

use std::convert::Infallible;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use onionwatch_tor::proxy::read_proxy_header;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};

type Body = BoxBody<Bytes, hyper::Error>;

/// Where an [`EchoServer`] listens; shown as the gateway's `upstream`
/// syntax (`127.0.0.1:8080`, `unix:/path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EchoAddr {
    /// A TCP address (port 0 picks one).
    Tcp(SocketAddr),
    /// A unix socket path.
    Unix(PathBuf),
}

impl EchoAddr {
    /// 127.0.0.1 on a port the system picks.
    pub fn loopback() -> EchoAddr {
        EchoAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

impl fmt::Display for EchoAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EchoAddr::Tcp(a) => write!(f, "{a}"),
            EchoAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A running echo server; it stops when dropped.
#[derive(Debug)]
pub struct EchoServer {
    addr: EchoAddr,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
        if let EchoAddr::Unix(path) = &self.addr {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl EchoServer {
    /// Listen on `addr`. With `expect_proxy`, every connection must start
    /// with a PROXY v1 header, echoed as `proxy:`.
    pub async fn start(addr: &EchoAddr, expect_proxy: bool) -> std::io::Result<EchoServer> {
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let (addr, task) = match addr {
            EchoAddr::Tcp(a) => {
                let l = TcpListener::bind(a).await?;
                let bound = EchoAddr::Tcp(l.local_addr()?);
                let task = tokio::spawn(async move {
                    loop {
                        if let Ok((s, _)) = l.accept().await {
                            let _ = s.set_nodelay(true);
                            tokio::spawn(serve(s, expect_proxy, Arc::clone(&counter)));
                        }
                    }
                });
                (bound, task)
            }
            EchoAddr::Unix(p) => {
                let l = UnixListener::bind(p)?;
                let task = tokio::spawn(async move {
                    loop {
                        if let Ok((s, _)) = l.accept().await {
                            tokio::spawn(serve(s, expect_proxy, Arc::clone(&counter)));
                        }
                    }
                });
                (EchoAddr::Unix(p.clone()), task)
            }
        };
        Ok(EchoServer {
            addr,
            requests,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> &EchoAddr {
        &self.addr
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }
}

async fn serve<S>(mut stream: S, expect_proxy: bool, counter: Arc<AtomicU64>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut proxy_line = None;
    if expect_proxy {
        // Reads exactly the header: the request bytes stay in the stream.
        match read_proxy_header(&mut stream).await {
            Ok(h) => proxy_line = Some(h.encode().trim_end().to_owned()),
            Err(_) => return,
        }
    }
    let proxy_line = Arc::new(proxy_line);
    let svc = service_fn(move |req| {
        counter.fetch_add(1, Relaxed);
        let proxy_line = Arc::clone(&proxy_line);
        async move { Ok::<_, Infallible>(answer(req, proxy_line.as_deref())) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades()
        .await;
}

fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

fn answer(mut req: Request<Incoming>, proxy_line: Option<&str>) -> Response<Body> {
    if req.headers().contains_key(header::UPGRADE) {
        let proto = req.headers()[header::UPGRADE].clone();
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                let _ = tokio::io::copy(&mut r, &mut w).await;
            }
        });
        let mut r = Response::new(Empty::new().map_err(|e| match e {}).boxed());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert(header::UPGRADE, proto);
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        return r;
    }
    if req.uri().path() == "/stream" {
        return Response::new(req.into_body().boxed());
    }
    let mut text = String::with_capacity(256);
    if let Some(p) = proxy_line {
        let _ = writeln!(text, "proxy: {p}");
    }
    let _ = writeln!(text, "{} {}", req.method(), req.uri());
    for (k, v) in req.headers() {
        let _ = writeln!(text, "{}: {}", k, String::from_utf8_lossy(v.as_bytes()));
    }
    let mut r = Response::new(full(text));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
