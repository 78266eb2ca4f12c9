//! The one circuit-closing executor: a bounded queue in front of a
//! background task that sends `CLOSECIRCUIT` through a [`CircuitCloser`].
//!
//! Callers on a hot path (the gateway's request path, the log follower's
//! thread) [`submit`](CloseExecutor::submit) requests without ever waiting:
//! a full queue drops the request and counts it. The task takes requests in
//! order and asks the caller's [`CloseHandler`] what to do with each
//! ([`ClosePlan`]: skip it, only log it, or close a circuit on a control
//! port), closes, and hands the result back to the handler, which keeps its
//! own logs, metrics and cool-down. The closer is kept between requests and
//! replaced when a plan names another control port or credentials.
//!
//! The gateway's escalation and the access-log policy both use it.
//!
//! ```no_run
//! # async fn demo() {
//! use onionwatch_tor::control::{
//!     CloseError, CloseExecutor, CloseHandler, ClosePlan, CloseResult, ControlTarget,
//! };
//!
//! struct Log(ControlTarget);
//! impl CloseHandler for Log {
//!     type Request = u32;
//!     fn plan(&mut self, circuit: &u32) -> ClosePlan {
//!         ClosePlan::Close { circuit: *circuit, target: self.0.clone() }
//!     }
//!     fn done(&mut self, circuit: u32, result: CloseResult, error: Option<CloseError>) {
//!         println!("circuit {circuit}: {} {error:?}", result.as_str());
//!     }
//! }
//! let target = ControlTarget::new("127.0.0.1:9051".parse().unwrap());
//! let executor = CloseExecutor::spawn(Log(target));
//! executor.submit(48);
//! # }
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::{CircuitCloser, CloseError, CloseOutcome, ControlTarget};

/// Default queue length: requests waiting for the control port; more are
/// dropped (and counted).
pub const CLOSE_QUEUE: usize = 1024;

/// What happened to one close request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseResult {
    /// Tor closed the circuit.
    Closed,
    /// Tor did not know the circuit (already gone).
    UnknownCircuit,
    /// The control port could not be reached or refused the command.
    Failed,
    /// A dry run: only logged.
    DryRun,
}

impl CloseResult {
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

/// What the executor does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClosePlan {
    /// Nothing; [`CloseHandler::done`] is not called.
    Skip,
    /// Nothing but report [`CloseResult::DryRun`].
    DryRun,
    /// `CLOSECIRCUIT circuit` on `target`.
    Close {
        /// The circuit.
        circuit: u32,
        /// The control port of the tor that owns the circuit.
        target: ControlTarget,
    },
}

/// The caller's side of a [`CloseExecutor`]; both methods run on the
/// executor's task, in queue order: a request's `done` comes before the
/// next request's `plan`, so a handler may keep what `plan` decided for
/// `done`.
pub trait CloseHandler: Send + 'static {
    /// A queued request.
    type Request: Send + 'static;

    /// Decide what to do with `request` (cool-down, dry run, which control
    /// port).
    fn plan(&mut self, request: &Self::Request) -> ClosePlan;

    /// The result of a request not skipped; `error` is set when it
    /// [`Failed`](CloseResult::Failed).
    fn done(&mut self, request: Self::Request, result: CloseResult, error: Option<CloseError>);
}

/// The submitting side; cheap to clone. The task ends when every clone is
/// dropped.
#[derive(Debug)]
pub struct CloseExecutor<R> {
    tx: mpsc::Sender<R>,
    dropped: Arc<AtomicU64>,
}

impl<R> Clone for CloseExecutor<R> {
    fn clone(&self) -> Self {
        CloseExecutor {
            tx: self.tx.clone(),
            dropped: Arc::clone(&self.dropped),
        }
    }
}

/// The receiving side, to be [`run`](CloseQueue::run) by a task.
#[derive(Debug)]
pub struct CloseQueue<R> {
    rx: mpsc::Receiver<R>,
}

impl<R: Send + 'static> CloseExecutor<R> {
    /// An executor with a queue of `capacity` requests, and its queue for a
    /// task to run (for callers that spawn later).
    pub fn channel(capacity: usize) -> (CloseExecutor<R>, CloseQueue<R>) {
        let (tx, rx) = mpsc::channel(capacity);
        let executor = CloseExecutor {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        (executor, CloseQueue { rx })
    }

    /// Start the task for `handler` on the current tokio runtime, with a
    /// queue of [`CLOSE_QUEUE`] requests.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub fn spawn<H: CloseHandler<Request = R>>(handler: H) -> CloseExecutor<R> {
        let (executor, queue) = Self::channel(CLOSE_QUEUE);
        tokio::spawn(queue.run(handler));
        executor
    }

    /// Queue a request without waiting. `false` when it was dropped (and
    /// counted) because the queue is full or the task has ended.
    pub fn submit(&self, request: R) -> bool {
        match self.tx.try_send(request) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }

    /// Requests dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

impl<R: Send + 'static> CloseQueue<R> {
    /// Execute requests until every [`CloseExecutor`] is dropped.
    pub async fn run<H: CloseHandler<Request = R>>(mut self, mut handler: H) {
        let mut closer: Option<CircuitCloser> = None;
        while let Some(request) = self.rx.recv().await {
            let (circuit, target) = match handler.plan(&request) {
                ClosePlan::Skip => continue,
                ClosePlan::DryRun => {
                    handler.done(request, CloseResult::DryRun, None);
                    continue;
                }
                ClosePlan::Close { circuit, target } => (circuit, target),
            };
            let closer = match &mut closer {
                Some(c) if target.is_target_of(c) => c,
                slot => slot.insert(target.closer()),
            };
            match closer.close(circuit).await {
                Ok(CloseOutcome::Closed) => handler.done(request, CloseResult::Closed, None),
                Ok(CloseOutcome::UnknownCircuit) => {
                    handler.done(request, CloseResult::UnknownCircuit, None)
                }
                Err(e) => handler.done(request, CloseResult::Failed, Some(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc::UnboundedSender;

    use super::*;

    /// Skips even circuits, dry-runs circuit 1, closes the rest on a port
    /// where nothing listens.
    struct Handler {
        target: ControlTarget,
        out: UnboundedSender<(u32, CloseResult, bool)>,
    }

    impl CloseHandler for Handler {
        type Request = u32;
        fn plan(&mut self, c: &u32) -> ClosePlan {
            match c {
                c if c % 2 == 0 => ClosePlan::Skip,
                1 => ClosePlan::DryRun,
                c => ClosePlan::Close {
                    circuit: *c,
                    target: self.target.clone(),
                },
            }
        }
        fn done(&mut self, c: u32, result: CloseResult, error: Option<CloseError>) {
            let _ = self.out.send((c, result, error.is_some()));
        }
    }

    #[tokio::test]
    async fn plans_are_followed_and_results_reported_in_order() {
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (out, mut results) = tokio::sync::mpsc::unbounded_channel();
        let executor = CloseExecutor::spawn(Handler {
            target: ControlTarget::new(super::super::ControlAddr::Tcp(dead)),
            out,
        });
        for c in [2, 1, 3, 4] {
            assert!(executor.submit(c));
        }
        let limit = Duration::from_secs(20);
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(tokio::time::timeout(limit, results.recv()).await.unwrap());
        }
        assert_eq!(
            got,
            [
                Some((1, CloseResult::DryRun, false)),
                Some((3, CloseResult::Failed, true))
            ]
        );
        assert_eq!(executor.dropped(), 0);
        assert_eq!(CloseResult::UnknownCircuit.as_str(), "unknown_circuit");
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let (executor, queue) = CloseExecutor::<u32>::channel(2);
        assert!(executor.submit(1));
        assert!(executor.submit(2));
        assert!(!executor.submit(3));
        drop(queue);
        assert!(!executor.clone().submit(4));
        assert_eq!(executor.dropped(), 2);
    }
}
