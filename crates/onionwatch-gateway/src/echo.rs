//! An upstream for tests and benchmarks that shows what it received.
//!
//! - Any request: `200`, body = request line, then one `name: value` line
//!   per header as received (after a `proxy: <line>` line when the server
//!   expects a PROXY header).
//! - `/stream`: `200`, body = the request body, streamed back as it arrives.
//! - A request with `Connection: upgrade` + `Upgrade`: `101`, then every
//!   byte received on the upgraded connection is sent back.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::body::Body;
use crate::config::{ListenAddr, ProxyProtocol};
use crate::error::Error;
use crate::io::{read_header, Listener, Prefixed};

/// A running echo server; it stops when dropped.
#[derive(Debug)]
pub struct EchoServer {
    addr: ListenAddr,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoServer {
    /// Listen on `addr` (port 0 picks one). With `expect_proxy`, every
    /// connection must start with a PROXY v1 header, echoed as `proxy:`.
    pub async fn start(addr: &ListenAddr, expect_proxy: bool) -> Result<EchoServer, Error> {
        let listener = Listener::bind(addr, 0o600).await?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: addr.to_string(),
            source,
        })?;
        let requests = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = Arc::clone(&counter);
                tokio::spawn(serve(stream, expect_proxy, counter));
            }
        });
        Ok(EchoServer {
            addr,
            requests,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> &ListenAddr {
        &self.addr
    }

    /// Requests received so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Relaxed)
    }
}

async fn serve(mut stream: crate::io::Stream, expect_proxy: bool, counter: Arc<AtomicU64>) {
    let mut proxy_line = None;
    let mut leftover = Vec::new();
    if expect_proxy {
        match read_header(&mut stream, ProxyProtocol::Require).await {
            Ok((h, rest)) => {
                proxy_line = h.map(|h| h.encode().trim_end().to_owned());
                leftover = rest;
            }
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
        .serve_connection(TokioIo::new(Prefixed::new(leftover, stream)), svc)
        .with_upgrades()
        .await;
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
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        r.headers_mut().insert(header::UPGRADE, proto);
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        return r;
    }
    if req.uri().path() == "/stream" {
        return Response::new(Body::stream(req.into_body()));
    }
    let mut text = String::with_capacity(256);
    if let Some(p) = proxy_line {
        let _ = writeln!(text, "proxy: {p}");
    }
    let _ = writeln!(text, "{} {}", req.method(), req.uri());
    for (k, v) in req.headers() {
        let _ = writeln!(text, "{}: {}", k, String::from_utf8_lossy(v.as_bytes()));
    }
    let mut r = Response::new(Body::full(text));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
