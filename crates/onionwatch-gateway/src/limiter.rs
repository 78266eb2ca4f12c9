//! Per-circuit state: token bucket, open connections, requests in flight and
//! recent refusals, in a bounded table sharded to keep lock hold times short.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::{Metrics, RejectReason};

const SHARDS: usize = 16;

/// The limits in force, taken from the configuration at each check so that
/// a reload applies to open connections too.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Policy {
    /// Requests per second; 0 = unlimited.
    pub rate: f64,
    /// Bucket size.
    pub burst: f64,
    /// Open connections per circuit; 0 = unlimited.
    pub max_conns: u32,
    /// Requests in flight per circuit; 0 = unlimited.
    pub max_requests: u32,
    /// Most circuits tracked (approximate: enforced per shard).
    pub max_circuits: usize,
    /// `(refusals, window)` that trigger an escalation, if enabled.
    pub escalate: Option<(u32, Duration)>,
}

/// A refusal, with what the client should be told.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Refusal {
    /// Why.
    pub reason: RejectReason,
    /// Whole seconds until a retry may succeed (for `Retry-After`).
    pub retry_after: u64,
    /// Set when this refusal reached the escalation threshold: how many
    /// refusals were counted in the window.
    pub escalate: Option<u32>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    refilled: Instant,
    conns: u32,
    requests: u32,
    window_start: Instant,
    refusals: u32,
}

impl State {
    fn new(now: Instant, policy: &Policy) -> Self {
        State {
            tokens: policy.burst,
            refilled: now,
            conns: 0,
            requests: 0,
            window_start: now,
            refusals: 0,
        }
    }

    /// Nothing would be lost by forgetting this circuit now.
    fn forgettable(&self, now: Instant, policy: &Policy) -> bool {
        let idle = self.conns == 0 && self.requests == 0;
        let full = policy.rate <= 0.0
            || self.tokens + now.duration_since(self.refilled).as_secs_f64() * policy.rate
                >= policy.burst;
        let window = policy.escalate.map_or(Duration::ZERO, |(_, w)| w);
        let quiet = self.refusals == 0 || now.duration_since(self.window_start) > window;
        idle && full && quiet
    }

    fn refuse(
        &mut self,
        now: Instant,
        policy: &Policy,
        reason: RejectReason,
        retry_after: u64,
    ) -> Refusal {
        let mut escalate = None;
        if let Some((threshold, window)) = policy.escalate {
            if now.duration_since(self.window_start) > window {
                self.window_start = now;
                self.refusals = 0;
            }
            self.refusals = self.refusals.saturating_add(1);
            // Exactly at the threshold: one escalation per window.
            if self.refusals == threshold {
                escalate = Some(self.refusals);
            }
        }
        Refusal {
            reason,
            retry_after,
            escalate,
        }
    }
}

/// The per-circuit table.
#[derive(Debug)]
pub(crate) struct CircuitTable {
    shards: Box<[Mutex<HashMap<u32, State>>]>,
    metrics: Arc<Metrics>,
}

/// Holds one open connection of a circuit; dropping it releases the slot.
#[derive(Debug)]
pub(crate) struct ConnGuard {
    table: Arc<CircuitTable>,
    id: u32,
}

/// Holds one request in flight; dropping it releases the slot.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    table: Arc<CircuitTable>,
    id: u32,
}

fn shard_of(id: u32) -> usize {
    // Circuit ids are sequential: multiply to spread neighbours.
    (id.wrapping_mul(0x9E37_79B1) >> 28) as usize % SHARDS
}

impl CircuitTable {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(CircuitTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            metrics,
        })
    }

    fn with_state<T>(
        &self,
        id: u32,
        now: Instant,
        policy: &Policy,
        f: impl FnOnce(&mut State) -> T,
    ) -> Result<T, Refusal> {
        let mut shard = self.shards[shard_of(id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let cap = policy.max_circuits.div_ceil(SHARDS).max(1);
        if !shard.contains_key(&id) && shard.len() >= cap {
            shard.retain(|_, s| !s.forgettable(now, policy));
            if shard.len() >= cap {
                return Err(Refusal {
                    reason: RejectReason::CircuitTableFull,
                    retry_after: 1,
                    escalate: None,
                });
            }
        }
        let state = shard.entry(id).or_insert_with(|| State::new(now, policy));
        Ok(f(state))
    }

    /// Admit a new connection of circuit `id`.
    pub(crate) fn open_connection(
        self: &Arc<Self>,
        id: u32,
        policy: &Policy,
    ) -> Result<ConnGuard, Refusal> {
        let now = Instant::now();
        self.with_state(id, now, policy, |s| {
            if policy.max_conns > 0 && s.conns >= policy.max_conns {
                return Err(s.refuse(now, policy, RejectReason::TooManyConnections, 1));
            }
            s.conns += 1;
            if s.conns == 1 {
                self.metrics.active_circuits.fetch_add(1, Relaxed);
            }
            Ok(ConnGuard {
                table: Arc::clone(self),
                id,
            })
        })?
    }

    /// Admit a request of circuit `id` (rate and in-flight limits).
    pub(crate) fn start_request(
        self: &Arc<Self>,
        id: u32,
        policy: &Policy,
    ) -> Result<RequestGuard, Refusal> {
        let now = Instant::now();
        self.with_state(id, now, policy, |s| {
            if policy.max_requests > 0 && s.requests >= policy.max_requests {
                return Err(s.refuse(now, policy, RejectReason::TooManyRequests, 1));
            }
            if policy.rate > 0.0 {
                let elapsed = now.duration_since(s.refilled).as_secs_f64();
                s.tokens = (s.tokens + elapsed * policy.rate).min(policy.burst);
                s.refilled = now;
                if s.tokens < 1.0 {
                    let wait = ((1.0 - s.tokens) / policy.rate).ceil().max(1.0);
                    return Err(s.refuse(now, policy, RejectReason::RateLimited, wait as u64));
                }
                s.tokens -= 1.0;
            }
            s.requests += 1;
            Ok(RequestGuard {
                table: Arc::clone(self),
                id,
            })
        })?
    }

    /// Forget circuits that are idle with a full bucket.
    pub(crate) fn sweep(&self, policy: &Policy) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            shard
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|_, s| !s.forgettable(now, policy));
        }
    }

    /// Circuits tracked now.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    fn release(&self, id: u32, conn: bool) {
        let mut shard = self.shards[shard_of(id)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(s) = shard.get_mut(&id) {
            if conn {
                s.conns = s.conns.saturating_sub(1);
                if s.conns == 0 {
                    self.metrics.active_circuits.fetch_sub(1, Relaxed);
                }
            } else {
                s.requests = s.requests.saturating_sub(1);
            }
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.release(self.id, true);
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.table.release(self.id, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            rate: 0.001,
            burst: 3.0,
            max_conns: 2,
            max_requests: 2,
            max_circuits: 100,
            escalate: Some((4, Duration::from_secs(3600))),
        }
    }

    #[test]
    fn bucket_connections_and_requests_are_per_circuit() {
        let t = CircuitTable::new(Arc::default());
        let p = policy();
        let a = t.open_connection(1, &p).unwrap();
        let _b = t.open_connection(1, &p).unwrap();
        let e = t.open_connection(1, &p).unwrap_err();
        assert_eq!(e.reason, RejectReason::TooManyConnections);
        assert_eq!(t.metrics.active_circuits.load(Relaxed), 1);
        drop(a);
        let _c = t.open_connection(1, &p).unwrap();
        // Another circuit is unaffected.
        let _d = t.open_connection(2, &p).unwrap();
        assert_eq!(t.metrics.active_circuits.load(Relaxed), 2);

        let r1 = t.start_request(1, &p).unwrap();
        let r2 = t.start_request(1, &p).unwrap();
        assert_eq!(
            t.start_request(1, &p).unwrap_err().reason,
            RejectReason::TooManyRequests
        );
        drop((r1, r2));
        // Burst 3, two tokens used above: one left, then empty.
        drop(t.start_request(1, &p).unwrap());
        let e = t.start_request(1, &p).unwrap_err();
        assert_eq!(e.reason, RejectReason::RateLimited);
        assert!(e.retry_after >= 999, "{e:?}");
        drop(t.start_request(2, &p).unwrap());
    }

    #[test]
    fn escalates_once_per_window_at_the_threshold() {
        let t = CircuitTable::new(Arc::default());
        let p = policy();
        for _ in 0..3 {
            drop(t.start_request(9, &p).unwrap());
        }
        let verdicts: Vec<Option<u32>> = (0..6)
            .map(|_| t.start_request(9, &p).unwrap_err().escalate)
            .collect();
        // Refusals 1..=3 without (3 connection refusals would count too).
        assert_eq!(verdicts, vec![None, None, None, Some(4), None, None]);
    }

    #[test]
    fn table_is_bounded_and_idle_circuits_are_forgotten() {
        let t = CircuitTable::new(Arc::default());
        let p = Policy {
            rate: 0.0,
            max_circuits: 1,
            ..policy()
        };
        // One per shard at most: hold connections on many ids.
        let mut held = Vec::new();
        let mut refused = 0;
        for id in 0..200 {
            match t.open_connection(id, &p) {
                Ok(g) => held.push(g),
                Err(e) => {
                    assert_eq!(e.reason, RejectReason::CircuitTableFull);
                    refused += 1;
                }
            }
        }
        assert_eq!(held.len(), SHARDS);
        assert_eq!(refused, 200 - SHARDS);
        drop(held);
        t.sweep(&p);
        assert_eq!(t.len(), 0);
        // Freed slots are usable again.
        assert!(t.open_connection(5, &p).is_ok());
    }
}
