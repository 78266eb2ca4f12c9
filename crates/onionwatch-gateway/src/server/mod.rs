//! The gateway: accept loop, PROXY header, per-circuit admission, and HTTP
//! forwarding with one upstream connection per client connection.
//!
//! Why one upstream connection per client connection: HTTP/1.1 handles one
//! request at a time per connection, so this keeps keep-alive on both sides
//! without a shared pool, and it is what makes a per-connection PROXY header
//! upstream (`send_proxy_header`) correct: an upstream connection only ever
//! carries one circuit's requests.
//!
//! Here: the settings in force, the accept loop and its workers, and the
//! handle. `accept` serves one connection (PROXY header, admission),
//! `forward` its requests (upstream connection, timeouts, tunnels, the
//! gateway's own responses), `headers` what changes in forwarded headers.

mod accept;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod headers;

use accept::serve_connection;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::header::HeaderName;
use onionwatch_tor::control::CloseExecutor;
use tokio::sync::{broadcast, mpsc, watch, Semaphore};

use crate::config::{Config, ListenAddr};
use crate::error::Error;
use crate::escalate::{Abuse, EscalationEvent, Escalator};
use crate::io::{Listener, Stream};
use crate::limiter::{CircuitTable, Policy, Refusal};
use crate::metrics::{Metrics, RejectReason};

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
    body_timeout: Duration,
    send_timeout: Duration,
    connect_timeout: Duration,
    upstream_timeout: Duration,
}

impl Settings {
    fn new(config: Config, generation: u64) -> Result<Settings, Error> {
        let bad = |source| Error::Config { path: None, source };
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
            body_timeout: config.body_timeout().map_err(bad)?,
            send_timeout: config.send_timeout().map_err(bad)?,
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

/// The soft `RLIMIT_NOFILE`, if it can be read and is finite.
fn soft_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    (read && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// `max_connections`, lowered to what the open-file limit can hold: each
/// connection takes the client's descriptor and one upstream descriptor,
/// and 64 stay for listeners, the metrics endpoint and the control port.
/// Past the limit, accept fails with EMFILE and clients wait anyway, so
/// the cap only makes the wait orderly (the kernel backlog) and says why.
fn within_file_limit(configured: usize, soft_limit: Option<u64>) -> usize {
    let Some(nofile) = soft_limit else {
        return configured;
    };
    let room = usize::try_from(nofile.saturating_sub(64) / 2)
        .unwrap_or(usize::MAX)
        .max(1);
    if configured > room {
        tracing::warn!(
            "max_connections {configured} needs about {} open files, but the limit is {nofile}: \
             using {room}; raise the limit (systemd: LimitNOFILE=, shell: ulimit -n) to allow more",
            configured * 2 + 64
        );
        return room;
    }
    configured
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
        let mode = config
            .unix_mode()
            .map_err(|source| Error::Config { path: None, source })?;
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
            max_connections: within_file_limit(config.max_connections, soft_file_limit()),
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
            // The configured figure, not the one capped at bind: a reload
            // compares configurations.
            max_connections: config.max_connections,
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
        // Failures in a row: an EMFILE storm is logged once, not every 50 ms.
        let mut accept_failures = 0u64;
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
            let (stream, peer_ip, peer) = match accepted {
                Ok(a) => {
                    if accept_failures > 0 {
                        tracing::warn!(
                            "accepting on {} works again after {accept_failures} failures",
                            self.local
                        );
                        accept_failures = 0;
                    }
                    a
                }
                Err(e) => {
                    // EMFILE and friends: wait a little instead of spinning.
                    if accept_failures == 0 {
                        tracing::warn!(
                            "accept failed on {}: {e}; retrying every 50 ms (logged again once it works)",
                            self.local
                        );
                    }
                    accept_failures += 1;
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
                    Ok(stream) => serve_connection(shared, stream, peer_ip, peer).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_budget_drops_the_excess_and_reports_it() {
        let b = LogBudget::default();
        let start = Instant::now();
        let allowed = (0..100).filter(|_| b.allow(start).is_some()).count() as u64;
        assert!((LOG_BUDGET..100).contains(&allowed), "{allowed}");
    }

    #[test]
    fn max_connections_fit_the_open_file_limit() {
        // The usual soft limit of 1024 holds 480 connections, not 4096.
        assert_eq!(within_file_limit(4096, Some(1024)), 480);
        assert_eq!(within_file_limit(100, Some(1024)), 100);
        assert_eq!(within_file_limit(4096, Some(1_048_576)), 4096);
        assert_eq!(within_file_limit(4096, None), 4096);
        assert_eq!(within_file_limit(4096, Some(10)), 1);
    }
}
