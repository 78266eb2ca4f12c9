//! The probing loop around a [`Prober`]: rounds, the sleep between them,
//! configuration reloads and the Prometheus exporter.
//!
//! The exporter is onionwatch's one HTTP endpoint (`onionwatch-server`: TLS,
//! mutual TLS, bearer/basic auth, `Host` check). [`exporter_endpoint`]
//! decides where and how it listens from the configuration, before tor or
//! anything else starts, and [`start_exporter`] serves it; a non-loopback
//! `prometheus_exporter_address` is served even without TLS and
//! authentication (container setups scrape across hosts), with a warning:
//! probe results are observations of public onion services, not tor's
//! MetricsPort data.
//!
//! The caller keeps presentation and signals: it gets every result and round
//! end through a callback ([`Event`]), stops the runner with any future (a
//! signal, a channel, a timeout) and asks for reloads through a channel whose
//! configuration comes from a function it gives (it may merge command-line
//! flags into the file).
//!
//! ```no_run
//! # async fn demo(config: onionwatch_probe::Config) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use onionwatch_probe::runner::{Event, Runner};
//! use onionwatch_probe::{ProbeMetrics, Tor};
//!
//! let tor = Arc::new(Tor::from_config(&config).await?);
//! let mut runner = Runner::new(tor, Arc::new(ProbeMetrics::new()), config)?;
//! let finish = runner
//!     .run(tokio::signal::ctrl_c(), |event| {
//!         if let Event::RoundDone { round, results } = event {
//!             println!("round {round}: {} results", results.len());
//!         }
//!         Ok::<_, std::io::Error>(())
//!     })
//!     .await?;
//! runner.shutdown().await;
//! # let _ = finish; Ok(()) }
//! ```

use std::future::{pending, Future};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use onionwatch_metrics::{Collect, ConstLabels, Labelled};
use onionwatch_server::{
    on_demand_router, EndpointConfig, HostCheck, OnDemandLimits, Registry, RunningServer,
};

use tokio::sync::mpsc;

use crate::config::{Config, ConfigError, Target};
use crate::metrics::{ProbeMetrics, State};
use crate::on_demand::OnDemandProbes;
use crate::probe::{ProbeResult, Prober, Settings};
use crate::tor::Tor;

/// An error from the caller's configuration function.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Builds the configuration anew on a reload request.
pub type Rebuild = Box<dyn FnMut() -> Result<Config, BoxError> + Send>;

/// What the runner reports while it runs.
#[derive(Debug)]
pub enum Event {
    /// A round starts; `expected` results will come (one per path, one per
    /// TCP endpoint).
    RoundStarted {
        /// Round number (from 1).
        round: u64,
        /// Results to come.
        expected: u64,
    },
    /// One probe result, as soon as it is known.
    Result(Box<ProbeResult>),
    /// A round ended (after all its [`Event::Result`]s).
    RoundDone {
        /// Round number.
        round: u64,
        /// Its results, in the order the probes finished.
        results: Vec<ProbeResult>,
    },
}

/// How [`Runner::run`] ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Finish<S> {
    /// The rounds ran out: one round without `loop` (or with
    /// [`Runner::once`]), `rounds` rounds with it.
    Done,
    /// The stop future resolved with this value; a round in progress was
    /// abandoned.
    Stopped(S),
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics on {addr}")]
pub struct ExporterError {
    /// `prometheus_exporter_address:prometheus_exporter_port`.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: onionwatch_server::ServeError,
}

/// Where and how the exporter listens when `prometheus_exporter` is set
/// (`None` otherwise): `endpoint` (TLS, auth file, host names, limits: the
/// command line's `--tls-cert`, `--auth-file`… as for `watch`) on
/// `prometheus_exporter_address:prometheus_exporter_port`. Reads the auth
/// file and checks the host names, so a bad setting is refused before tor
/// starts. A non-loopback address without TLS and authentication is allowed
/// (it was given explicitly: the default is 127.0.0.1) and logged as a
/// warning.
pub fn exporter_endpoint(
    config: &Config,
    mut endpoint: EndpointConfig,
) -> Result<Option<EndpointConfig>, ExporterError> {
    if !config.prometheus_exporter {
        return Ok(None);
    }
    let listen = SocketAddr::new(
        config.prometheus_exporter_address,
        config.prometheus_exporter_port,
    );
    let error = |source| ExporterError {
        addr: listen,
        source,
    };
    HostCheck::new(&endpoint.allowed_hosts).map_err(|e| error(e.into()))?;
    endpoint.listen = listen;
    endpoint.load_auth_file().map_err(|e| error(e.into()))?;
    if !listen.ip().is_loopback() && !endpoint.is_protected() {
        tracing::warn!(
            "serving the prober's metrics on {listen} (prometheus_exporter_address) without TLS \
             and authentication: anyone who can reach it can read them. They are observations of \
             public onion services (reachability, latency, descriptors), not tor's MetricsPort \
             data; add --tls-cert/--tls-key and --auth-file (or --tls-client-ca) to restrict them"
        );
        endpoint.i_understand_the_risk = true;
    }
    Ok(Some(endpoint))
}

/// What the prober exports: its registry (the probe metrics, `/-/ready`
/// once a round completed) and the root collector over it, which adds the
/// configuration's constant labels (`vantage`, `external_labels`) to every
/// family, `onionwatch_build_info` and `process_*` included. `/metrics`
/// serves [`Exposition::root`]; a remote_write pusher reads the same.
#[derive(Clone)]
pub struct Exposition {
    /// The sources (register more here).
    pub registry: Arc<Registry>,
    /// The registry's exposition with the constant labels added.
    pub root: Arc<dyn Collect>,
    /// The constant labels (also for alerts about these series).
    pub labels: ConstLabels,
    /// `/probe?target=…`, answered once a [`Runner`] runs
    /// ([`Runner::with_on_demand`]).
    pub on_demand: Arc<OnDemandProbes>,
}

impl std::fmt::Debug for Exposition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposition")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Exposition {
    /// `metrics` in a new registry, wrapped in `labels`.
    pub fn new(metrics: Arc<ProbeMetrics>, labels: ConstLabels) -> Self {
        let registry = Arc::new(Registry::default());
        registry.register(metrics.clone());
        // `/-/ready` once a round completed.
        registry.set_readiness(move || {
            metrics
                .get("onionwatch_rounds", &[])
                .is_some_and(|n| n >= 1.0)
        });
        let root = Arc::new(Labelled::new(registry.clone(), labels.clone()));
        Exposition {
            registry,
            root,
            on_demand: Arc::new(OnDemandProbes::new(labels.clone())),
            labels,
        }
    }
}

/// Serve `exposition` at `/metrics` (and `/healthz`, `/-/ready`),
/// `/probe?target=…` (at most `max_probes` at once, see
/// [`crate::on_demand`]) and `routes` (the alert engine's `/api/v1/alerts`…)
/// on `endpoint`, in the background.
pub async fn start_exporter(
    endpoint: &EndpointConfig,
    exposition: &Exposition,
    max_probes: usize,
    routes: Option<axum::Router>,
) -> Result<RunningServer, ExporterError> {
    let limits = OnDemandLimits {
        max_in_flight: max_probes.max(1),
        ..OnDemandLimits::default()
    };
    let mut app =
        onionwatch_server::router_over(exposition.registry.clone(), exposition.root.clone())
            .merge(on_demand_router(exposition.on_demand.clone(), limits));
    if let Some(routes) = routes {
        app = app.merge(routes);
    }
    onionwatch_server::start(endpoint, app)
        .await
        .map_err(|source| ExporterError {
            addr: endpoint.listen,
            source,
        })
}

/// The settings of `new` that differ from `old` but apply only at a
/// restart: tor's (the connection to it, or the launched tor's torrc) and
/// the exporter's listening address.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! check {
        ($($field:ident => $name:literal),* $(,)?) => {
            $( if old.$field != new.$field { changed.push($name); } )*
        };
    }
    check!(
        launch_tor => "launch_tor",
        tor_address => "tor_address",
        socks_port => "socks_port",
        control_port => "control_port",
        control_password => "control_password",
        prometheus_exporter => "prometheus_exporter",
        prometheus_exporter_address => "prometheus_exporter_address",
        prometheus_exporter_port => "prometheus_exporter_port",
        vantage => "vantage",
        external_labels => "external_labels",
        alerts => "alerts",
        notifiers => "notifiers",
        remote_write => "remote_write",
    );
    // Only a launched tor reads these.
    if old.launch_tor && new.launch_tor {
        check!(
            metrics_port => "metrics_port",
            metrics_port_policy => "metrics_port_policy",
            circuit_stream_timeout => "circuit_stream_timeout",
            tor_binary => "tor_binary",
            tor_config => "tor_config",
        );
    }
    changed
}

/// How long the exporter's in-flight requests may finish at shutdown.
const EXPORTER_GRACE: Duration = Duration::from_secs(2);

/// Runs rounds of a [`Prober`] as a [`Config`] says.
pub struct Runner {
    prober: Arc<Prober>,
    tor: Arc<Tor>,
    config: Config,
    targets: Vec<Target>,
    once: bool,
    reload: Option<(mpsc::UnboundedReceiver<()>, Rebuild)>,
    /// Stopped at shutdown; its TLS and auth files are re-read on reloads.
    exporter: Option<RunningServer>,
    /// `/probe`, told the tor and each configuration.
    on_demand: Option<Arc<OnDemandProbes>>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("targets", &self.targets.len())
            .field("once", &self.once)
            .finish_non_exhaustive()
    }
}

/// Results a round brings: one per path, one per TCP endpoint.
fn expected_results(targets: &[Target]) -> u64 {
    targets.iter().map(|t| t.paths.len().max(1) as u64).sum()
}

/// The next reload request; never resolves once the sender is gone.
async fn reload_requested(reload: &mut Option<(mpsc::UnboundedReceiver<()>, Rebuild)>) {
    if let Some((rx, _)) = reload {
        if rx.recv().await.is_some() {
            return;
        }
        *reload = None;
    }
    pending().await
}

impl Runner {
    /// A runner probing `config`'s endpoints through `tor`, writing into
    /// `metrics`.
    pub fn new(
        tor: Arc<Tor>,
        metrics: Arc<ProbeMetrics>,
        config: Config,
    ) -> Result<Self, ConfigError> {
        let targets = config.shard_targets()?;
        metrics.set_shard(config.shard, targets.len());
        let prober = Prober::new(tor.clone(), metrics, Settings::from_config(&config));
        Ok(Runner {
            prober,
            tor,
            config,
            targets,
            once: false,
            reload: None,
            exporter: None,
            on_demand: None,
        })
    }

    /// Run one round only, whatever `loop` and `rounds` say (a Nagios check).
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    /// Reload the configuration from `rebuild` at each message on
    /// `requests` (e.g. SIGHUP). Requests are served between rounds; a
    /// failing `rebuild` keeps the previous configuration.
    pub fn reload_on(
        mut self,
        requests: mpsc::UnboundedReceiver<()>,
        rebuild: impl FnMut() -> Result<Config, BoxError> + Send + 'static,
    ) -> Self {
        self.reload = Some((requests, Box::new(rebuild)));
        self
    }

    /// The prober.
    pub fn prober(&self) -> &Arc<Prober> {
        &self.prober
    }

    /// The current configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current endpoints.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Stop `server` (from [`start_exporter`] on this runner's metrics) at
    /// [`Runner::shutdown`], and re-read its TLS and auth files on each
    /// reload.
    pub fn with_exporter(mut self, server: RunningServer) -> Self {
        self.exporter = Some(server);
        self
    }

    /// Answer `/probe` requests (from [`Exposition::on_demand`]) through
    /// this runner's tor with its current configuration.
    pub fn with_on_demand(mut self, on_demand: Arc<OnDemandProbes>) -> Self {
        on_demand.update(self.tor.clone(), self.config.clone());
        self.on_demand = Some(on_demand);
        self
    }

    /// Switch to `config`: its endpoints and settings apply from the next
    /// round, series of endpoints no longer configured disappear.
    pub fn apply(&mut self, config: Config) -> Result<(), ConfigError> {
        let targets = config.shard_targets()?;
        let restart = restart_needed(&self.config, &config);
        if !restart.is_empty() {
            tracing::warn!(
                "configuration reload: {} changed, which applies only when onionwatch probe \
                 restarts; the running tor connection and exporter keep the old values",
                restart.join(", ")
            );
        }
        let keep: Vec<(&str, &str)> = targets
            .iter()
            .map(|t| (t.name.as_str(), t.address.host()))
            .collect();
        self.prober.metrics().retain_endpoints(&keep);
        self.prober.metrics().set_shard(config.shard, targets.len());
        self.prober.set_settings(Settings::from_config(&config));
        tracing::info!(endpoints = targets.len(), "configuration reloaded");
        if let Some(od) = &self.on_demand {
            od.update(self.tor.clone(), config.clone());
        }
        self.targets = targets;
        self.config = config;
        Ok(())
    }

    fn serve_reload(&mut self) {
        let Some((_, rebuild)) = &mut self.reload else {
            return;
        };
        let built = rebuild();
        if let Err(e) = built.and_then(|c| self.apply(c).map_err(BoxError::from)) {
            tracing::error!("configuration not reloaded, keeping the previous one: {e:#}");
        }
        if let Some(server) = &self.exporter {
            if let Err(e) = server.reload() {
                tracing::error!("exporter: {e}");
            }
        }
    }

    /// Probe round after round, sleeping up to `sleep` seconds between them
    /// (serving reload requests meanwhile), until the rounds run out or
    /// `stop` resolves. Events go to `on_event`; its first error ends the
    /// run and is returned.
    pub async fn run<S: Future, E>(
        &mut self,
        stop: S,
        mut on_event: impl FnMut(Event) -> Result<(), E>,
    ) -> Result<Finish<S::Output>, E> {
        tokio::pin!(stop);
        let mut round = 0u64;
        loop {
            round += 1;
            on_event(Event::RoundStarted {
                round,
                expected: expected_results(&self.targets),
            })?;
            let (tx, mut rx) = mpsc::unbounded_channel();
            let prober = self.prober.clone();
            let targets = self.targets.clone();
            let mut task =
                tokio::spawn(async move { prober.run_round(&targets, round, Some(tx)).await });
            let results = loop {
                tokio::select! {
                    Some(r) = rx.recv() => on_event(Event::Result(Box::new(r)))?,
                    done = &mut task => break done.unwrap_or_default(),
                    s = &mut stop => {
                        task.abort();
                        // Let the round's tasks go before tor does.
                        let _ = task.await;
                        return Ok(Finish::Stopped(s));
                    }
                }
            };
            while let Ok(r) = rx.try_recv() {
                on_event(Event::Result(Box::new(r)))?;
            }
            on_event(Event::RoundDone { round, results })?;
            let c = &self.config;
            if self.once || !c.looping() || (c.rounds > 0 && round >= c.rounds) {
                return Ok(Finish::Done);
            }
            let prober = self.prober.clone();
            let sleep = prober.wait(c.sleep, c.randomize);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = reload_requested(&mut self.reload) => self.serve_reload(),
                    s = &mut stop => return Ok(Finish::Stopped(s)),
                }
            }
        }
    }

    /// Mark the state `stopping`, stop the exporter, and stop a launched tor
    /// (also killed when dropped).
    pub async fn shutdown(self) {
        self.prober.metrics().set_state(State::Stopping);
        if let Some(server) = self.exporter {
            if let Err(e) = server.shutdown(EXPORTER_GRACE).await {
                tracing::warn!("exporter: {e}");
            }
        }
        drop(self.prober);
        if let Ok(tor) = Arc::try_unwrap(self.tor) {
            tor.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionwatch_server::TlsConfig;

    /// `demo` and others run the runner in a spawned task.
    #[allow(dead_code)]
    fn run_is_send(r: &mut Runner) {
        fn send<T: Send>(_: T) {}
        send(r.run(pending::<()>(), |_| Ok::<_, BoxError>(())));
    }

    const A: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

    fn exporter_config(address: &str) -> Config {
        let yaml = format!(
            "prometheus_exporter: true\nprometheus_exporter_address: '{address}'\nendpoints: {{a: {{address: {A}}}}}\n"
        );
        let mut c = Config::from_yaml(&yaml, "t").unwrap().0;
        // Any free port (the YAML refuses 0).
        c.prometheus_exporter_port = 0;
        c
    }

    #[test]
    fn an_explicit_non_loopback_exporter_address_is_served_without_auth() {
        // Off: no endpoint.
        let (off, _) = Config::from_yaml("prometheus_exporter: false", "t").unwrap();
        assert!(exporter_endpoint(&off, EndpointConfig::default())
            .unwrap()
            .is_none());
        // Loopback: no override needed.
        let e = exporter_endpoint(&exporter_config("127.0.0.1"), EndpointConfig::default())
            .unwrap()
            .unwrap();
        assert!(!e.i_understand_the_risk);
        e.check().unwrap();
        // Explicit 0.0.0.0 (a container): served, unprotected, as asked.
        for any in ["0.0.0.0", "::", "192.0.2.7"] {
            let e = exporter_endpoint(&exporter_config(any), EndpointConfig::default())
                .unwrap()
                .unwrap();
            assert!(e.i_understand_the_risk && !e.is_protected(), "{any}");
            e.check().unwrap();
        }
        // A bad host name or auth file is refused before anything starts.
        let err = exporter_endpoint(
            &exporter_config("0.0.0.0"),
            EndpointConfig {
                auth_file: Some("/nonexistent/auth.yaml".into()),
                ..EndpointConfig::default()
            },
        )
        .unwrap_err();
        assert!(
            format!("{:?}", anyhow_like(&err)).contains("/nonexistent/auth.yaml"),
            "{err:?}"
        );
        assert!(exporter_endpoint(
            &exporter_config("127.0.0.1"),
            EndpointConfig {
                allowed_hosts: vec!["bad host:1".into()],
                ..EndpointConfig::default()
            },
        )
        .is_err());
    }

    /// The error and its sources, one string.
    fn anyhow_like(e: &dyn std::error::Error) -> String {
        let mut s = e.to_string();
        let mut cur = e.source();
        while let Some(c) = cur {
            s.push_str(&format!(": {c}"));
            cur = c.source();
        }
        s
    }

    #[tokio::test]
    async fn the_exporter_serves_tls_and_requires_the_token() {
        use digest::Digest;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_file, key_file, auth) = (
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
            dir.path().join("auth.yaml"),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let token = "probe-scraper-token";
        let hex: String = tor_llcrypto::d::Sha256::digest(token.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(&auth, format!("bearer_token_sha256: ['{hex}']\n")).unwrap();
        let security = EndpointConfig {
            tls: Some(TlsConfig {
                cert: cert_file,
                key: key_file,
                client_ca: None,
            }),
            auth_file: Some(auth),
            ..EndpointConfig::default()
        };
        let endpoint = exporter_endpoint(&exporter_config("127.0.0.1"), security)
            .unwrap()
            .unwrap();
        assert!(endpoint.is_protected());
        let metrics = Arc::new(ProbeMetrics::new());
        let labels = ConstLabels::new().with("vantage", "eu-1").unwrap();
        let server = start_exporter(&endpoint, &Exposition::new(metrics, labels), 4, None)
            .await
            .unwrap();
        let addr = server.local_addr();

        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let get_path = |path: &'static str, authorization: Option<&str>| {
            let connector = connector.clone();
            let header = authorization
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default();
            async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let mut tls = connector.connect(name, tcp).await.unwrap();
                tls.write_all(
                    format!(
                        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{header}Connection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await
                .unwrap();
                let mut out = Vec::new();
                let _ = tls.read_to_end(&mut out).await;
                String::from_utf8_lossy(&out).into_owned()
            }
        };
        let get = |authorization| get_path("/metrics", authorization);
        let denied = get(None).await;
        assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
        let wrong = get(Some("Bearer wrong")).await;
        assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
        let ok = get(Some(&format!("Bearer {token}"))).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("onionprobe_version_info"), "{ok}");
        // The vantage label is on the probe families and the process's alike.
        assert!(
            ok.contains("onionprobe_state{onionprobe_state=\"starting\",vantage=\"eu-1\"} 1"),
            "{ok}"
        );
        assert!(
            ok.lines()
                .any(|l| l.starts_with("onionwatch_build_info{") && l.contains("vantage=\"eu-1\"")),
            "{ok}"
        );
        // /probe sits behind the same authentication; with it, and no
        // runner yet, the prober says its tor is not ready.
        let target = "/probe?target=2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";
        let denied = get_path(target, None).await;
        assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
        let early = get_path(target, Some(&format!("Bearer {token}"))).await;
        assert!(
            early.starts_with("HTTP/1.1 503") && early.contains("not ready"),
            "{early}"
        );
        // Plain HTTP on the TLS port gets nothing useful.
        let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
        plain
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        let _ = plain.read_to_end(&mut out).await;
        assert!(!String::from_utf8_lossy(&out).contains("onionprobe_"));
        server.shutdown(Duration::from_secs(1)).await.unwrap();
    }

    #[test]
    fn reloads_name_the_settings_that_need_a_restart() {
        let base = "launch_tor: false\nendpoints: {a: {address: 2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion}}\n";
        let (old, _) = Config::from_yaml(base, "t").unwrap();
        let (same, _) = Config::from_yaml(&format!("{base}interval: 5\nrounds: 3\n"), "t").unwrap();
        assert!(
            restart_needed(&old, &same).is_empty(),
            "probe settings apply"
        );
        let (new, _) = Config::from_yaml(
            &format!(
                "{base}socks_port: 9050\ntor_address: tor\nprometheus_exporter_port: 9999\ncontrol_password: x\ncircuit_stream_timeout: 5\n"
            ),
            "t",
        )
        .unwrap();
        assert_eq!(
            restart_needed(&old, &new),
            [
                "tor_address",
                "socks_port",
                "control_password",
                "prometheus_exporter_port"
            ],
            "circuit_stream_timeout only matters for a launched tor"
        );
        let launched = |extra: &str| {
            Config::from_yaml(
                &format!("launch_tor: true\n{extra}endpoints: {{a: {{address: {A}}}}}\n"),
                "t",
            )
            .unwrap()
            .0
        };
        assert_eq!(
            restart_needed(
                &launched(""),
                &launched("metrics_port: 9936\ntor_config: ['UseBridges 0']\n")
            ),
            ["metrics_port", "tor_config"]
        );
    }

    #[test]
    fn expected_results_count_paths_and_tcp_endpoints() {
        let yaml = "endpoints:\n  a:\n    address: 2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion\n    protocol: http\n    port: 80\n    paths:\n      - path: /\n      - path: /x\n  b:\n    address: 2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion\n    protocol: tcp\n    port: 22\n";
        let (c, _) = Config::from_yaml(yaml, "test").unwrap();
        assert_eq!(expected_results(&c.targets().unwrap()), 3);
    }
}
