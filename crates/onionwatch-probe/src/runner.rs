//! The probing loop around a [`Prober`]: rounds, the sleep between them,
//! configuration reloads and the Prometheus exporter.
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

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{Config, ConfigError, Target};
use crate::metrics::{ProbeMetrics, State};
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

/// Runs rounds of a [`Prober`] as a [`Config`] says.
pub struct Runner {
    prober: Arc<Prober>,
    tor: Arc<Tor>,
    config: Config,
    targets: Vec<Target>,
    once: bool,
    reload: Option<(mpsc::UnboundedReceiver<()>, Rebuild)>,
    exporter: Option<JoinHandle<()>>,
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
        let targets = config.targets()?;
        let prober = Prober::new(tor.clone(), metrics, Settings::from_config(&config));
        Ok(Runner {
            prober,
            tor,
            config,
            targets,
            once: false,
            reload: None,
            exporter: None,
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

    /// Serve the metrics on `prometheus_exporter_address:port` when
    /// `prometheus_exporter` is set, until [`Runner::shutdown`]; returns the
    /// bound address.
    pub async fn serve_metrics(&mut self) -> Result<Option<SocketAddr>, ExporterError> {
        if !self.config.prometheus_exporter {
            return Ok(None);
        }
        let addr = SocketAddr::new(
            self.config.prometheus_exporter_address,
            self.config.prometheus_exporter_port,
        );
        let error = |source| ExporterError { addr, source };
        let registry = Arc::new(onionwatch_server::Registry::default());
        registry.register(self.prober.metrics().clone());
        // `/-/ready` once a round completed.
        let metrics = self.prober.metrics().clone();
        registry.set_readiness(move || {
            metrics
                .get("onionwatch_rounds", &[])
                .is_some_and(|n| n >= 1.0)
        });
        let listener = onionwatch_server::bind(addr, false).await.map_err(error)?;
        let bound = listener
            .local_addr()
            .map_err(|source| error(onionwatch_server::ServeError::Bind { addr, source }))?;
        let app = onionwatch_server::router(registry);
        self.exporter = Some(tokio::spawn(async move {
            if let Err(e) = onionwatch_server::serve_on(listener, app, pending()).await {
                tracing::error!("{e}");
            }
        }));
        Ok(Some(bound))
    }

    /// Switch to `config`: its endpoints and settings apply from the next
    /// round, series of endpoints no longer configured disappear.
    pub fn apply(&mut self, config: Config) -> Result<(), ConfigError> {
        let targets = config.targets()?;
        let keep: Vec<(&str, &str)> = targets
            .iter()
            .map(|t| (t.name.as_str(), t.address.host()))
            .collect();
        self.prober.metrics().retain_endpoints(&keep);
        self.prober.set_settings(Settings::from_config(&config));
        tracing::info!(endpoints = targets.len(), "configuration reloaded");
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
        if let Some(e) = self.exporter {
            e.abort();
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

    /// `demo` and others run the runner in a spawned task.
    #[allow(dead_code)]
    fn run_is_send(r: &mut Runner) {
        fn send<T: Send>(_: T) {}
        send(r.run(pending::<()>(), |_| Ok::<_, BoxError>(())));
    }

    #[test]
    fn expected_results_count_paths_and_tcp_endpoints() {
        let yaml = "endpoints:\n  a:\n    address: 2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion\n    protocol: http\n    port: 80\n    paths:\n      - path: /\n      - path: /x\n  b:\n    address: 2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion\n    protocol: tcp\n    port: 22\n";
        let (c, _) = Config::from_yaml(yaml, "test").unwrap();
        assert_eq!(expected_results(&c.targets().unwrap()), 3);
    }
}
