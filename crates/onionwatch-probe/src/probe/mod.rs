//! Probing: rounds and the probe of one endpoint. The descriptor and
//! connection steps (I/O and retries, typed outcomes) are in `steps`; what a
//! probe reports ([`ProbeResult`]) in `result`; where a failed probe stopped
//! ([`FailureStage`], and how it is decided) in [`stage`].

mod result;
pub mod stage;
mod steps;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};

use crate::config::{Config, Protocol, Target, TargetPath};
use crate::conn;
use crate::metrics::{family, ProbeMetrics, State};
use crate::record::Recorder;
use crate::tor::Tor;

pub(crate) use result::now;
pub use result::{ProbeResult, TlsSummary};
pub use stage::{CircEvidence, FailureStage};
pub use steps::DescriptorOutcome;
pub(crate) use steps::{Connection, Failure};

/// Settings the prober needs from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Extra descriptor fetches.
    pub descriptor_max_retries: u32,
    /// Per-fetch bound.
    pub descriptor_timeout: Duration,
    /// Extra connection attempts per path.
    pub http_connect_max_retries: u32,
    /// Extra attempts of the separate TLS step.
    pub tls_connect_max_retries: u32,
    /// Follow redirects that leave the onion service.
    pub follow_redirects_elsewhere: bool,
    /// Stream open bound.
    pub connect_timeout: Duration,
    /// Per-read bound.
    pub read_timeout: Duration,
    /// TLS handshake bound.
    pub tls_timeout: Duration,
    /// Fresh circuit per attempt.
    pub new_circuit: bool,
    /// Record certificate details.
    pub get_certificate_info: bool,
    /// Body bytes kept.
    pub max_body: usize,
    /// Endpoint groups probed at once.
    pub concurrency: usize,
    /// Max wait between endpoint starts.
    pub interval: f64,
    /// Randomize waits.
    pub randomize: bool,
    /// Shuffle each round.
    pub shuffle: bool,
    /// Trust anchors for HTTPS verification: the web PKI plus `tls_ca_file`.
    pub tls_roots: Arc<rustls::RootCertStore>,
}

impl Settings {
    /// From a validated config. A `tls_ca_file` that became unreadable since
    /// validation is logged and left out.
    pub fn from_config(c: &Config) -> Self {
        let extra = c.tls_ca_certificates().unwrap_or_else(|e| {
            tracing::error!("{e}; verifying with the web PKI roots only");
            Vec::new()
        });
        let (tls_roots, refused) = conn::trust_roots(&extra);
        if refused > 0 {
            tracing::warn!(
                refused,
                "tls_ca_file: some certificates are not usable as trust anchors"
            );
        }
        Settings {
            tls_roots,
            descriptor_max_retries: c.descriptor_max_retries,
            descriptor_timeout: c.descriptor_timeout(),
            http_connect_max_retries: c.http_connect_max_retries,
            tls_connect_max_retries: c.tls_connect_max_retries,
            follow_redirects_elsewhere: c.follow_redirects_elsewhere,
            connect_timeout: c.connect_timeout(),
            read_timeout: c.read_timeout(),
            tls_timeout: c.tls_timeout(),
            new_circuit: c.new_circuit,
            get_certificate_info: c.get_certificate_info,
            max_body: c.max_body_bytes,
            concurrency: c.concurrency,
            interval: c.interval,
            randomize: c.randomize,
            shuffle: c.shuffle,
        }
    }
}
/// The prober: one tor, one metric state, any number of rounds.
pub struct Prober {
    tor: Arc<Tor>,
    metrics: Arc<ProbeMetrics>,
    settings: Mutex<Settings>,
    seq: AtomicU64,
    /// Keys given to tor, valid while `Tor::reconnects` is the number held
    /// (a restarted tor has forgotten them).
    client_auth: Mutex<(u64, HashSet<(String, String)>)>,
    /// Tor's reconnects and relaunches already counted in the metrics.
    tor_seen: Mutex<(u64, u64)>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").finish_non_exhaustive()
    }
}

impl Prober {
    /// A prober using `tor`, writing into `metrics`.
    pub fn new(tor: Arc<Tor>, metrics: Arc<ProbeMetrics>, settings: Settings) -> Arc<Self> {
        Arc::new(Prober {
            tor,
            metrics,
            settings: Mutex::new(settings),
            seq: AtomicU64::new(0),
            client_auth: Mutex::new((0, HashSet::new())),
            tor_seen: Mutex::new((0, 0)),
        })
    }

    /// Replace the settings (config reload).
    pub fn set_settings(&self, s: Settings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<ProbeMetrics> {
        &self.metrics
    }

    /// Wait up to `max` seconds (uniform in `[0, max)` with `randomize`),
    /// recording it as Onionprobe does.
    pub async fn wait(&self, max: f64, randomize: bool) {
        let secs = if randomize {
            fastrand::f64() * max
        } else {
            max
        };
        self.metrics.set(family::WAIT_SECONDS, [], secs);
        if secs <= 0.0 {
            return;
        }
        let before = self.metrics.state();
        self.metrics.set_state(State::Sleeping);
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        self.metrics.set_state(before);
    }

    /// Probe every target once. Endpoints of the same onion service run in
    /// order, one after the other; different onion services run
    /// concurrently (at most `concurrency` at a time). Results go to
    /// `results` as they come and are also returned.
    pub async fn run_round(
        self: &Arc<Self>,
        targets: &[Target],
        round: u64,
        results: Option<mpsc::UnboundedSender<ProbeResult>>,
    ) -> Vec<ProbeResult> {
        let s = self.settings();
        let started = Instant::now();
        self.metrics.set_state(State::Probing);
        let mut order: Vec<Target> = targets.to_vec();
        order.sort_by(|a, b| a.name.cmp(&b.name));
        if s.shuffle {
            fastrand::shuffle(&mut order);
        }
        let mut groups: Vec<Vec<Target>> = Vec::new();
        for t in order {
            match groups
                .iter_mut()
                .find(|g| g[0].address.service_id() == t.address.service_id())
            {
                Some(g) => g.push(t),
                None => groups.push(vec![t]),
            }
        }
        let sem = Arc::new(Semaphore::new(s.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, group) in groups.into_iter().enumerate() {
            if i > 0 && s.interval > 0.0 {
                self.wait(s.interval, s.randomize).await;
            }
            let permit = sem.clone().acquire_owned().await.expect("never closed");
            let me = self.clone();
            let tx = results.clone();
            tasks.spawn(async move {
                let mut out = Vec::new();
                for t in group {
                    for r in me.probe(&t, round).await {
                        if let Some(tx) = &tx {
                            let _ = tx.send(r.clone());
                        }
                        out.push(r);
                    }
                }
                drop(permit);
                out
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(v) => all.extend(v),
                Err(e) => tracing::error!("a probe task failed: {e}"),
            }
        }
        self.metrics.set(
            family::ROUND_DURATION_SECONDS,
            [],
            started.elapsed().as_secs_f64(),
        );
        self.metrics.inc(family::ROUNDS, []);
        self.count_tor_recoveries();
        all
    }

    /// Add tor's reconnects and relaunches since the last count to
    /// `onionwatch_probe_tor_reconnects_total`.
    fn count_tor_recoveries(&self) {
        let now = (self.tor.reconnects(), self.tor.relaunches());
        let mut seen = self.tor_seen.lock().unwrap_or_else(|e| e.into_inner());
        for (kind, now, seen) in [
            ("control_connection", now.0, seen.0),
            ("launched_tor", now.1, seen.1),
        ] {
            if now > seen {
                self.metrics
                    .add(family::TOR_RECONNECTS, [kind], (now - seen) as f64);
            }
        }
        *seen = now;
    }

    /// Probe one endpoint: descriptor, then each path (or the TCP port).
    pub async fn probe(&self, t: &Target, round: u64) -> Vec<ProbeResult> {
        let s = self.settings();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            name = t.name.as_str(),
            address = t.address.host(),
            "probing the onion service"
        );
        let rec = Recorder::new(&self.metrics, t);
        rec.started();

        let desc = match self.client_auth(t).await {
            Err(detail) => DescriptorOutcome {
                state: "CLIENT_AUTH".into(),
                reason: Some("client_auth_add_failed".into()),
                detail: Some(format!(
                    "tor refused the client authorization key for the onion service: {detail}"
                )),
                ..DescriptorOutcome::default()
            },
            Ok(()) => self.descriptor_step(t, &s, &rec).await,
        };
        rec.descriptor(&desc);

        let isolation_base = format!("onionwatch-{}-{seq}", std::process::id());
        let paths: Vec<Option<&TargetPath>> = match t.protocol {
            Protocol::Tcp => vec![None],
            _ => t.paths.iter().map(Some).collect(),
        };
        let record_tls = t.protocol == Protocol::Https && t.test_tls;
        // TLS details of the first path that completed a handshake (a
        // refused certificate leaves them incomplete).
        let mut tls: Option<conn::TlsInfo> = None;
        let complete =
            |tls: &Option<conn::TlsInfo>| tls.as_ref().is_some_and(|t| !t.version.is_empty());
        let mut results = Vec::new();
        for path in paths {
            let conn = match desc.ok {
                true => Some(self.connect_step(t, path, &s, &isolation_base, &rec).await),
                false => None,
            };
            results.push(rec.connection(path, &desc, conn.as_ref(), round));
            if let Some(seen) = conn.and_then(|c| c.last.tls) {
                if !complete(&tls) {
                    tls = Some(seen);
                }
            }
        }
        if record_tls && desc.ok {
            if !complete(&tls) {
                if let Some(seen) = self.tls_step(t, &s, &isolation_base).await {
                    tls = Some(seen);
                }
            }
            if let Some(tls) = &tls {
                rec.tls(tls, s.get_certificate_info);
            }
        }
        rec.passed(desc.ok && results.iter().all(|r| r.passed));
        results
    }

    /// Give tor the endpoint's client authorization key, once per key.
    async fn client_auth(&self, t: &Target) -> Result<(), String> {
        let Some(key) = &t.client_auth_key else {
            return Ok(());
        };
        let entry = (t.address.service_id().to_owned(), key.clone());
        let control = self.tor.control().await.map_err(|e| e.to_string())?;
        let generation = self.tor.reconnects();
        let given = || {
            let mut g = self.client_auth.lock().unwrap_or_else(|e| e.into_inner());
            if g.0 != generation {
                *g = (generation, HashSet::new());
            }
            g
        };
        if given().1.contains(&entry) {
            return Ok(());
        }
        control
            .onion_client_auth_add(t.address.service_id(), key, None, false)
            .await
            .map_err(|e| e.to_string())?;
        given().1.insert(entry);
        Ok(())
    }
}
