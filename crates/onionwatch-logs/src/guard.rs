//! The abusive-circuit policy applied to followed access logs, and its
//! `close` decisions executed: `CLOSECIRCUIT` on the onion-service tor's
//! control port.
//!
//! Dependencies stay one way: [`policy`](crate::policy) decides from log
//! records and knows no control port; onionwatch-tor's
//! [`CloseExecutor`] talks to tor (one connection, reconnect after loss,
//! shared with the gateway's escalation). This module connects them:
//! [`AbuseGuard`] keeps one [`Policy`] per project, fed by the log
//! follower's record hook, and hands every `close` decision to the
//! [`PolicyExecutor`] of the tor that owns the circuit, which never
//! blocks: the executor's task
//! closes the circuits in order, and this module logs and counts each
//! result. Errors are logged, never fatal.
//!
//! Which tor to ask is resolved from the project's tors
//! ([`ProjectTors`], asked of the [`Resolver`] again at most every
//! [`REFRESH`], so projects discovered later are covered). Circuit ids are
//! per tor, so a project with several tors (Onionspray's softmap workers)
//! is acted on only through the listener that served the request: each
//! worker's `HiddenServicePort` points at a listener of its own, nginx
//! writes it as `$server_addr` (with `$server_port` for TCP), and the
//! worker whose [`TorOwner::listeners`] holds it owns the circuit. The
//! policy counts each (worker, circuit) apart, and the circuit is closed
//! on that worker's control port only. The listener comes from nginx,
//! never from anything a client sends. When the line does not name a
//! listener (a `log_format` without `$server_addr`), or names one no tor
//! of the project points at, nothing is closed: a warning once per project
//! and reason, and `onionwatch_log_circuit_closes_skipped_total{reason}`.
//!
//! ```no_run
//! # async fn demo(record: onionwatch_logs::access::AccessRecord<'_>) {
//! use onionwatch_logs::guard::PolicyExecutor;
//! use onionwatch_logs::policy::{Action, Policy, PolicyConfig};
//! use onionwatch_tor::control::ControlTarget;
//!
//! let mut policy = Policy::new(PolicyConfig {
//!     action: Action::Close,
//!     i_understand_closing_circuits: true,
//!     ..PolicyConfig::default()
//! })
//! .unwrap();
//! let target = ControlTarget::new("unix:/run/tor/control".parse().unwrap());
//! let executor = PolicyExecutor::spawn(target);
//! // For each record read from the access log:
//! if let Some(decision) = policy.observe_record(&record) {
//!     executor.submit(&decision);
//! }
//! # }
//! ```

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onionwatch_metrics::{Collect, Family};
use onionwatch_tor::circuit_id::CircuitId;
use onionwatch_tor::control::{
    CloseError, CloseExecutor, CloseHandler, ClosePlan, ControlTarget, CLOSE_QUEUE,
};
use tokio::sync::broadcast;

use crate::follow::{RecordHook, RecordInfo};
use crate::policy::{Action, Decision, Policy, PolicyConfig, PolicyConfigError};

pub use onionwatch_tor::control::CloseResult;

/// Close results in the order of the `result` label.
const RESULTS: [CloseResult; 4] = [
    CloseResult::Closed,
    CloseResult::UnknownCircuit,
    CloseResult::Failed,
    CloseResult::DryRun,
];

/// The tors of a project now (configured and discovered); asked again at
/// most every [`REFRESH`].
pub type Resolver = Box<dyn Fn(&str) -> ProjectTors + Send + Sync>;

/// How long a project's [`ProjectTors`] is used before the [`Resolver`]
/// is asked again (a rediscovery may add workers or move control ports).
pub const REFRESH: Duration = Duration::from_secs(10);

/// Most tors of one project told apart; more share the "unknown" slot
/// and are never closed on.
const MAX_WORKERS: usize = 1024;

/// The tors serving one project, to find which one owns a logged circuit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectTors {
    /// Each tor once.
    pub tors: Vec<TorOwner>,
}

/// One tor of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TorOwner {
    /// Its name in logs (`tor`, a softmap worker's `hs-1`); tors are told
    /// apart by it.
    pub name: String,
    /// Its control port, where its circuits are closed; `None` when it has
    /// none.
    pub control: Option<ControlTarget>,
    /// The listeners its `HiddenServicePort` lines point at; empty when
    /// not known (a control port given without its configuration).
    pub listeners: Vec<Listener>,
}

/// Where nginx received a request: a listener an onion service's
/// `HiddenServicePort` points at. The same listener in the access log
/// (`$server_addr`, `$server_port`) and in a tor's configuration means
/// that tor's circuit made the request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Listener {
    /// A unix socket (Onionspray: `<onion service dir>/port-443.sock`).
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

/// Longest unix socket path considered (the kernel's limit is 108 bytes).
const MAX_SOCKET_PATH: usize = 4096;

impl Listener {
    /// A `HiddenServicePort` target as tor reads it: `unix:PATH` (quoted
    /// or not), `IP:PORT`, `[IPv6]:PORT`, or a bare `PORT` (127.0.0.1).
    /// `None` for anything else (a host name is not resolved: such a
    /// worker cannot be matched and is never closed on).
    pub fn from_target(target: &str) -> Option<Listener> {
        let t = target.trim();
        if let Some(path) = t.strip_prefix("unix:") {
            let path = match path.strip_prefix('"') {
                Some(q) => q.strip_suffix('"')?,
                None => path,
            };
            return (!path.is_empty() && path.len() <= MAX_SOCKET_PATH && path.starts_with('/'))
                .then(|| Listener::Unix(PathBuf::from(path)));
        }
        if t.bytes().all(|b| b.is_ascii_digit()) {
            let port: u16 = t.parse().ok().filter(|p| *p != 0)?;
            return Some(Listener::Tcp(SocketAddr::from(([127, 0, 0, 1], port))));
        }
        t.parse::<SocketAddr>().ok().map(Listener::Tcp)
    }

    /// Whether an access-log line's `$server_addr` (`unix:PATH`, or an IP
    /// address) and `$server_port` name this listener. Compared as nginx
    /// wrote them, byte for byte for a path: no guessing.
    pub fn matches(&self, server_addr: &[u8], server_port: Option<u16>) -> bool {
        match self {
            Listener::Unix(path) => server_addr
                .strip_prefix(b"unix:")
                .is_some_and(|p| p == path.as_os_str().as_bytes()),
            Listener::Tcp(addr) => {
                server_port == Some(addr.port())
                    && std::str::from_utf8(server_addr)
                        .ok()
                        .and_then(|a| a.parse::<IpAddr>().ok())
                        .is_some_and(|ip| ip == addr.ip())
            }
        }
    }
}

/// Whether a line's `$server_addr`/`$server_port` can name one listener:
/// a unix socket, or an address with its port.
fn names_listener(server_addr: &[u8], server_port: Option<u16>) -> bool {
    match server_addr {
        b"" | b"-" => false,
        a if a.starts_with(b"unix:") => true,
        _ => server_port.is_some(),
    }
}

/// Why a `close` decision was not executed (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// The tor owning the circuit (or the project) has no control port.
    NoControlPort,
    /// The project has several tors and the log line does not say which
    /// listener served it (`$server_addr`, with `$server_port` for TCP).
    NoListener,
    /// The line's listener is no `HiddenServicePort` target of the
    /// project's tors (or of more than one).
    UnknownListener,
}

impl Skip {
    /// Every reason, in label order.
    pub const ALL: [Skip; 3] = [Skip::NoControlPort, Skip::NoListener, Skip::UnknownListener];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::NoControlPort => "no_control_port",
            Skip::NoListener => "no_listener",
            Skip::UnknownListener => "unknown_listener",
        }
    }

    fn why(self) -> &'static str {
        match self {
            Skip::NoControlPort => {
                "the tor that owns the circuit has no control port configured or discovered"
            }
            Skip::NoListener => {
                "the project has several tors, circuit ids are per tor, and the access log does not \
                 say which tor's listener served the request: add $server_addr (and $server_port for \
                 TCP listeners) to nginx's log_format and give it to --log-format/log_format:"
            }
            Skip::UnknownListener => {
                "the listener that served the request ($server_addr/$server_port) is not the \
                 HiddenServicePort target of exactly one of the project's tors"
            }
        }
    }
}

impl ProjectTors {
    /// The index of the tor that owns a circuit logged with this
    /// `$server_addr`/`$server_port`, or why none can be named. With one
    /// tor, that tor, unless the line names a listener its known
    /// `HiddenServicePort` targets do not hold (then its circuits live on
    /// a tor we do not know: a worker whose configuration was unreadable).
    pub fn owner(&self, server_addr: &[u8], server_port: Option<u16>) -> Result<usize, Skip> {
        let named = names_listener(server_addr, server_port);
        let serves = |t: &TorOwner| {
            t.listeners
                .iter()
                .any(|l| l.matches(server_addr, server_port))
        };
        match self.tors.as_slice() {
            [] => Err(Skip::NoControlPort),
            [only] if !named || only.listeners.is_empty() || serves(only) => Ok(0),
            [_] => Err(Skip::UnknownListener),
            _ if !named => Err(Skip::NoListener),
            tors => {
                let mut found = tors.iter().enumerate().filter(|(_, t)| serves(t));
                match (found.next(), found.next()) {
                    (Some((i, _)), None) => Ok(i),
                    _ => Err(Skip::UnknownListener),
                }
            }
        }
    }
}

/// Per-project policies and close executors. Shared by the follower's hook
/// (which observes) and the metrics registry (which reads).
pub struct AbuseGuard {
    config: PolicyConfig,
    resolve: Resolver,
    runtime: tokio::runtime::Handle,
    projects: Mutex<BTreeMap<String, Project>>,
}

struct Project {
    policy: Policy,
    /// The project's tors and when they were asked for.
    tors: Option<(Instant, Arc<ProjectTors>)>,
    /// Tor names by policy worker number minus one (0 is "not known").
    workers: Vec<String>,
    /// One executor per tor closed on, by name, started at its first close.
    executors: BTreeMap<String, PolicyExecutor>,
    /// Results of every executor of the project, past and present.
    closes: Arc<CloseCounters>,
    /// Decisions dropped by executors since replaced.
    retired_dropped: u64,
    /// Close decisions not executed, by [`Skip`].
    skipped: [u64; Skip::ALL.len()],
}

impl Project {
    fn tors(&mut self, resolve: &Resolver, name: &str) -> Arc<ProjectTors> {
        let stale = self
            .tors
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() >= REFRESH);
        if stale {
            self.tors = Some((Instant::now(), Arc::new(resolve(name))));
        }
        Arc::clone(&self.tors.as_ref().expect("just set").1)
    }

    /// The policy's number for the tor called `name` (0 beyond [`MAX_WORKERS`]).
    fn worker(&mut self, name: &str) -> u32 {
        if let Some(i) = self.workers.iter().position(|w| w == name) {
            return i as u32 + 1;
        }
        if self.workers.len() >= MAX_WORKERS {
            return 0;
        }
        self.workers.push(name.to_owned());
        self.workers.len() as u32
    }

    /// Count a close not executed; warn the first time for each reason.
    fn skip(&mut self, project: &str, circuit: CircuitId, why: Skip) {
        let n = &mut self.skipped[why as usize];
        *n += 1;
        if *n == 1 {
            tracing::warn!(
                project,
                circuit = circuit.0,
                reason = why.as_str(),
                "not closing abusive circuit {} (nor any other of this project for this reason; \
                 counted in onionwatch_log_circuit_closes_skipped_total{{reason=\"{}\"}}): {}",
                circuit.0,
                why.as_str(),
                why.why()
            );
        } else {
            tracing::debug!(
                project,
                circuit = circuit.0,
                reason = why.as_str(),
                "not closing abusive circuit"
            );
        }
    }
}

impl AbuseGuard {
    /// A guard applying `config` to every project. Must be called inside a
    /// tokio runtime: close executors are spawned on it later, from the
    /// follower's thread.
    pub fn new(config: PolicyConfig, resolve: Resolver) -> Result<Arc<Self>, PolicyConfigError> {
        config.validate()?;
        Ok(Arc::new(AbuseGuard {
            config,
            resolve,
            runtime: tokio::runtime::Handle::current(),
            projects: Mutex::new(BTreeMap::new()),
        }))
    }

    /// A hook for [`Follower::set_record_hook`](crate::follow::Follower::set_record_hook).
    pub fn hook(self: &Arc<Self>) -> RecordHook {
        let guard = Arc::clone(self);
        Box::new(move |record| guard.observe(record))
    }

    /// Count one record against its (tor, circuit); act on the circuit if
    /// it crosses the limit.
    pub fn observe(&self, record: &RecordInfo<'_>) {
        let (Some((circuit, source)), Some(time)) = (record.circuit, record.time) else {
            return;
        };
        let mut projects = self.projects.lock().unwrap_or_else(|e| e.into_inner());
        let project = projects
            .entry(record.project.to_owned())
            .or_insert_with(|| Project {
                // Validated in new().
                policy: Policy::new(self.config.clone()).expect("validated policy"),
                tors: None,
                workers: Vec::new(),
                executors: BTreeMap::new(),
                closes: Arc::default(),
                retired_dropped: 0,
                skipped: [0; Skip::ALL.len()],
            });
        let tors = project.tors(&self.resolve, record.project);
        let owner = tors.owner(record.server_addr, record.server_port);
        let worker = match owner {
            Ok(i) => project.worker(&tors.tors[i].name),
            Err(_) => 0,
        };
        let Some(decision) = project.policy.observe_on(worker, circuit, source, time) else {
            return;
        };
        // An id a client may have chosen is never closed (the policy has
        // logged and counted why).
        if decision.action != Action::Close || !decision.closable {
            return;
        }
        let tor = match owner {
            Ok(i) if worker != 0 => tors.tors[i].clone(),
            Ok(_) => return project.skip(record.project, circuit, Skip::UnknownListener),
            Err(why) => return project.skip(record.project, circuit, why),
        };
        let Some(control) = tor.control else {
            return project.skip(record.project, circuit, Skip::NoControlPort);
        };
        // A rediscovery may have moved the tor's control port.
        if let Some(old) = project.executors.get(&tor.name) {
            if *old.target() != control {
                project.retired_dropped += old.dropped();
                project.executors.remove(&tor.name);
            }
        }
        let closes = Arc::clone(&project.closes);
        let runtime = &self.runtime;
        let executor = project
            .executors
            .entry(tor.name.clone())
            .or_insert_with(|| {
                let _runtime = runtime.enter();
                PolicyExecutor::spawn_counting(control, closes)
            });
        executor.submit(&decision);
    }
}

impl Collect for AbuseGuard {
    fn collect(&self, out: &mut Vec<Family>) {
        let projects = self.projects.lock().unwrap_or_else(|e| e.into_inner());
        let mut families = Vec::new();
        for (name, p) in projects.iter() {
            families.extend(p.policy.counters().to_families(Some(name)));
            let labels = [("project", name.as_str())];
            if !p.executors.is_empty() || p.retired_dropped > 0 {
                let dropped = p.retired_dropped
                    + p.executors
                        .values()
                        .map(PolicyExecutor::dropped)
                        .sum::<u64>();
                families.extend(close_families(&p.closes, dropped, &labels));
            }
            if p.skipped.iter().any(|n| *n > 0) {
                let mut skipped = Family::counter(
                    "onionwatch_log_circuit_closes_skipped",
                    "Close decisions not executed because the tor owning the circuit could not be named (no control port, several tors and no listener in the log, or a listener of no known tor), by reason.",
                );
                for why in Skip::ALL {
                    skipped.push(
                        &[labels[0], ("reason", why.as_str())],
                        p.skipped[why as usize] as f64,
                    );
                }
                families.push(skipped);
            }
        }
        out.extend(onionwatch_metrics::merge(families));
    }
}

impl std::fmt::Debug for AbuseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbuseGuard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One executed decision, for tests and monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseEvent {
    /// The circuit.
    pub circuit: CircuitId,
    /// What happened.
    pub result: CloseResult,
}

/// Results of a [`PolicyExecutor`] (shared with its task).
#[derive(Debug, Default)]
pub struct CloseCounters {
    results: [AtomicU64; RESULTS.len()],
}

impl CloseCounters {
    /// Decisions that ended with `result`.
    pub fn get(&self, result: CloseResult) -> u64 {
        self.results[result as usize].load(Relaxed)
    }
}

/// Executes one tor's `close` decisions in a background task (see the
/// module documentation); the task ends when every handle is dropped.
#[derive(Debug, Clone)]
pub struct PolicyExecutor {
    executor: CloseExecutor<Decision>,
    target: ControlTarget,
    counters: Arc<CloseCounters>,
    events: broadcast::Sender<CloseEvent>,
}

/// The policy's side of the executor: plans, logs and counts.
struct Handler {
    target: ControlTarget,
    counters: Arc<CloseCounters>,
    events: broadcast::Sender<CloseEvent>,
}

impl CloseHandler for Handler {
    type Request = Decision;

    fn plan(&mut self, decision: &Decision) -> ClosePlan {
        if decision.dry_run {
            ClosePlan::DryRun
        } else {
            ClosePlan::Close {
                circuit: decision.circuit.0,
                target: self.target.clone(),
            }
        }
    }

    fn done(&mut self, decision: Decision, result: CloseResult, error: Option<CloseError>) {
        let circuit = decision.circuit.0;
        let control = self.target.control_port.to_string();
        match (result, error) {
            (CloseResult::DryRun, _) => tracing::info!(
                circuit,
                "dry run: not closing abusive circuit {circuit}: {}",
                decision.reason
            ),
            (CloseResult::Closed, _) => {
                tracing::warn!(circuit, %control, "closed abusive circuit {circuit}: {}", decision.reason)
            }
            (CloseResult::UnknownCircuit, _) => tracing::info!(
                circuit,
                %control,
                "abusive circuit {circuit} was already gone (tor does not know it)"
            ),
            (CloseResult::Failed, e) => {
                let e = e.map(|e| e.to_string()).unwrap_or_default();
                tracing::warn!(circuit, "cannot close abusive circuit {circuit}: {e}")
            }
        }
        self.counters.results[result as usize].fetch_add(1, Relaxed);
        let _ = self.events.send(CloseEvent {
            circuit: decision.circuit,
            result,
        });
    }
}

impl PolicyExecutor {
    /// Start the task on the current tokio runtime, closing circuits on
    /// `target`.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(target: ControlTarget) -> PolicyExecutor {
        Self::spawn_counting(target, Arc::default())
    }

    /// [`PolicyExecutor::spawn`], counting results into `counters` (shared
    /// by the executors of one project's tors).
    pub fn spawn_counting(target: ControlTarget, counters: Arc<CloseCounters>) -> PolicyExecutor {
        let (events, _) = broadcast::channel(CLOSE_QUEUE);
        let executor = CloseExecutor::spawn(Handler {
            target: target.clone(),
            counters: Arc::clone(&counters),
            events: events.clone(),
        });
        PolicyExecutor {
            executor,
            target,
            counters,
            events,
        }
    }

    /// The control port it closes circuits on.
    pub fn target(&self) -> &ControlTarget {
        &self.target
    }

    /// Queue a decision without waiting; decisions whose action is not
    /// `close`, or whose circuit id a client may have chosen
    /// ([`Decision::closable`]), are ignored (`false`). A full queue drops
    /// the decision with a warning (`false`).
    pub fn submit(&self, decision: &Decision) -> bool {
        if decision.action != Action::Close || !decision.closable {
            return false;
        }
        let queued = self.executor.submit(decision.clone());
        if !queued {
            tracing::warn!(
                circuit = decision.circuit.0,
                "not closing abusive circuit {}: the control port is too slow",
                decision.circuit.0
            );
        }
        queued
    }

    /// The result counters.
    pub fn counters(&self) -> &CloseCounters {
        &self.counters
    }

    /// Decisions dropped because the queue was full or the task had ended.
    pub fn dropped(&self) -> u64 {
        self.executor.dropped()
    }

    /// Executed decisions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CloseEvent> {
        self.events.subscribe()
    }

    /// `onionwatch_log_circuit_closes_total{result}` and
    /// `onionwatch_log_circuit_close_dropped_total`, with a `project` label
    /// when given (never a circuit id).
    pub fn to_families(&self, project: Option<&str>) -> Vec<Family> {
        let project: Vec<(&str, &str)> = project.map(|p| ("project", p)).into_iter().collect();
        close_families(&self.counters, self.dropped(), &project)
    }
}

/// `onionwatch_log_circuit_closes_total{result}` and
/// `onionwatch_log_circuit_close_dropped_total` with `labels` first.
fn close_families(counters: &CloseCounters, dropped: u64, labels: &[(&str, &str)]) -> Vec<Family> {
    let mut closes = Family::counter(
        "onionwatch_log_circuit_closes",
        "Abusive circuits the log policy asked to close, by result.",
    );
    for r in RESULTS {
        let mut l = labels.to_vec();
        l.push(("result", r.as_str()));
        closes.push(&l, counters.get(r) as f64);
    }
    let mut d = Family::counter(
        "onionwatch_log_circuit_close_dropped",
        "Close decisions dropped because the control port was too slow.",
    );
    d.push(labels, dropped as f64);
    vec![closes, d]
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use onionwatch_tor::control::ControlAddr;

    use super::*;
    use crate::access::CircuitSource;

    fn record(project: &str, circuit: u32, time: i64) -> RecordInfo<'_> {
        RecordInfo {
            project,
            circuit: Some((CircuitId(circuit), CircuitSource::Address)),
            time: Some(time),
            status: Some(200),
            server_addr: b"",
            server_port: None,
        }
    }

    /// One tor with a control port (and these listeners).
    fn tor(name: &str, control: Option<ControlTarget>, listeners: &[&str]) -> TorOwner {
        TorOwner {
            name: name.into(),
            control,
            listeners: listeners
                .iter()
                .map(|l| Listener::from_target(l).unwrap())
                .collect(),
        }
    }

    fn tors(tors: Vec<TorOwner>) -> Resolver {
        Box::new(move |_| ProjectTors { tors: tors.clone() })
    }

    fn decision(action: Action, dry_run: bool) -> Decision {
        let mut p = Policy::new(PolicyConfig {
            max_requests: 1,
            action,
            i_understand_closing_circuits: true,
            dry_run,
            ..PolicyConfig::default()
        })
        .unwrap();
        p.observe(CircuitId(9), 1);
        p.observe(CircuitId(9), 1).unwrap()
    }

    /// A control port where nothing listens.
    fn dead_target() -> ControlTarget {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        ControlTarget::new(ControlAddr::Tcp(addr))
    }

    #[tokio::test]
    async fn projects_are_counted_apart_and_unresolvable_closes_are_skipped() {
        let config = PolicyConfig {
            max_requests: 2,
            window_secs: 60,
            action: Action::Close,
            i_understand_closing_circuits: true,
            ..PolicyConfig::default()
        };
        let guard = AbuseGuard::new(config, tors(vec![])).unwrap();
        for t in 0..3 {
            guard.observe(&record("a", 7, t));
            guard.observe(&record("b", 7, t));
        }
        // Under the limit in b's window; no circuit or time: ignored.
        guard.observe(&RecordInfo {
            project: "c",
            circuit: None,
            time: Some(1),
            status: None,
            server_addr: b"",
            server_port: None,
        });
        let mut out = Vec::new();
        guard.collect(&mut out);
        let text = onionwatch_metrics::render(&out, onionwatch_metrics::Format::Prometheus);
        for want in [
            "onionwatch_log_abusive_circuits_total{project=\"a\",action=\"close\"} 1\n",
            "onionwatch_log_abusive_circuits_total{project=\"b\",action=\"close\"} 1\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE onionwatch_log_abusive_circuits_total")
                .count(),
            1
        );
        assert!(!text.contains("project=\"c\""), "{text}");
        // Nothing to close with: no executor, so no close counters, and
        // each project's skip is counted once.
        assert!(
            !text.contains("onionwatch_log_circuit_closes_total"),
            "{text}"
        );
        assert!(
            text.contains("onionwatch_log_circuit_closes_skipped_total{project=\"a\",reason=\"no_control_port\"} 1\n"),
            "{text}"
        );
    }

    fn metrics(guard: &AbuseGuard) -> String {
        let mut out = Vec::new();
        guard.collect(&mut out);
        onionwatch_metrics::render(&out, onionwatch_metrics::Format::Prometheus)
    }

    /// The tors of `project` that have an executor (were asked to close).
    fn closing_on(guard: &AbuseGuard, project: &str) -> Vec<String> {
        let projects = guard.projects.lock().unwrap();
        projects
            .get(project)
            .map(|p| p.executors.keys().cloned().collect())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_circuit_id_from_the_header_is_never_sent_to_tor() {
        let config = PolicyConfig {
            max_requests: 2,
            action: Action::Close,
            i_understand_closing_circuits: true,
            ..PolicyConfig::default()
        };
        let guard =
            AbuseGuard::new(config, tors(vec![tor("tor", Some(dead_target()), &[])])).unwrap();
        let header = |t| RecordInfo {
            circuit: Some((CircuitId(7), CircuitSource::Header)),
            ..record("shop", 7, t)
        };
        for t in 0..3 {
            guard.observe(&header(t));
        }
        let m = metrics(&guard);
        assert!(
            m.contains("onionwatch_log_abusive_circuits_untrusted_total{project=\"shop\"} 1\n"),
            "{m}"
        );
        assert!(
            closing_on(&guard, "shop").is_empty(),
            "a header id reached an executor"
        );
        assert!(!m.contains("onionwatch_log_circuit_closes_total"), "{m}");
        // The same id written by tor is closed (here: attempted).
        for t in 0..3 {
            guard.observe(&record("shop", 7, t));
        }
        assert_eq!(closing_on(&guard, "shop"), ["tor"]);
        assert!(metrics(&guard).contains("onionwatch_log_circuit_closes_total"));
    }

    #[test]
    fn listeners_parse_from_tor_targets_and_match_only_what_nginx_wrote() {
        let l = |t: &str| Listener::from_target(t);
        let sock = "/srv/spray/projects/shop/hs-2/port-443.sock";
        assert_eq!(
            l(&format!("unix:{sock}")),
            Some(Listener::Unix(sock.into()))
        );
        assert_eq!(
            l("unix:\"/a b/port-80.sock\""),
            Some(Listener::Unix("/a b/port-80.sock".into()))
        );
        assert_eq!(
            l("127.0.0.1:8080"),
            Some(Listener::Tcp("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            l("8080"),
            Some(Listener::Tcp("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            l("[::1]:80"),
            Some(Listener::Tcp("[::1]:80".parse().unwrap()))
        );
        for bad in [
            "",
            "unix:",
            "unix:relative.sock",
            "unix:\"/unterminated",
            "localhost:80",
            "0",
            "99999",
            "127.0.0.1",
            "1.2.3.4:x",
        ] {
            assert_eq!(l(bad), None, "{bad:?}");
        }
        let unix = l(&format!("unix:{sock}")).unwrap();
        assert!(unix.matches(format!("unix:{sock}").as_bytes(), None));
        // Byte for byte: no normalisation, no prefix, no trailing garbage.
        for other in [
            format!("unix:{sock}x"),
            format!("unix:{sock}\0"),
            "unix:/srv/spray/projects/shop/hs-1/../hs-2/port-443.sock".into(),
            "unix:/srv/spray/projects/shop/hs-2".into(),
            sock.into(),
            String::new(),
        ] {
            assert!(!unix.matches(other.as_bytes(), None), "{other:?}");
        }
        let tcp = l("127.0.0.1:8080").unwrap();
        assert!(tcp.matches(b"127.0.0.1", Some(8080)));
        assert!(!tcp.matches(b"127.0.0.1", None));
        assert!(!tcp.matches(b"127.0.0.1", Some(8081)));
        assert!(!tcp.matches(b"127.0.0.2", Some(8080)));
        assert!(!tcp.matches(b"127.0.0.1\xff", Some(8080)));
        assert!(l("[::1]:80").unwrap().matches(b"::1", Some(80)));
    }

    #[test]
    fn the_owner_is_the_one_tor_whose_listener_served_the_line_never_a_guess() {
        let dir = "/srv/spray/projects/shop";
        let control = Some(ControlTarget::new("127.0.0.1:9051".parse().unwrap()));
        let worker = |n: u32| {
            tor(
                &format!("hs-{n}"),
                control.clone(),
                &[
                    &format!("unix:{dir}/hs-{n}/port-80.sock"),
                    &format!("unix:{dir}/hs-{n}/port-443.sock"),
                ],
            )
        };
        let softmap = ProjectTors {
            tors: vec![worker(1), worker(2), tor("hs-3", None, &["127.0.0.1:8443"])],
        };
        let owner = |a: &str, p| softmap.owner(a.as_bytes(), p);
        assert_eq!(
            owner(&format!("unix:{dir}/hs-2/port-443.sock"), None),
            Ok(1)
        );
        assert_eq!(owner(&format!("unix:{dir}/hs-1/port-80.sock"), None), Ok(0));
        assert_eq!(owner("127.0.0.1", Some(8443)), Ok(2));
        // The line does not say: never one of them.
        assert_eq!(owner("", None), Err(Skip::NoListener));
        assert_eq!(owner("-", None), Err(Skip::NoListener));
        assert_eq!(owner("127.0.0.1", None), Err(Skip::NoListener));
        // It names a listener no tor (or two tors) points at.
        assert_eq!(
            owner(&format!("unix:{dir}/hs-9/port-80.sock"), None),
            Err(Skip::UnknownListener)
        );
        assert_eq!(
            owner("unix:/tmp/evil.sock", None),
            Err(Skip::UnknownListener)
        );
        assert_eq!(owner("127.0.0.1", Some(80)), Err(Skip::UnknownListener));
        let twice = ProjectTors {
            tors: vec![
                worker(1),
                tor(
                    "copy",
                    control.clone(),
                    &[&format!("unix:{dir}/hs-1/port-80.sock")],
                ),
            ],
        };
        assert_eq!(
            twice.owner(format!("unix:{dir}/hs-1/port-80.sock").as_bytes(), None),
            Err(Skip::UnknownListener)
        );
        // One tor: its circuits, unless the line names a listener its
        // configuration does not hold (a worker we could not read).
        let one = ProjectTors {
            tors: vec![worker(1)],
        };
        assert_eq!(one.owner(b"", None), Ok(0));
        assert_eq!(
            one.owner(format!("unix:{dir}/hs-1/port-443.sock").as_bytes(), None),
            Ok(0)
        );
        assert_eq!(
            one.owner(format!("unix:{dir}/hs-2/port-443.sock").as_bytes(), None),
            Err(Skip::UnknownListener)
        );
        let given = ProjectTors {
            tors: vec![tor("tor", control.clone(), &[])],
        };
        assert_eq!(given.owner(b"unix:/anything.sock", None), Ok(0));
        assert_eq!(
            ProjectTors::default().owner(b"", None),
            Err(Skip::NoControlPort)
        );
    }

    /// Feed access-log lines as the follower does.
    fn feed(guard: &AbuseGuard, format: &crate::access::LogFormat, lines: &[String]) {
        for l in lines {
            let rec = format
                .parse(l.as_bytes())
                .unwrap_or_else(|e| panic!("{e}: {l}"));
            guard.observe(&RecordInfo {
                project: "shop",
                circuit: rec.circuit(),
                time: rec.time,
                status: rec.status,
                server_addr: rec.server_addr,
                server_port: rec.server_port,
            });
        }
    }

    #[tokio::test]
    async fn softmap_circuits_are_counted_and_closed_per_worker_from_hostile_lines() {
        let dir = "/srv/spray/projects/shop";
        let worker = |n: u32| {
            tor(
                &format!("hs-{n}"),
                Some(dead_target()),
                &[&format!("unix:{dir}/hs-{n}/port-443.sock")],
            )
        };
        let config = PolicyConfig {
            max_requests: 2,
            action: Action::Close,
            i_understand_closing_circuits: true,
            ..PolicyConfig::default()
        };
        let guard = AbuseGuard::new(config.clone(), tors(vec![worker(1), worker(2)])).unwrap();
        let format = crate::access::LogFormat::compile(
            r#"$server_addr $server_port $proxy_protocol_addr [$time_local] "$request" $status "$http_user_agent" "$http_x_onion_circuitid""#,
        )
        .unwrap();
        let line = |w: u32, circuit: u32, path: &str, agent: &str, header: &str| {
            format!(
                r#"unix:{dir}/hs-{w}/port-443.sock - fc00:dead:beef:4dad::0:{circuit:x} [11/Jan/2024:17:08:43 +0000] "GET {path} HTTP/1.1" 200 "{agent}" "{header}""#
            )
        };
        // Circuit 48 twice on hs-1, twice on hs-2: two circuits, none over
        // the limit, although the client names hs-1 and circuit 48 in its
        // request, user agent and header.
        let forged = format!("/unix:{dir}/hs-1/port-443.sock");
        let evil = format!("unix:{dir}/hs-1/port-443.sock 48");
        feed(
            &guard,
            &format,
            &[
                line(1, 48, "/", "-", "-"),
                line(1, 48, "/", "-", "-"),
                line(2, 48, &forged, &evil, "48"),
                line(2, 48, &forged, &evil, "48"),
            ],
        );
        assert!(closing_on(&guard, "shop").is_empty(), "{}", metrics(&guard));
        // The third request of hs-2's circuit 48 closes it on hs-2 only.
        feed(&guard, &format, &[line(2, 48, &forged, &evil, "48")]);
        assert_eq!(closing_on(&guard, "shop"), ["hs-2"]);
        // A header id (no circuit in the address) is never closed, whatever
        // listener served it.
        let header_only = |w: u32| {
            format!(
                r#"unix:{dir}/hs-{w}/port-443.sock - 127.0.0.1 [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 "-" "77""#
            )
        };
        feed(&guard, &format, &vec![header_only(1); 5]);
        assert_eq!(closing_on(&guard, "shop"), ["hs-2"]);
        // A listener of no known worker: decided, not closed, said once.
        let stranger = line(1, 50, "/", "-", "-").replace("/hs-1/", "/hs-7/");
        feed(&guard, &format, &vec![stranger; 3]);
        assert_eq!(closing_on(&guard, "shop"), ["hs-2"]);
        let m = metrics(&guard);
        for want in [
            "onionwatch_log_circuit_closes_skipped_total{project=\"shop\",reason=\"unknown_listener\"} 1\n",
            "onionwatch_log_circuit_closes_skipped_total{project=\"shop\",reason=\"no_listener\"} 0\n",
            "onionwatch_log_abusive_circuits_untrusted_total{project=\"shop\"} 1\n",
            "onionwatch_log_abusive_circuits_total{project=\"shop\",action=\"close\"} 3\n",
        ] {
            assert!(m.contains(want), "missing {want:?} in\n{m}");
        }

        // A format without $server_addr in a softmap project: circuits are
        // still counted (merged), decisions still made, nothing closed.
        let guard = AbuseGuard::new(config, tors(vec![worker(1), worker(2)])).unwrap();
        let plain = crate::access::LogFormat::combined();
        let combined = r#"fc00:dead:beef:4dad::0:30 - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 5 "-" "-""#;
        feed(&guard, &plain, &vec![combined.to_owned(); 3]);
        // Another circuit over the limit: counted, not warned again.
        feed(&guard, &plain, &vec![combined.replace("0:30", "0:31"); 3]);
        assert!(closing_on(&guard, "shop").is_empty());
        let m = metrics(&guard);
        assert!(
            m.contains("onionwatch_log_circuit_closes_skipped_total{project=\"shop\",reason=\"no_listener\"} 2\n"),
            "{m}"
        );
        assert!(!m.contains("onionwatch_log_circuit_closes_total"), "{m}");
    }

    #[tokio::test]
    async fn an_unreachable_control_port_is_counted_never_fatal() {
        let executor = PolicyExecutor::spawn(dead_target());
        let mut events = executor.subscribe();
        assert!(!executor.submit(&decision(Action::Log, false)));
        assert!(!executor.submit(&decision(Action::Alert, false)));
        assert!(executor.submit(&decision(Action::Close, false)));
        assert!(executor.submit(&decision(Action::Close, true)));
        let limit = Duration::from_secs(20);
        let first = tokio::time::timeout(limit, events.recv()).await.unwrap();
        let second = tokio::time::timeout(limit, events.recv()).await.unwrap();
        assert_eq!(first.unwrap().result, CloseResult::Failed);
        assert_eq!(second.unwrap().result, CloseResult::DryRun);
        let c = executor.counters();
        assert_eq!(
            (c.get(CloseResult::Failed), c.get(CloseResult::DryRun)),
            (1, 1)
        );
        assert_eq!(c.get(CloseResult::Closed), 0);
        let render = |project| {
            onionwatch_metrics::render(
                &executor.to_families(project),
                onionwatch_metrics::Format::Prometheus,
            )
        };
        let text = render(Some("shop"));
        assert!(text.contains(
            "onionwatch_log_circuit_closes_total{project=\"shop\",result=\"failed\"} 1\n"
        ));
        assert!(text.contains("onionwatch_log_circuit_close_dropped_total{project=\"shop\"} 0\n"));
        assert!(render(None).contains("onionwatch_log_circuit_closes_total{result=\"closed\"} 0\n"));
    }
}
