//! Executing the access-log policy's `close` decisions: `CLOSECIRCUIT` on
//! the onion-service tor's control port.
//!
//! Dependencies stay one way: [`onionwatch_logs::policy`] decides from log
//! records and knows no control port, [`onionwatch_tor::control`] talks to
//! tor ([`CircuitCloser`]: one connection, reconnect after loss, shared with
//! the gateway's escalation), and this module, which depends on both,
//! connects them. A log follower calls
//! [`Policy::observe`](onionwatch_logs::policy::Policy::observe) for each
//! record and hands every decision to [`CloseExecutor::submit`], which never
//! blocks: a background task closes the circuits in order, logs each result
//! and counts it. Errors are logged, never fatal.
//!
//! ```no_run
//! # async fn demo(record: onionwatch_logs::access::AccessRecord<'_>) {
//! use onionwatch_inside::circuit_close::CloseExecutor;
//! use onionwatch_logs::policy::{Action, Policy, PolicyConfig};
//! use onionwatch_tor::control::{Auth, CircuitCloser};
//!
//! let mut policy = Policy::new(PolicyConfig {
//!     action: Action::Close,
//!     i_understand_closing_circuits: true,
//!     ..PolicyConfig::default()
//! })
//! .unwrap();
//! let closer = CircuitCloser::new("unix:/run/tor/control".parse().unwrap(), Auth::default());
//! let executor = CloseExecutor::spawn(closer);
//! // For each record read from the access log:
//! if let Some(decision) = policy.observe_record(&record) {
//!     executor.submit(&decision);
//! }
//! # }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use onionwatch_logs::policy::{Action, Decision};
use onionwatch_metrics::Family;
use onionwatch_tor::circuit_id::CircuitId;
use onionwatch_tor::control::{Auth, CircuitCloser, CloseOutcome, ControlAddr};
use serde::{Deserialize, Deserializer};
use tokio::sync::{broadcast, mpsc};

/// Decisions waiting for the control port; more are dropped (and counted).
pub const QUEUE: usize = 1024;

/// Where `close` decisions go: the control port of the tor whose access
/// log the policy reads (circuit ids are per tor process). For a
/// configuration file next to the policy's:
///
/// ```yaml
/// control_port: unix:/opt/onionspray/projects/shop/tor-control.sock
/// control_cookie: /opt/onionspray/projects/shop/tor-control.cookie   # optional
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlTarget {
    /// The onion-service tor's control port: `IP:PORT` or `unix:PATH`.
    /// Required.
    #[serde(deserialize_with = "de_control_addr")]
    pub control_port: ControlAddr,
    /// Control-port password (`HashedControlPassword`); otherwise cookie
    /// authentication. Default none.
    #[serde(default)]
    pub control_password: Option<String>,
    /// Cookie file to use instead of the one tor names (e.g. tor in a
    /// container). Default none.
    #[serde(default)]
    pub control_cookie: Option<PathBuf>,
}

fn de_control_addr<'de, D: Deserializer<'de>>(d: D) -> Result<ControlAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl fmt::Debug for ControlTarget {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlTarget")
            .field("control_port", &self.control_port)
            .field(
                "control_password",
                &self.control_password.as_ref().map(|_| "<secret>"),
            )
            .field("control_cookie", &self.control_cookie)
            .finish()
    }
}

impl ControlTarget {
    /// The authentication: the password if given, else SAFECOOKIE with
    /// `control_cookie`, else whatever tor offers.
    pub fn auth(&self) -> Auth {
        match (&self.control_password, &self.control_cookie) {
            (Some(p), _) => Auth::Password(p.clone()),
            (None, Some(path)) => Auth::SafeCookie {
                path: Some(path.clone()),
            },
            (None, None) => Auth::Auto { password: None },
        }
    }

    /// A closer for this control port (not connected yet).
    pub fn closer(&self) -> CircuitCloser {
        CircuitCloser::new(self.control_port.clone(), self.auth())
    }
}

/// What happened to one `close` decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseResult {
    /// Tor closed the circuit.
    Closed,
    /// Tor did not know the circuit (already gone).
    UnknownCircuit,
    /// The control port could not be reached or refused the command.
    Failed,
    /// The decision was a dry run: only logged.
    DryRun,
}

impl CloseResult {
    /// Every result, in label order.
    pub const ALL: [CloseResult; 4] = [
        CloseResult::Closed,
        CloseResult::UnknownCircuit,
        CloseResult::Failed,
        CloseResult::DryRun,
    ];

    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseResult::Closed => "closed",
            CloseResult::UnknownCircuit => "unknown_circuit",
            CloseResult::Failed => "failed",
            CloseResult::DryRun => "dry_run",
        }
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

/// Counts of an executor (shared with its task).
#[derive(Debug, Default)]
pub struct CloseCounters {
    results: [AtomicU64; CloseResult::ALL.len()],
    dropped: AtomicU64,
}

impl CloseCounters {
    /// Decisions that ended with `result`.
    pub fn get(&self, result: CloseResult) -> u64 {
        self.results[result as usize].load(Relaxed)
    }

    /// Decisions dropped because the queue was full or the task had ended.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
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
        for r in CloseResult::ALL {
            let mut labels = project.clone();
            labels.push(("result", r.as_str()));
            closes.push(&labels, self.get(r) as f64);
        }
        let mut dropped = Family::counter(
            "onionwatch_log_circuit_close_dropped",
            "Close decisions dropped because the control port was too slow.",
        );
        dropped.push(&project, self.dropped() as f64);
        vec![closes, dropped]
    }

    fn count(&self, result: CloseResult) {
        self.results[result as usize].fetch_add(1, Relaxed);
    }
}

/// Execute one decision now: close its circuit unless it is a dry run, and
/// log the result. `None` for decisions whose action is not `close`.
pub async fn execute(closer: &mut CircuitCloser, decision: &Decision) -> Option<CloseResult> {
    if decision.action != Action::Close {
        return None;
    }
    let circuit = decision.circuit.0;
    if decision.dry_run {
        tracing::info!(
            circuit,
            "dry run: not closing abusive circuit {circuit}: {}",
            decision.reason
        );
        return Some(CloseResult::DryRun);
    }
    let control = closer.addr().to_string();
    Some(match closer.close(circuit).await {
        Ok(CloseOutcome::Closed) => {
            tracing::warn!(circuit, %control, "closed abusive circuit {circuit}: {}", decision.reason);
            CloseResult::Closed
        }
        Ok(CloseOutcome::UnknownCircuit) => {
            tracing::info!(
                circuit,
                %control,
                "abusive circuit {circuit} was already gone (tor does not know it)"
            );
            CloseResult::UnknownCircuit
        }
        Err(e) => {
            tracing::warn!(circuit, "cannot close abusive circuit {circuit}: {e}");
            CloseResult::Failed
        }
    })
}

/// A background task executing `close` decisions in order; see the module
/// documentation. The task ends when every handle is dropped.
#[derive(Debug, Clone)]
pub struct CloseExecutor {
    tx: mpsc::Sender<Decision>,
    counters: Arc<CloseCounters>,
    events: broadcast::Sender<CloseEvent>,
}

impl CloseExecutor {
    /// Start the task on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn(closer: CircuitCloser) -> CloseExecutor {
        let (tx, mut rx) = mpsc::channel::<Decision>(QUEUE);
        let counters = Arc::new(CloseCounters::default());
        let (events, _) = broadcast::channel(QUEUE);
        let task_counters = Arc::clone(&counters);
        let task_events = events.clone();
        tokio::spawn(async move {
            let mut closer = closer;
            while let Some(decision) = rx.recv().await {
                if let Some(result) = execute(&mut closer, &decision).await {
                    task_counters.count(result);
                    let _ = task_events.send(CloseEvent {
                        circuit: decision.circuit,
                        result,
                    });
                }
            }
        });
        CloseExecutor {
            tx,
            counters,
            events,
        }
    }

    /// Queue a decision without waiting; decisions whose action is not
    /// `close` are ignored (`false`). A full queue drops the decision with a
    /// warning (`false`).
    pub fn submit(&self, decision: &Decision) -> bool {
        if decision.action != Action::Close {
            return false;
        }
        match self.tx.try_send(decision.clone()) {
            Ok(()) => true,
            Err(e) => {
                self.counters.dropped.fetch_add(1, Relaxed);
                tracing::warn!(
                    circuit = decision.circuit.0,
                    "not closing abusive circuit {}: the control port is too slow ({e})",
                    decision.circuit.0
                );
                false
            }
        }
    }

    /// The counters.
    pub fn counters(&self) -> &CloseCounters {
        &self.counters
    }

    /// Executed decisions from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CloseEvent> {
        self.events.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use onionwatch_logs::policy::{Policy, PolicyConfig};
    use onionwatch_tor::control::{Auth, ConnectOptions, ControlAddr};

    use super::*;

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

    /// A closer for a port where nothing listens, trying every time.
    fn dead_closer() -> CircuitCloser {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let options = ConnectOptions {
            timeout: Duration::from_secs(5),
            ..ConnectOptions::default()
        };
        CircuitCloser::with_options(ControlAddr::Tcp(addr), Auth::Null, options, Duration::ZERO)
    }

    #[test]
    fn control_targets_parse_and_hide_the_password() {
        let t: ControlTarget = serde_saphyr::from_str(
            "control_port: unix:/run/tor/control\ncontrol_cookie: /run/tor/control.authcookie\n",
        )
        .unwrap();
        assert_eq!(t.control_port, ControlAddr::Unix("/run/tor/control".into()));
        assert_eq!(
            t.auth(),
            Auth::SafeCookie {
                path: Some("/run/tor/control.authcookie".into())
            }
        );
        let t: ControlTarget =
            serde_saphyr::from_str("control_port: 127.0.0.1:9051\ncontrol_password: hunter2\n")
                .unwrap();
        assert_eq!(t.auth(), Auth::Password("hunter2".into()));
        assert!(!format!("{t:?}").contains("hunter2"));
        assert_eq!(t.closer().addr(), &t.control_port);
        let t: ControlTarget = serde_saphyr::from_str("control_port: 127.0.0.1:9051\n").unwrap();
        assert_eq!(t.auth(), Auth::Auto { password: None });
        for bad in [
            "control_port: 9051\n",
            "control_port: unix:\n",
            "control_port: 127.0.0.1:9051\ncontrol_pasword: x\n",
            "control_password: x\n",
        ] {
            assert!(
                serde_saphyr::from_str::<ControlTarget>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn only_close_decisions_are_executed_and_dry_runs_only_logged() {
        let mut closer = dead_closer();
        assert_eq!(
            execute(&mut closer, &decision(Action::Log, false)).await,
            None
        );
        assert_eq!(
            execute(&mut closer, &decision(Action::Alert, false)).await,
            None
        );
        assert_eq!(
            execute(&mut closer, &decision(Action::Close, true)).await,
            Some(CloseResult::DryRun)
        );
        assert_eq!(
            execute(&mut closer, &decision(Action::Close, false)).await,
            Some(CloseResult::Failed)
        );
    }

    #[tokio::test]
    async fn an_unreachable_control_port_is_counted_never_fatal() {
        let executor = CloseExecutor::spawn(dead_closer());
        let mut events = executor.subscribe();
        assert!(!executor.submit(&decision(Action::Log, false)));
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
                &c.to_families(project),
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
