//! One site monitored from the inside and the outside, assembled in one
//! place: what `onionwatch watch` runs, and `onionwatch demo` on its
//! private Tor network.
//!
//! [`Site::build`] takes a [`SiteConfig`] (the watch [`Settings`], the
//! endpoint, an optional abusive-circuit policy, the dashboard's state
//! directory, optional outside probing) and wires:
//!
//! - a log [`Follower`] over the configured logs (positions resumed from and
//!   saved to `settings.log_state`), given to the [`Watcher`] so discovered
//!   projects' logs are followed too;
//! - the [`Watcher`] scraping every tor MetricsPort, control port and nginx;
//! - the abuse guard (the policy on every access-log record, `close` sent
//!   to the tor that owns the circuit: the project's only tor, or the
//!   softmap worker whose listener served the request; [`guard`]);
//! - with [`SiteConfig::probe`], the prober's metrics ([`probe`]: the
//!   endpoints configured and the onion services found in the Onionspray
//!   trees, probed through a launched or configured client tor);
//! - one [`Registry`] of them all, and the [`Dashboard`] reading it.
//!
//! More collectors can join the same registry before serving
//! ([`Site::register`]); [`Site::push_to`] pushes the whole registry to
//! remote_write receivers too (`onionwatch_remote_write`). [`Site::serve`] starts the dashboard's sampler,
//! the feed of recent tor warnings to the dashboard
//! ([`logs::feed_recent_warnings`]), Onionspray rediscovery, probing, and
//! the endpoint: `/metrics` and `/healthz`, `/api/v1/targets`, the logs'
//! `/api/v1/logs` and `/api/v1/warnings` ([`logs::api`]) and the dashboard.
//! [`RunningSite::stop`] ends it all in order: probing first (the runner,
//! then a launched tor), rediscovery, the background tasks, the log
//! follower (saving the log positions), the endpoint.
//!
//! `onionwatch demo` builds the same site on a private Tor network: its
//! onion-service tors as targets, its onion services as probe endpoints,
//! its client tor as the prober's tor ([`demo`]).
//!
//! `onionwatch logs` (follow mode) serves the log part alone:
//! [`Site::serve_logs`] takes a [`LogsConfig`] (sources, format, follower
//! settings, policy and the tor to close circuits on) and returns the same
//! [`RunningSite`], without watcher or dashboard.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use onionwatch_alert::Engine;
use onionwatch_dashboard::history::StoreError;
use onionwatch_dashboard::{Dashboard, DashboardConfig};
use onionwatch_inside::targets::Settings;
use onionwatch_inside::watch::{rediscover_loop, Watcher};
use onionwatch_logs::access::LogFormat;
use onionwatch_logs::follow::{FollowConfig, FollowHandle, Follower, Source};
use onionwatch_logs::policy::{PolicyConfig, PolicyConfigError};
use onionwatch_logs::tail::{StateError, TailState};
use onionwatch_probe::ProbeMetrics;
use onionwatch_server::{Collect, EndpointConfig, Labelled, Registry, RunningServer, ServeError};
use onionwatch_tor::control::ControlTarget;
use tokio::task::JoinHandle;

pub mod demo;
pub mod guard;
pub mod logs;
pub mod probe;

pub use probe::Probing;

/// Time the server gives in-flight requests when stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What a [`Site`] watches and how it serves.
#[derive(Debug)]
pub struct SiteConfig {
    /// Targets, Onionspray trees, logs, intervals and the log state file
    /// (from a YAML file and flags: [`Settings::build`]).
    pub settings: Settings,
    /// Where and how the endpoint listens (checked by the caller first, so
    /// a bad address fails before anything starts).
    pub endpoint: EndpointConfig,
    /// The abusive-circuit policy for every project's access logs.
    pub policy: Option<PolicyConfig>,
    /// Keep the dashboard's history here; in memory only if `None`.
    pub state_dir: Option<PathBuf>,
    /// Probe onion services from the outside too ([`probe`]).
    pub probe: Option<Probing>,
}

/// What `onionwatch logs` follows and how it serves, for [`Site::serve_logs`].
#[derive(Debug)]
pub struct LogsConfig {
    /// The follower's settings; positions are resumed from and saved to
    /// its `state_file`.
    pub follow: FollowConfig,
    /// The access logs' format.
    pub format: LogFormat,
    /// The files and globs to follow.
    pub sources: Vec<Source>,
    /// The abusive-circuit policy for the access logs.
    pub policy: Option<PolicyConfig>,
    /// The onion-service tor where the policy's `close` sends CLOSECIRCUIT.
    pub control: Option<ControlTarget>,
    /// Where and how the endpoint listens.
    pub endpoint: EndpointConfig,
}

/// Why a site could not start or stop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The saved log positions cannot be read.
    #[error(transparent)]
    LogState(#[from] StateError),
    /// A target, tree or setting is unusable.
    #[error(transparent)]
    Watch(#[from] onionwatch_inside::Error),
    /// The abusive-circuit policy is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyConfigError),
    /// The log follower's thread did not start.
    #[error("cannot start the log follower thread")]
    FollowerThread(#[source] std::io::Error),
    /// The dashboard's history store cannot be opened.
    #[error(transparent)]
    Dashboard(#[from] StoreError),
    /// The endpoint cannot serve (or failed while serving).
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// The probe configuration is invalid.
    #[error(transparent)]
    ProbeConfig(#[from] onionwatch_probe::ConfigError),
    /// remote_write cannot start (a receiver's settings, secrets or buffer).
    #[error(transparent)]
    RemoteWrite(#[from] onionwatch_remote_write::Error),
    /// Probing is configured with no endpoint and nothing to discover.
    #[error("nothing to probe: the probe configuration names no endpoint and there is no Onionspray tree to discover onion services in (add `endpoints:`, or --onionspray DIR)")]
    NothingToProbe,
}

/// The inside stack, built and following logs, not serving yet; see the
/// [crate documentation](crate).
pub struct Site {
    endpoint: EndpointConfig,
    interval: Duration,
    watcher: Watcher,
    follower: Follower,
    follow: FollowHandle,
    registry: Arc<Registry>,
    dashboard: Arc<Dashboard>,
    probe: Option<(Probing, Arc<ProbeMetrics>)>,
    alerts: Option<Engine>,
    remote_write: Option<onionwatch_remote_write::RemoteWrite>,
}

impl std::fmt::Debug for Site {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Site")
            .field("listen", &self.endpoint.listen)
            .field("follower", &self.follower)
            .finish_non_exhaustive()
    }
}

impl Site {
    /// Build the stack and start scraping and following (inside a tokio
    /// runtime: the watcher and the guard spawn tasks on it).
    pub fn build(config: SiteConfig) -> Result<Site, Error> {
        let SiteConfig {
            settings,
            endpoint,
            policy,
            state_dir,
            probe,
        } = config;
        let log_state = match &settings.log_state {
            Some(path) => TailState::load(path)?,
            None => TailState::default(),
        };
        let interval = settings.interval;
        let history = settings.history.clone();
        let follower = Follower::new(
            FollowConfig {
                state_file: settings.log_state.clone(),
                ..FollowConfig::default()
            },
            settings.log_format.clone(),
            settings.logs.clone(),
            log_state,
        );
        let watcher = Watcher::new(settings);
        // Discovery (in start) gives the follower the discovered projects' logs.
        watcher.attach_log_follower(follower.clone());
        watcher.start()?;
        // The policy sees every record, so it is in place before the follower starts.
        let guard = policy
            .map(|policy| guard::attach(policy, &follower, guard::project_tors(&watcher)))
            .transpose()?;
        let follow = follower.spawn().map_err(Error::FollowerThread)?;
        let registry = Arc::new(Registry::default());
        registry.register(watcher.collector());
        registry.register(follower.collector());
        if let Some(guard) = guard {
            registry.register(guard);
        }
        // Registered now, so the first scrape and the dashboard have the
        // prober's families (its state, before the first round).
        // The probe section's `vantage:` and `external_labels:` label the
        // prober's families (read at start, as for `probe`).
        let probe = probe
            .map(|p| -> Result<_, Error> {
                let metrics = Arc::new(ProbeMetrics::new());
                let labels = p.options.labels()?;
                registry.register(Arc::new(Labelled::new(metrics.clone(), labels)));
                Ok((p, metrics))
            })
            .transpose()?;
        let dashboard = Dashboard::open(
            registry.clone(),
            DashboardConfig {
                interval,
                points: history.full_resolution_points,
                retention: history.retention,
                downsample: history.bucket,
                ranges: history.ranges,
                ..DashboardConfig::default()
            },
            state_dir.as_deref(),
        )?;
        Ok(Site {
            endpoint,
            interval,
            watcher,
            follower,
            follow,
            registry,
            dashboard,
            probe,
            alerts: None,
            remote_write: None,
        })
    }

    /// Evaluate the built-in alert rules with `engine`: on every scrape
    /// cycle (every `interval`) and every probe round, its
    /// `onionwatch_alerts_firing` on `/metrics`, its `/api/v1/alerts` and
    /// `/api/v1/silences`, its firing alerts on the dashboard.
    pub fn with_alerts(mut self, engine: Engine) -> Site {
        self.registry.register(Arc::new(engine.clone()));
        self.dashboard.set_alerts(engine.clone());
        self.alerts = Some(engine);
        self
    }

    /// Push everything `/metrics` serves (the whole registry, and the
    /// pusher's own `onionwatch_remote_write_*` families) to `receivers`
    /// every `interval_seconds` (default: the scrape interval), buffered
    /// under `state_dir` (in memory without one). [`RunningSite::stop`]
    /// pushes a last collection and gives the receivers 5 s to take what
    /// is buffered.
    pub fn push_to(
        mut self,
        receivers: &[onionwatch_remote_write::RemoteWriteConfig],
        state_dir: Option<PathBuf>,
    ) -> Result<Site, Error> {
        if receivers.is_empty() {
            return Ok(self);
        }
        let rw = onionwatch_remote_write::RemoteWrite::start(
            receivers,
            self.registry.clone(),
            onionwatch_remote_write::Options {
                state_dir,
                default_interval: self.interval,
            },
        )?;
        self.registry.register(rw.collector());
        self.remote_write = Some(rw);
        Ok(self)
    }

    /// Add a metrics source to the endpoint and the dashboard; call it
    /// before [`Site::serve`] so the first scrape has it.
    pub fn register(&self, source: Arc<dyn Collect>) {
        self.registry.register(source);
    }

    /// The registry behind `/metrics` and the dashboard.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The running watcher (its targets, control ports).
    pub fn watcher(&self) -> &Watcher {
        &self.watcher
    }

    /// The log follower (its summaries and warnings).
    pub fn follower(&self) -> &Follower {
        &self.follower
    }

    /// Follow `config.sources` and serve their metrics, `/healthz`,
    /// `/api/v1/logs` and `/api/v1/warnings`: the log part of a site alone.
    pub async fn serve_logs(config: LogsConfig) -> Result<RunningSite, Error> {
        let state = match &config.follow.state_file {
            Some(path) => TailState::load(path)?,
            None => TailState::default(),
        };
        let follower = Follower::new(config.follow, config.format, config.sources, state);
        let registry = Arc::new(Registry::default());
        registry.register(follower.collector());
        // The policy sees every record, so it is in place before the follower starts.
        if let Some(policy) = config.policy {
            let resolve = guard::fixed_tor(config.control);
            registry.register(guard::attach(policy, &follower, resolve)?);
        }
        let follow = follower.spawn().map_err(Error::FollowerThread)?;
        // Ready once the files found at start were read to their ends.
        let caught_up = follower.clone();
        registry.set_readiness(move || caught_up.caught_up());
        let app = onionwatch_server::router(registry).merge(logs::api(&follower));
        let server = onionwatch_server::start(&config.endpoint, app).await?;
        Ok(RunningSite {
            server,
            tasks: Vec::new(),
            probing: None,
            discovery: None,
            follower,
            follow,
            remote_write: None,
        })
    }

    /// Start the dashboard's sampler, the warnings feed, rediscovery (when
    /// there are Onionspray trees), probing (when configured) and the
    /// endpoint.
    pub async fn serve(self) -> Result<RunningSite, Error> {
        let sampler = self.dashboard.spawn();
        let warnings = tokio::spawn(logs::feed_recent_warnings(
            self.follower.clone(),
            self.dashboard.clone(),
            self.interval,
        ));
        // Ready once every target was scraped and the logs read once.
        let (watcher, follower) = (self.watcher.clone(), self.follower.clone());
        self.registry
            .set_readiness(move || watcher.first_round_done() && follower.caught_up());
        let app = onionwatch_server::router(self.registry.clone())
            .merge(self.watcher.api_router())
            .merge(logs::api(&self.follower))
            .merge(self.dashboard.router());
        let app = match &self.alerts {
            Some(engine) => app.merge(engine.router()),
            None => app,
        };
        let server = onionwatch_server::start(&self.endpoint, app).await?;
        // Without a tree there is nothing to discover again.
        let discovery = (!self.watcher.settings().onionspray.is_empty()).then(|| {
            let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
            // It re-reads the Onionspray trees on SIGHUP too.
            let task = tokio::spawn(rediscover_loop(self.watcher.clone(), async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            }));
            (stop_tx, task)
        });
        let probing = self.probe.map(|(probing, metrics)| {
            let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
            let onions = self.watcher.onion_services();
            let task = tokio::spawn(probe::run(
                probing,
                metrics,
                onions,
                stop_rx,
                self.alerts.clone(),
            ));
            (stop_tx, task)
        });
        let mut tasks = vec![sampler, warnings];
        if let Some(engine) = self.alerts {
            tasks.push(tokio::spawn(evaluate_watch_rules(
                engine,
                self.registry.clone(),
                self.interval,
            )));
        }
        Ok(RunningSite {
            server,
            tasks,
            probing,
            discovery,
            follower: self.follower,
            follow: self.follow,
            remote_write: self.remote_write,
        })
    }
}

/// Feed the alert engine every `interval` with what the watcher and the
/// logs report: one scrape cycle is one round of the watch rules. The
/// first tick waits an interval, so the first scrapes are in.
async fn evaluate_watch_rules(engine: Engine, registry: Arc<Registry>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let families = registry.gather();
        engine.observe(
            onionwatch_alert::Source::Watch,
            &families,
            std::time::SystemTime::now(),
        );
    }
}

/// A serving [`Site`]; stop it with [`RunningSite::stop`].
#[derive(Debug)]
pub struct RunningSite {
    server: RunningServer,
    tasks: Vec<JoinHandle<()>>,
    probing: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
    discovery: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
    follower: Follower,
    follow: FollowHandle,
    remote_write: Option<onionwatch_remote_write::RemoteWrite>,
}

impl RunningSite {
    /// The endpoint's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The log follower (its sources, summaries and warnings).
    pub fn follower(&self) -> &Follower {
        &self.follower
    }

    /// The endpoint (to reload its TLS certificate and auth file on SIGHUP).
    pub fn server(&self) -> &RunningServer {
        &self.server
    }

    /// Stop probing (the round in progress abandoned, a launched tor
    /// stopped), rediscovery and the background tasks, save the log
    /// positions and shut the endpoint down (in-flight requests get 5 s).
    pub async fn stop(self) -> Result<(), Error> {
        for (stop, task) in self.probing.into_iter().chain(self.discovery) {
            let _ = stop.send(true);
            let _ = task.await;
        }
        // After probing, so the last probe results are pushed too.
        if let Some(rw) = self.remote_write {
            rw.stop(SHUTDOWN_GRACE).await;
        }
        for task in self.tasks {
            task.abort();
        }
        let follow = self.follow;
        // Joins the follower thread, which saves the log positions.
        let _ = tokio::task::spawn_blocking(move || follow.stop()).await;
        self.server.shutdown(SHUTDOWN_GRACE).await?;
        Ok(())
    }
}
