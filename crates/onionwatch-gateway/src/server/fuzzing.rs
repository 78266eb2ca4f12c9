//! The gateway's handling of what a client sends, without sockets, for the
//! fuzz targets in `fuzz/` and their smoke tests (`tests/fuzz_smoke.rs`):
//! the PROXY header as `read_header` reads it, then the request heads as
//! hyper parses them with the gateway's limits, each checked
//! (`host_problem`) and cleaned (`clean_headers`) as before forwarding,
//! and the cleaned headers checked for what must never reach the upstream.
//! Not a stable API.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response};
use http_body::Body;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use onionwatch_tor::proxy::{ProxyHeader, ProxyHeaderError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::headers::{clean_headers, host_problem};
use crate::config::{Config, ProxyProtocol};
use crate::io::{read_header, Prefixed};

/// A client that sends `data` in reads of at most `chunk` bytes, then
/// closes; what it is sent is dropped.
struct Client {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
}

impl AsyncRead for Client {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = (self.data.len() - self.pos)
            .min(self.chunk)
            .min(buf.remaining());
        let at = self.pos;
        buf.put_slice(&self.data[at..at + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Client {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Serve one connection whose client sends `data` (in reads of at most
/// `chunk` bytes) with the default configuration in `mode`: the PROXY
/// header read, or why the connection is refused, and how many request
/// heads reached the gateway's checks. Panics when a cleaned head still
/// holds a hop-by-hop header or any spelling of the circuit-id header.
pub async fn connection(
    data: &[u8],
    mode: ProxyProtocol,
    chunk: usize,
    allow_upgrade: bool,
) -> Result<(Option<ProxyHeader>, usize), ProxyHeaderError> {
    let config = Config::default();
    let mut client = Client {
        data: data.to_vec(),
        pos: 0,
        chunk: chunk.max(1),
    };
    let (header, leftover) = read_header(&mut client, mode).await?;
    let circuit = config.header();
    let heads = Arc::new(AtomicUsize::new(0));
    let svc = {
        let heads = Arc::clone(&heads);
        service_fn(move |req: Request<Incoming>| {
            heads.fetch_add(1, Relaxed);
            let (mut parts, mut body) = req.into_parts();
            let _ = host_problem(parts.version, &parts.headers);
            let upgrade = clean_headers(&mut parts.headers, Some(&circuit), allow_upgrade);
            assert_clean(&parts.headers, &circuit, upgrade);
            async move {
                // Read the body (at most the input) so that the next head
                // on the connection is parsed too.
                while let Some(Ok(_)) =
                    std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
                {
                }
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_buf_size(config.max_request_head_bytes)
        .writev(false)
        .keep_alive(true);
    let io = TokioIo::new(Prefixed::new(leftover, client));
    // Malformed heads end the connection with an error: that is a refusal.
    let _ = builder.serve_connection(io, svc).with_upgrades().await;
    Ok((header, heads.load(Relaxed)))
}

fn assert_clean(headers: &HeaderMap, circuit: &HeaderName, upgrade: bool) {
    for name in headers.keys() {
        for hop in [
            "te",
            "trailer",
            "transfer-encoding",
            "keep-alive",
            "proxy-connection",
        ] {
            assert_ne!(name.as_str(), hop, "hop-by-hop header left");
        }
        assert!(
            upgrade || (name != header::CONNECTION && name != header::UPGRADE),
            "{name} left on a request that is no upgrade"
        );
        assert_ne!(
            name.as_str().replace('_', "-"),
            circuit.as_str(),
            "a spelling of the circuit-id header left"
        );
    }
    if upgrade {
        assert_eq!(headers.get_all(header::CONNECTION).iter().count(), 1);
        assert_eq!(headers[header::CONNECTION], "upgrade");
        assert!(headers.contains_key(header::UPGRADE));
    }
}
