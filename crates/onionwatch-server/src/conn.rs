//! Accepting and serving connections within bounds.
//!
//! Slow clients must not starve `/metrics`: a client has
//! [`ConnectionLimits::header_timeout_secs`] to send each request head (the
//! same timer closes an idle keep-alive connection) and
//! [`ConnectionLimits::tls_handshake_timeout_secs`] for the TLS handshake,
//! and at most [`ConnectionLimits::max_connections`] connections are open at
//! once, well below the open-file limit. A connection that arrives when all
//! are taken closes the oldest one that has no request in progress (a slow
//! client still sending its head, or an idle keep-alive connection), so a
//! scraper gets in at once even while slow clients fill every slot; only when
//! every connection has a request in progress does it wait in the kernel's
//! backlog. `accept` failing for lack of descriptors (`EMFILE`, `ENFILE`) is
//! logged once, frees the oldest idle connection and is retried after a
//! short pause instead of spinning.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};

/// Bounds on the endpoint's connections (`EndpointConfig::connections`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionLimits {
    /// Most connections open at once. One more closes the oldest connection
    /// without a request in progress; if every one has a request in
    /// progress, it waits in the kernel's backlog. Default
    /// ([`default_max_connections`]): a quarter of the soft open-file limit
    /// (`RLIMIT_NOFILE`), between 16 and 1024, so 256 under the usual 1024.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send a whole request head; an idle
    /// keep-alive connection is closed after as long. Default 10.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: f64,
    /// Seconds a client has to finish the TLS handshake. Default 10.
    #[serde(default = "default_tls_handshake_timeout")]
    pub tls_handshake_timeout_secs: f64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            header_timeout_secs: default_header_timeout(),
            tls_handshake_timeout_secs: default_tls_handshake_timeout(),
        }
    }
}

/// A quarter of the soft `RLIMIT_NOFILE`, between 16 and 1024 (the rest of
/// the descriptors are for scraping, logs and the state store); 256 if the
/// limit cannot be read.
pub fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let soft = if read && limit.rlim_cur != libc::RLIM_INFINITY {
        limit.rlim_cur
    } else {
        u64::MAX
    };
    max_connections_for(soft)
}

fn max_connections_for(nofile: u64) -> usize {
    usize::try_from(nofile / 4)
        .unwrap_or(usize::MAX)
        .clamp(16, 1024)
}

/// 10 s, as Go exporters' usual `ReadHeaderTimeout`.
pub fn default_header_timeout() -> f64 {
    10.0
}

/// 10 s.
pub fn default_tls_handshake_timeout() -> f64 {
    10.0
}

/// A [`ConnectionLimits`] value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("endpoint setting {option} = {value} is unusable: {why}")]
pub struct LimitError {
    /// The option's name.
    pub option: &'static str,
    /// Its value.
    pub value: String,
    /// What it must be.
    pub why: &'static str,
}

/// The checked form of [`ConnectionLimits`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub tls_handshake_timeout: Duration,
}

impl ConnectionLimits {
    /// Check every value (at load, by `EndpointConfig::check`).
    pub fn validate(&self) -> Result<(), LimitError> {
        self.limits().map(|_| ())
    }

    pub(crate) fn limits(&self) -> Result<Limits, LimitError> {
        // tokio's semaphore holds at most usize::MAX >> 3 permits.
        if self.max_connections == 0 || self.max_connections > 1 << 20 {
            return Err(LimitError {
                option: "max_connections",
                value: self.max_connections.to_string(),
                why: "must be between 1 and 1048576 (and well below the open-file limit)",
            });
        }
        let secs = |option, value: f64| {
            if value.is_finite() && value > 0.0 && value <= 86_400.0 {
                Ok(Duration::from_secs_f64(value))
            } else {
                Err(LimitError {
                    option,
                    value: value.to_string(),
                    why: "must be a number of seconds above 0 and at most 86400",
                })
            }
        };
        Ok(Limits {
            max_connections: self.max_connections,
            header_timeout: secs("header_timeout_secs", self.header_timeout_secs)?,
            tls_handshake_timeout: secs(
                "tls_handshake_timeout_secs",
                self.tls_handshake_timeout_secs,
            )?,
        })
    }
}

/// TLS settings that a reload swaps for new connections.
pub(crate) type SharedTls = Arc<RwLock<Arc<rustls::ServerConfig>>>;

/// What the server is told to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stop {
    Run,
    /// Stop accepting; requests in progress get this long to finish.
    Graceful(Duration),
    /// Close every connection now.
    Now,
}

/// One open connection, as eviction sees it.
#[derive(Default)]
struct ConnState {
    /// Requests in progress (from the head read until the response body is
    /// written or dropped).
    busy: AtomicUsize,
    /// Asked to close (so it is not picked twice).
    evicted: AtomicBool,
    close: Notify,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Open {
    conns: Mutex<BTreeMap<u64, Arc<ConnState>>>,
}

impl Open {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Close the oldest connection without a request in progress; false if
    /// there is none.
    fn evict_oldest_idle(&self) -> bool {
        let conns = self.lock();
        for state in conns.values() {
            if state.busy.load(Ordering::Acquire) == 0
                && !state.evicted.swap(true, Ordering::AcqRel)
            {
                state.close.notify_one();
                return true;
            }
        }
        false
    }
}

/// Removes a connection from [`Open`] when its task ends.
struct Registered {
    open: Arc<Open>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.open.lock().remove(&self.id);
    }
}

/// Marks a request in progress for as long as it lives.
struct Busy(Arc<ConnState>);

impl Busy {
    fn new(state: &Arc<ConnState>) -> Busy {
        state.busy.fetch_add(1, Ordering::AcqRel);
        Busy(Arc::clone(state))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `accept` errors that concern one connection only (the next may work).
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// How long `accept` rests after a failure such as `EMFILE`.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serve `app` on `listener` until told to stop through the returned
/// sender; the task ends once every connection is closed.
pub(crate) fn spawn(
    listener: TcpListener,
    app: Router,
    tls: Option<SharedTls>,
    limits: Limits,
) -> (watch::Sender<Stop>, tokio::task::JoinHandle<()>) {
    let (stop_tx, stop_rx) = watch::channel(Stop::Run);
    let task = tokio::spawn(accept_loop(listener, app, tls, limits, stop_rx));
    (stop_tx, task)
}

/// Wait until `stop` says something other than [`Stop::Run`] (or its sender
/// is gone, which means stop now).
async fn stopped(stop: &mut watch::Receiver<Stop>) -> Stop {
    match stop.wait_for(|s| *s != Stop::Run).await {
        Ok(s) => *s,
        Err(_) => Stop::Now,
    }
}

/// The next order a connection acts on: any stop, or once closing
/// gracefully, only [`Stop::Now`].
async fn next_stop(stop: &mut watch::Receiver<Stop>, graceful: bool) -> Stop {
    let wanted = |s: &Stop| {
        if graceful {
            *s == Stop::Now
        } else {
            *s != Stop::Run
        }
    };
    match stop.wait_for(wanted).await {
        Ok(s) => *s,
        Err(_) => Stop::Now,
    }
}

async fn accept_loop(
    listener: TcpListener,
    app: Router,
    tls: Option<SharedTls>,
    limits: Limits,
    mut stop: watch::Receiver<Stop>,
) {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let open = Arc::new(Open::default());
    let mut next_id = 0u64;
    let mut failing = false;
    let how = loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            s = stopped(&mut stop) => break s,
        };
        let stream = match accepted {
            Ok((stream, _)) => {
                if failing {
                    tracing::info!(%addr, "accepting connections again");
                    failing = false;
                }
                stream
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS…: log once per episode, free a
                // descriptor, rest, retry (the connection waits in the backlog).
                if !failing {
                    tracing::warn!(
                        %addr,
                        "cannot accept connections: {e}; closing idle connections and retrying \
                         every {} ms (raise the open-file limit, e.g. systemd's LimitNOFILE=, or \
                         lower --max-connections)",
                        ACCEPT_BACKOFF.as_millis()
                    );
                    failing = true;
                }
                open.evict_oldest_idle();
                tokio::select! {
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    s = stopped(&mut stop) => break s,
                }
            }
        };
        let permit = match Arc::clone(&slots).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // Full: make room by closing the oldest idle connection, or
                // wait for a request in progress to end.
                open.evict_oldest_idle();
                tokio::select! {
                    p = Arc::clone(&slots).acquire_owned() => p.expect("the semaphore is never closed"),
                    s = stopped(&mut stop) => break s,
                }
            }
        };
        let state = Arc::new(ConnState::default());
        let id = next_id;
        next_id += 1;
        open.lock().insert(id, Arc::clone(&state));
        let registered = Registered {
            open: Arc::clone(&open),
            id,
        };
        let (app, tls, stop) = (app.clone(), tls.clone(), stop.clone());
        tokio::spawn(async move {
            serve_connection(stream, app, tls, limits, state, stop).await;
            drop((registered, permit));
        });
    };
    // Stop accepting now: new connections are refused, not left hanging.
    drop(listener);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if let Stop::Graceful(grace) = how {
        if tokio::time::timeout(grace, slots.acquire_many(all))
            .await
            .is_ok()
        {
            return;
        }
        tracing::info!(%addr, "closing the connections still open after {grace:?}");
    }
    // Closing is immediate once told; the bound only guards against a bug.
    let _ = tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(all)).await;
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    tls: Option<SharedTls>,
    limits: Limits,
    state: Arc<ConnState>,
    mut stop: watch::Receiver<Stop>,
) {
    let _ = stream.set_nodelay(true);
    let Some(tls) = tls else {
        return serve_http(stream, app, limits, state, stop).await;
    };
    let config = Arc::clone(&tls.read().unwrap_or_else(|e| e.into_inner()));
    let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
    let stream = tokio::select! {
        r = tokio::time::timeout(limits.tls_handshake_timeout, handshake) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!("TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake not finished within {:?}", limits.tls_handshake_timeout);
                return;
            }
        },
        _ = state.close.notified() => return,
        _ = stopped(&mut stop) => return,
    };
    serve_http(stream, app, limits, state, stop).await
}

async fn serve_http<I>(
    io: I,
    app: Router,
    limits: Limits,
    state: Arc<ConnState>,
    mut stop: watch::Receiver<Stop>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let state = Arc::clone(&state);
        hyper::service::service_fn(move |req: axum::http::Request<Incoming>| {
            let busy = Busy::new(&state);
            let mut app = app.clone();
            async move {
                let response = match tower_service::Service::call(&mut app, req).await {
                    Ok(r) => r,
                    Err(e) => match e {},
                };
                // Busy until hyper has taken the body's last frame (our
                // bodies are whole: at once), so a client that does not read
                // its response leaves an evictable connection.
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _busy = &busy;
                        frame
                    }))
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Also bounds how long an idle keep-alive connection is kept.
        .header_read_timeout(limits.header_timeout)
        // hyper's default (~400 KB) would let every slow client hold that much.
        .max_buf_size(64 * 1024)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut graceful = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = state.close.notified() => return,
            s = next_stop(&mut stop, graceful) => match s {
                // No request in progress (an idle or slow client): close now.
                Stop::Graceful(_) if state.busy.load(Ordering::Acquire) == 0 => return,
                Stop::Graceful(_) => {
                    // Finish the request in progress, then close.
                    conn.as_mut().graceful_shutdown();
                    graceful = true;
                }
                _ => return,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_is_a_quarter_of_the_file_limit_within_bounds() {
        assert_eq!(max_connections_for(1024), 256);
        assert_eq!(max_connections_for(40), 16);
        assert_eq!(max_connections_for(1 << 20), 1024);
        assert_eq!(max_connections_for(u64::MAX), 1024);
    }

    #[test]
    fn bad_limits_name_the_option() {
        let zero = ConnectionLimits {
            max_connections: 0,
            ..ConnectionLimits::default()
        };
        let e = zero.validate().unwrap_err().to_string();
        assert!(e.contains("max_connections = 0"), "{e}");
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let l = ConnectionLimits {
                header_timeout_secs: bad,
                ..ConnectionLimits::default()
            };
            let e = l.validate().unwrap_err().to_string();
            assert!(e.contains("header_timeout_secs"), "{e}");
        }
        ConnectionLimits::default().validate().unwrap();
    }
}
