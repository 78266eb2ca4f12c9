//! Forwarding a client connection's requests over its own upstream
//! connection: admission per request, the upstream timeout, `Upgrade`
//! tunnels, and the gateway's own error responses.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use onionwatch_tor::proxy::ProxyHeader;
use tokio::io::AsyncWriteExt;

use crate::body::{Body, BodyTimeout, ReqBody};
use crate::io::Stream;
use crate::limiter::ConnGuard;
use crate::metrics::RejectReason;
use crate::timer::LazySleep;

use super::headers::{clean_headers, host_problem};
use super::{stopped, Settings, Shared};

/// One client connection: its circuit and its upstream connection.
pub(super) struct ConnCtx {
    pub(super) shared: Arc<Shared>,
    pub(super) header: Option<ProxyHeader>,
    pub(super) circuit: Option<u32>,
    pub(super) circuit_value: Option<HeaderValue>,
    /// The upstream connection, tagged with the settings generation it was
    /// opened under (a reload may change the upstream).
    pub(super) upstream: Mutex<Option<(u64, SendRequest<ReqBody>)>>,
    /// The upstream timeout, kept across requests (see [`LazySleep`]).
    pub(super) upstream_deadline: Mutex<Option<LazySleep>>,
    pub(super) _conn_guard: Option<ConnGuard>,
}

#[derive(Debug)]
enum UpstreamError {
    Connect(std::io::Error),
    ConnectTimeout,
    Http(hyper::Error),
    Timeout,
    /// The client stalled its request body ([`BodyTimeout`]).
    ClientBody,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "cannot connect: {e}"),
            UpstreamError::ConnectTimeout => write!(f, "connect timed out"),
            UpstreamError::Http(e) => write!(f, "{e}"),
            UpstreamError::Timeout => write!(f, "no response head in time"),
            UpstreamError::ClientBody => write!(f, "{BodyTimeout}"),
        }
    }
}

impl ConnCtx {
    pub(super) async fn handle(self: Arc<Self>, mut req: Request<Incoming>) -> Response<Body> {
        let settings = self.shared.settings();
        let metrics = &self.shared.metrics;
        let no_request_limits = settings.policy.rate <= 0.0 && settings.policy.max_requests == 0;
        let guard = match self.circuit {
            // Nothing to enforce per request: skip the table's lock.
            Some(_) if no_request_limits => None,
            Some(id) => match self.shared.table.start_request(id, &settings.policy) {
                Ok(g) => Some(g),
                Err(refusal) => {
                    self.shared.refused(&refusal, id);
                    metrics.response(429);
                    tracing::debug!(
                        circuit = id,
                        reason = refusal.reason.as_str(),
                        "request refused"
                    );
                    return too_many(refusal.reason, refusal.retry_after, false);
                }
            },
            None => None,
        };

        if let Some(text) = host_problem(req.version(), req.headers()) {
            metrics.response(400);
            tracing::debug!(
                circuit = self.circuit,
                "request refused: {}",
                text.trim_end()
            );
            let mut r = plain(StatusCode::BAD_REQUEST, text);
            // Nothing of it was forwarded; what follows on this connection
            // comes from a client we no longer trust to frame requests.
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return r;
        }
        let headers = req.headers_mut();
        let upgrade = clean_headers(headers, Some(&settings.header), true);
        if let Some(v) = &self.circuit_value {
            headers.insert(settings.header.clone(), v.clone());
        }
        *req.version_mut() = Version::HTTP_11;
        let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let req = req.map(|b| ReqBody::new(b, settings.body_timeout, Arc::clone(metrics)));
        let started = Instant::now();
        let mut resp = match self.send(req, &settings, upgrade, started).await {
            Ok(r) => r,
            Err(UpstreamError::ClientBody) => {
                // The client's fault, not the upstream's: counted as a
                // body_timeout rejection by the body itself.
                metrics.response(408);
                tracing::debug!(circuit = self.circuit, "{BodyTimeout}");
                let mut r = plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "408 Request Timeout: the request body stalled\n",
                );
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return r;
            }
            Err(e) => {
                metrics.upstream_errors_total.fetch_add(1, Relaxed);
                tracing::warn!(upstream = %settings.config.upstream, circuit = self.circuit, "upstream request failed: {e}");
                let (status, text) = match e {
                    UpstreamError::Timeout => (
                        StatusCode::GATEWAY_TIMEOUT,
                        "504 Gateway Timeout: the upstream did not answer in time\n",
                    ),
                    _ => (
                        StatusCode::BAD_GATEWAY,
                        "502 Bad Gateway: the upstream is unavailable\n",
                    ),
                };
                metrics.response(status.as_u16());
                return plain(status, text);
            }
        };
        metrics.upstream_latency.observe(started.elapsed());
        metrics.response(resp.status().as_u16());

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(down) = downstream_upgrade {
                let up = hyper::upgrade::on(&mut resp);
                self.tunnel(down, up);
                let mut out = Response::new(Body::empty());
                *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                *out.headers_mut() = std::mem::take(resp.headers_mut());
                return out;
            }
        }
        clean_headers(resp.headers_mut(), None, false);
        resp.map(|inner| Body::Stream {
            inner,
            _guard: guard,
        })
    }

    /// Send `req` on this connection's upstream connection, opening one if
    /// needed; a request that was never written is retried once on a new
    /// connection (the upstream may have closed an idle one). The upstream
    /// has `upstream_timeout` from `started` to answer with a response head.
    async fn send(
        &self,
        req: Request<ReqBody>,
        settings: &Settings,
        upgrade: bool,
        started: Instant,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let deadline = started + settings.upstream_timeout;
        let mut timer = self
            .upstream_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .unwrap_or_else(|| LazySleep::until(deadline));
        timer.set(deadline);
        let result = self.send_before(req, settings, upgrade, &mut timer).await;
        *self
            .upstream_deadline
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(timer);
        result
    }

    async fn send_before(
        &self,
        mut req: Request<ReqBody>,
        settings: &Settings,
        upgrade: bool,
        deadline: &mut LazySleep,
    ) -> Result<Response<Incoming>, UpstreamError> {
        for _ in 0..2 {
            let reused = self
                .upstream
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .filter(|(generation, s)| *generation == settings.generation && !s.is_closed())
                .map(|(_, s)| s);
            let mut sender = match reused {
                Some(s) => s,
                None => self.connect(settings).await?,
            };
            tokio::select! {
                r = sender.ready() => if r.is_err() { continue },
                _ = &mut *deadline => return Err(UpstreamError::Timeout),
            }
            let sent = tokio::select! {
                r = sender.try_send_request(req) => r,
                _ = &mut *deadline => return Err(UpstreamError::Timeout),
            };
            match sent {
                Ok(resp) => {
                    // An upgraded connection is no longer HTTP: never reuse it.
                    if !(upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS) {
                        *self.upstream.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some((settings.generation, sender));
                    }
                    return Ok(resp);
                }
                Err(mut e) => match e.take_message() {
                    Some(r) => req = r,
                    None => {
                        let e = e.into_error();
                        return Err(if caused_by_body_timeout(&e) {
                            UpstreamError::ClientBody
                        } else {
                            UpstreamError::Http(e)
                        });
                    }
                },
            }
        }
        Err(UpstreamError::Connect(std::io::Error::other(
            "the upstream closed two connections in a row before a request could be sent",
        )))
    }

    async fn connect(&self, settings: &Settings) -> Result<SendRequest<ReqBody>, UpstreamError> {
        let config = &settings.config;
        let mut stream =
            tokio::time::timeout(settings.connect_timeout, Stream::connect(&config.upstream))
                .await
                .map_err(|_| UpstreamError::ConnectTimeout)?
                .map_err(UpstreamError::Connect)?;
        if config.send_proxy_header {
            let line = match &self.header {
                Some(h) => h.encode(),
                None => ProxyHeader::Unknown.encode(),
            };
            stream
                .write_all(line.as_bytes())
                .await
                .map_err(UpstreamError::Connect)?;
        }
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(UpstreamError::Http)?;
        self.shared
            .metrics
            .upstream_connections_total
            .fetch_add(1, Relaxed);
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        Ok(sender)
    }

    /// Copy bytes both ways between the upgraded client and upstream
    /// connections until either side closes or the drain deadline passes.
    fn tunnel(self: &Arc<Self>, down: hyper::upgrade::OnUpgrade, up: hyper::upgrade::OnUpgrade) {
        let ctx = Arc::clone(self);
        let token = self
            .shared
            .drain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.shared.metrics.upgrades_total.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let _token = token;
            let mut hard_stop = ctx.shared.hard_stop.subscribe();
            let (down, up) = tokio::join!(down, up);
            let (Ok(down), Ok(up)) = (down, up) else {
                tracing::debug!(
                    circuit = ctx.circuit,
                    "upgrade did not complete on both sides"
                );
                return;
            };
            let (mut down, mut up) = (TokioIo::new(down), TokioIo::new(up));
            tokio::select! {
                r = tokio::io::copy_bidirectional(&mut down, &mut up) => {
                    if let Err(e) = r {
                        tracing::debug!(circuit = ctx.circuit, "tunnel ended: {e}");
                    }
                }
                _ = stopped(&mut hard_stop) => {}
            }
        });
    }
}

/// Whether hyper failed because the request body hit [`BodyTimeout`].
fn caused_by_body_timeout(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<BodyTimeout>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Body::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A 429 (or 503 when the circuit table is full) with `Retry-After`.
pub(super) fn too_many(reason: RejectReason, retry_after: u64, close: bool) -> Response<Body> {
    let (status, text) = match reason {
        RejectReason::RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            "429 Too Many Requests: this circuit sends requests too fast; retry later\n",
        ),
        RejectReason::TooManyConnections => (
            StatusCode::TOO_MANY_REQUESTS,
            "429 Too Many Requests: this circuit has too many connections open\n",
        ),
        RejectReason::CircuitTableFull => (
            StatusCode::SERVICE_UNAVAILABLE,
            "503 Service Unavailable: too many clients; retry later\n",
        ),
        _ => (
            StatusCode::TOO_MANY_REQUESTS,
            "429 Too Many Requests: this circuit has too many requests in flight\n",
        ),
    };
    let mut r = plain(status, text);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after.max(1)));
    if close {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_carry_retry_after() {
        let r = too_many(RejectReason::RateLimited, 3, false);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        let r = too_many(RejectReason::TooManyConnections, 0, true);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CONNECTION], "close");
    }
}
