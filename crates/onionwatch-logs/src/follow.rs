//! Follow a set of logs and keep their analytics: the pipeline behind
//! `onionwatch logs` (follow mode) and the log part of `onionwatch watch`.
//!
//! A [`Follower`] owns one [`Tailer`] over every [`Source`] and, per project,
//! an [`Analytics`] for its nginx access logs and a [`SeverityCounter`] each
//! for its tor and onionbalance logs. Its thread ([`Follower::spawn`]) polls
//! the tailer, feeds every line to the project's counters *inside* the
//! poll's callback (so the reader never runs ahead of the consumer: memory is
//! bounded whatever the log rate), moves the analytics clock to the wall
//! clock, and saves the tail state after the lines are counted (at most every
//! [`FollowConfig::state_interval`], and when stopped). [`Follower::families`]
//! (or the [`Collect`] source from [`Follower::collector`]) exports:
//!
//! - every `onionwatch_log_*` family of [`Summary::to_families`], per project
//!   (labelled `project` unless the project name is empty);
//! - `onionwatch_log_severity_lines_total{log="tor"|"onionbalance"|"nginx_error"|"onionspray",severity}`
//!   (`debug` … `err`, and `unknown`);
//! - the tailer's health: `onionwatch_log_tail_lines_total`,
//!   `…_tail_lines_too_long_total`, `…_tail_bytes_total`,
//!   `…_tail_files`, `…_tail_rotations_total`, `…_tail_truncations_total`,
//!   `…_tail_read_errors_total`, `…_tail_state_save_errors_total`.
//!
//! A per-record hook ([`Follower::set_record_hook`]) sees every parsed
//! access-log record's project, circuit and time, for policies that act on
//! abusive circuits.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use onionwatch_metrics::{Collect, Family};
use onionwatch_tor::circuit_id::CircuitId;

use crate::access::{CircuitSource, LogFormat};
use crate::analytics::{Analytics, AnalyticsConfig};
use crate::lines::Line;
use crate::severity::{RecentLine, Severity, SeverityCounter};
use crate::summary::Summary;
use crate::tail::{TailConfig, TailState, TailStats, Tailer};

/// What a followed file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogKind {
    /// An nginx access log, parsed with the follower's format.
    Access,
    /// A tor log, counted by severity.
    Tor,
    /// An onionbalance log, counted by severity.
    Onionbalance,
    /// An nginx error log (`log/nginx-error.log`), counted by severity
    /// (`crit`, `alert` and `emerg` count as `err`).
    NginxError,
    /// An Onionspray installation's own log (`log/*.log`), counted by
    /// severity (lines without one as `unknown`).
    Onionspray,
}

impl LogKind {
    /// The `log` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            LogKind::Access => "access",
            LogKind::Tor => "tor",
            LogKind::Onionbalance => "onionbalance",
            LogKind::NginxError => "nginx_error",
            LogKind::Onionspray => "onionspray",
        }
    }
}

/// One path or glob to follow.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    /// The project it belongs to (`project` label; empty for none).
    pub project: String,
    /// What it holds.
    pub kind: LogKind,
    /// A path, or a path whose last component has `*` / `?` wildcards.
    pub pattern: PathBuf,
}

impl Source {
    /// One project's sources: its access logs, tor logs and onionbalance
    /// logs, in that order. Standard input (`-`) and compressed (`.gz`)
    /// files are refused: neither grows, so neither can be followed.
    pub fn project(
        project: &str,
        access: &[PathBuf],
        tor: &[PathBuf],
        onionbalance: &[PathBuf],
    ) -> Result<Vec<Source>, SourceError> {
        if access.iter().any(|p| p.as_os_str() == "-") {
            return Err(SourceError::Stdin);
        }
        let kinds = [
            (LogKind::Access, access),
            (LogKind::Tor, tor),
            (LogKind::Onionbalance, onionbalance),
        ];
        let all = kinds
            .iter()
            .flat_map(|(kind, paths)| paths.iter().map(move |p| (*kind, p)));
        all.map(|(kind, p)| match p.extension().is_some_and(|e| e == "gz") {
            true => Err(SourceError::Compressed(p.clone())),
            false => Ok(Source {
                project: project.to_owned(),
                kind,
                pattern: p.clone(),
            }),
        })
        .collect()
    }
}

/// A log that cannot be followed; the messages name `onionwatch logs`'
/// `--once`, which reads such logs once.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// `-`: standard input.
    #[error("standard input cannot be followed: use --once to read it")]
    Stdin,
    /// A compressed (rotated) log.
    #[error(
        "{} is compressed and cannot be followed: analyse rotated .gz files with --once, \
         and follow the live log (e.g. nginx-access.log)",
        .0.display()
    )]
    Compressed(PathBuf),
}

/// Settings of a [`Follower`].
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The tailer's settings (poll interval, line limit, batch size…).
    pub tail: TailConfig,
    /// The access-log analytics settings.
    pub analytics: AnalyticsConfig,
    /// Warnings and errors kept per tor/onionbalance log.
    pub keep_warnings: usize,
    /// Where to save the positions; `None` keeps them in memory only.
    pub state_file: Option<PathBuf>,
    /// Least time between two saves of the state file while lines come.
    pub state_interval: Duration,
}

impl Default for FollowConfig {
    fn default() -> Self {
        FollowConfig {
            tail: TailConfig::default(),
            analytics: AnalyticsConfig::default(),
            keep_warnings: 50,
            state_file: None,
            state_interval: Duration::from_secs(1),
        }
    }
}

/// What the per-record hook sees of one parsed access-log record.
#[derive(Debug, Clone, Copy)]
pub struct RecordInfo<'a> {
    /// The project of the log.
    pub project: &'a str,
    /// The onion circuit that made the request, if the log says, and
    /// where its id was read (the address tor wrote, or a header a client
    /// may have set: see [`AccessRecord::circuit`](crate::access::AccessRecord::circuit)).
    pub circuit: Option<(CircuitId, CircuitSource)>,
    /// The request time (Unix seconds), if the format has one.
    pub time: Option<i64>,
    /// The HTTP status.
    pub status: Option<u16>,
    /// `$server_addr` as nginx wrote it (empty when the format has none):
    /// the listener that served the request, which names the tor worker
    /// whose circuit it is (see [`guard::Listener`](crate::guard::Listener)).
    pub server_addr: &'a [u8],
    /// `$server_port`, for a TCP listener.
    pub server_port: Option<u16>,
}

/// Called with every parsed access-log record, on the follower's thread,
/// before the line is committed: keep it cheap.
pub type RecordHook = Box<dyn FnMut(&RecordInfo<'_>) + Send>;

/// One project's counters.
#[derive(Debug)]
struct ProjectLogs {
    access: Option<Analytics>,
    /// A counter per followed log kind other than access logs.
    severity: BTreeMap<LogKind, SeverityCounter>,
}

#[derive(Default)]
struct Inner {
    projects: BTreeMap<String, ProjectLogs>,
    stats: TailStats,
    state_save_errors: u64,
}

struct Shared {
    config: FollowConfig,
    format: LogFormat,
    inner: Mutex<Inner>,
    /// New sources for the running thread.
    pending: Mutex<Option<Vec<Source>>>,
    hook: Mutex<Option<RecordHook>>,
    /// A poll found nothing new: the files were read to their ends once.
    caught_up: std::sync::atomic::AtomicBool,
}

/// Follows logs and keeps their analytics; see the [module
/// documentation](self). Cloning shares it.
#[derive(Clone)]
pub struct Follower {
    shared: Arc<Shared>,
    sources: Arc<Mutex<Vec<Source>>>,
    state: Arc<Mutex<Option<TailState>>>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("sources", &lock(&self.sources).len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Follower {
    /// A follower of `sources` (access logs parsed with `format`), resuming
    /// from `state` (load it with [`TailState::load`]).
    pub fn new(
        config: FollowConfig,
        format: LogFormat,
        sources: Vec<Source>,
        state: TailState,
    ) -> Follower {
        let f = Follower {
            shared: Arc::new(Shared {
                config,
                format,
                inner: Mutex::new(Inner::default()),
                pending: Mutex::new(None),
                hook: Mutex::new(None),
                caught_up: Default::default(),
            }),
            sources: Arc::new(Mutex::new(Vec::new())),
            state: Arc::new(Mutex::new(Some(state))),
        };
        f.set_sources(sources);
        f
    }

    /// Call `hook` with every parsed access-log record from now on (e.g. an
    /// abusive-circuit policy).
    pub fn set_record_hook(&self, hook: RecordHook) {
        *lock(&self.shared.hook) = Some(hook);
    }

    /// Follow these sources from the next poll on (e.g. after a
    /// rediscovery). Projects keep their counters; a project with no source
    /// left is no longer exported.
    pub fn set_sources(&self, mut sources: Vec<Source>) {
        sources.sort();
        sources.dedup();
        {
            let mut inner = lock(&self.shared.inner);
            let cfg = &self.shared.config;
            let mut wanted: BTreeMap<&str, Vec<LogKind>> = BTreeMap::new();
            for s in &sources {
                wanted.entry(&s.project).or_default().push(s.kind);
            }
            inner
                .projects
                .retain(|p, _| wanted.contains_key(p.as_str()));
            for (p, kinds) in wanted {
                let e = inner.projects.entry(p.to_owned()).or_insert(ProjectLogs {
                    access: None,
                    severity: BTreeMap::new(),
                });
                if kinds.contains(&LogKind::Access) {
                    e.access
                        .get_or_insert_with(|| Analytics::new(cfg.analytics));
                } else {
                    e.access = None;
                }
                e.severity.retain(|k, _| kinds.contains(k));
                for k in kinds.into_iter().filter(|k| *k != LogKind::Access) {
                    e.severity
                        .entry(k)
                        .or_insert_with(|| SeverityCounter::new(cfg.keep_warnings, 1000));
                }
            }
        }
        *lock(&self.sources) = sources.clone();
        *lock(&self.shared.pending) = Some(sources);
    }

    /// The sources followed.
    pub fn sources(&self) -> Vec<Source> {
        lock(&self.sources).clone()
    }

    /// Start following on a thread of its own; stop it with
    /// [`FollowHandle::stop`] (which saves the state).
    pub fn spawn(&self) -> std::io::Result<FollowHandle> {
        let (tx, rx) = mpsc::channel();
        let me = self.clone();
        let thread = std::thread::Builder::new()
            .name("log-follower".into())
            .spawn(move || me.run(&rx))?;
        Ok(FollowHandle {
            stop: tx,
            thread: Some(thread),
        })
    }

    /// Follow until a message arrives on (or the sender of) `stop`.
    pub fn run(&self, stop: &mpsc::Receiver<()>) {
        let shared = &self.shared;
        let state = lock(&self.state).take().unwrap_or_default();
        let mut tailer = Tailer::with_state(shared.config.tail, Vec::new(), state);
        let mut sources: Vec<Source> = Vec::new();
        let mut last_save: Option<Instant> = None;
        let mut dirty = false;
        let mut warned_errors = 0;
        let mut last_warning: Option<Instant> = None;
        loop {
            if let Some(new) = lock(&shared.pending).take() {
                tailer.set_patterns(new.iter().map(|s| s.pattern.clone()).collect());
                sources = new;
            }
            let consumed = {
                let mut inner = lock(&shared.inner);
                let mut hook = lock(&shared.hook);
                let inner = &mut *inner;
                let consumed = tailer.poll(&mut |ev| {
                    // A file still draining after its source was removed.
                    let Some(src) = sources.get(ev.pattern) else {
                        return;
                    };
                    let Some(p) = inner.projects.get_mut(&src.project) else {
                        return;
                    };
                    match src.kind {
                        LogKind::Access => {
                            let Some(a) = p.access.as_mut() else { return };
                            let parsed =
                                a.ingest(&shared.format, ev.line, shared.config.tail.max_line);
                            // The per-record hook: abusive-circuit policies
                            // plug in here.
                            if let (Ok(rec), Some(h)) = (parsed, hook.as_mut()) {
                                h(&RecordInfo {
                                    project: &src.project,
                                    circuit: rec.circuit(),
                                    time: rec.time,
                                    status: rec.status,
                                    server_addr: rec.server_addr,
                                    server_port: rec.server_port,
                                });
                            }
                        }
                        kind => {
                            let Some(c) = p.severity.get_mut(&kind) else {
                                return;
                            };
                            match ev.line {
                                Line::Complete(l) => {
                                    c.observe(l);
                                }
                                // Counted as a line of unknown severity.
                                Line::TooLong { .. } => {
                                    c.observe(b"");
                                }
                            }
                        }
                    }
                });
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                for p in inner.projects.values_mut() {
                    if let Some(a) = p.access.as_mut() {
                        a.advance_to(now);
                    }
                }
                inner.stats = tailer.stats();
                consumed
            };
            // Say what fails, at most once a minute (the counter has them all).
            let errors = tailer.stats().read_errors;
            if errors > warned_errors
                && last_warning.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(60))
            {
                if let Some(e) = tailer.last_error() {
                    tracing::warn!("{e} ({} log read errors so far)", errors);
                }
                warned_errors = errors;
                last_warning = Some(Instant::now());
            }
            if consumed == 0 {
                shared
                    .caught_up
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            dirty |= consumed > 0;
            let due = last_save.is_none_or(|t| t.elapsed() >= shared.config.state_interval);
            if dirty && due {
                self.save(&tailer);
                last_save = Some(Instant::now());
                dirty = false;
            }
            let wait = if consumed > 0 {
                Duration::ZERO
            } else {
                shared.config.tail.poll_interval
            };
            match stop.recv_timeout(wait) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => break,
            }
        }
        self.save(&tailer);
        *lock(&self.state) = Some(tailer.state());
    }

    fn save(&self, tailer: &Tailer) {
        let Some(path) = &self.shared.config.state_file else {
            return;
        };
        if let Err(e) = tailer.state().save(path) {
            let mut inner = lock(&self.shared.inner);
            if inner.state_save_errors == 0 {
                tracing::warn!("{e}");
            }
            inner.state_save_errors += 1;
        }
    }

    /// Whether the running follower has read every file to its end at
    /// least once (what it found at start is counted): `/-/ready` of
    /// `logs` and `watch`.
    pub fn caught_up(&self) -> bool {
        self.shared
            .caught_up
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The tailer's health counters at the last poll.
    pub fn stats(&self) -> TailStats {
        lock(&self.shared.inner).stats
    }

    /// Access-log summaries per project (projects with an access log).
    pub fn summaries(&self) -> Vec<Summary> {
        let inner = lock(&self.shared.inner);
        inner
            .projects
            .iter()
            .filter_map(|(name, p)| {
                let mut s = p.access.as_ref()?.summary();
                s.project = Some(name.clone()).filter(|n| !n.is_empty());
                Some(s)
            })
            .collect()
    }

    /// The last warnings and errors of `project`'s tor logs, oldest first.
    pub fn recent_tor_warnings(&self, project: &str) -> Vec<RecentLine> {
        let inner = lock(&self.shared.inner);
        inner
            .projects
            .get(project)
            .and_then(|p| p.severity.get(&LogKind::Tor))
            .map(|c| c.recent().cloned().collect())
            .unwrap_or_default()
    }

    /// The kept warnings and errors of every project's tor, onionbalance,
    /// nginx error and Onionspray logs, oldest first: `{project: {"tor":
    /// [...], "onionbalance": [...], "nginx_error": [...]}}`.
    pub fn recent_warnings(&self) -> BTreeMap<String, BTreeMap<&'static str, Vec<RecentLine>>> {
        let inner = lock(&self.shared.inner);
        let mut out = BTreeMap::new();
        for (name, p) in &inner.projects {
            let mut logs = BTreeMap::new();
            for (kind, c) in &p.severity {
                logs.insert(kind.as_str(), c.recent().cloned().collect());
            }
            if !logs.is_empty() {
                out.insert(name.clone(), logs);
            }
        }
        out
    }

    /// Every family (see the module documentation).
    pub fn families(&self) -> Vec<Family> {
        let mut out = Vec::new();
        for s in self.summaries() {
            out.extend(s.to_families());
        }
        let inner = lock(&self.shared.inner);
        let mut sev = Family::counter(
            "onionwatch_log_severity_lines",
            "tor, onionbalance, nginx error and Onionspray log lines by severity (unknown: no recognisable severity).",
        );
        for (name, p) in &inner.projects {
            for (kind, c) in &p.severity {
                let counts = Severity::ALL
                    .iter()
                    .map(|s| (s.as_str(), c.count(*s)))
                    .chain([("unknown", c.unknown())]);
                for (severity, n) in counts {
                    let mut labels = Vec::with_capacity(3);
                    if !name.is_empty() {
                        labels.push(("project", name.as_str()));
                    }
                    labels.push(("log", kind.as_str()));
                    labels.push(("severity", severity));
                    sev.push(&labels, n as f64);
                }
            }
        }
        if !sev.samples.is_empty() {
            out.push(sev);
        }
        let s = inner.stats;
        let counters = [
            (
                "onionwatch_log_tail_lines",
                "Log lines read by the tailer (all logs, overlong ones included).",
                s.lines,
            ),
            (
                "onionwatch_log_tail_lines_too_long",
                "Log lines longer than the line limit, skipped.",
                s.lines_too_long,
            ),
            (
                "onionwatch_log_tail_bytes",
                "Log bytes read by the tailer.",
                s.bytes,
            ),
            (
                "onionwatch_log_tail_rotations",
                "Followed log files renamed away or deleted (rotations).",
                s.rotations,
            ),
            (
                "onionwatch_log_tail_truncations",
                "Followed log files that shrank or were rewritten, read again from the start (copytruncate).",
                s.truncations,
            ),
            (
                "onionwatch_log_tail_read_errors",
                "Errors opening or reading log files (retried at the next poll).",
                s.read_errors,
            ),
            (
                "onionwatch_log_tail_state_save_errors",
                "Failed saves of the tail state file.",
                inner.state_save_errors,
            ),
        ];
        for (name, help, v) in counters {
            let mut f = Family::counter(name, help);
            f.push(&[], v as f64);
            out.push(f);
        }
        let mut files = Family::gauge(
            "onionwatch_log_tail_files",
            "Log files open: followed, or rotated away and still being drained.",
        );
        files.push(&[], s.files as f64);
        out.push(files);
        out
    }

    /// The metrics source to register with the server's registry.
    pub fn collector(&self) -> Arc<dyn Collect> {
        Arc::new(self.clone())
    }
}

impl Collect for Follower {
    fn collect(&self, out: &mut Vec<Family>) {
        out.extend(self.families());
    }
}

/// The running thread of a [`Follower`].
#[derive(Debug)]
pub struct FollowHandle {
    stop: mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FollowHandle {
    /// Stop following after the current poll and save the state.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FollowHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
