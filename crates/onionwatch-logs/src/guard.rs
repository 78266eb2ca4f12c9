//! The abusive-circuit policy applied to followed access logs, and its
//! `close` decisions executed: `CLOSECIRCUIT` on the onion-service tor's
//! control port.
//!
//! Dependencies stay one way: [`policy`](crate::policy) decides from log
//! records and knows no control port; onionwatch-tor's
//! [`CloseExecutor`] talks to tor (one connection, reconnect after loss,
//! shared with the gateway's escalation). This module connects them:
//! [`AbuseGuard`] keeps one [`Policy`] per project, fed by the log
//! follower's record hook, and hands every `close` decision to that
//! project's [`PolicyExecutor`], which never blocks: the executor's task
//! closes the circuits in order, and this module logs and counts each
//! result. Errors are logged, never fatal.
//!
//! Which tor to ask is resolved when a circuit is first to be closed, so
//! projects discovered later are covered. A project with several tors
//! (Onionspray's softmap workers) is never acted on: circuit ids are per
//! tor, and closing the same id on every tor would cut unrelated users.
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
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

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

/// Finds the control port of a project's only tor; `Err` says why not.
pub type Resolver = Box<dyn Fn(&str) -> Result<ControlTarget, String> + Send + Sync>;

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
    /// Started at the project's first close decision.
    executor: Option<PolicyExecutor>,
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

    /// Count one record; act on its circuit if it crosses the limit.
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
                executor: None,
            });
        let Some(decision) = project.policy.observe_from(circuit, source, time) else {
            return;
        };
        // An id a client may have chosen is never closed (the policy has
        // logged and counted why).
        if decision.action != Action::Close || !decision.closable {
            return;
        }
        if project.executor.is_none() {
            match (self.resolve)(record.project) {
                Ok(target) => {
                    let _runtime = self.runtime.enter();
                    project.executor = Some(PolicyExecutor::spawn(target));
                }
                Err(why) => {
                    tracing::warn!(
                        project = record.project,
                        circuit = circuit.0,
                        "not closing abusive circuit {}: {why}",
                        circuit.0
                    );
                    return;
                }
            }
        }
        if let Some(executor) = &project.executor {
            executor.submit(&decision);
        }
    }
}

impl Collect for AbuseGuard {
    fn collect(&self, out: &mut Vec<Family>) {
        let projects = self.projects.lock().unwrap_or_else(|e| e.into_inner());
        let mut families = Vec::new();
        for (name, p) in projects.iter() {
            families.extend(p.policy.counters().to_families(Some(name)));
            if let Some(e) = &p.executor {
                families.extend(e.to_families(Some(name)));
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

/// The resolver for `onionwatch watch`: the project's only control port.
pub fn single_control_port(ports: Vec<ControlTarget>) -> Result<ControlTarget, String> {
    match <[_; 1]>::try_from(ports) {
        Ok([target]) => Ok(target),
        Err(ports) if ports.is_empty() => {
            Err("the project has no control port configured or discovered".into())
        }
        Err(ports) => Err(format!(
            "the project has {} tors and circuit ids are per tor",
            ports.len()
        )),
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
        let counters = Arc::new(CloseCounters::default());
        let (events, _) = broadcast::channel(CLOSE_QUEUE);
        let executor = CloseExecutor::spawn(Handler {
            target,
            counters: Arc::clone(&counters),
            events: events.clone(),
        });
        PolicyExecutor {
            executor,
            counters,
            events,
        }
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
        let mut closes = Family::counter(
            "onionwatch_log_circuit_closes",
            "Abusive circuits the log policy asked to close, by result.",
        );
        for r in RESULTS {
            let mut labels = project.clone();
            labels.push(("result", r.as_str()));
            closes.push(&labels, self.counters.get(r) as f64);
        }
        let mut dropped = Family::counter(
            "onionwatch_log_circuit_close_dropped",
            "Close decisions dropped because the control port was too slow.",
        );
        dropped.push(&project, self.dropped() as f64);
        vec![closes, dropped]
    }
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
        }
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
        let guard = AbuseGuard::new(config, Box::new(|_| single_control_port(vec![]))).unwrap();
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
        // Nothing to close with: no executor, so no close counters.
        assert!(
            !text.contains("onionwatch_log_circuit_closes_total"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_circuit_id_from_the_header_is_never_sent_to_tor() {
        let config = PolicyConfig {
            max_requests: 2,
            action: Action::Close,
            i_understand_closing_circuits: true,
            ..PolicyConfig::default()
        };
        let resolved = Arc::new(AtomicU64::new(0));
        let calls = Arc::clone(&resolved);
        let guard = AbuseGuard::new(
            config,
            Box::new(move |_| {
                calls.fetch_add(1, Relaxed);
                Ok(dead_target())
            }),
        )
        .unwrap();
        let header = |t| RecordInfo {
            circuit: Some((CircuitId(7), CircuitSource::Header)),
            ..record("shop", 7, t)
        };
        for t in 0..3 {
            guard.observe(&header(t));
        }
        let text = |guard: &AbuseGuard| {
            let mut out = Vec::new();
            guard.collect(&mut out);
            onionwatch_metrics::render(&out, onionwatch_metrics::Format::Prometheus)
        };
        let m = text(&guard);
        assert!(
            m.contains("onionwatch_log_abusive_circuits_untrusted_total{project=\"shop\"} 1\n"),
            "{m}"
        );
        assert_eq!(
            resolved.load(Relaxed),
            0,
            "a header id reached the executor"
        );
        assert!(!m.contains("onionwatch_log_circuit_closes_total"), "{m}");
        // The same id written by tor is closed (here: attempted).
        for t in 0..3 {
            guard.observe(&record("shop", 7, t));
        }
        assert_eq!(resolved.load(Relaxed), 1);
        assert!(text(&guard).contains("onionwatch_log_circuit_closes_total"));
    }

    #[test]
    fn only_a_project_with_one_tor_is_acted_on() {
        let addr: ControlAddr = "127.0.0.1:9051".parse().unwrap();
        assert!(single_control_port(vec![])
            .unwrap_err()
            .contains("no control port"));
        let two = vec![
            ControlTarget::new(addr.clone()),
            ControlTarget::new(addr.clone()),
        ];
        assert!(single_control_port(two).unwrap_err().contains("2 tors"));
        let one = single_control_port(vec![ControlTarget::new(addr.clone())]).unwrap();
        assert_eq!(one.control_port, addr);
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
