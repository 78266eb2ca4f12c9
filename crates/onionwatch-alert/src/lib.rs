//! The alert engine of `onionwatch probe` and `onionwatch watch`: the
//! built-in rules ([`rules::BUILTIN`], the shipped Prometheus rules' alerts
//! under the same names) evaluated on the families each probe round and
//! each scrape cycle produce, with notifications handed to a [`Sink`] (the
//! notifiers of `onionwatch-notify`).
//!
//! - **Windows count rounds.** [`Engine::observe`] is called after every
//!   round with the families just produced and their [`Source`]; only
//!   rules of that source advance. A series is bad in a round when its
//!   rule's condition holds; an alert fires when the series was bad in K
//!   of its last N observed rounds (default 3 of 5) for the rule's `for`
//!   (rounds or wall time). A series absent from a round is a missed
//!   round, neither bad nor good; absent for N rounds in a row, it is
//!   forgotten (and its alert resolved). One lost round, or an onion
//!   service failing one round in five, sends nothing.
//! - **Notifications per group.** Alerts with the same `group_by` labels
//!   (default `name` and `project`: one onion service, one project) form a
//!   group; a group is notified when one of its alerts starts firing or
//!   resolves, and again every `repeat_interval` (default 4 h) while it
//!   fires. A silenced alert is listed but not notified.
//! - **State across restarts.** With a state directory, windows, firing
//!   alerts, the groups' last notifications, resolved alerts not yet
//!   notified and the API's silences are saved to `alerts.json` after
//!   every round (written to a temporary file and renamed): a restart
//!   neither notifies a firing alert again nor loses a resolution.
//! - **Labels.** An alert carries `alertname`, the labels of its series
//!   (`name`, `address`, `project`, …), the rule's `severity` and extra
//!   labels, the section's `labels:` and the caller's engine-wide labels
//!   (e.g. `vantage`), the series' own winning on conflicts.
//!
//! The engine is on when a notifier is configured or the configuration has
//! an `alerts:` section (see [`config`]); `/api/v1/alerts`,
//! `/api/v1/silences` ([`Engine::router`]) and `onionwatch_alerts_firing`
//! ([`Engine`] is a [`Collect`]) then reflect it.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use onionwatch_metrics::{Collect, Family};
pub use onionwatch_notify::{Alert, Group, Labels, Status};
use serde::{Deserialize, Serialize};

mod api;
pub mod config;
pub mod rules;
pub mod silence;

pub use config::{AlertsConfig, ConfigError, EffectiveRule, For, Window};
pub use rules::{Source, CERT_WARNING_SECONDS};
pub use silence::{Matcher, Silence};

/// Where notifications go: `onionwatch_notify::Notifiers`, or a test's
/// recorder. Neither call may block.
pub trait Sink: Send + Sync {
    /// One group's notification.
    fn notify(&self, group: Group);
    /// Every alert that fires (and those just resolved) after a round, for
    /// notifiers that want the whole state (Alertmanager).
    fn push_alerts(&self, alerts: Vec<Alert>);
}

impl Sink for onionwatch_notify::Notifiers {
    fn notify(&self, group: Group) {
        onionwatch_notify::Notifiers::notify(self, group);
    }
    fn push_alerts(&self, alerts: Vec<Alert>) {
        onionwatch_notify::Notifiers::push_alerts(self, alerts);
    }
}

/// Most silences kept (the API can add them).
const MAX_SILENCES: usize = 1000;
/// Most series followed per rule (a hostile or broken exporter cannot
/// grow the state without bound).
const MAX_SERIES_PER_RULE: usize = 10_000;

/// Why the engine cannot start or a silence is refused.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `alerts:` section is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The saved state cannot be read.
    #[error("cannot read the alert state {path}: {source} (move it away to start afresh)")]
    State {
        /// `alerts.json` in the state directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A silence is refused.
    #[error("{0}")]
    Silence(String),
}

/// One followed series of one rule.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Series {
    rule: String,
    labels: Labels,
    /// Last observed rounds, oldest first, `true` when bad.
    window: VecDeque<bool>,
    value: f64,
    /// Counters: the value of the previous observed round.
    previous: Option<f64>,
    /// Rounds of its source in a row without it.
    missed: u32,
    /// Rounds in a row with the window's condition met.
    active_rounds: u32,
    /// Wall time seconds with the condition met (backward clock steps add 0).
    active_seconds: f64,
    last_seen: Option<f64>,
    /// `Some(starts_at)` while firing.
    firing_since: Option<f64>,
    /// A firing notification of it went out.
    notified: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct GroupState {
    labels: Labels,
    last_notified: Option<f64>,
    /// Resolved alerts to tell in the group's next notification.
    resolved: Vec<SavedAlert>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedAlert {
    labels: Labels,
    annotations: Labels,
    starts_at: f64,
    ends_at: Option<f64>,
}

impl SavedAlert {
    fn alert(&self) -> Alert {
        Alert {
            labels: self.labels.clone(),
            annotations: self.annotations.clone(),
            starts_at: from_secs(self.starts_at),
            ends_at: self.ends_at.map(from_secs),
        }
    }
}

/// What `alerts.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    series: BTreeMap<String, Series>,
    groups: BTreeMap<String, GroupState>,
    /// Silences made through the API (the configuration's are not saved).
    silences: Vec<Silence>,
}

fn secs(t: SystemTime) -> f64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

fn from_secs(s: f64) -> SystemTime {
    if s >= 0.0 && s.is_finite() {
        SystemTime::UNIX_EPOCH + Duration::from_secs_f64(s.min(1e11))
    } else {
        SystemTime::UNIX_EPOCH
    }
}

fn series_key(rule: &str, labels: &Labels) -> String {
    let mut k = String::from(rule);
    k.push('{');
    for (i, (n, v)) in labels.iter().enumerate() {
        if i > 0 {
            k.push(',');
        }
        k.push_str(&format!("{n}={v:?}"));
    }
    k.push('}');
    k
}

/// One alert as `/api/v1/alerts` and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FiringAlert {
    /// Its labels.
    pub labels: Labels,
    /// Its annotations.
    pub annotations: Labels,
    /// `firing`.
    pub state: &'static str,
    /// When it started firing.
    #[serde(with = "silence::rfc3339")]
    pub active_at: SystemTime,
    /// The series' last value.
    pub value: f64,
    /// A silence covers it: it is not notified.
    pub silenced: bool,
}

struct Inner {
    saved: Saved,
    config_silences: Vec<Silence>,
    path: Option<PathBuf>,
    /// The last save failed (said once, not every round).
    save_failed: bool,
}

struct Shared {
    rules: Vec<EffectiveRule>,
    repeat: Duration,
    group_by: Vec<String>,
    external: Labels,
    cert_warning: i64,
    sink: Arc<dyn Sink>,
    inner: Mutex<Inner>,
}

/// The alert engine; cheap to clone (shared state).
#[derive(Clone)]
pub struct Engine(Arc<Shared>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.0.rules.len())
            .finish_non_exhaustive()
    }
}

/// The state file in a state directory.
pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("alerts.json")
}

impl Engine {
    /// An engine for `config`, adding `external` labels to every alert,
    /// keeping its state in `state_dir` (resumed from it), notifying
    /// `sink`. State of rules no longer evaluated is dropped.
    pub fn new(
        config: &AlertsConfig,
        external: Labels,
        state_dir: Option<&Path>,
        sink: Arc<dyn Sink>,
    ) -> Result<Engine, Error> {
        let rules = config.validate()?;
        let path = state_dir.map(state_file);
        let mut saved = match &path {
            Some(p) => load_state(p)?,
            None => Saved::default(),
        };
        saved
            .series
            .retain(|_, s| rules.iter().any(|r| r.def.name == s.rule));
        Ok(Engine(Arc::new(Shared {
            rules,
            repeat: config.repeat_interval,
            group_by: config.group_by.clone(),
            external,
            cert_warning: config.certificate_warning_seconds(),
            sink,
            inner: Mutex::new(Inner {
                saved,
                config_silences: config.silences(),
                path,
                save_failed: false,
            }),
        })))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The rules evaluated.
    pub fn rules(&self) -> &[EffectiveRule] {
        &self.0.rules
    }

    /// The certificate threshold in use (see
    /// [`AlertsConfig::certificate_warning_seconds`]).
    pub fn certificate_warning_seconds(&self) -> i64 {
        self.0.cert_warning
    }

    /// Feed one round of `source`: the families it just produced, at
    /// `now`. Decides what fires and resolves, notifies the sink and saves
    /// the state. Never blocks on notifiers.
    pub fn observe(&self, source: Source, families: &[Family], now: SystemTime) {
        let shared = &*self.0;
        let now_s = secs(now);
        let mut notifications = Vec::new();
        let push;
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let saved = &mut inner.saved;
            let mut seen = std::collections::BTreeSet::new();
            for rule in shared.rules.iter().filter(|r| r.def.source == source) {
                let observed = observations(rule, families);
                let mut followed = saved
                    .series
                    .values()
                    .filter(|s| s.rule == rule.def.name)
                    .count();
                for (labels, value) in observed {
                    let key = series_key(rule.def.name, &labels);
                    if !saved.series.contains_key(&key) {
                        if followed >= MAX_SERIES_PER_RULE {
                            continue;
                        }
                        followed += 1;
                    }
                    let s = saved.series.entry(key.clone()).or_insert_with(|| Series {
                        rule: rule.def.name.into(),
                        labels,
                        ..Series::default()
                    });
                    observe_series(rule, s, value, now_s);
                    seen.insert(key);
                }
            }
            // Missed rounds; forgotten after N of them in a row.
            let mut gone = Vec::new();
            for (key, s) in saved.series.iter_mut() {
                let Some(rule) = shared.rules.iter().find(|r| r.def.name == s.rule) else {
                    continue;
                };
                if rule.def.source != source || seen.contains(key) {
                    continue;
                }
                s.missed += 1;
                if s.missed >= rule.window.n {
                    gone.push(key.clone());
                }
            }
            for key in gone {
                if let Some(mut s) = saved.series.remove(&key) {
                    if s.firing_since.is_some() {
                        self.resolve(saved, &mut s, now_s);
                    }
                }
            }
            // Resolutions of series still followed.
            let resolving: Vec<String> = saved
                .series
                .iter()
                .filter(|(_, s)| s.firing_since.is_some() && !self.is_active(s))
                .map(|(k, _)| k.clone())
                .collect();
            for key in resolving {
                let mut s = saved.series.remove(&key).unwrap_or_default();
                self.resolve(saved, &mut s, now_s);
                s.firing_since = None;
                s.notified = false;
                saved.series.insert(key, s);
            }
            // New firings.
            for s in saved.series.values_mut() {
                if s.firing_since.is_none() && self.for_elapsed(s) {
                    s.firing_since = Some(now_s);
                    s.notified = false;
                }
            }
            let silences: Vec<Silence> = inner
                .config_silences
                .iter()
                .chain(&saved.silences)
                .cloned()
                .collect();
            let silenced = |labels: &Labels| silences.iter().any(|x| x.silences(labels, now));
            // Group the firing alerts.
            let mut firing: BTreeMap<String, Vec<(String, SavedAlert)>> = BTreeMap::new();
            for (key, s) in &saved.series {
                if s.firing_since.is_none() {
                    continue;
                }
                let alert = self.alert_of(s);
                if silenced(&alert.labels) {
                    continue;
                }
                let (gkey, glabels) = self.group_of(&alert.labels);
                saved
                    .groups
                    .entry(gkey.clone())
                    .or_insert_with(|| GroupState {
                        labels: glabels,
                        ..GroupState::default()
                    });
                firing.entry(gkey).or_default().push((key.clone(), alert));
            }
            let mut pushed: Vec<Alert> =
                firing.values().flatten().map(|(_, a)| a.alert()).collect();
            let mut emptied = Vec::new();
            for (gkey, g) in saved.groups.iter_mut() {
                if g.last_notified.is_some_and(|t| t > now_s) {
                    // The clock stepped back: count the repeat from now.
                    g.last_notified = Some(now_s);
                }
                let alerts = firing.remove(gkey).unwrap_or_default();
                let fresh = alerts
                    .iter()
                    .any(|(k, _)| saved.series.get(k).is_some_and(|s| !s.notified));
                let due = !alerts.is_empty()
                    && g.last_notified
                        .is_none_or(|t| now_s - t >= shared.repeat.as_secs_f64());
                pushed.extend(g.resolved.iter().map(SavedAlert::alert));
                if fresh || due || !g.resolved.is_empty() {
                    let mut group_alerts: Vec<Alert> =
                        alerts.iter().map(|(_, a)| a.alert()).collect();
                    group_alerts.extend(g.resolved.drain(..).map(|a| a.alert()));
                    notifications.push(Group {
                        key: gkey.clone(),
                        labels: g.labels.clone(),
                        alerts: group_alerts,
                    });
                    g.last_notified = Some(now_s);
                    for (k, _) in &alerts {
                        if let Some(s) = saved.series.get_mut(k) {
                            s.notified = true;
                        }
                    }
                }
                if alerts.is_empty() && g.resolved.is_empty() {
                    emptied.push(gkey.clone());
                }
            }
            for g in emptied {
                saved.groups.remove(&g);
            }
            let before = saved.silences.len();
            saved.silences.retain(|s| s.ends_at > now);
            if saved.silences.len() != before {
                tracing::debug!("expired silences removed");
            }
            pushed.sort_by(|a, b| a.labels.cmp(&b.labels));
            push = pushed;
            save(inner);
        }
        for g in notifications {
            tracing::info!(
                group = %g.key,
                status = g.status().as_str(),
                alerts = g.alerts.len(),
                "notifying"
            );
            shared.sink.notify(g);
        }
        shared.sink.push_alerts(push);
    }

    fn rule(&self, name: &str) -> Option<&EffectiveRule> {
        self.0.rules.iter().find(|r| r.def.name == name)
    }

    fn is_active(&self, s: &Series) -> bool {
        self.rule(&s.rule)
            .is_some_and(|r| s.window.iter().filter(|b| **b).count() >= r.window.k as usize)
    }

    fn for_elapsed(&self, s: &Series) -> bool {
        let Some(r) = self.rule(&s.rule) else {
            return false;
        };
        s.active_rounds > 0
            && match r.for_ {
                For::Rounds(n) => s.active_rounds > n,
                For::Duration(d) => s.active_seconds >= d.as_secs_f64(),
            }
    }

    /// The alert of a series (firing since `firing_since`).
    fn alert_of(&self, s: &Series) -> SavedAlert {
        let rule = self.rule(&s.rule).expect("series of an evaluated rule");
        let mut labels = rule.labels.clone();
        for (k, v) in &self.0.external {
            labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        labels.extend(s.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        labels.insert("alertname".into(), rule.def.name.into());
        let mut annotations = Labels::new();
        annotations.insert(
            "summary".into(),
            rules::render(rule.def.summary, &labels, s.value),
        );
        annotations.insert(
            "description".into(),
            rules::render(rule.def.description, &labels, s.value),
        );
        annotations.insert("runbook_url".into(), rule.def.runbook_url());
        SavedAlert {
            labels,
            annotations,
            starts_at: s.firing_since.unwrap_or_default(),
            ends_at: None,
        }
    }

    fn group_of(&self, labels: &Labels) -> (String, Labels) {
        let mut g: Labels = self
            .0
            .group_by
            .iter()
            .filter_map(|l| labels.get(l).map(|v| (l.clone(), v.clone())))
            .collect();
        if g.is_empty() {
            // Nothing to group by: one group per alert name.
            g.insert("alertname".into(), labels["alertname"].clone());
        }
        let body = g
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(",");
        (format!("{{{body}}}"), g)
    }

    /// `s` resolved at `now`: told in its group's next notification if its
    /// firing was told (or is due: the resolution is then all there is).
    fn resolve(&self, saved: &mut Saved, s: &mut Series, now: f64) {
        if !s.notified {
            return;
        }
        let mut alert = self.alert_of(s);
        alert.ends_at = Some(now);
        let (gkey, glabels) = self.group_of(&alert.labels);
        saved
            .groups
            .entry(gkey)
            .or_insert_with(|| GroupState {
                labels: glabels,
                ..GroupState::default()
            })
            .resolved
            .push(alert);
    }

    /// The firing alerts, silenced or not, sorted by labels.
    pub fn firing(&self) -> Vec<FiringAlert> {
        self.firing_at(SystemTime::now())
    }

    /// [`Engine::firing`], silences applied as at `now`.
    pub fn firing_at(&self, now: SystemTime) -> Vec<FiringAlert> {
        let inner = self.lock();
        let mut out: Vec<FiringAlert> = inner
            .saved
            .series
            .values()
            .filter(|s| s.firing_since.is_some())
            .map(|s| {
                let a = self.alert_of(s);
                let silenced = inner
                    .config_silences
                    .iter()
                    .chain(&inner.saved.silences)
                    .any(|x| x.silences(&a.labels, now));
                FiringAlert {
                    active_at: from_secs(a.starts_at),
                    labels: a.labels,
                    annotations: a.annotations,
                    state: "firing",
                    value: s.value,
                    silenced,
                }
            })
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// The silences, the configuration's first.
    pub fn silences(&self) -> Vec<Silence> {
        let inner = self.lock();
        inner
            .config_silences
            .iter()
            .chain(&inner.saved.silences)
            .cloned()
            .collect()
    }

    /// Add a silence (its id is replaced by a fresh one, returned); saved
    /// with the state.
    pub fn add_silence(&self, mut silence: Silence) -> Result<String, Error> {
        if silence.matchers.is_empty() {
            return Err(Error::Silence(
                "a silence needs at least one matcher".into(),
            ));
        }
        if silence.ends_at <= silence.starts_at {
            return Err(Error::Silence("endsAt must be after startsAt".into()));
        }
        let mut inner = self.lock();
        if inner.saved.silences.len() >= MAX_SILENCES {
            return Err(Error::Silence(format!(
                "{MAX_SILENCES} silences exist already: delete some first"
            )));
        }
        silence.id = format!("{:016x}", fastrand::u64(..));
        let id = silence.id.clone();
        inner.saved.silences.push(silence);
        save(&mut inner);
        Ok(id)
    }

    /// Delete the API's silence `id`; `Ok(false)` when there is none,
    /// an error for the configuration's.
    pub fn delete_silence(&self, id: &str) -> Result<bool, Error> {
        let mut inner = self.lock();
        if inner.config_silences.iter().any(|s| s.id == id) {
            return Err(Error::Silence(format!(
                "silence {id} comes from the configuration: remove it there"
            )));
        }
        let before = inner.saved.silences.len();
        inner.saved.silences.retain(|s| s.id != id);
        let deleted = inner.saved.silences.len() != before;
        if deleted {
            save(&mut inner);
        }
        Ok(deleted)
    }

    /// `/api/v1/alerts` (GET) and `/api/v1/silences` (GET, POST, and
    /// DELETE `/api/v1/silence/{id}`).
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }
}

/// The series of `rule` in `families`, summed by the rule's `by` labels.
fn observations(rule: &EffectiveRule, families: &[Family]) -> Vec<(Labels, f64)> {
    let mut out: BTreeMap<Labels, f64> = BTreeMap::new();
    for f in families {
        if !rule.def.metric.starts_with(f.name.as_str()) {
            continue;
        }
        for s in &f.samples {
            if f.name.len() + s.suffix.len() != rule.def.metric.len()
                || !rule.def.metric.ends_with(s.suffix.as_str())
                || !s.value.is_finite()
            {
                continue;
            }
            let labels: Labels = s
                .labels
                .iter()
                .filter(|(k, _)| rule.def.by.is_none_or(|by| by.contains(&k.as_str())))
                .cloned()
                .collect();
            *out.entry(labels).or_insert(0.0) += s.value;
        }
    }
    out.into_iter().collect()
}

/// One observed round of a series.
fn observe_series(rule: &EffectiveRule, s: &mut Series, value: f64, now: f64) {
    let bad = match rule.def.condition {
        rules::Condition::Equals => value == rule.def.equals,
        rules::Condition::Below => value < rule.threshold,
        rules::Condition::Increased => s
            .previous
            .is_some_and(|p| value > p || (value < p && value > 0.0)),
    };
    s.previous = Some(value);
    s.value = value;
    s.missed = 0;
    s.window.push_back(bad);
    while s.window.len() > rule.window.n as usize {
        s.window.pop_front();
    }
    let active = s.window.iter().filter(|b| **b).count() >= rule.window.k as usize;
    if active {
        let step = s.last_seen.map_or(0.0, |t| (now - t).max(0.0));
        if s.active_rounds > 0 {
            s.active_seconds += step;
        }
        s.active_rounds = s.active_rounds.saturating_add(1);
    } else {
        s.active_rounds = 0;
        s.active_seconds = 0.0;
    }
    s.last_seen = Some(now);
}

fn load_state(path: &Path) -> Result<Saved, Error> {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice(&bytes) {
            Ok(s) => Ok(s),
            Err(e) => {
                // A torn or foreign file: start afresh rather than never start.
                tracing::warn!(path = %path.display(), "alert state unreadable ({e}), starting without it");
                Ok(Saved::default())
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(source) => Err(Error::State {
            path: path.to_owned(),
            source,
        }),
    }
}

fn save(inner: &mut Inner) {
    let Some(path) = &inner.path else {
        return;
    };
    let tmp = path.with_extension("json.tmp");
    let result = serde_json::to_vec(&inner.saved)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    match result {
        Ok(()) => inner.save_failed = false,
        Err(e) if !inner.save_failed => {
            inner.save_failed = true;
            tracing::error!(path = %path.display(), "cannot save the alert state: {e}; a restart may notify firing alerts again");
        }
        Err(_) => {}
    }
}

impl Collect for Engine {
    fn collect(&self, out: &mut Vec<Family>) {
        let mut counts: BTreeMap<&str, usize> =
            self.0.rules.iter().map(|r| (r.def.name, 0)).collect();
        {
            let inner = self.lock();
            for s in inner.saved.series.values() {
                if s.firing_since.is_some() {
                    if let Some(c) = counts.get_mut(s.rule.as_str()) {
                        *c += 1;
                    }
                }
            }
        }
        let mut f = Family::gauge(
            "onionwatch_alerts_firing",
            "Alerts of the built-in rules firing now, silenced ones included.",
        );
        for (name, n) in counts {
            f.push(&[("alertname", name)], n as f64);
        }
        out.push(f);
    }
}

#[cfg(test)]
mod tests;
