//! The built-in web dashboard, for operators without a Prometheus stack.
//!
//! It reads the same families the `/metrics` endpoint serves (so it shows
//! exactly what Prometheus would see), samples them at an interval into a
//! bounded history that an embedded store keeps across restarts
//! ([`history`]), and serves one self-contained page at `/` (no CDN, no
//! external assets) plus its data at `/api/v1/dashboard`; the same page at
//! `/service/<name>` shows one onion service (charts with time axes and
//! tooltips, uptime over each configured range, its last failures with
//! their stage, descriptor and introduction-point history, certificate
//! expiry, the inside figures of the project hosting it) from
//! `/api/v1/service/<name>`. Both APIs take `?range=SECONDS` (one of
//! [`DashboardConfig::ranges`]).
//!
//! The history keeps [`DashboardConfig::points`] points per series at the
//! sampling interval and, older than those, one mean per
//! [`DashboardConfig::downsample`] up to [`DashboardConfig::retention`]
//! (default: 1 hour at 15 s, then 5-minute means for 7 days). It is
//! bounded with or without a store: at most
//! `max_series × (points + retention / downsample)` points of 16 bytes
//! (2,048 × 2,256 × 16 B ≈ 74 MB by default, whatever the sources send;
//! 100 onion services use far less, see BENCHMARKS.md), 20 failures per
//! onion service, and series that stop reporting expire
//! ([`DashboardConfig::expire_after`]).
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

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use onionwatch_inside::names as inside;
use onionwatch_logs::summary::family as logs;
use onionwatch_metrics::Sample;
use onionwatch_probe::metrics::names as probe;
use onionwatch_server::Registry;
use serde::{Deserialize, Serialize};

use history::{uptime_ratio, FailureEvent, History, Store, StoreError};

const PAGE: &str = include_str!("../assets/dashboard.html");

/// How the dashboard samples and keeps history.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Time between samples.
    pub interval: Duration,
    /// Points kept per series at full resolution (240 × 15 s = 1 hour).
    pub points: usize,
    /// How far back the history goes (7 days): what the longest range of
    /// the picker needs.
    pub retention: Duration,
    /// Older than the full-resolution points, one mean per this long
    /// (5 minutes).
    pub downsample: Duration,
    /// Series kept at most (bounds memory whatever the number of targets).
    pub max_series: usize,
    /// A series with no new point for this long (a probe, target or
    /// project that stopped reporting) is forgotten, in memory and in the
    /// store. `None` (the default): [`DashboardConfig::retention`].
    pub expire_after: Option<Duration>,
    /// The range picker's choices and the charts' spans (1 h, 24 h, 7 d);
    /// ranges longer than the retention are left out.
    pub ranges: Vec<Duration>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(15),
            points: 240,
            retention: Duration::from_secs(7 * 86_400),
            downsample: Duration::from_secs(300),
            max_series: 2048,
            expire_after: None,
            ranges: vec![
                Duration::from_secs(3_600),
                Duration::from_secs(86_400),
                Duration::from_secs(7 * 86_400),
            ],
        }
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl DashboardConfig {
    /// Seconds without a new point after which a series is forgotten
    /// ([`DashboardConfig::expire_after`]).
    pub fn expiry_seconds(&self) -> i64 {
        secs(self.expire_after.unwrap_or(self.retention)).max(1)
    }

    fn step(&self) -> i64 {
        secs(self.downsample).max(1)
    }

    fn buckets(&self) -> usize {
        usize::try_from(secs(self.retention) / self.step()).unwrap_or(usize::MAX)
    }

    /// The ranges offered, in seconds, shortest first (at least one: the
    /// retention when none fits).
    pub fn range_seconds(&self) -> Vec<i64> {
        let max = secs(self.retention).max(1);
        let mut r: Vec<i64> = self
            .ranges
            .iter()
            .map(|d| secs(*d))
            .filter(|s| *s > 0 && *s <= max)
            .collect();
        r.sort_unstable();
        r.dedup();
        if r.is_empty() {
            r.push(max);
        }
        r
    }

    /// The offered range closest to `asked` (the shortest when `None`).
    fn pick_range(&self, asked: Option<i64>) -> i64 {
        let r = self.range_seconds();
        match asked {
            Some(a) => *r.iter().min_by_key(|s| (**s - a).abs()).unwrap_or(&r[0]),
            None => r[0],
        }
    }
}

/// `3600` → `1 h`, `604800` → `7 d`: how the page names a range.
pub fn range_label(seconds: i64) -> String {
    if seconds >= 2 * 86_400 && seconds % 86_400 == 0 {
        format!("{} d", seconds / 86_400)
    } else if seconds >= 3_600 && seconds % 3_600 == 0 {
        format!("{} h", seconds / 3_600)
    } else if seconds >= 60 && seconds % 60 == 0 {
        format!("{} min", seconds / 60)
    } else {
        format!("{seconds} s")
    }
}

/// A range of the picker.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RangeChoice {
    /// Seconds.
    pub seconds: i64,
    /// `1 h`, `24 h`, `7 d`.
    pub label: String,
}

/// The share of time an onion service was up over a range.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Uptime {
    /// The range, as in [`RangeChoice`].
    pub range: RangeChoice,
    /// 0 to 1; `null` without samples in the range.
    pub ratio: Option<f64>,
}

/// `?range=SECONDS` of the APIs.
#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    /// Seconds of history wanted (the closest offered range is used).
    pub range: Option<i64>,
}

/// The dashboard state; share it as `Arc<Dashboard>`.
pub struct Dashboard {
    registry: Arc<Registry>,
    config: DashboardConfig,
    history: Mutex<History>,
    store: Option<Store>,
    notes: Mutex<BTreeMap<String, Vec<String>>>,
    /// Failure and error counters at the last sample, to see which grew
    /// (at most `max_series` of each).
    counters: Mutex<BTreeMap<String, f64>>,
    /// The alert engine whose firing alerts the overview lists.
    alerts: Mutex<Option<onionwatch_alert::Engine>>,
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
    /// Reachability history `[unix seconds, 0..1]` (means of 0/1 where
    /// downsampled).
    pub reachability_history: Vec<(i64, f64)>,
    /// Where the last failure stopped when the onion service is down
    /// (`descriptor_not_found`, `connection_refused`, …), else `null`.
    pub failure_stage: Option<String>,
    /// Share of the last 24 hours it was reachable (`null` without samples).
    pub uptime_ratio_24h: Option<f64>,
    /// Share of the selected range it was reachable.
    pub uptime_ratio: Option<f64>,
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
    /// The range the histories cover, seconds.
    pub range_seconds: i64,
    /// The ranges offered.
    pub ranges: Vec<RangeChoice>,
    /// Probed endpoints.
    pub onion_services: Vec<ProbeRow>,
    /// Monitored projects.
    pub projects: Vec<ProjectRow>,
    /// The alert engine's firing alerts (empty without one).
    pub firing_alerts: Vec<AlertRow>,
    /// Certificates expiring within this many seconds are flagged: the
    /// alert engine's threshold, 14 days by default.
    pub certificate_warning_seconds: i64,
}

/// A firing alert as the page shows it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct AlertRow {
    /// `alertname`.
    pub alertname: String,
    /// Its `summary` annotation.
    pub summary: String,
    /// Unix seconds it fires since.
    pub since: i64,
    /// A silence covers it.
    pub silenced: bool,
}

/// What `/api/v1/service/<name>` returns: one onion service.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServiceDetail {
    /// Unix seconds.
    pub generated_at: i64,
    /// The endpoint name.
    pub name: String,
    /// The range the histories cover, seconds.
    pub range_seconds: i64,
    /// The ranges offered.
    pub ranges: Vec<RangeChoice>,
    /// Each probed path (or TCP port), with its latency and reachability
    /// history over the range.
    pub endpoints: Vec<ProbeRow>,
    /// Reachable share over each offered range (all paths together).
    pub uptime: Vec<Uptime>,
    /// The last failures, newest first.
    pub failures: Vec<FailureEvent>,
    /// Descriptor fetched (1) or not (0) over the range.
    pub descriptor_history: Vec<(i64, f64)>,
    /// Introduction points in the descriptor over the range.
    pub introduction_points_history: Vec<(i64, f64)>,
    /// Seconds until the TLS certificate expires.
    pub certificate_expiry_seconds: Option<f64>,
    /// The project hosting it, when the inside monitor sees its address.
    pub project: Option<ProjectRow>,
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
        let mut history = History::new(
            config.points,
            config.step(),
            config.buckets(),
            config.max_series,
        );
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
            counters: Mutex::default(),
            alerts: Mutex::default(),
        }))
    }

    /// List `engine`'s firing alerts on the overview.
    pub fn set_alerts(&self, engine: onionwatch_alert::Engine) {
        *self.alerts.lock().unwrap_or_else(|e| e.into_inner()) = Some(engine);
    }

    fn firing_alerts(&self) -> Vec<AlertRow> {
        let engine = self
            .alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(engine) = engine else {
            return Vec::new();
        };
        engine
            .firing()
            .into_iter()
            .map(|a| AlertRow {
                alertname: a.labels.get("alertname").cloned().unwrap_or_default(),
                summary: a.annotations.get("summary").cloned().unwrap_or_default(),
                since: a
                    .active_at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, secs),
                silenced: a.silenced,
            })
            .collect()
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
                    (probe::REACHABLE, "") => {
                        h.record(&format!("reachable|{}", probe_key(s)), ts, s.value)
                    }
                    (probe::DESCRIPTOR_REACHABLE, "") => {
                        h.record(&format!("descriptor|{}", label(s, "name")), ts, s.value)
                    }
                    (probe::INTRODUCTION_POINTS_NUMBER, "") => {
                        h.record(&format!("intro|{}", label(s, "name")), ts, s.value)
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
        self.failure_events(&families, ts, &mut h);
        h.expire(ts.saturating_sub(self.config.expiry_seconds()));
        match &self.store {
            Some(store) => store.save(&mut h),
            None => {
                h.forget_changes();
                Ok(())
            }
        }
    }

    /// Turn the failure counters that grew since the last sample into
    /// failure events: the stage from `onionwatch_probe_failures_total`,
    /// the reasons from `onionwatch_probe_errors_total` of the same onion
    /// service. A counter seen for the first time counts from 0 (the
    /// prober runs in the same process and starts from 0).
    fn failure_events(&self, families: &[onionwatch_metrics::Family], ts: i64, h: &mut History) {
        let mut prev = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let mut now: BTreeMap<String, f64> = BTreeMap::new();
        // name -> (address, stages, reasons)
        let mut grew: BTreeMap<String, (String, Vec<String>, Vec<String>)> = BTreeMap::new();
        for (family, what) in [
            (probe::PROBE_FAILURES, "stage"),
            (probe::PROBE_ERRORS, "reason"),
        ] {
            let Some(f) = families.iter().find(|f| f.name == family) else {
                continue;
            };
            for s in f.samples.iter().filter(|s| s.suffix == "_total") {
                if now.len() >= 2 * self.config.max_series {
                    break;
                }
                let (name, value) = (label(s, "name"), label(s, what));
                let key = format!("{what}|{name}|{}|{value}", label(s, "address"));
                let before = prev.get(&key).copied().unwrap_or(0.0);
                // A reset (smaller value) counts from 0.
                if s.value > before || (s.value < before && s.value > 0.0) {
                    let e = grew.entry(name.to_owned()).or_insert_with(|| {
                        (label(s, "address").to_owned(), Vec::new(), Vec::new())
                    });
                    match what {
                        "stage" => e.1.push(value.to_owned()),
                        _ => e.2.push(value.to_owned()),
                    }
                }
                now.insert(key, s.value);
            }
        }
        *prev = now;
        for (name, (address, stages, reasons)) in grew {
            for stage in stages {
                h.record_event(
                    &name,
                    FailureEvent {
                        timestamp: ts,
                        address: address.clone(),
                        stage,
                        reason: reasons.join(", "),
                    },
                );
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

    fn ranges(&self) -> Vec<RangeChoice> {
        self.config
            .range_seconds()
            .into_iter()
            .map(|seconds| RangeChoice {
                seconds,
                label: range_label(seconds),
            })
            .collect()
    }

    /// The current state, with the history of the shortest range.
    pub fn snapshot(&self) -> Snapshot {
        self.snapshot_at(now(), None)
    }

    /// The state at `ts` (unix seconds) with the history of the offered
    /// range closest to `range` seconds (the shortest when `None`).
    pub fn snapshot_at(&self, ts: i64, range: Option<i64>) -> Snapshot {
        let range = self.config.pick_range(range);
        let since = ts.saturating_sub(range);
        let day = ts.saturating_sub(86_400);
        let gap = self.config.step().max(secs(self.config.interval) * 2);
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
                        latency_history: h.points_since(&format!("latency|{key}"), since),
                        reachability_history: h.points_since(&format!("reachable|{key}"), since),
                        uptime_ratio_24h: uptime_ratio(
                            &h.points_since(&format!("reachable|{key}"), day),
                            day,
                            ts,
                            gap,
                        ),
                        uptime_ratio: uptime_ratio(
                            &h.points_since(&format!("reachable|{key}"), since),
                            since,
                            ts,
                            gap,
                        ),
                        failure_stage: (s.value != 1.0)
                            .then(|| h.events(label(s, "name")).pop().map(|e| e.stage))
                            .flatten(),
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
            let rate = rates(&h.points_since(&format!("requests|{p}|{class}"), since));
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
            generated_at: ts,
            range_seconds: range,
            ranges: self.ranges(),
            onion_services: probes.into_values().collect(),
            projects: projects.into_values().collect(),
            firing_alerts: self.firing_alerts(),
            certificate_warning_seconds: self
                .alerts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map_or(onionwatch_alert::CERT_WARNING_SECONDS, |e| {
                    e.certificate_warning_seconds()
                }),
        }
    }

    /// One onion service (`name` as in the prober's config) at `ts` with
    /// the history of the offered range closest to `range`; `None` when
    /// neither the prober nor the history knows it.
    pub fn service_at(&self, name: &str, ts: i64, range: Option<i64>) -> Option<ServiceDetail> {
        let snap = self.snapshot_at(ts, range);
        let endpoints: Vec<ProbeRow> = snap
            .onion_services
            .into_iter()
            .filter(|r| r.name == name)
            .collect();
        let families = self.registry.gather();
        let h = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let mut failures = h.events(name);
        if endpoints.is_empty() && failures.is_empty() {
            return None;
        }
        failures.reverse();
        let gap = self.config.step().max(secs(self.config.interval) * 2);
        let ranges = self.ranges();
        // All paths together: the mean of each path's share.
        let reach: Vec<Vec<(i64, f64)>> = endpoints
            .iter()
            .map(|e| {
                let key = format!("reachable|{}|{}|{}", e.name, e.address, e.path);
                h.points_since(&key, i64::MIN)
            })
            .collect();
        let uptime = ranges
            .iter()
            .map(|r| {
                let since = ts.saturating_sub(r.seconds);
                let each: Vec<f64> = reach
                    .iter()
                    .filter_map(|p| uptime_ratio(p, since, ts, gap))
                    .collect();
                Uptime {
                    range: r.clone(),
                    ratio: (!each.is_empty()).then(|| each.iter().sum::<f64>() / each.len() as f64),
                }
            })
            .collect();
        let since = ts.saturating_sub(snap.range_seconds);
        let addresses: Vec<String> = endpoints
            .iter()
            .map(|e| e.address.trim_end_matches(".onion").to_owned())
            .collect();
        let hosting = families
            .iter()
            .filter(|f| f.name.starts_with("tor_hs_"))
            .flat_map(|f| f.samples.iter())
            .find(|s| {
                let svc = match label(s, "onion") {
                    "" => label(s, "onion_service"),
                    v => v,
                };
                !svc.is_empty()
                    && addresses
                        .iter()
                        .any(|a| a == svc.trim_end_matches(".onion"))
            })
            .map(|s| label(s, "project").to_owned());
        let project = hosting.and_then(|p| snap.projects.into_iter().find(|r| r.project == p));
        Some(ServiceDetail {
            generated_at: ts,
            name: name.to_owned(),
            range_seconds: snap.range_seconds,
            ranges,
            certificate_expiry_seconds: endpoints.iter().find_map(|e| e.certificate_expiry_seconds),
            endpoints,
            uptime,
            failures,
            descriptor_history: h.points_since(&format!("descriptor|{name}"), since),
            introduction_points_history: h.points_since(&format!("intro|{name}"), since),
            project,
        })
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
                "/service/{name}",
                get(|| async {
                    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE)).into_response()
                }),
            )
            .route(
                "/api/v1/dashboard",
                get(
                    |State(d): State<Arc<Dashboard>>, Query(q): Query<RangeQuery>| async move {
                        Json(d.snapshot_at(now(), q.range))
                    },
                ),
            )
            .route(
                "/api/v1/service/{name}",
                get(
                    |State(d): State<Arc<Dashboard>>,
                     UrlPath(name): UrlPath<String>,
                     Query(q): Query<RangeQuery>| async move {
                        match d.service_at(&name, now(), q.range) {
                            Some(detail) => Json(detail).into_response(),
                            None => (
                                StatusCode::NOT_FOUND,
                                Json(serde_json::json!({
                                    "error": format!("no onion service named {name:?} is probed or in the history")
                                })),
                            )
                                .into_response(),
                        }
                    },
                ),
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

    struct Quiet;

    impl onionwatch_alert::Sink for Quiet {
        fn notify(&self, _: onionwatch_alert::Group) {}
        fn push_alerts(&self, _: Vec<onionwatch_alert::Alert>) {}
    }

    #[test]
    fn firing_alerts_are_on_the_overview() {
        let (d, _) = dashboard(1, DashboardConfig::default(), None);
        let engine = onionwatch_alert::Engine::new(
            &onionwatch_alert::AlertsConfig::default(),
            onionwatch_alert::Labels::new(),
            None,
            Arc::new(Quiet),
        )
        .unwrap();
        d.set_alerts(engine.clone());
        assert!(d.snapshot().firing_alerts.is_empty());
        let mut f = Family::gauge(probe::REACHABLE, "");
        f.push(
            &[("name", "shop"), ("address", "x.onion"), ("path", "/")],
            0.0,
        );
        let start = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        for i in 0..3 {
            let t = start + std::time::Duration::from_secs(60 * i);
            engine.observe(onionwatch_alert::Source::Probe, &[f.clone()], t);
        }
        let alerts = d.snapshot().firing_alerts;
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].alertname, "OnionServiceUnreachable");
        assert!(alerts[0].summary.contains("shop"), "{:?}", alerts[0]);
        assert_eq!(alerts[0].since, 1_800_000_120);
        assert_eq!(d.snapshot().certificate_warning_seconds, 14 * 86_400);
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
        // 20 at full resolution, then the 14 whole 5-minute means before.
        assert_eq!(h.points("requests|p7|5xx").len(), 34);
        assert!(h.total_points() <= h.max_points());
    }

    #[test]
    fn a_series_that_stops_reporting_expires() {
        let dir = tempfile::tempdir().unwrap();
        for store in [None, Some(dir.path())] {
            let config = DashboardConfig {
                interval: Duration::from_secs(15),
                points: 4,
                retention: Duration::from_secs(60),
                ..DashboardConfig::default()
            };
            assert_eq!(config.expiry_seconds(), 60, "the retention by default");
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

    /// One onion service `svc` whose probe fails at the stage in `stage`
    /// (passes while it is empty).
    #[derive(Default)]
    struct Flaky {
        stage: Mutex<(String, f64, f64)>,
    }

    impl Collect for Flaky {
        fn collect(&self, out: &mut Vec<Family>) {
            let (stage, fails, refused) = self.stage.lock().unwrap().clone();
            let p = [("name", "svc"), ("address", "a.onion"), ("path", "/")];
            let mut reachable = Family::gauge(probe::REACHABLE, "");
            reachable.push(&p, if stage.is_empty() { 1.0 } else { 0.0 });
            let mut failures = Family::counter(probe::PROBE_FAILURES, "");
            let mut errors = Family::counter(probe::PROBE_ERRORS, "");
            if fails > 0.0 {
                failures.push(
                    &[
                        ("name", "svc"),
                        ("address", "a.onion"),
                        ("stage", "pattern"),
                    ],
                    fails,
                );
                errors.push(
                    &[
                        ("name", "svc"),
                        ("address", "a.onion"),
                        ("reason", "pattern_not_matched"),
                    ],
                    fails,
                );
            }
            if refused > 0.0 {
                failures.push(
                    &[
                        ("name", "svc"),
                        ("address", "a.onion"),
                        ("stage", "connection_refused"),
                    ],
                    refused,
                );
            }
            let mut hs = Family::counter("tor_hs_app_write_bytes", "");
            hs.push(&[("onion", "a"), ("project", "shop")], 1.0);
            out.extend([reachable, failures, errors, hs]);
        }
    }

    #[test]
    fn failures_uptime_and_ranges_reach_the_overview_and_the_service_page() {
        let source = Arc::new(Flaky::default());
        let registry = Arc::new(Registry::default());
        registry.register(source.clone());
        let d = Dashboard::open(registry, DashboardConfig::default(), None).unwrap();
        let t0 = 1_000_000;
        // Up for 45 minutes, then failing on the pattern for 15.
        for i in 0..240 {
            if i == 180 {
                *source.stage.lock().unwrap() = ("pattern".into(), 1.0, 0.0);
            }
            d.sample_at(t0 + i * 15).unwrap();
        }
        let end = t0 + 239 * 15;
        let snap = d.snapshot_at(end, None);
        assert_eq!(snap.range_seconds, 3_600);
        let labels: Vec<&str> = snap.ranges.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["1 h", "24 h", "7 d"]);
        let row = &snap.onion_services[0];
        assert_eq!(row.reachable, Some(false));
        assert_eq!(row.failure_stage.as_deref(), Some("pattern"));
        let up = row.uptime_ratio_24h.unwrap();
        assert!((up - 180.0 / 240.0).abs() < 0.01, "{up}");
        assert_eq!(row.reachability_history.len(), 240);
        assert_eq!(d.snapshot_at(end, Some(90_000)).range_seconds, 86_400);

        // A second stage: the newest failure decides.
        *source.stage.lock().unwrap() = ("connection_refused".into(), 1.0, 1.0);
        d.sample_at(end + 15).unwrap();
        let svc = d.service_at("svc", end + 15, Some(86_400)).unwrap();
        assert_eq!(svc.endpoints.len(), 1);
        assert_eq!(
            svc.endpoints[0].failure_stage.as_deref(),
            Some("connection_refused")
        );
        let f: Vec<(&str, &str)> = svc
            .failures
            .iter()
            .map(|e| (e.stage.as_str(), e.reason.as_str()))
            .collect();
        assert_eq!(
            f,
            [
                ("connection_refused", ""),
                ("pattern", "pattern_not_matched")
            ]
        );
        assert_eq!(svc.failures[1].timestamp, t0 + 180 * 15);
        assert_eq!(svc.uptime.len(), 3);
        assert!(svc.uptime.iter().all(|u| u.ratio.is_some()));
        assert_eq!(
            svc.project.as_ref().map(|p| p.project.as_str()),
            Some("shop"),
            "the project whose tor hosts the address"
        );
        assert!(d.service_at("nobody", end, None).is_none());
    }

    /// `svc` with two paths: `/` up, `/down` down.
    struct TwoPaths;

    impl Collect for TwoPaths {
        fn collect(&self, out: &mut Vec<Family>) {
            let mut reachable = Family::gauge(probe::REACHABLE, "");
            reachable
                .push(
                    &[("name", "svc"), ("address", "a.onion"), ("path", "/")],
                    1.0,
                )
                .push(
                    &[("name", "svc"), ("address", "a.onion"), ("path", "/down")],
                    0.0,
                );
            out.push(reachable);
        }
    }

    #[test]
    fn a_service_with_two_paths_has_the_mean_of_their_uptimes() {
        let registry = Arc::new(Registry::default());
        registry.register(Arc::new(TwoPaths));
        let d = Dashboard::open(registry, DashboardConfig::default(), None).unwrap();
        for i in 0..10 {
            d.sample_at(1_000_000 + i * 15).unwrap();
        }
        let svc = d.service_at("svc", 1_000_000 + 150, None).unwrap();
        assert_eq!(svc.endpoints.len(), 2);
        assert_eq!(svc.uptime[0].ratio, Some(0.5));
    }

    #[test]
    fn ranges_follow_the_configuration() {
        let config = DashboardConfig {
            retention: Duration::from_secs(6 * 3_600),
            ranges: vec![
                Duration::from_secs(3 * 3_600),
                Duration::from_secs(86_400),
                Duration::from_secs(900),
            ],
            ..DashboardConfig::default()
        };
        assert_eq!(
            config.range_seconds(),
            [900, 3 * 3_600],
            "longer than kept: left out"
        );
        assert_eq!(range_label(900), "15 min");
        assert_eq!(range_label(3 * 3_600), "3 h");
        assert_eq!(range_label(86_400), "24 h");
        assert_eq!(range_label(7 * 86_400), "7 d");
        assert_eq!(config.pick_range(Some(100_000)), 3 * 3_600);
        assert_eq!(config.pick_range(None), 900);
    }

    #[test]
    fn rates_skip_resets_and_time_going_backwards() {
        let r = rates(&[(0, 0.0), (10, 50.0), (20, 10.0), (20, 20.0), (30, 40.0)]);
        assert_eq!(r, vec![(10, 5.0), (30, 2.0)]);
        assert!(rates(&[]).is_empty());
    }
}
