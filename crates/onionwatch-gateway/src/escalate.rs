//! Closing abusive circuits with `CLOSECIRCUIT` on tor's control port.
//!
//! The request path only `try_send`s a note to this task, so a slow or dead
//! control port never delays a request. The task keeps one control
//! connection through onionwatch-tor's [`CircuitCloser`] (reconnects after
//! failures, at most once per [`onionwatch_tor::control::RECONNECT_PAUSE`];
//! the access-log policy's executor uses the same code), and remembers
//! closed circuits for the cool-down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onionwatch_tor::control::{Auth, CircuitCloser, CloseError, CloseOutcome};
use tokio::sync::{mpsc, watch};

use crate::metrics::{EscalationResult, Metrics, RejectReason};
use crate::server::Settings;
use crate::Config;

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

#[derive(Debug)]
pub(crate) struct Escalator {
    rx: mpsc::Receiver<Abuse>,
    settings: watch::Receiver<Arc<Settings>>,
    metrics: Arc<Metrics>,
    events: tokio::sync::broadcast::Sender<EscalationEvent>,
    closer: Option<CircuitCloser>,
    closed: HashMap<u32, Instant>,
}

impl Escalator {
    pub(crate) fn new(
        rx: mpsc::Receiver<Abuse>,
        settings: watch::Receiver<Arc<Settings>>,
        metrics: Arc<Metrics>,
        events: tokio::sync::broadcast::Sender<EscalationEvent>,
    ) -> Self {
        Escalator {
            rx,
            settings,
            metrics,
            events,
            closer: None,
            closed: HashMap::new(),
        }
    }

    pub(crate) async fn run(mut self) {
        while let Some(abuse) = self.rx.recv().await {
            let settings = self.settings.borrow().clone();
            if let Some(result) = self.handle(&settings.config, abuse).await {
                self.metrics.escalation(result);
                let _ = self.events.send(EscalationEvent {
                    circuit: abuse.circuit,
                    result,
                });
            }
        }
    }

    /// `None` when the circuit is in its cool-down (nothing done).
    async fn handle(&mut self, config: &Config, abuse: Abuse) -> Option<EscalationResult> {
        let e = &config.escalation;
        if !e.enabled {
            return None;
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
            return None;
        }
        let why = format!(
            "{} requests refused ({}) within {} s",
            abuse.refusals,
            abuse.reason.as_str(),
            e.window_secs
        );
        if e.dry_run {
            tracing::warn!(
                circuit = abuse.circuit,
                "dry run: would close abusive circuit: {why}"
            );
            self.closed.insert(abuse.circuit, now);
            return Some(EscalationResult::DryRun);
        }
        let addr = e.control_port.clone()?;
        let auth = match (&e.control_password, &e.control_cookie) {
            (Some(p), _) => Auth::Password(p.clone()),
            (None, Some(path)) => Auth::SafeCookie {
                path: Some(path.clone()),
            },
            (None, None) => Auth::Auto { password: None },
        };
        // A reload may point at another control port or credentials.
        if !self
            .closer
            .as_ref()
            .is_some_and(|c| c.targets(&addr, &auth))
        {
            self.closer = Some(CircuitCloser::new(addr.clone(), auth));
        }
        let closer = self.closer.as_mut()?;
        match closer.close(abuse.circuit).await {
            Ok(CloseOutcome::Closed) => {
                tracing::warn!(circuit = abuse.circuit, control = %addr, "closed abusive circuit: {why}");
                self.closed.insert(abuse.circuit, now);
                Some(EscalationResult::Closed)
            }
            Ok(CloseOutcome::UnknownCircuit) => {
                tracing::info!(
                    circuit = abuse.circuit,
                    "abusive circuit already gone: tor does not know it"
                );
                self.closed.insert(abuse.circuit, now);
                Some(EscalationResult::UnknownCircuit)
            }
            Err(err @ CloseError::Paused { .. }) => {
                // The failed connection attempt was logged already.
                tracing::debug!(
                    circuit = abuse.circuit,
                    "cannot close abusive circuit: {err}"
                );
                Some(EscalationResult::Failed)
            }
            Err(err) => {
                tracing::warn!(
                    circuit = abuse.circuit,
                    "cannot close abusive circuit: {err}"
                );
                Some(EscalationResult::Failed)
            }
        }
    }
}
