//! Closing abusive circuits with `CLOSECIRCUIT` on tor's control port.
//!
//! The request path only [`submit`](CloseExecutor::submit)s a note to
//! onionwatch-tor's [`CloseExecutor`], so a slow or dead control port never
//! delays a request (a full queue drops the note). The executor's task
//! keeps one control connection (reconnects after failures, at most once
//! per [`onionwatch_tor::control::RECONNECT_PAUSE`]; the access-log policy
//! uses the same executor); this module decides, in queue order, what to
//! do with each note (escalation settings of the moment, cool-down of
//! closed circuits) and counts the results.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onionwatch_tor::control::{
    CloseError, CloseExecutor, CloseHandler, ClosePlan, CloseQueue, CloseResult, ControlAddr,
};
use tokio::sync::{broadcast, watch};

use crate::metrics::{EscalationResult, Metrics, RejectReason};
use crate::server::Settings;

/// One circuit that crossed the threshold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Abuse {
    pub circuit: u32,
    pub reason: RejectReason,
    pub refusals: u32,
}

/// What happened to one escalation, for tests and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationEvent {
    /// The circuit.
    pub circuit: u32,
    /// What was done.
    pub result: EscalationResult,
}

/// Queue length of escalations waiting for the control port.
pub(crate) const QUEUE: usize = 1024;

/// The escalation task, ready to [`run`](Escalator::run).
#[derive(Debug)]
pub(crate) struct Escalator {
    queue: CloseQueue<Abuse>,
    handler: Handler,
}

#[derive(Debug)]
struct Handler {
    settings: watch::Receiver<Arc<Settings>>,
    metrics: Arc<Metrics>,
    events: broadcast::Sender<EscalationEvent>,
    /// Circuits closed (or dry-run) and when: the cool-down.
    closed: HashMap<u32, Instant>,
    /// The request being executed, as planned.
    planned: Planned,
}

/// What [`Handler::done`] needs from the plan of its request.
#[derive(Debug)]
struct Planned {
    at: Instant,
    why: String,
    control: Option<ControlAddr>,
}

impl Escalator {
    /// The executor the request path submits to, and the task behind it.
    pub(crate) fn new(
        settings: watch::Receiver<Arc<Settings>>,
        metrics: Arc<Metrics>,
        events: broadcast::Sender<EscalationEvent>,
    ) -> (CloseExecutor<Abuse>, Self) {
        let (executor, queue) = CloseExecutor::channel(QUEUE);
        let handler = Handler {
            settings,
            metrics,
            events,
            closed: HashMap::new(),
            planned: Planned {
                at: Instant::now(),
                why: String::new(),
                control: None,
            },
        };
        (executor, Escalator { queue, handler })
    }

    pub(crate) async fn run(self) {
        self.queue.run(self.handler).await
    }
}

impl CloseHandler for Handler {
    type Request = Abuse;

    fn plan(&mut self, abuse: &Abuse) -> ClosePlan {
        let settings = self.settings.borrow().clone();
        let e = &settings.config.escalation;
        if !e.enabled {
            return ClosePlan::Skip;
        }
        let now = Instant::now();
        let cooldown = Duration::from_secs_f64(e.cooldown_secs);
        self.closed
            .retain(|_, at| now.duration_since(*at) < cooldown);
        if self.closed.contains_key(&abuse.circuit) {
            tracing::debug!(
                circuit = abuse.circuit,
                "circuit still in its escalation cool-down"
            );
            return ClosePlan::Skip;
        }
        let why = format!(
            "{} requests refused ({}) within {} s",
            abuse.refusals,
            abuse.reason.as_str(),
            e.window_secs
        );
        // A reload may point at another control port or credentials.
        let control = e.control();
        self.planned = Planned {
            at: now,
            why,
            control: control.as_ref().map(|t| t.control_port.clone()),
        };
        match control {
            _ if e.dry_run => ClosePlan::DryRun,
            Some(target) => ClosePlan::Close {
                circuit: abuse.circuit,
                target,
            },
            None => ClosePlan::Skip,
        }
    }

    fn done(&mut self, abuse: Abuse, result: CloseResult, error: Option<CloseError>) {
        let circuit = abuse.circuit;
        let Planned { at, why, control } = &self.planned;
        match (result, error) {
            (CloseResult::DryRun, _) => {
                tracing::warn!(circuit, "dry run: would close abusive circuit: {why}");
                self.closed.insert(circuit, *at);
            }
            (CloseResult::Closed, _) => {
                let control = control
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                tracing::warn!(circuit, %control, "closed abusive circuit: {why}");
                self.closed.insert(circuit, *at);
            }
            (CloseResult::UnknownCircuit, _) => {
                tracing::info!(
                    circuit,
                    "abusive circuit already gone: tor does not know it"
                );
                self.closed.insert(circuit, *at);
            }
            (CloseResult::Failed, Some(err @ CloseError::Paused { .. })) => {
                // The failed connection attempt was logged already.
                tracing::debug!(circuit, "cannot close abusive circuit: {err}");
            }
            (CloseResult::Failed, err) => {
                let err = err.map(|e| e.to_string()).unwrap_or_default();
                tracing::warn!(circuit, "cannot close abusive circuit: {err}");
            }
        }
        self.metrics.escalation(result);
        let _ = self.events.send(EscalationEvent { circuit, result });
    }
}
