//! The `onionwatch watch` runtime: one scrape task per target, on an
//! interval, each bounded by a timeout; the endpoint reads only the cached
//! results, so a slow or dead target never blocks or fails a scrape of
//! onionwatch itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use onionwatch_logs::follow::{Follower, Source};
use onionwatch_logs::guard::{Listener, ProjectTors, TorOwner};
use onionwatch_metrics::{Collect, Family};
use onionwatch_tor::control::ControlTarget;
use serde::Serialize;

use onionwatch_onionspray::tree::OnionService;

use crate::collector::{self, Endpoint, Kind};
use crate::targets::{Settings, Target};
use crate::{discovery, names, Error};

type Key = (Kind, String, String);

/// The latest result of one target.
#[derive(Debug, Clone, Default)]
struct Status {
    scraped: bool,
    up: bool,
    last_scrape: Option<SystemTime>,
    duration: f64,
    error: Option<String>,
    families: Vec<Family>,
    scrapes: u64,
    failures: u64,
}

#[derive(Debug)]
struct Entry {
    target: Target,
    status: Mutex<Status>,
    task: tokio::task::AbortHandle,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What one Onionspray tree gave at its last successful discovery.
#[derive(Debug, Default)]
struct Tree {
    projects: usize,
    targets: Vec<Target>,
    logs: Vec<Source>,
    /// Its onion services (with `discover_onion_services`).
    onions: Vec<OnionService>,
    /// What could not be read, with why and the fix.
    unreadable: Vec<String>,
    /// Per project and tor, the `HiddenServicePort` targets of its onion
    /// services: which tor a logged listener belongs to.
    listeners: Vec<(String, String, Vec<Listener>)>,
}

#[derive(Debug)]
struct Shared {
    interval: Duration,
    timeout: Duration,
    entries: RwLock<BTreeMap<Key, Arc<Entry>>>,
    /// Follows the projects' logs; its sources are updated at each discovery.
    logs: Mutex<Option<Follower>>,
    /// Each tree's last successful discovery.
    trees: Mutex<BTreeMap<PathBuf, Tree>>,
    /// What the collectors scraped but did not export, all targets together.
    dropped: Arc<collector::Dropped>,
    /// The onion services of every tree, after each discovery.
    onions: tokio::sync::watch::Sender<Vec<OnionService>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running monitor. Cloning shares it.
#[derive(Debug, Clone)]
pub struct Watcher {
    shared: Arc<Shared>,
    settings: Arc<Settings>,
}

impl Watcher {
    /// A watcher scraping `settings.targets` (call [`Watcher::start`] inside
    /// a tokio runtime to begin).
    pub fn new(settings: Settings) -> Self {
        Watcher {
            shared: Arc::new(Shared {
                interval: settings.interval,
                timeout: settings.timeout,
                entries: RwLock::new(BTreeMap::new()),
                logs: Mutex::new(None),
                trees: Mutex::new(BTreeMap::new()),
                dropped: Arc::default(),
                onions: tokio::sync::watch::Sender::new(Vec::new()),
            }),
            settings: Arc::new(settings),
        }
    }

    /// Follow the logs of the configured projects and, at each discovery,
    /// of the discovered ones with `follower` (call before
    /// [`Watcher::start`]; register [`Follower::collector`] with the
    /// registry and spawn it yourself).
    pub fn attach_log_follower(&self, follower: Follower) {
        *lock(&self.shared.logs) = Some(follower);
    }

    /// Whether every current target has been scraped at least once (a
    /// failed scrape completed too): `/-/ready` of `watch`.
    pub fn first_round_done(&self) -> bool {
        self.shared
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .all(|e| lock(&e.status).scraped)
    }

    /// Start the static targets and discover the Onionspray trees once.
    /// A tree that cannot be read, or nothing to watch at all (no target
    /// and no log), is an error: at start-up that is a mistake to report,
    /// not to run through.
    pub fn start(&self) -> Result<(), Error> {
        let mut trees = BTreeMap::new();
        for root in &self.settings.onionspray {
            let tree = self.discover_tree(root)?;
            for u in &tree.unreadable {
                tracing::warn!(root = %root.display(), "{u}");
            }
            trees.insert(root.clone(), tree);
        }
        if let Some(e) = self.nothing_to_watch(&trees) {
            return Err(e);
        }
        *lock(&self.shared.trees) = trees;
        self.apply();
        Ok(())
    }

    /// Discover the Onionspray trees again and reconcile the running
    /// targets: new ones start, vanished ones stop, unchanged ones keep
    /// their state. A tree that cannot be read now keeps its previous
    /// targets and logs; the other trees are updated.
    pub fn rediscover(&self) {
        for root in &self.settings.onionspray {
            match self.discover_tree(root) {
                Ok(tree) => {
                    let mut trees = lock(&self.shared.trees);
                    // Said at start-up; again only when something new cannot be read.
                    let before = trees
                        .get(root)
                        .map(|t| t.unreadable.as_slice())
                        .unwrap_or(&[]);
                    for u in tree.unreadable.iter().filter(|u| !before.contains(u)) {
                        tracing::warn!(root = %root.display(), "{u}");
                    }
                    trees.insert(root.clone(), tree);
                }
                Err(e) => {
                    tracing::warn!(root = %root.display(), error = %e, "cannot discover Onionspray projects; keeping the previous targets of this tree");
                }
            }
        }
        self.apply();
    }

    fn discover_tree(&self, root: &std::path::Path) -> Result<Tree, Error> {
        let (inst, targets) = discovery::discover(root)?;
        let logs = if self.settings.follow_onionspray_logs {
            discovery::log_sources(&inst)
        } else {
            Vec::new()
        };
        let mut unreadable: Vec<String> = inst.unreadable.iter().map(|u| u.to_string()).collect();
        let mut onions = Vec::new();
        if self.settings.discover_onion_services {
            for p in &inst.projects {
                let (found, failed) = p.onion_services();
                unreadable.extend(
                    failed
                        .iter()
                        .map(|u| format!("{u} (its onion service is not probed)")),
                );
                for o in found {
                    match o.address.parse::<onionwatch_tor::onion::OnionAddress>() {
                        Ok(_) => onions.push(o),
                        Err(e) => unreadable.push(format!(
                            "the onion service hostname file {} holds no usable address: {e} (its onion service is not probed)",
                            o.dir.join("hostname").display()
                        )),
                    }
                }
            }
        }
        tracing::debug!(root = %root.display(), projects = inst.projects.len(), targets = targets.len(), onion_services = onions.len(), "discovered the Onionspray tree");
        Ok(Tree {
            projects: inst.projects.len(),
            targets,
            logs,
            onions,
            unreadable,
            listeners: discovery::listeners_of(&inst),
        })
    }

    /// The error to stop on when neither the settings nor `trees` give a
    /// target or a log: what was found, and what to change.
    fn nothing_to_watch(&self, trees: &BTreeMap<PathBuf, Tree>) -> Option<Error> {
        let s = &self.settings;
        let empty = s.targets.is_empty()
            && s.logs.is_empty()
            && trees
                .values()
                .all(|t| t.targets.is_empty() && t.logs.is_empty());
        if !empty {
            return None;
        }
        if trees.is_empty() {
            return Some(Error::NothingGiven);
        }
        Some(Error::NothingFound {
            trees: trees.iter().map(|(r, t)| (r.clone(), t.projects)).collect(),
            follow_onionspray_logs: s.follow_onionspray_logs,
            unreadable: trees
                .values()
                .flat_map(|t| t.unreadable.iter().cloned())
                .collect(),
        })
    }

    /// Run the configured targets plus those of every tree, and follow
    /// their logs. A configured target wins over a discovered one of the
    /// same key.
    fn apply(&self) {
        let mut targets = self.settings.targets.clone();
        let mut logs = self.settings.logs.clone();
        let mut onions: Vec<OnionService> = Vec::new();
        for tree in lock(&self.shared.trees).values() {
            for o in &tree.onions {
                // The same service found twice (two trees, a copied tor.conf) is probed once.
                if !onions.iter().any(|seen| seen.address == o.address) {
                    onions.push(o.clone());
                }
            }
            for t in &tree.targets {
                if !targets.iter().any(|s| s.key() == t.key()) {
                    targets.push(t.clone());
                }
            }
            logs.extend(tree.logs.iter().cloned());
        }
        self.set_targets(targets);
        if let Some(f) = lock(&self.shared.logs).as_ref() {
            f.set_sources(logs);
        }
        self.shared.onions.send_if_modified(|now| {
            let changed = *now != onions;
            *now = onions;
            changed
        });
    }

    /// The onion services found in the Onionspray trees (their `hostname`
    /// files), updated at each discovery that changes them: what `watch`
    /// probes from the outside.
    pub fn onion_services(&self) -> tokio::sync::watch::Receiver<Vec<OnionService>> {
        self.shared.onions.subscribe()
    }

    /// Replace the running targets with `targets`.
    pub fn set_targets(&self, targets: Vec<Target>) {
        let mut entries = self
            .shared
            .entries
            .write()
            .unwrap_or_else(|e| e.into_inner());
        let wanted: BTreeMap<Key, Target> = targets.into_iter().map(|t| (t.key(), t)).collect();
        entries.retain(|k, e| {
            let keep = wanted.get(k).is_some_and(|t| t.endpoint == e.target.endpoint);
            if !keep {
                tracing::info!(project = %e.target.project, collector = k.0.as_str(), endpoint = %e.target.endpoint, "stopped watching a target");
            }
            keep
        });
        for (k, t) in wanted {
            if entries.contains_key(&k) {
                continue;
            }
            tracing::info!(project = %t.project, tor_instance = t.tor_instance.as_deref().unwrap_or(""), collector = k.0.as_str(), endpoint = %t.endpoint, "watching a target");
            let entry = Arc::new_cyclic(|weak: &std::sync::Weak<Entry>| {
                let task = tokio::spawn(scrape_loop(
                    weak.clone(),
                    t.clone(),
                    self.shared.interval,
                    self.shared.timeout,
                    self.shared.dropped.clone(),
                ));
                Entry {
                    target: t.clone(),
                    status: Mutex::new(Status::default()),
                    task: task.abort_handle(),
                }
            });
            entries.insert(k, entry);
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The metrics source to register with the server's registry.
    pub fn collector(&self) -> Arc<dyn Collect> {
        Arc::new(WatchCollect(self.shared.clone()))
    }

    /// `/api/v1/targets`, to merge into the server's router.
    pub fn api_router(&self) -> Router {
        Router::new()
            .route("/api/v1/targets", get(targets_api))
            .with_state(self.shared.clone())
    }

    /// The state of every target, as `/api/v1/targets` shows it.
    pub fn target_states(&self) -> Vec<TargetState> {
        states(&self.shared)
    }

    /// The tors of `project` now, configured and discovered: each one's
    /// control port and the listeners its `HiddenServicePort` lines point
    /// at (known for discovered tors), so that the log policy closes a
    /// circuit on the tor that owns it.
    pub fn project_tors(&self, project: &str) -> ProjectTors {
        let mut tors: BTreeMap<String, TorOwner> = BTreeMap::new();
        let owner = |name: &str| TorOwner {
            name: name.to_owned(),
            control: None,
            listeners: Vec::new(),
        };
        for t in self.control_targets(project) {
            tors.entry(t.0.clone())
                .or_insert_with(|| owner(&t.0))
                .control = Some(t.1);
        }
        for tree in lock(&self.shared.trees).values() {
            for (p, tor, listeners) in &tree.listeners {
                if p == project {
                    let t = tors.entry(tor.clone()).or_insert_with(|| owner(tor));
                    t.listeners.extend(listeners.iter().cloned());
                }
            }
        }
        ProjectTors {
            tors: tors.into_values().collect(),
        }
    }

    /// `project`'s control ports by tor instance name.
    fn control_targets(&self, project: &str) -> Vec<(String, ControlTarget)> {
        let entries = self
            .shared
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner());
        entries
            .values()
            .filter(|e| e.target.project == project)
            .filter_map(|e| match &e.target.endpoint {
                Endpoint::Control(t) => Some((
                    e.target
                        .tor_instance
                        .clone()
                        .unwrap_or_else(|| "tor".into()),
                    t.clone(),
                )),
                _ => None,
            })
            .collect()
    }
}

/// The message of [`Error::NothingFound`]: what each tree holds, and
/// what to change.
pub(crate) fn nothing_found(
    trees: &[(PathBuf, usize)],
    follow_onionspray_logs: bool,
    unreadable: &[String],
) -> String {
    let found: Vec<String> = trees
        .iter()
        .map(|(root, projects)| match projects {
            0 => format!(
                "{} has no projects (each needs projects/<name>/ with its generated tor.conf)",
                root.display()
            ),
            n => format!(
                "{} has {n} project(s) but no MetricsPort, ControlPort or nginx stub_status in them",
                root.display()
            ),
        })
        .collect();
    let mut msg = format!(
        "nothing to watch: no target or log was given, and {}",
        found.join("; ")
    );
    if !follow_onionspray_logs {
        msg.push_str(", and follow_onionspray_logs is false");
    }
    if trees.iter().any(|(_, projects)| *projects > 0) {
        msg.push_str(": give the projects' tors a MetricsPort or ControlPort (`onionwatch audit --suggest-ports DIR` proposes ports)");
        if !follow_onionspray_logs {
            msg.push_str(" or set follow_onionspray_logs: true to follow their logs");
        }
    }
    // Most often the reason: a 0700 tree of another user.
    for u in unreadable {
        msg.push_str("; ");
        msg.push_str(u);
    }
    msg
}

async fn scrape_loop(
    entry: std::sync::Weak<Entry>,
    target: Target,
    interval: Duration,
    timeout: Duration,
    dropped: Arc<collector::Dropped>,
) {
    let collector = collector::start(&target, timeout, dropped);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, collector.scrape()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "{} did not answer within {timeout:?}",
                target.endpoint
            )),
        };
        let duration = started.elapsed().as_secs_f64();
        let Some(entry) = entry.upgrade() else {
            return; // the target was removed
        };
        let mut s = entry.status.lock().unwrap_or_else(|e| e.into_inner());
        let was_up = s.scraped.then_some(s.up);
        s.scraped = true;
        s.scrapes += 1;
        s.duration = duration;
        s.last_scrape = Some(SystemTime::now());
        let instance = target.tor_instance.as_deref().unwrap_or("");
        match result {
            Ok(families) => {
                if was_up == Some(false) {
                    tracing::info!(project = %target.project, tor_instance = instance, collector = target.collector().as_str(), "scrape works again");
                }
                s.up = true;
                s.error = None;
                s.families = families;
            }
            Err(e) => {
                if s.error.as_deref() != Some(e.as_str()) {
                    tracing::warn!(project = %target.project, tor_instance = instance, collector = target.collector().as_str(), error = %e, "scrape failed");
                }
                s.up = false;
                s.failures += 1;
                s.error = Some(e);
                s.families = collector.down();
            }
        }
    }
}

struct WatchCollect(Arc<Shared>);

impl Collect for WatchCollect {
    fn collect(&self, out: &mut Vec<Family>) {
        let entries: Vec<Arc<Entry>> = self
            .0
            .entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut up = Family::gauge(
            names::SCRAPE_UP,
            "Whether the last scrape of the target worked (1) or not (0).",
        );
        let mut duration = Family::gauge(
            names::SCRAPE_DURATION_SECONDS,
            "How long the last scrape of the target took.",
        );
        let mut rest = Vec::new();
        for e in entries {
            let s = e.status.lock().unwrap_or_else(|e| e.into_inner());
            if !s.scraped {
                continue;
            }
            let t = &e.target;
            let mut labels = vec![
                ("collector", t.collector().as_str()),
                ("project", t.project.as_str()),
            ];
            if let Some(i) = &t.tor_instance {
                labels.push(("tor_instance", i.as_str()));
            }
            up.push(&labels, if s.up { 1.0 } else { 0.0 });
            duration.push(&labels, s.duration);
            rest.extend(s.families.iter().cloned());
        }
        out.push(up);
        out.push(duration);
        out.extend(rest);
        let dropped = &self.0.dropped;
        use std::sync::atomic::Ordering::Relaxed;
        onionwatch_metrics::push_dropped(
            out,
            onionwatch_metrics::DROPPED_NOT_TOR,
            dropped.not_tor.load(Relaxed),
        );
        onionwatch_metrics::push_dropped(
            out,
            onionwatch_metrics::DROPPED_TYPE_CONFLICT,
            dropped.type_conflict.load(Relaxed),
        );
        onionwatch_metrics::push_dropped(
            out,
            onionwatch_metrics::DROPPED_NAME_CONFLICT,
            dropped.name_conflict.load(Relaxed),
        );
    }
}

/// One target as `/api/v1/targets` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetState {
    /// `tor_metrics`, `tor_control` or `nginx`.
    pub collector: Kind,
    /// The project.
    pub project: String,
    /// The tor instance (none for nginx).
    pub tor_instance: Option<String>,
    /// What is scraped.
    pub endpoint: String,
    /// `flag`, `config` or `onionspray`.
    pub origin: crate::targets::Origin,
    /// `up`, `down` or `pending` (not scraped yet).
    pub health: &'static str,
    /// Unix time of the last scrape.
    pub last_scrape_unix: Option<f64>,
    /// Seconds the last scrape took.
    pub last_duration_seconds: Option<f64>,
    /// Why the last scrape failed.
    pub last_error: Option<String>,
    /// Scrapes so far.
    pub scrapes: u64,
    /// Failed scrapes so far.
    pub failures: u64,
}

fn states(shared: &Shared) -> Vec<TargetState> {
    let entries = shared.entries.read().unwrap_or_else(|e| e.into_inner());
    entries
        .values()
        .map(|e| {
            let s = e.status.lock().unwrap_or_else(|e| e.into_inner());
            TargetState {
                collector: e.target.collector(),
                project: e.target.project.clone(),
                tor_instance: e.target.tor_instance.clone(),
                endpoint: e.target.endpoint.to_string(),
                origin: e.target.origin,
                health: match (s.scraped, s.up) {
                    (false, _) => "pending",
                    (true, true) => "up",
                    (true, false) => "down",
                },
                last_scrape_unix: s
                    .last_scrape
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_secs_f64()),
                last_duration_seconds: s.scraped.then_some(s.duration),
                last_error: s.error.clone(),
                scrapes: s.scrapes,
                failures: s.failures,
            }
        })
        .collect()
}

#[derive(Serialize)]
struct TargetsBody {
    targets: Vec<TargetState>,
}

async fn targets_api(State(shared): State<Arc<Shared>>) -> Json<TargetsBody> {
    Json(TargetsBody {
        targets: states(&shared),
    })
}

/// Run discovery again on SIGHUP and every `settings.rediscover` until
/// `shutdown` resolves.
pub async fn rediscover_loop(watcher: Watcher, shutdown: impl std::future::Future<Output = ()>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot install the SIGHUP handler; re-discovering on the timer only");
            None
        }
    };
    let period = watcher.settings.rediscover;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tokio::pin!(shutdown);
    loop {
        let hup_recv = async {
            match hup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tick.tick() => {}
            _ = hup_recv => tracing::info!("SIGHUP: discovering the Onionspray projects again"),
        }
        if !watcher.settings.onionspray.is_empty() {
            watcher.rediscover();
        }
    }
}
