//! Closing abusive circuits with `CLOSECIRCUIT` on tor's control port.
//!
//! The request path only `try_send`s a note to this task, so a slow or dead
//! control port never delays a request. The task keeps one control
//! connection, reconnects after failures (at most once per
//! [`RECONNECT_PAUSE`]), and remembers closed circuits for the cool-down.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onionwatch_tor::control::{Auth, ConnectOptions, ControlAddr, ControlClient, EventStream};
use tokio::sync::{mpsc, watch};

use crate::metrics::{EscalationResult, Metrics, RejectReason};
use crate::server::Settings;
use crate::Config;

/// Shortest pause between two connection attempts to a failing control port.
pub const RECONNECT_PAUSE: Duration = Duration::from_secs(5);

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
    client: Option<(ControlAddr, ControlClient, EventStream)>,
    last_failure: Option<Instant>,
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
            client: None,
            last_failure: None,
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
        // Two tries: the second after reconnecting, for a connection that
        // tor closed since the last use.
        for attempt in 0..2 {
            let client = match self.client(&addr, config).await {
                Some(c) => c,
                None => return Some(EscalationResult::Failed),
            };
            match client.close_circuit(abuse.circuit).await {
                Ok(()) => {
                    tracing::warn!(circuit = abuse.circuit, control = %addr, "closed abusive circuit: {why}");
                    self.closed.insert(abuse.circuit, now);
                    return Some(EscalationResult::Closed);
                }
                Err(err) if err.is_unknown_entity() => {
                    tracing::info!(
                        circuit = abuse.circuit,
                        "abusive circuit already gone: {err}"
                    );
                    self.closed.insert(abuse.circuit, now);
                    return Some(EscalationResult::UnknownCircuit);
                }
                Err(err) if err.is_closed() && attempt == 0 => {
                    self.client = None;
                }
                Err(err) => {
                    tracing::warn!(circuit = abuse.circuit, control = %addr, "cannot close abusive circuit: {err}");
                    self.client = None;
                    return Some(EscalationResult::Failed);
                }
            }
        }
        Some(EscalationResult::Failed)
    }

    async fn client(&mut self, addr: &ControlAddr, config: &Config) -> Option<ControlClient> {
        if let Some((a, c, _)) = &self.client {
            if a == addr && !c.is_closed() {
                return Some(c.clone());
            }
        }
        self.client = None;
        if let Some(at) = self.last_failure {
            if at.elapsed() < RECONNECT_PAUSE {
                return None;
            }
        }
        let e = &config.escalation;
        let auth = match (&e.control_password, &e.control_cookie) {
            (Some(p), _) => Auth::Password(p.clone()),
            (None, Some(path)) => Auth::SafeCookie {
                path: Some(path.clone()),
            },
            (None, None) => Auth::Auto { password: None },
        };
        let opts = ConnectOptions {
            command_timeout: Some(Duration::from_secs(10)),
            ..ConnectOptions::default()
        };
        match ControlClient::connect_with(addr, auth, opts).await {
            Ok((client, events)) => {
                tracing::info!(control = %addr, "connected to tor's control port for circuit escalation");
                self.last_failure = None;
                self.client = Some((addr.clone(), client.clone(), events));
                Some(client)
            }
            Err(err) => {
                tracing::warn!(control = %addr, "cannot connect to tor's control port to close abusive circuits: {err}");
                self.last_failure = Some(Instant::now());
                None
            }
        }
    }
}
