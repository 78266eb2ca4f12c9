//! The built-in web dashboard, for operators without a Prometheus stack.
//!
//! It reads the same families the `/metrics` endpoint serves (so it shows
//! exactly what Prometheus would see), samples them at an interval into a
//! bounded history that an embedded store keeps across restarts
//! ([`history`]), and serves one self-contained page at `/` (no CDN, no
//! external assets) plus its data at `/api/v1/dashboard`. The history is
//! bounded with or without a store: points per series, series, and series
//! that stop reporting expire ([`DashboardConfig::expire_after`]).
//!
//! What it looks for: Onionprobe-compatible prober families
//! (`onion_service_reachable`, `…_latency_seconds`, `…_status_code`,
//! `…_descriptor_reachable`, `…_introduction_points_number`,
//! `…_certificate_expiry_seconds`) and the inside monitor's per-project
//! families (`onionwatch_scrape_up`, `onionwatch_log_requests_total`,
//! `onionwatch_log_unique_circuits`, tor's `tor_hs_*` with `project`). It
//! imports these names from the crates that export them, so renaming a
//! family there cannot silently empty a column here.

pub mod history;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use onionwatch_inside::names as inside;
use onionwatch_logs::summary::family as logs;
use onionwatch_metrics::Sample;
use onionwatch_probe::metrics::names as probe;
use onionwatch_server::Registry;
use serde::Serialize;

use history::{History, Store, StoreError};

const PAGE: &str = include_str!("../assets/dashboard.html");

/// How the dashboard samples and keeps history.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Time between samples.
    pub interval: Duration,
    /// Points kept per series (720 × 15 s = 3 hours).
    pub points: usize,
    /// Series kept at most (bounds memory whatever the number of targets).
    pub max_series: usize,
    /// A series with no new point for this long (a probe, target or
    /// project that stopped reporting) is forgotten, in memory and in the
    /// store. `None` (the default): the history's window, `points` ×
    /// `interval` (3 hours by default), after which a series still
    /// reporting would have replaced all its points anyway.
    pub expire_after: Option<Duration>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            points: 720,
            max_series: 4096,
            expire_after: None,
        }
    }
}

impl DashboardConfig {
    /// Seconds without a new point after which a series is forgotten
    /// ([`DashboardConfig::expire_after`]).
    pub fn expiry_seconds(&self) -> i64 {
        let window = self
            .interval
            .saturating_mul(u32::try_from(self.points).unwrap_or(u32::MAX));
        let d = self.expire_after.unwrap_or(window);
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX).max(1)
    }
}

/// The dashboard state; share it as `Arc<Dashboard>`.
pub struct Dashboard {
    registry: Arc<Registry>,
    config: DashboardConfig,
    history: Mutex<History>,
    store: Option<Store>,
    notes: Mutex<BTreeMap<String, Vec<String>>>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// One probed endpoint as the page shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProbeRow {
    /// Endpoint name from the prober's config.
    pub name: String,
    /// Onion service address.
    pub address: String,
    /// Probed path.
    pub path: String,
    /// Whether the last probe reached it.
    pub reachable: Option<bool>,
    /// Last latency (seconds).
    pub latency_seconds: Option<f64>,
    /// Last HTTP status.
    pub status_code: Option<f64>,
    /// Whether the last descriptor fetch worked.
    pub descriptor_reachable: Option<bool>,
    /// Introduction points in the last descriptor.
    pub introduction_points: Option<f64>,
    /// Seconds until the TLS certificate expires.
    pub certificate_expiry_seconds: Option<f64>,
    /// Latency history `[unix seconds, seconds]`.
    pub latency_history: Vec<(i64, f64)>,
}

/// One monitored project as the page shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ProjectRow {
    /// Project name.
    pub project: String,
    /// Scrape targets up / total.
    pub targets_up: u32,
    /// Scrape targets.
    pub targets: u32,
    /// Distinct onion services in tor's metrics.
    pub onion_services: u32,
    /// Requests per second over the last sample interval.
    pub requests_per_second: Option<f64>,
    /// 5xx responses per second over the last sample interval.
    pub errors_5xx_per_second: Option<f64>,
    /// Unique circuits in the last 5 minutes (estimate).
    pub unique_circuits_5m: Option<f64>,
    /// Request-rate history `[unix seconds, requests/s]`.
    pub requests_history: Vec<(i64, f64)>,
    /// Recent tor and onionbalance warnings and errors.
    pub recent_warnings: Vec<String>,
}

/// What `/api/v1/dashboard` returns.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Snapshot {
    /// Unix seconds.
    pub generated_at: i64,
    /// Probed endpoints.
    pub onion_services: Vec<ProbeRow>,
    /// Monitored projects.
    pub projects: Vec<ProjectRow>,
}

fn label<'a>(s: &'a Sample, name: &str) -> &'a str {
    s.labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Per-second rates between consecutive counter points (resets skipped).
fn rates(points: &[(i64, f64)]) -> Vec<(i64, f64)> {
    points
        .windows(2)
        .filter(|w| w[1].0 > w[0].0 && w[1].1 >= w[0].1)
        .map(|w| (w[1].0, (w[1].1 - w[0].1) / (w[1].0 - w[0].0) as f64))
        .collect()
}

fn project_row<'a>(rows: &'a mut BTreeMap<String, ProjectRow>, p: &str) -> &'a mut ProjectRow {
    rows.entry(p.to_owned()).or_insert_with(|| ProjectRow {
        project: p.to_owned(),
        ..ProjectRow::default()
    })
}

fn probe_key(s: &Sample) -> String {
    format!(
        "{}|{}|{}",
        label(s, "name"),
        label(s, "address"),
        label(s, "path")
    )
}

impl Dashboard {
    /// A dashboard over `registry`, with history kept in `state_dir`
    /// (`dashboard.redb`) when given, in memory only otherwise.
    pub fn open(
        registry: Arc<Registry>,
        config: DashboardConfig,
        state_dir: Option<&Path>,
    ) -> Result<Arc<Self>, StoreError> {
        let mut history = History::new(config.points, config.max_series);
        let store = match state_dir {
            Some(dir) => {
                let _ = std::fs::create_dir_all(dir);
                let store = Store::open(&dir.join("dashboard.redb"))?;
                store.load(&mut history)?;
                Some(store)
            }
            None => None,
        };
        Ok(Arc::new(Self {
            registry,
            config,
            history: Mutex::new(history),
            store,
            notes: Mutex::default(),
        }))
    }

    /// Replace the recent warnings shown for `project`.
    pub fn set_recent_warnings(&self, project: &str, lines: Vec<String>) {
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(project.to_owned(), lines);
    }

    /// Take one sample of every tracked series at `ts` (unix seconds),
    /// forget the series that stopped reporting
    /// ([`DashboardConfig::expire_after`]) and save the changes (without a
    /// store, drop the record of them: nothing would ever clear it).
    pub fn sample_at(&self, ts: i64) -> Result<(), StoreError> {
        let families = self.registry.gather();
        let mut h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        for f in &families {
            for s in &f.samples {
                match (f.name.as_str(), s.suffix.as_str()) {
                    (probe::LATENCY_SECONDS, "") => {
                        h.record(&format!("latency|{}", probe_key(s)), ts, s.value)
                    }
                    (logs::REQUESTS, "_total") => {
                        let project = label(s, "project");
                        // Sum the classes: recorded per class, added on read.
                        let class = label(s, "status_class");
                        h.record(&format!("requests|{project}|{class}"), ts, s.value);
                    }
                    _ => {}
                }
            }
        }
        h.expire(ts.saturating_sub(self.config.expiry_seconds()));
        match &self.store {
            Some(store) => store.save(&mut h),
            None => {
                h.forget_changes();
                Ok(())
            }
        }
    }

    /// Sample every `interval` until the task is aborted.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(me.config.interval);
            // Failed saves in a row: warn at the first and at the recovery,
            // not at every sample of a full disk.
            let mut failed = 0u64;
            loop {
                tick.tick().await;
                let me2 = Arc::clone(&me);
                // redb writes fsync: keep them off the async workers.
                let res = tokio::task::spawn_blocking(move || me2.sample_at(now())).await;
                match res {
                    Ok(Err(e)) => {
                        if failed == 0 {
                            tracing::warn!(error = %e, "dashboard history not saved; kept in memory and retried at each sample");
                        }
                        failed += 1;
                    }
                    Ok(Ok(())) if failed > 0 => {
                        tracing::warn!(failed_saves = failed, "dashboard history saved again");
                        failed = 0;
                    }
                    _ => {}
                }
            }
        })
    }

    /// The current state, with history.
    pub fn snapshot(&self) -> Snapshot {
        let families = self.registry.gather();
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let find = |name: &str| families.iter().find(|f| f.name == name);
        let mut probes: BTreeMap<String, ProbeRow> = BTreeMap::new();
        let mut by_name: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if let Some(f) = find(probe::REACHABLE) {
            for s in &f.samples {
                let key = probe_key(s);
                by_name
                    .entry(label(s, "name").to_owned())
                    .or_default()
                    .push(key.clone());
                probes.insert(
                    key.clone(),
                    ProbeRow {
                        name: label(s, "name").to_owned(),
                        address: label(s, "address").to_owned(),
                        path: label(s, "path").to_owned(),
                        reachable: Some(s.value == 1.0),
                        latency_history: h.points(&format!("latency|{key}")),
                        ..ProbeRow::default()
                    },
                );
            }
        }
        let mut per_probe = |family: &str, set: fn(&mut ProbeRow, f64)| {
            for s in find(family)
                .map(|f| f.samples.as_slice())
                .unwrap_or_default()
            {
                if let Some(row) = probes.get_mut(&probe_key(s)) {
                    set(row, s.value);
                }
            }
        };
        per_probe(probe::LATENCY_SECONDS, |r, v| r.latency_seconds = Some(v));
        per_probe(probe::STATUS_CODE, |r, v| r.status_code = Some(v));
        // Descriptor and certificate families carry fewer labels: join by name.
        let mut per_name = |family: &str, set: fn(&mut ProbeRow, f64)| {
            for s in find(family)
                .map(|f| f.samples.as_slice())
                .unwrap_or_default()
            {
                for key in by_name.get(label(s, "name")).into_iter().flatten() {
                    if let Some(row) = probes.get_mut(key) {
                        set(row, s.value);
                    }
                }
            }
        };
        per_name(probe::DESCRIPTOR_REACHABLE, |r, v| {
            r.descriptor_reachable = Some(v == 1.0)
        });
        per_name(probe::INTRODUCTION_POINTS_NUMBER, |r, v| {
            r.introduction_points = Some(v)
        });
        per_name(probe::CERTIFICATE_EXPIRY_SECONDS, |r, v| {
            r.certificate_expiry_seconds = Some(v)
        });

        let mut projects: BTreeMap<String, ProjectRow> = BTreeMap::new();
        for s in find(inside::SCRAPE_UP)
            .map(|f| f.samples.as_slice())
            .unwrap_or_default()
        {
            let r = project_row(&mut projects, label(s, "project"));
            r.targets += 1;
            r.targets_up += u32::from(s.value == 1.0);
        }
        let mut services: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for f in families.iter().filter(|f| f.name.starts_with("tor_hs_")) {
            for s in &f.samples {
                // tor labels them `onion` (0.4.9); older docs say `onion_service`.
                let svc = match label(s, "onion") {
                    "" => label(s, "onion_service"),
                    v => v,
                };
                if !svc.is_empty() {
                    services
                        .entry(label(s, "project").to_owned())
                        .or_default()
                        .insert(svc.to_owned());
                }
            }
        }
        for (p, set) in services {
            project_row(&mut projects, &p).onion_services = set.len() as u32;
        }
        for s in find(logs::UNIQUE_CIRCUITS)
            .map(|f| f.samples.as_slice())
            .unwrap_or_default()
        {
            if label(s, "window") == "5m" {
                project_row(&mut projects, label(s, "project")).unique_circuits_5m = Some(s.value);
            }
        }
        let classes: Vec<(String, String)> = find(logs::REQUESTS)
            .map(|f| {
                f.samples
                    .iter()
                    .map(|s| {
                        (
                            label(s, "project").to_owned(),
                            label(s, "status_class").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut totals: BTreeMap<String, BTreeMap<i64, f64>> = BTreeMap::new();
        for (p, class) in &classes {
            let rate = rates(&h.points(&format!("requests|{p}|{class}")));
            let r = project_row(&mut projects, p);
            if class == "5xx" {
                r.errors_5xx_per_second = rate.last().map(|x| x.1);
            }
            for (t, v) in rate {
                *totals.entry(p.clone()).or_default().entry(t).or_default() += v;
            }
        }
        for (p, series) in totals {
            let r = project_row(&mut projects, &p);
            r.requests_history = series.into_iter().collect();
            r.requests_per_second = r.requests_history.last().map(|x| x.1);
        }
        let notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
        for (p, lines) in notes.iter() {
            project_row(&mut projects, p).recent_warnings = lines.clone();
        }
        Snapshot {
            generated_at: now(),
            onion_services: probes.into_values().collect(),
            projects: projects.into_values().collect(),
        }
    }

    /// `/` (the page) and `/api/v1/dashboard` (its data).
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route(
                "/",
                get(|| async {
                    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
                }),
            )
            .route(
                "/api/v1/dashboard",
                get(|State(d): State<Arc<Dashboard>>| async move { Json(d.snapshot()) }),
            )
            .with_state(Arc::clone(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionwatch_metrics::{Collect, Family};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// `projects` projects' request counters and as many probes'
    /// latencies; the project `gone` and probe `gone` while `gone` is set.
    struct Many {
        projects: usize,
        gone: AtomicBool,
    }

    impl Collect for Many {
        fn collect(&self, out: &mut Vec<Family>) {
            let mut names: Vec<String> = (0..self.projects).map(|i| format!("p{i}")).collect();
            if self.gone.load(Ordering::Relaxed) {
                names.push("gone".into());
            }
            let mut requests = Family::counter(logs::REQUESTS, "");
            let mut latency = Family::gauge(probe::LATENCY_SECONDS, "");
            for n in &names {
                for class in ["2xx", "5xx"] {
                    requests.push(&[("project", n), ("status_class", class)], 1.0);
                }
                latency.push(&[("name", n), ("address", "x.onion"), ("path", "/")], 0.5);
            }
            out.push(requests);
            out.push(latency);
        }
    }

    fn dashboard(
        projects: usize,
        config: DashboardConfig,
        dir: Option<&Path>,
    ) -> (Arc<Dashboard>, Arc<Many>) {
        let source = Arc::new(Many {
            projects,
            gone: AtomicBool::new(true),
        });
        let registry = Arc::new(Registry::default());
        registry.register(source.clone());
        (Dashboard::open(registry, config, dir).unwrap(), source)
    }

    #[test]
    fn without_a_store_the_history_stays_bounded() {
        let config = DashboardConfig {
            points: 20,
            ..DashboardConfig::default()
        };
        let (d, _) = dashboard(200, config, None);
        for i in 0..300 {
            d.sample_at(1_000 + i * 15).unwrap();
        }
        let h = d.history.lock().unwrap();
        // 201 projects × 2 classes + 201 probes.
        assert_eq!(h.len(), 603);
        assert_eq!(h.pending_changes(), 0, "nothing accumulates for a save");
        assert_eq!(h.points("requests|p7|5xx").len(), 20);
    }

    #[test]
    fn a_series_that_stops_reporting_expires() {
        let dir = tempfile::tempdir().unwrap();
        for store in [None, Some(dir.path())] {
            let config = DashboardConfig {
                interval: Duration::from_secs(15),
                points: 4,
                ..DashboardConfig::default()
            };
            assert_eq!(config.expiry_seconds(), 60, "the window by default");
            let (d, source) = dashboard(1, config.clone(), store);
            let gone = "requests|gone|2xx";
            d.sample_at(1_000).unwrap();
            d.sample_at(1_015).unwrap();
            source.gone.store(false, Ordering::Relaxed);
            d.sample_at(1_030).unwrap();
            d.sample_at(1_075).unwrap();
            {
                let h = d.history.lock().unwrap();
                assert_eq!(h.points(gone).len(), 2, "60 s without a point: kept");
                assert_eq!(h.len(), 6);
            }
            d.sample_at(1_076).unwrap();
            {
                let h = d.history.lock().unwrap();
                assert!(h.points(gone).is_empty(), "61 s: forgotten");
                assert!(h.points("latency|gone|x.onion|/").is_empty());
                assert_eq!(h.len(), 3, "the others stay");
                assert_eq!(h.points("requests|p0|2xx").len(), 4);
            }
            if let Some(dir) = store {
                drop(d);
                let registry = Arc::new(Registry::default());
                let again = Dashboard::open(registry, config, Some(dir)).unwrap();
                let h = again.history.lock().unwrap();
                assert_eq!(h.len(), 3, "and left the store");
                assert!(h.points(gone).is_empty());
            }
        }
    }

    #[test]
    fn rates_skip_resets_and_time_going_backwards() {
        let r = rates(&[(0, 0.0), (10, 50.0), (20, 10.0), (20, 20.0), (30, 40.0)]);
        assert_eq!(r, vec![(10, 5.0), (30, 2.0)]);
        assert!(rates(&[]).is_empty());
    }
}
