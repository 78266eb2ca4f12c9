//! The one HTTP endpoint of onionwatch.
//!
//! Every component registers a [`Collect`] source with a [`Registry`]; the
//! server renders all of them at `/metrics` (Prometheus text, or OpenMetrics
//! when the scraper's `Accept` asks for it, followed by `onionwatch_build_info`
//! and the `process_*` families, see [`exporter`]) and answers `/healthz`,
//! `/-/healthy` (always 200) and `/-/ready` (200 once [`Registry::set_ready`]
//! says so, 503 before).
//! Components add their own routes (e.g. `/api/v1/targets`) by merging an
//! axum [`Router`] into [`router`]'s; `/probe?target=…` (probes scheduled
//! by Prometheus, bounded by its scrape timeout and a concurrency limit) is
//! [`on_demand_router`] over a component's [`OnDemand`].
//!
//! Metrics derived from tor's MetricsPort can help deanonymise Tor users, so
//! [`check_listen`] refuses any address that is not loopback unless the
//! caller states the endpoint is protected (TLS and authentication).
//! [`EndpointConfig::new`] assembles and checks an endpoint from a listen
//! address, TLS files and an auth file ([`AuthConfig::load`]), or
//! [`EndpointConfig::from_web_config`] from a Prometheus exporter-toolkit
//! web configuration file ([`WebConfig`]).
//!
//! Slow or idle clients cannot starve `/metrics`: every endpoint bounds the
//! time to send a request head and to finish a TLS handshake, and the number
//! of open connections, closing the oldest idle one when a new one arrives
//! at the cap (see [`ConnectionLimits`], [`EndpointConfig::connections`]).
//!
//! Against DNS rebinding, a loopback endpoint answers only requests whose
//! `Host` is `localhost`, an IP address, a `.onion` name or one of
//! [`EndpointConfig::allowed_hosts`] (others get 421); off loopback the check
//! applies when names are configured. See [`HostCheck`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), onionwatch_server::ServeError> {
//! use std::sync::Arc;
//! use onionwatch_server::{router, serve, Registry};
//! let registry = Arc::new(Registry::default());
//! let app = router(registry.clone());
//! serve("127.0.0.1:9925".parse().unwrap(), false, app, std::future::pending()).await
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

mod conn;
pub mod exporter;
mod host;
mod on_demand;
mod security;
mod webconfig;

pub use conn::{
    default_header_timeout, default_max_connections, default_tls_handshake_timeout,
    ConnectionLimits, LimitError,
};
pub use host::{check_host, HostCheck, HostError};
pub use on_demand::{
    on_demand_router, OnDemand, OnDemandError, OnDemandFuture, OnDemandLimits,
    SCRAPE_TIMEOUT_HEADER,
};
pub use security::{
    require_auth, server_config, AuthConfig, Authenticator, BasicUser, SecurityError, TlsConfig,
    Verdict,
};
pub use webconfig::{WebConfig, WebHeaders, WebHttpConfig, WebSettings, WebTlsConfig};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use onionwatch_metrics::{merge_checked, push_dropped, render, Family, Format};
pub use onionwatch_metrics::{Collect, ConstLabels, Labelled};

/// The metric sources of one process.
#[derive(Default)]
pub struct Registry {
    sources: RwLock<Vec<Arc<dyn Collect>>>,
    /// Families dropped by [`Registry::gather`] for a type conflict, so far.
    type_conflicts: std::sync::atomic::AtomicU64,
    /// Families dropped by [`Registry::gather`] for a sample name conflict, so far.
    name_conflicts: std::sync::atomic::AtomicU64,
    /// `/-/ready` answers 503 while set ([`Registry::set_ready`]).
    not_ready: std::sync::atomic::AtomicBool,
    /// Asked by `/-/ready` too ([`Registry::set_readiness`]).
    readiness: RwLock<Option<Readiness>>,
}

/// A check `/-/ready` asks at each request.
type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.sources.read().map(|s| s.len()).unwrap_or(0);
        f.debug_struct("Registry").field("sources", &n).finish()
    }
}

impl Registry {
    /// Add a source; it is asked for its families at every scrape.
    pub fn register(&self, source: Arc<dyn Collect>) {
        self.sources
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(source);
    }

    /// Every source's families, merged by name. A family with the name of
    /// an earlier one but another type, or writing samples under a name
    /// another family writes, is dropped and counted in
    /// `onionwatch_scrape_dropped_families_total{reason="type_conflict"}`
    /// or `{reason="name_conflict"}` (exported once that happens).
    pub fn gather(&self) -> Vec<Family> {
        let sources = self
            .sources
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut families = Vec::new();
        for s in sources {
            s.collect(&mut families);
        }
        let (mut merged, dropped) = merge_checked(families);
        use std::sync::atomic::Ordering::Relaxed;
        let count = |total: &std::sync::atomic::AtomicU64, n: u64| total.fetch_add(n, Relaxed) + n;
        let types = count(&self.type_conflicts, dropped.type_conflict);
        let names = count(&self.name_conflicts, dropped.name_conflict);
        push_dropped(
            &mut merged,
            onionwatch_metrics::DROPPED_TYPE_CONFLICT,
            types,
        );
        push_dropped(
            &mut merged,
            onionwatch_metrics::DROPPED_NAME_CONFLICT,
            names,
        );
        merged
    }

    /// Say whether `/-/ready` answers 200 (`true`, the default) or 503.
    /// A command whose metrics mean nothing before its first round or scrape
    /// sets `false` when it starts and `true` once that round completed.
    pub fn set_ready(&self, ready: bool) {
        self.not_ready
            .store(!ready, std::sync::atomic::Ordering::Relaxed);
    }

    /// Let `/-/ready` also ask `check` at each request (e.g. "has every
    /// target been scraped once?"), instead of being told.
    pub fn set_readiness(&self, check: impl Fn() -> bool + Send + Sync + 'static) {
        *self.readiness.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(check));
    }

    /// What `/-/ready` says: [`Registry::set_ready`] and
    /// [`Registry::set_readiness`] both agree.
    pub fn is_ready(&self) -> bool {
        let check = self
            .readiness
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        !self.not_ready.load(std::sync::atomic::Ordering::Relaxed) && check.is_none_or(|c| c())
    }

    /// The rendered exposition in `format`.
    pub fn render(&self, format: Format) -> String {
        render(&self.gather(), format)
    }

    /// Everything [`router`]'s `/metrics` serves: [`Registry::gather`],
    /// then `onionwatch_build_info` and the `process_*` families.
    pub fn exposition(&self) -> Vec<Family> {
        let mut families = self.gather();
        families.extend(exporter::families());
        families
    }
}

/// A registry as one source is its [`Registry::exposition`]: the root
/// collector of a process, which [`onionwatch_metrics::Labelled`] can wrap
/// (constant labels) to feed [`router_over`] and a remote_write pusher
/// alike. Never register a registry with itself.
impl Collect for Registry {
    fn collect(&self, out: &mut Vec<Family>) {
        out.extend(self.exposition());
    }
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A non-loopback address without TLS and authentication.
    #[error(
        "refusing to serve metrics on {0}: it is not a loopback address and the endpoint has no TLS and \
         authentication. Metrics from tor's MetricsPort can help deanonymise Tor users if anyone can \
         read them. Listen on 127.0.0.1 (and reach it over SSH or an authenticated onion service), \
         or configure TLS and authentication"
    )]
    Exposed(SocketAddr),
    /// Binding the address failed.
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TLS or authentication settings are unusable.
    #[error(transparent)]
    Security(#[from] SecurityError),
    /// A configured host name is unusable.
    #[error(transparent)]
    Host(#[from] HostError),
    /// A connection limit is unusable.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The server failed while running.
    #[error("the HTTP server on {addr} failed: {source}")]
    Serve {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Refuse `addr` unless it is loopback or the endpoint is `protected`
/// (TLS and authentication configured).
pub fn check_listen(addr: SocketAddr, protected: bool) -> Result<(), ServeError> {
    if addr.ip().is_loopback() || protected {
        Ok(())
    } else {
        Err(ServeError::Exposed(addr))
    }
}

/// `/metrics`, `/healthz`, `/-/healthy` and `/-/ready` over `registry`.
pub fn router(registry: Arc<Registry>) -> Router {
    router_over(registry.clone(), registry)
}

/// [`router`] whose `/metrics` serves `root` (usually `registry` wrapped,
/// e.g. in [`onionwatch_metrics::Labelled`]) while `/-/ready` asks
/// `registry`.
pub fn router_over(registry: Arc<Registry>, root: Arc<dyn Collect>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(root)
        .merge(health_router(registry))
}

/// `/healthz` and `/-/healthy` (always 200) and `/-/ready` (as `registry`
/// says, see [`Registry::is_ready`]), for an endpoint whose `/metrics` is
/// not [`router`]'s (`scrape-gateway` forwards another's).
pub fn health_router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/-/healthy", get(|| async { "ok\n" }))
        .route("/-/ready", get(ready))
        .with_state(registry)
}

async fn ready(State(registry): State<Arc<Registry>>) -> Response {
    if registry.is_ready() {
        "ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first round has not completed yet\n",
        )
            .into_response()
    }
}

async fn metrics(State(root): State<Arc<dyn Collect>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    // Collectors may lock and format a lot: keep that off the async workers.
    let render = move || {
        let mut families = Vec::new();
        root.collect(&mut families);
        onionwatch_metrics::render(&families, format)
    };
    match tokio::task::spawn_blocking(render).await {
        Ok(body) => ([(header::CONTENT_TYPE, format.content_type())], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a metrics collector panicked");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "a metrics collector failed\n",
            )
                .into_response()
        }
    }
}

/// Bind `addr` (after [`check_listen`]) and serve `app` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    protected: bool,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listener = bind(addr, protected).await?;
    serve_on(listener, app, shutdown).await
}

/// Check and bind `addr`; split from [`serve_on`] so callers can learn the
/// port of `127.0.0.1:0` before serving.
pub async fn bind(
    addr: SocketAddr,
    protected: bool,
) -> Result<tokio::net::TcpListener, ServeError> {
    check_listen(addr, protected)?;
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serve `app` on a bound listener until `shutdown` resolves, with the
/// default [`ConnectionLimits`].
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(|source| ServeError::Serve {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    tracing::info!(%addr, "serving /metrics and /healthz");
    let app = guard_host(app, addr, HostCheck::default());
    let limits = ConnectionLimits::default().limits()?;
    let (stop, task) = conn::spawn(listener, app, None, limits);
    shutdown.await;
    let _ = stop.send(conn::Stop::Graceful(SERVE_ON_GRACE));
    task.await.map_err(|e| ServeError::Serve {
        addr,
        source: std::io::Error::other(e.to_string()),
    })
}

/// How long [`serve_on`] lets requests in progress finish after `shutdown`.
const SERVE_ON_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Add the [`HostCheck`] to `app` when it applies: on a loopback `listen`
/// address always, elsewhere when names are configured.
fn guard_host(app: Router, listen: SocketAddr, check: HostCheck) -> Router {
    if listen.ip().is_loopback() || check.has_names() {
        app.layer(axum::middleware::from_fn_with_state(check, check_host))
    } else {
        app
    }
}

/// Where and how the endpoint listens.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Serve HTTPS with these files (reloaded by [`RunningServer::reload`]).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Credentials required for everything but `/healthz`.
    #[serde(default)]
    pub auth: AuthConfig,
    /// The YAML file `auth` is read from ([`EndpointConfig::load_auth_file`]);
    /// [`RunningServer::reload`] reads it again. With a file, authentication
    /// stays in place even while it holds no credential, so a reload can
    /// add some.
    #[serde(default)]
    pub auth_file: Option<PathBuf>,
    /// Listen on a non-loopback address without TLS and authentication
    /// anyway. Logged loudly at every start.
    #[serde(default)]
    pub i_understand_the_risk: bool,
    /// More host names the endpoint answers to (e.g. a reverse proxy's),
    /// besides `localhost`, IP addresses and `.onion` names. Requests for
    /// other names get 421, against DNS rebinding: always on a loopback
    /// `listen`, and off loopback only when this list is not empty (TLS and
    /// authentication guard it there). See [`HostCheck`].
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The exporter-toolkit web configuration file `tls`, `auth` and
    /// `headers` came from ([`EndpointConfig::from_web_config`]);
    /// [`RunningServer::reload`] reads it again instead of `auth_file`.
    #[serde(default)]
    pub web_config_file: Option<PathBuf>,
    /// Headers added to every response (name → value), from a web
    /// configuration's `http_server_config.headers`.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Bounds on connections: how many at once, and how long a client has
    /// for its request head and TLS handshake (see [`ConnectionLimits`]).
    #[serde(default)]
    pub connections: ConnectionLimits,
}

/// The default listen address, `127.0.0.1:9925`.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9925))
}

impl Default for EndpointConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            tls: None,
            auth: AuthConfig::default(),
            auth_file: None,
            i_understand_the_risk: false,
            allowed_hosts: Vec::new(),
            web_config_file: None,
            headers: Default::default(),
            connections: ConnectionLimits::default(),
        }
    }
}

impl EndpointConfig {
    /// The endpoint on `listen`, with TLS if given and the credentials of
    /// `auth_file` (none if `None`), checked (see [`EndpointConfig::check`]).
    pub fn new(
        listen: SocketAddr,
        tls: Option<TlsConfig>,
        auth_file: Option<&std::path::Path>,
        allowed_hosts: Vec<String>,
        i_understand_the_risk: bool,
    ) -> Result<EndpointConfig, ServeError> {
        let mut config = EndpointConfig {
            listen,
            tls,
            auth: AuthConfig::default(),
            auth_file: auth_file.map(ToOwned::to_owned),
            i_understand_the_risk,
            allowed_hosts,
            web_config_file: None,
            headers: Default::default(),
            connections: ConnectionLimits::default(),
        };
        config.load_auth_file()?;
        config.check()?;
        Ok(config)
    }

    /// The endpoint on `listen` with the TLS, basic-auth users and headers
    /// of the exporter-toolkit web configuration file at `web_config`
    /// (see [`WebConfig`]), checked (see [`EndpointConfig::check`]).
    pub fn from_web_config(
        listen: SocketAddr,
        web_config: &std::path::Path,
        allowed_hosts: Vec<String>,
        i_understand_the_risk: bool,
    ) -> Result<EndpointConfig, ServeError> {
        let settings = WebConfig::load(web_config)?;
        let config = EndpointConfig {
            listen,
            tls: settings.tls,
            auth: settings.auth,
            auth_file: None,
            i_understand_the_risk,
            allowed_hosts,
            web_config_file: Some(web_config.to_owned()),
            headers: settings.headers,
            connections: ConnectionLimits::default(),
        };
        config.check()?;
        Ok(config)
    }

    /// TLS plus either credentials or client certificates.
    pub fn is_protected(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.client_ca.is_some() || !self.auth.is_empty())
    }

    /// Fill `auth` from `auth_file`, if set.
    pub fn load_auth_file(&mut self) -> Result<(), SecurityError> {
        if let Some(path) = &self.auth_file {
            self.auth = AuthConfig::load(path)?;
        }
        Ok(())
    }

    /// Refuse an exposed address unless protected or explicitly overridden,
    /// malformed [`EndpointConfig::allowed_hosts`] and unusable
    /// [`EndpointConfig::connections`].
    pub fn check(&self) -> Result<(), ServeError> {
        HostCheck::new(&self.allowed_hosts)?;
        self.connections.validate()?;
        match check_listen(self.listen, self.is_protected()) {
            // The caller says why (the prober's public observations, or an
            // operator's explicit choice); only the fact is logged here.
            Err(ServeError::Exposed(addr)) if self.i_understand_the_risk => {
                tracing::warn!(
                    "serving metrics on {addr} without TLS and authentication \
                     (i_understand_the_risk): anyone who can reach this address can read them"
                );
                Ok(())
            }
            other => other,
        }
    }
}

/// What [`RunningServer::reload`] could not reload (the old settings stay
/// for those).
#[derive(Debug, thiserror::Error)]
pub struct ReloadError {
    /// Why the TLS files were not reloaded.
    pub tls: Option<Box<SecurityError>>,
    /// Why the auth file was not reloaded.
    pub auth: Option<Box<SecurityError>>,
}

impl std::fmt::Display for ReloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut sep = "";
        if let Some(e) = &self.tls {
            write!(f, "TLS not reloaded, keeping the old certificate: {e}")?;
            sep = "; ";
        }
        if let Some(e) = &self.auth {
            write!(
                f,
                "{sep}credentials not reloaded, keeping the old ones: {e}"
            )?;
        }
        Ok(())
    }
}

/// A server started by [`start`]. Dropping it stops the server at once
/// (every connection closed); [`RunningServer::shutdown`] lets requests in
/// progress finish.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    stop: tokio::sync::watch::Sender<conn::Stop>,
    tls: Option<(TlsConfig, conn::SharedTls)>,
    auth: Option<(PathBuf, Authenticator)>,
    /// Whether `auth`'s file is a web configuration (else an auth file).
    web_config: bool,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Re-read the TLS files and the auth file (on SIGHUP). Each one that
    /// cannot be used leaves its old configuration in place; the error says
    /// which. Existing connections keep their certificate; credentials apply
    /// from the next request (cached successes of the old ones are dropped).
    pub fn reload(&self) -> Result<(), ReloadError> {
        let error = ReloadError {
            tls: self.reload_tls().err().map(Box::new),
            auth: self.reload_auth().err().map(Box::new),
        };
        if error.tls.is_none() && error.auth.is_none() {
            Ok(())
        } else {
            Err(error)
        }
    }

    fn reload_tls(&self) -> Result<(), SecurityError> {
        if let Some((files, rustls)) = &self.tls {
            // A web configuration may name other files now.
            let files = match (&self.auth, self.web_config) {
                (Some((path, _)), true) => {
                    WebConfig::load(path)?
                        .tls
                        .ok_or_else(|| SecurityError::WebConfig {
                            path: path.clone(),
                            detail: "it no longer configures TLS, and a reload cannot turn TLS \
                                     off (restart to do so)"
                                .into(),
                        })?
                }
                _ => files.clone(),
            };
            let config = server_config(&files)?;
            *rustls.write().unwrap_or_else(|e| e.into_inner()) = config;
            tracing::info!(cert = %files.cert.display(), "reloaded TLS certificate");
        }
        Ok(())
    }

    fn reload_auth(&self) -> Result<(), SecurityError> {
        if let Some((path, auth)) = &self.auth {
            let config = if self.web_config {
                WebConfig::load(path)?.auth
            } else {
                AuthConfig::load(path)?
            };
            auth.reload(&config)?;
            tracing::info!(file = %path.display(), "reloaded credentials");
        }
        Ok(())
    }

    /// Stop accepting, let in-flight requests finish for up to `grace`.
    pub async fn shutdown(self, grace: std::time::Duration) -> Result<(), ServeError> {
        let _ = self.stop.send(conn::Stop::Graceful(grace));
        let addr = self.addr;
        self.task.await.map_err(|e| ServeError::Serve {
            addr,
            source: std::io::Error::other(e.to_string()),
        })
    }
}

/// Check `config`, bind, and serve `app` in the background with TLS and
/// authentication as configured.
pub async fn start(config: &EndpointConfig, app: Router) -> Result<RunningServer, ServeError> {
    config.check()?;
    // With an auth file the check stays in place, so a reload can add credentials.
    let auth_source = config
        .web_config_file
        .clone()
        .or_else(|| config.auth_file.clone());
    let auth = if config.auth.is_empty() && auth_source.is_none() {
        None
    } else {
        Some(Authenticator::new(&config.auth).map_err(ServeError::Security)?)
    };
    let app = match &auth {
        None => app,
        Some(auth) => app.layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            require_auth,
        )),
    };
    let auth = auth.and_then(|a| auth_source.map(|path| (path, a)));
    let app = add_headers(app, &config.headers)?;
    // Outermost: a rebinding page gets 421, not a password prompt.
    let app = guard_host(app, config.listen, HostCheck::new(&config.allowed_hosts)?);
    let limits = config.connections.limits()?;
    let addr = config.listen;
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|_| l))
        .and_then(tokio::net::TcpListener::from_std)
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let tls = match &config.tls {
        None => None,
        Some(files) => {
            let shared = std::sync::Arc::new(RwLock::new(server_config(files)?));
            Some((files.clone(), shared))
        }
    };
    let (stop, task) = conn::spawn(listener, app, tls.as_ref().map(|t| t.1.clone()), limits);
    tracing::info!(addr = %local, tls = tls.is_some(), auth = !config.auth.is_empty(), "serving /metrics");
    Ok(RunningServer {
        addr: local,
        stop,
        tls,
        auth,
        web_config: config.web_config_file.is_some(),
        task,
    })
}

/// Add `headers` to every response of `app`.
fn add_headers(
    app: Router,
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<Router, ServeError> {
    if headers.is_empty() {
        return Ok(app);
    }
    let mut list = Vec::new();
    for (name, value) in headers {
        let bad = |detail: String| {
            ServeError::Security(SecurityError::Hash {
                what: "response header",
                detail,
            })
        };
        let name = header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| bad(format!("{name:?}: {e}")))?;
        let value = header::HeaderValue::from_str(value)
            .map_err(|e| bad(format!("{name}: {value:?}: {e}")))?;
        list.push((name, value));
    }
    let list = Arc::new(list);
    Ok(app.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| {
            let list = list.clone();
            async move {
                let mut response = next.run(req).await;
                for (name, value) in list.iter() {
                    response.headers_mut().insert(name.clone(), value.clone());
                }
                response
            }
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Fixed(f64);
    impl Collect for Fixed {
        fn collect(&self, out: &mut Vec<Family>) {
            let mut f = Family::gauge("onionwatch_test_value", "A test value.");
            f.push(&[("project", "p")], self.0);
            out.push(f);
        }
    }

    async fn get_raw(addr: SocketAddr, path: &str, accept: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_in_both_formats_and_healthz() {
        let registry = Arc::new(Registry::default());
        registry.register(Arc::new(Fixed(1.0)));
        registry.register(Arc::new(Fixed(2.0)));
        let listener = bind("127.0.0.1:0".parse().unwrap(), false).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_on(listener, router(registry), async {
            let _ = rx.await;
        }));

        let text = get_raw(addr, "/metrics", "text/plain").await;
        assert!(
            text.contains("content-type: text/plain; version=0.0.4"),
            "{text}"
        );
        // Two sources, one family: merged, one TYPE line.
        assert_eq!(
            text.matches("# TYPE onionwatch_test_value gauge").count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.matches("onionwatch_test_value{project=\"p\"}").count(),
            2
        );

        let om = get_raw(
            addr,
            "/metrics",
            "application/openmetrics-text;version=1.0.0",
        )
        .await;
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.trim_end().ends_with("# EOF"), "{om}");

        assert!(get_raw(addr, "/healthz", "*/*").await.ends_with("ok\n"));
        assert!(get_raw(addr, "/nope", "*/*")
            .await
            .starts_with("HTTP/1.1 404"));
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn ready_follows_the_registry_and_metrics_carry_build_and_process_families() {
        let registry = Arc::new(Registry::default());
        registry.register(Arc::new(Fixed(1.0)));
        registry.set_ready(false);
        let listener = bind("127.0.0.1:0".parse().unwrap(), false).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_on(listener, router(registry.clone()), async {
            let _ = rx.await;
        }));
        assert!(get_raw(addr, "/-/healthy", "*/*")
            .await
            .starts_with("HTTP/1.1 200"));
        let before = get_raw(addr, "/-/ready", "*/*").await;
        assert!(before.starts_with("HTTP/1.1 503"), "{before}");
        registry.set_ready(true);
        assert!(get_raw(addr, "/-/ready", "*/*")
            .await
            .starts_with("HTTP/1.1 200"));
        // A check asked at each request.
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        registry.set_readiness(move || flag.load(std::sync::atomic::Ordering::Relaxed));
        assert!(get_raw(addr, "/-/ready", "*/*")
            .await
            .starts_with("HTTP/1.1 503"));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(get_raw(addr, "/-/ready", "*/*")
            .await
            .starts_with("HTTP/1.1 200"));
        let text = get_raw(addr, "/metrics", "text/plain").await;
        assert!(
            text.contains("# TYPE onionwatch_build_info gauge\nonionwatch_build_info{version=\""),
            "{text}"
        );
        #[cfg(target_os = "linux")]
        for family in [
            "process_cpu_seconds_total",
            "process_open_fds",
            "process_max_fds",
        ] {
            assert!(text.contains(&format!("\n{family} ")), "{family}: {text}");
        }
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    /// A source posing as another's family with another type.
    struct Impostor;
    impl Collect for Impostor {
        fn collect(&self, out: &mut Vec<Family>) {
            let mut f = Family::histogram("onionwatch_test_value", "fake");
            f.push_suffixed("_bucket", &[("le", "+Inf")], 5.0)
                .push_suffixed("_sum", &[], 5.0)
                .push_suffixed("_count", &[], 5.0);
            out.push(f);
        }
    }

    #[test]
    fn a_family_of_another_type_is_dropped_and_counted() {
        let registry = Registry::default();
        registry.register(Arc::new(Fixed(1.0)));
        registry.register(Arc::new(Impostor));
        let text = registry.render(Format::Prometheus);
        assert!(!text.contains("onionwatch_test_value_"), "{text}");
        assert!(
            text.contains("onionwatch_test_value{project=\"p\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("onionwatch_scrape_dropped_families_total{reason=\"type_conflict\"} 1\n"),
            "{text}"
        );
        let text = registry.render(Format::Prometheus);
        assert!(
            text.contains("{reason=\"type_conflict\"} 2\n"),
            "a counter: {text}"
        );
        let clean = Registry::default();
        clean.register(Arc::new(Fixed(1.0)));
        assert!(
            !clean
                .render(Format::Prometheus)
                .contains("dropped_families"),
            "nothing until a family is dropped"
        );
    }

    #[test]
    fn refuses_exposed_addresses_unless_protected() {
        check_listen("127.0.0.1:9925".parse().unwrap(), false).unwrap();
        check_listen("[::1]:9925".parse().unwrap(), false).unwrap();
        let err = check_listen("0.0.0.0:9925".parse().unwrap(), false).unwrap_err();
        assert!(err.to_string().contains("deanonymise"), "{err}");
        check_listen("0.0.0.0:9925".parse().unwrap(), true).unwrap();
    }
}
