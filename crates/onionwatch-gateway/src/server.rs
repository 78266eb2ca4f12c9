//! The gateway: accept loop, PROXY header, per-circuit admission, and HTTP
//! forwarding with one upstream connection per client connection.
//!
//! Why one upstream connection per client connection: HTTP/1.1 handles one
//! request at a time per connection, so this keeps keep-alive on both sides
//! without a shared pool, and it is what makes a per-connection PROXY header
//! upstream (`send_proxy_header`) correct: an upstream connection only ever
//! carries one circuit's requests.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use onionwatch_tor::control::CloseExecutor;
use onionwatch_tor::proxy::{ProxyHeader, ProxyHeaderError};
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, mpsc, watch, Semaphore};

use crate::body::Body;
use crate::config::{Config, ListenAddr};
use crate::error::Error;
use crate::escalate::{Abuse, EscalationEvent, Escalator};
use crate::io::{read_header, Listener, Prefixed, Stream};
use crate::limiter::{CircuitTable, ConnGuard, Policy, Refusal};
use crate::metrics::{Metrics, RejectReason};
use crate::timer::{LazySleep, LazyTimer};

/// How often idle circuits are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Log lines per second for refused connections before lines are dropped
/// (a flood of bad connections must not become a flood of logs).
const LOG_BUDGET: u64 = 20;

/// The configuration in force, with its derived values computed once.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) config: Arc<Config>,
    generation: u64,
    header: HeaderName,
    policy: Policy,
    header_timeout: Duration,
    request_header_timeout: Duration,
    connect_timeout: Duration,
    upstream_timeout: Duration,
}

impl Settings {
    fn new(config: Config, generation: u64) -> Result<Settings, Error> {
        let bad = |message: String| Error::Config {
            path: None,
            message,
        };
        config.validate().map_err(bad)?;
        let l = &config.limits;
        let e = &config.escalation;
        Ok(Settings {
            generation,
            header: config.header(),
            policy: Policy {
                rate: l.rate,
                burst: f64::from(l.burst),
                max_conns: l.max_connections_per_circuit,
                max_requests: l.max_requests_per_circuit,
                max_circuits: l.max_circuits,
                escalate: e
                    .enabled
                    .then(|| (e.rejections, Duration::from_secs_f64(e.window_secs))),
            },
            header_timeout: config.header_timeout().map_err(bad)?,
            request_header_timeout: config.request_header_timeout().map_err(bad)?,
            connect_timeout: config.connect_timeout().map_err(bad)?,
            upstream_timeout: config.upstream_timeout().map_err(bad)?,
            config: Arc::new(config),
        })
    }
}

/// Counts log lines per second and drops the excess.
#[derive(Debug, Default)]
struct LogBudget {
    second: AtomicU64,
    used: AtomicU64,
    dropped: AtomicU64,
}

impl LogBudget {
    /// `Some(lines dropped since the last allowed one)` if this line may be
    /// logged.
    fn allow(&self, start: Instant) -> Option<u64> {
        let now = start.elapsed().as_secs();
        if self.second.swap(now, Relaxed) != now {
            self.used.store(0, Relaxed);
        }
        if self.used.fetch_add(1, Relaxed) < LOG_BUDGET {
            Some(self.dropped.swap(0, Relaxed))
        } else {
            self.dropped.fetch_add(1, Relaxed);
            None
        }
    }
}

#[derive(Debug)]
struct Shared {
    settings: watch::Sender<Arc<Settings>>,
    generation: AtomicU64,
    table: Arc<CircuitTable>,
    metrics: Arc<Metrics>,
    abuse: CloseExecutor<Abuse>,
    events: broadcast::Sender<EscalationEvent>,
    shutdown: watch::Sender<bool>,
    /// Set when the drain deadline passes: everything still open is cut.
    hard_stop: watch::Sender<bool>,
    /// Every connection and tunnel task holds a clone; `run` waits for all
    /// of them to be dropped.
    drain: Mutex<Option<mpsc::Sender<()>>>,
    started: Instant,
    log_budget: LogBudget,
}

impl Shared {
    fn settings(&self) -> Arc<Settings> {
        self.settings.borrow().clone()
    }

    fn refused(&self, refusal: &Refusal, circuit: u32) {
        self.metrics.reject(refusal.reason);
        if let Some(refusals) = refusal.escalate {
            // Never waits: a slow control port must not slow requests.
            self.abuse.submit(Abuse {
                circuit,
                reason: refusal.reason,
                refusals,
            });
        }
    }

    fn log_refused_connection(&self, peer: &str, reason: RejectReason, detail: &str) {
        if let Some(dropped) = self.log_budget.allow(self.started) {
            let dropped = if dropped > 0 {
                format!(" ({dropped} similar lines suppressed)")
            } else {
                String::new()
            };
            tracing::warn!(
                peer,
                reason = reason.as_str(),
                "refused connection: {detail}{dropped}"
            );
        }
    }
}

/// A bound gateway, ready to [`run`](Gateway::run).
#[derive(Debug)]
pub struct Gateway {
    listener: Listener,
    local: ListenAddr,
    shared: Arc<Shared>,
    escalator: Escalator,
    max_connections: usize,
    shutdown_grace: Duration,
    drain_rx: mpsc::Receiver<()>,
    workers: usize,
}

/// A connection's work; it registers its stream with the worker's runtime
/// when first polled there.
type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Threads that serve connections, each with its own single-threaded
/// runtime, like nginx's workers: a client connection, its upstream
/// connection and their wake-ups stay on one thread instead of bouncing
/// between cores. Connections are dealt round-robin.
struct Workers {
    senders: Vec<mpsc::UnboundedSender<Job>>,
    next: usize,
}

impl Workers {
    /// `n` workers (0: one per CPU).
    fn start(n: usize) -> std::io::Result<Workers> {
        let n = match n {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut senders = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            // Log where the caller logs, even to a scoped subscriber.
            let dispatch = tracing::dispatcher::get_default(Clone::clone);
            std::thread::Builder::new()
                .name(format!("gateway-worker-{i}"))
                .spawn(move || {
                    let _logging = tracing::dispatcher::set_default(&dispatch);
                    runtime.block_on(async move {
                        let mut open = tokio::task::JoinSet::new();
                        while let Some(job) = rx.recv().await {
                            open.spawn(job);
                            // Reap finished connections as we go.
                            while open.try_join_next().is_some() {}
                        }
                        // The accept loop ended: finish (drain) what is open.
                        while open.join_next().await.is_some() {}
                    });
                })?;
            senders.push(tx);
        }
        Ok(Workers { senders, next: 0 })
    }

    fn len(&self) -> usize {
        self.senders.len()
    }

    fn serve(&mut self, job: Job) {
        let i = self.next % self.senders.len();
        self.next = self.next.wrapping_add(1);
        // A worker only stops when its sender is dropped.
        let _ = self.senders[i].send(job);
    }
}

/// Controls a running gateway from elsewhere (signal handlers, tests).
#[derive(Debug, Clone)]
pub struct GatewayHandle {
    shared: Arc<Shared>,
    listen: ListenAddr,
    metrics_listen: Option<std::net::SocketAddr>,
    max_connections: usize,
}

impl Gateway {
    /// Validate `config` and bind the listening socket. Must run inside
    /// tokio. The metrics endpoint (`metrics_listen`) is the caller's to
    /// serve, from [`GatewayHandle::metrics`].
    pub async fn bind(config: Config) -> Result<Gateway, Error> {
        let settings = Settings::new(config, 0)?;
        let config = Arc::clone(&settings.config);
        let mode = config.unix_mode().map_err(|message| Error::Config {
            path: None,
            message,
        })?;
        let listener = Listener::bind(&config.listen, mode).await?;
        let local = listener.local_addr().map_err(|source| Error::Listen {
            addr: config.listen.to_string(),
            source,
        })?;
        let metrics = Arc::new(Metrics::default());
        let (events, _) = broadcast::channel(256);
        let (settings_tx, settings_rx) = watch::channel(Arc::new(settings));
        let (abuse_tx, escalator) =
            Escalator::new(settings_rx, Arc::clone(&metrics), events.clone());
        let (drain_tx, drain_rx) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            settings: settings_tx,
            generation: AtomicU64::new(0),
            table: CircuitTable::new(Arc::clone(&metrics)),
            metrics: Arc::clone(&metrics),
            abuse: abuse_tx,
            events: events.clone(),
            shutdown: watch::channel(false).0,
            hard_stop: watch::channel(false).0,
            drain: Mutex::new(Some(drain_tx)),
            started: Instant::now(),
            log_budget: LogBudget::default(),
        });
        Ok(Gateway {
            listener,
            local,
            escalator,
            max_connections: config.max_connections,
            workers: config.workers,
            shutdown_grace: config.shutdown_grace().unwrap_or(Duration::from_secs(10)),
            shared,
            drain_rx,
        })
    }

    /// The address actually bound (the real port when port 0 was asked).
    pub fn local_addr(&self) -> &ListenAddr {
        &self.local
    }

    /// A handle to reload, stop and observe the gateway.
    pub fn handle(&self) -> GatewayHandle {
        let config = self.shared.settings().config.clone();
        GatewayHandle {
            shared: Arc::clone(&self.shared),
            listen: config.listen.clone(),
            metrics_listen: config.metrics_listen,
            max_connections: self.max_connections,
        }
    }

    /// Serve until [`GatewayHandle::shutdown`], then stop accepting, let
    /// in-flight requests finish for `shutdown_grace_secs`, and cut the rest.
    pub async fn run(mut self) -> Result<(), Error> {
        let shared = Arc::clone(&self.shared);
        let mut shutdown = shared.shutdown.subscribe();
        tokio::spawn(self.escalator.run());
        tokio::spawn(sweep(Arc::clone(&shared)));
        let mut workers = Workers::start(self.workers).map_err(|source| Error::Listen {
            addr: self.local.to_string(),
            source,
        })?;
        tracing::info!(listen = %self.local, upstream = %shared.settings().config.upstream, workers = workers.len(), "gateway listening");
        let permits = Arc::new(Semaphore::new(self.max_connections));
        loop {
            // Past max_connections, stop accepting: the kernel backlog waits.
            let permit = tokio::select! {
                p = Arc::clone(&permits).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stopped(&mut shutdown) => break,
            };
            let accepted = tokio::select! {
                a = self.listener.accept() => a,
                _ = stopped(&mut shutdown) => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    tracing::warn!("accept failed on {}: {e}", self.local);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(token) = shared
                .drain
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            else {
                break;
            };
            let shared = Arc::clone(&shared);
            let stream = match stream.into_std() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot hand a connection to a worker: {e}");
                    continue;
                }
            };
            workers.serve(Box::pin(async move {
                match Stream::from_std(stream) {
                    Ok(stream) => serve_connection(shared, stream, peer).await,
                    Err(e) => tracing::warn!(peer, "cannot register a connection: {e}"),
                }
                drop((permit, token));
            }));
        }
        // Stop accepting now (and remove a unix socket file); the workers
        // end once their connections have.
        drop(self.listener);
        drop(workers);
        let open = shared.metrics.connections_open.load(Relaxed);
        tracing::info!(open, grace = ?self.shutdown_grace, "gateway stopping: draining open connections");
        shared
            .drain
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let drained = tokio::time::timeout(self.shutdown_grace, self.drain_rx.recv())
            .await
            .is_ok();
        if !drained {
            let left = shared.metrics.connections_open.load(Relaxed);
            tracing::warn!(
                left,
                "drain deadline passed: closing the remaining connections"
            );
            let _ = shared.hard_stop.send(true);
            // They stop at their next poll; give them a moment to unwind.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.drain_rx.recv()).await;
        }
        tracing::info!("gateway stopped");
        Ok(())
    }
}

impl GatewayHandle {
    /// Apply a new configuration to new and open connections (limits,
    /// header name, upstream, timeouts, escalation). The listening
    /// addresses and `max_connections` need a restart.
    pub fn reload(&self, config: Config) -> Result<(), Error> {
        if config.listen != self.listen {
            return Err(Error::NeedsRestart("listen"));
        }
        if config.metrics_listen != self.metrics_listen {
            return Err(Error::NeedsRestart("metrics_listen"));
        }
        if config.max_connections != self.max_connections {
            return Err(Error::NeedsRestart("max_connections"));
        }
        let generation = self.shared.generation.fetch_add(1, Relaxed) + 1;
        let settings = Settings::new(config, generation)?;
        self.shared.settings.send_replace(Arc::new(settings));
        tracing::info!(generation, "gateway configuration reloaded");
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.shared.settings().config.clone()
    }

    /// Stop accepting and drain (see [`Gateway::run`]).
    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
    }

    /// The gateway's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.shared.metrics)
    }

    /// Escalations as they happen (for tests and monitoring).
    pub fn escalations(&self) -> broadcast::Receiver<EscalationEvent> {
        self.shared.events.subscribe()
    }

    /// Circuits whose state is tracked now (bounded by `limits.max_circuits`).
    pub fn circuits_tracked(&self) -> usize {
        self.shared.table.len()
    }
}

/// Resolves once `rx` is true (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    // Drop the borrow at once: it must not live across an await.
    let _ = rx.wait_for(|s| *s).await.is_ok();
}

async fn sweep(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => shared.table.sweep(&shared.settings().policy),
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// Decrements the open-connection gauge when the connection ends.
struct OpenConn(Arc<Metrics>);

impl Drop for OpenConn {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Relaxed);
    }
}

async fn serve_connection(shared: Arc<Shared>, mut stream: Stream, peer: String) {
    let metrics = Arc::clone(&shared.metrics);
    metrics.connections_total.fetch_add(1, Relaxed);
    metrics.connections_open.fetch_add(1, Relaxed);
    let _open = OpenConn(Arc::clone(&metrics));
    let settings = shared.settings();
    let mode = settings.config.proxy_protocol;
    let mut hard_stop = shared.hard_stop.subscribe();

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
    let io = TokioIo::new(Prefixed::new(leftover, stream));

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
                    .header_read_timeout(settings.request_header_timeout)
                    .keep_alive(false);
                metrics.response(429);
                let _ = b.serve_connection(io, svc).await;
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

/// One client connection: its circuit and its upstream connection.
struct ConnCtx {
    shared: Arc<Shared>,
    header: Option<ProxyHeader>,
    circuit: Option<u32>,
    circuit_value: Option<HeaderValue>,
    /// The upstream connection, tagged with the settings generation it was
    /// opened under (a reload may change the upstream).
    upstream: Mutex<Option<(u64, SendRequest<Incoming>)>>,
    /// The upstream timeout, kept across requests (see [`LazySleep`]).
    upstream_deadline: Mutex<Option<LazySleep>>,
    _conn_guard: Option<ConnGuard>,
}

#[derive(Debug)]
enum UpstreamError {
    Connect(std::io::Error),
    ConnectTimeout,
    Http(hyper::Error),
    Timeout,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "cannot connect: {e}"),
            UpstreamError::ConnectTimeout => write!(f, "connect timed out"),
            UpstreamError::Http(e) => write!(f, "{e}"),
            UpstreamError::Timeout => write!(f, "no response head in time"),
        }
    }
}

impl ConnCtx {
    async fn handle(self: Arc<Self>, mut req: Request<Incoming>) -> Response<Body> {
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

        let headers = req.headers_mut();
        let upgrade = clean_headers(headers, Some(&settings.header), true);
        if let Some(v) = &self.circuit_value {
            headers.insert(settings.header.clone(), v.clone());
        }
        *req.version_mut() = Version::HTTP_11;
        let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

        let started = Instant::now();
        let mut resp = match self.send(req, &settings, upgrade, started).await {
            Ok(r) => r,
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
        req: Request<Incoming>,
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
        mut req: Request<Incoming>,
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
                    None => return Err(UpstreamError::Http(e.into_error())),
                },
            }
        }
        Err(UpstreamError::Connect(std::io::Error::other(
            "the upstream closed two connections in a row before a request could be sent",
        )))
    }

    async fn connect(&self, settings: &Settings) -> Result<SendRequest<Incoming>, UpstreamError> {
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

/// Make `headers` fit to forward: remove hop-by-hop headers (RFC 9110
/// §7.6.1) and, given `circuit`, every header of the circuit-id name (all
/// occurrences, and its spellings with `_` for `-`: CGI, PHP and WSGI map
/// both to the same variable, so both are spoofing). With `allow_upgrade`,
/// an upgrade request keeps `Upgrade` and `Connection: upgrade`. Returns
/// whether it is such an upgrade.
fn clean_headers(
    headers: &mut HeaderMap,
    circuit: Option<&HeaderName>,
    allow_upgrade: bool,
) -> bool {
    // One scan first: most messages need no removal, and each removal
    // hashes its name.
    let (mut connection, mut hop, mut spoof) = (false, false, false);
    for name in headers.keys() {
        if name == header::CONNECTION {
            connection = true;
        } else if is_hop_by_hop(name) {
            hop = true;
        } else if let Some(c) = circuit {
            spoof |= name == c || (name.as_str().contains('_') && same_with_dashes(name, c));
        }
    }
    let upgrade = allow_upgrade
        && connection
        && headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade"));
    if connection {
        let listed: Vec<HeaderName> = connection_tokens(headers)
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .filter(|n| !(upgrade && n == header::UPGRADE))
            .collect();
        for n in listed {
            headers.remove(n);
        }
        headers.remove(header::CONNECTION);
    }
    if hop {
        for n in [
            header::TE,
            header::TRAILER,
            header::TRANSFER_ENCODING,
            HeaderName::from_static("keep-alive"),
            HeaderName::from_static("proxy-connection"),
        ] {
            headers.remove(n);
        }
        if !upgrade {
            headers.remove(header::UPGRADE);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    if let (true, Some(c)) = (spoof, circuit) {
        headers.remove(c);
        let spoofs: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().contains('_') && same_with_dashes(k, c))
            .cloned()
            .collect();
        for k in spoofs {
            headers.remove(&k);
        }
    }
    upgrade
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

/// `name` with every `_` read as `-` equals `target`.
fn same_with_dashes(name: &HeaderName, target: &HeaderName) -> bool {
    let (a, b) = (name.as_str().as_bytes(), target.as_str().as_bytes());
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(&x, &y)| x == y || (x == b'_' && y == b'-'))
}

/// The comma-separated tokens of every `Connection` header.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
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
fn too_many(reason: RejectReason, retry_after: u64, close: bool) -> Response<Body> {
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

    fn settings() -> Settings {
        Settings::new(Config::default(), 0).unwrap()
    }

    #[test]
    fn every_spelling_of_the_circuit_header_is_removed() {
        let s = settings();
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("X-Onion-CircuitID", "1"),
            ("x-onion-circuitid", "2"),
            ("X-ONION-CIRCUITID", "3"),
            ("X_Onion_CircuitID", "4"),
            ("x_onion-circuitid", "5"),
            ("X-Onion-Circuit", "keep"),
            ("Accept", "keep"),
        ] {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        clean_headers(&mut h, Some(&s.header), false);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["accept", "x-onion-circuit"]);
    }

    #[test]
    fn hop_by_hop_headers_go_and_upgrades_keep_theirs() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret, Upgrade"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::HOST, HeaderValue::from_static("x.onion"));
        let mut up = h.clone();
        assert!(clean_headers(&mut up, None, true));
        assert_eq!(up.get(header::UPGRADE).unwrap(), "websocket");
        assert_eq!(up.get(header::CONNECTION).unwrap(), "upgrade");
        assert!(!up.contains_key("x-secret") && !up.contains_key(header::TE));
        assert!(!clean_headers(&mut h, None, false));
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["host"]);
    }

    #[test]
    fn refusals_carry_retry_after() {
        let r = too_many(RejectReason::RateLimited, 3, false);
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
        let r = too_many(RejectReason::TooManyConnections, 0, true);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
        assert_eq!(r.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn log_budget_drops_the_excess_and_reports_it() {
        let b = LogBudget::default();
        let start = Instant::now();
        let allowed = (0..100).filter(|_| b.allow(start).is_some()).count() as u64;
        assert!((LOG_BUDGET..100).contains(&allowed), "{allowed}");
    }
}
