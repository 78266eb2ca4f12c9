//! One accepted connection: the PROXY header within its deadline, the
//! circuit's admission, then HTTP/1.1 served with a [`ConnCtx`] per
//! connection (or a lone 429 when the circuit is refused).

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use http::header::HeaderValue;
use http::Request;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use onionwatch_tor::proxy::{ProxyHeader, ProxyHeaderError};

use crate::io::{read_header, Prefixed, SendDeadline, Stream};
use crate::metrics::{Metrics, RejectReason};
use crate::timer::LazyTimer;

use super::forward::{too_many, ConnCtx};
use super::{stopped, Shared};

/// Decrements the open-connection gauge when the connection ends.
struct OpenConn(Arc<Metrics>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Relaxed);
    }
}

pub(super) async fn serve_connection(
    shared: Arc<Shared>,
    mut stream: Stream,
    peer_ip: Option<IpAddr>,
    peer: String,
) {
    let metrics = Arc::clone(&shared.metrics);
    metrics.connections_total.fetch_add(1, Relaxed);
    metrics.connections_open.fetch_add(1, Relaxed);
    let _open = OpenConn(Arc::clone(&metrics));
    let settings = shared.settings();
    let mode = settings.config.proxy_protocol;
    let mut hard_stop = shared.hard_stop.subscribe();
    if let Some(ip) = peer_ip {
        if !settings.config.trusts_source(ip) {
            // Its PROXY header would be believed: never read it.
            metrics.reject(RejectReason::UntrustedSource);
            shared.log_refused_connection(
                &peer,
                RejectReason::UntrustedSource,
                "the source is not in trusted_proxy_sources",
            );
            return;
        }
    }

    let read = tokio::time::timeout(settings.header_timeout, read_header(&mut stream, mode));
    let (header, leftover) = match read.await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            let reason = match &e {
                ProxyHeaderError::BadSignature { .. } => RejectReason::NoProxyHeader,
                ProxyHeaderError::Eof { .. } | ProxyHeaderError::Io(_) => {
                    RejectReason::ClosedBeforeHeader
                }
                _ => RejectReason::BadProxyHeader,
            };
            metrics.reject(reason);
            if matches!(e, ProxyHeaderError::Eof { received: 0 }) {
                // Port probes and health checks: counted, not worth a warning.
                tracing::debug!(peer, "connection closed before sending anything");
            } else {
                shared.log_refused_connection(&peer, reason, &e.to_string());
            }
            return;
        }
        Err(_) => {
            metrics.reject(RejectReason::HeaderTimeout);
            shared.log_refused_connection(
                &peer,
                RejectReason::HeaderTimeout,
                &format!(
                    "no complete PROXY header within {:?} (slow or stalled client)",
                    settings.header_timeout
                ),
            );
            return;
        }
    };
    let circuit = header
        .as_ref()
        .and_then(ProxyHeader::circuit_id)
        .map(|c| c.0);
    if let Some(id) = circuit {
        metrics.saw_circuit(id);
    } else if header.is_some() {
        tracing::debug!(
            peer,
            "PROXY header without a tor circuit id: no per-circuit limits"
        );
    }
    let io = TokioIo::new(SendDeadline::new(
        Prefixed::new(leftover, stream),
        settings.send_timeout,
        Arc::clone(&metrics),
    ));
    let max_head = settings.config.max_request_head_bytes;

    let conn_guard = match circuit {
        Some(id) => match shared.table.open_connection(id, &settings.policy) {
            Ok(g) => Some(g),
            Err(refusal) => {
                shared.refused(&refusal, id);
                // Answer the first request with 429, then close.
                let retry = refusal.retry_after;
                let reason = refusal.reason;
                let svc = service_fn(move |_req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(too_many(reason, retry, true))
                });
                let mut b = hyper::server::conn::http1::Builder::new();
                b.timer(LazyTimer::default())
                    .header_read_timeout(settings.header_timeout)
                    .max_buf_size(max_head)
                    .keep_alive(false);
                metrics.response(429);
                // A circuit over its cap must not hold slots by never
                // sending its request, or by never reading the answer.
                let _ = tokio::time::timeout(settings.header_timeout, b.serve_connection(io, svc))
                    .await;
                return;
            }
        },
        None => None,
    };

    let ctx = Arc::new(ConnCtx {
        shared: Arc::clone(&shared),
        header,
        circuit,
        circuit_value: circuit.map(HeaderValue::from),
        upstream: Mutex::new(None),
        upstream_deadline: Mutex::new(None),
        _conn_guard: conn_guard,
    });
    let svc = {
        let ctx = Arc::clone(&ctx);
        service_fn(move |req| {
            let ctx = Arc::clone(&ctx);
            async move { Ok::<_, Infallible>(ctx.handle(req).await) }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(LazyTimer::default())
        // Also bounds how long an idle keep-alive connection is kept.
        .header_read_timeout(settings.request_header_timeout)
        // hyper's default (~400 KB) lets every connection hold that much.
        .max_buf_size(max_head)
        .writev(false)
        .keep_alive(true);
    let conn = builder.serve_connection(io, svc).with_upgrades();
    tokio::pin!(conn);
    let mut shutdown = shared.shutdown.subscribe();
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = stopped(&mut shutdown) => {
            // Finish the request in flight, then close.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                r = conn.as_mut() => r,
                _ = stopped(&mut hard_stop) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(peer, circuit, "client connection ended: {e}");
    }
}
