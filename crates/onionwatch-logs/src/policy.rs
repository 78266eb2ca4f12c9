//! The abusive-circuit policy: which onion circuits send too many requests,
//! fed one access-log record at a time.
//!
//! [`Policy::observe`] takes a circuit id and the record's own time (Unix
//! seconds from the log line, so a replay of a log gives the same decisions
//! as the live run) and returns a [`Decision`] when that record makes the
//! circuit abusive. The policy only decides, counts and logs; acting on a
//! decision (sending `CLOSECIRCUIT` to tor) is [`guard`](crate::guard)'s
//! job, so the policy stays a pure function of the records it is fed.
//!
//! ```yaml
//! max_requests: 300          # more than this many requests of one circuit…
//! window_secs: 60            # …within this many seconds is abusive
//! action: close              # log (default) | alert | close
//! i_understand_closing_circuits: true   # required by `action: close`
//! cooldown_secs: 300         # one decision per circuit per cool-down
//! allow: [17, 42]            # circuit ids never acted on
//! dry_run: false             # decide and log, but mark decisions as not to be executed
//! max_tracked_circuits: 100000
//! trust_circuit_header: false   # see "Where circuit ids come from"
//! ```
//!
//! **Window.** A circuit's window starts at its first request and lasts
//! `window_secs`; a request at or after its end starts a new window (the
//! same fixed windows as the gateway's escalation). The request that makes
//! the count exceed `max_requests` gives at most one decision per window,
//! and none while the circuit is in its cool-down. A circuit can therefore
//! send up to twice `max_requests` across a window boundary before it is
//! caught: choose the limit with that in mind.
//!
//! **Time** is per circuit and never goes backwards: a record older than the
//! circuit's newest one (lines written out of order, a clock stepped back)
//! counts at that newest time. A wild timestamp thus only affects the
//! circuit on whose line it is (a time far ahead can also make the few
//! circuits seen least recently be forgotten early: their counts restart).
//!
//! **Memory is bounded**: a circuit is forgotten once its window is over
//! and it is not in a cool-down (by log time: the time of the records
//! that follow), and at most [`PolicyConfig::max_tracked_circuits`]
//! circuits are tracked (about 100 bytes each); a new circuit beyond that
//! evicts the one seen least recently (and with it its cool-down). Circuits
//! on the allow list and the id 0 (tor's "no circuit") are never tracked.
//!
//! **Where circuit ids come from.** A record's circuit id is read from the
//! address tor wrote (`$proxy_protocol_addr`, else `$remote_addr`, with
//! `HiddenServiceExportCircuitID`), and only when neither holds one from
//! the `$http_x_onion_circuitid` header (see
//! [`AccessRecord::circuit`]). Any client can send that header with any
//! value, so by default an id from it is counted apart from the ids tor
//! wrote (a forged `X-Onion-CircuitID: 7` never adds to circuit 7's
//! requests) and is **never closed**: its `close` decision is logged,
//! counted (`onionwatch_log_abusive_circuits_untrusted_total`) and not
//! executed. Set `trust_circuit_header: true` only when every request
//! reaches nginx through a proxy that replaces the header with the real
//! circuit id, such as `onionwatch gateway`; header ids are then treated
//! like the ids tor wrote.
//!
//! **Circuit ids** are per tor process (they restart at 1 when tor
//! restarts, and two tors hand out the same numbers), so a circuit is
//! tracked per tor: [`Policy::observe_on`] takes the tor (a small number
//! the caller gives each tor of the log, such as the softmap worker whose
//! listener served the request; 0 for "the only tor, or not known"), and
//! circuit 48 of worker 1 and circuit 48 of worker 2 are two circuits with
//! windows of their own. Allow-list entries apply on every tor and are
//! only meaningful until that tor restarts.
//!
//! Every decision is logged through `tracing` with its reason (`log`: INFO,
//! `alert` and `close`: WARN). [`PolicyCounters`] holds the numbers for
//! metrics, as families from [`PolicyCounters::to_families`] without circuit
//! ids as labels.
//!
//! ```
//! use onionwatch_logs::policy::{Action, Policy, PolicyConfig};
//! use onionwatch_tor::circuit_id::CircuitId;
//!
//! let config = PolicyConfig { max_requests: 2, window_secs: 10, ..PolicyConfig::default() };
//! let mut policy = Policy::new(config).unwrap();
//! assert!(policy.observe(CircuitId(7), 100).is_none());
//! assert!(policy.observe(CircuitId(7), 101).is_none());
//! let d = policy.observe(CircuitId(7), 102).unwrap();
//! assert_eq!((d.circuit, d.action, d.requests), (CircuitId(7), Action::Log, 3));
//! assert_eq!(policy.counters().decisions(Action::Log), 1);
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use onionwatch_metrics::{Family, MetricType};
use onionwatch_tor::circuit_id::CircuitId;
use serde::{Deserialize, Serialize};

use crate::access::{AccessRecord, CircuitSource};

/// What to do with an abusive circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Log the decision (INFO) and count it. The default.
    #[default]
    Log,
    /// Log the decision as a warning and count it, for log- or
    /// metric-based alerting.
    Alert,
    /// Log (WARN), count, and have the caller close the circuit with
    /// `CLOSECIRCUIT` on the onion-service tor's control port. Needs
    /// [`PolicyConfig::i_understand_closing_circuits`].
    Close,
}

impl Action {
    /// Every action, in label order.
    pub const ALL: [Action; 3] = [Action::Log, Action::Alert, Action::Close];

    /// The configuration spelling and the `action` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Alert => "alert",
            Action::Close => "close",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy's configuration; every field is optional. Check it with
/// [`PolicyConfig::validate`] (done by [`Policy::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Requests one circuit may make within `window_secs`; the request after
    /// that makes it abusive. 1 to 1,000,000. Default 300.
    #[serde(default = "default_max_requests")]
    pub max_requests: u32,
    /// Length of a circuit's window in seconds, 1 to 604,800 (a week).
    /// Default 60.
    #[serde(default = "default_window_secs")]
    pub window_secs: u32,
    /// What to do with an abusive circuit: `log`, `alert` or `close`.
    /// Default `log`.
    #[serde(default)]
    pub action: Action,
    /// Must be `true` for `action: close`: closing a circuit cuts off a Tor
    /// user (or a whole shared exit of users behind one circuit) and cannot
    /// be undone, so the word `close` alone is refused as a likely typo or
    /// copy-paste. Ignored for other actions. Default `false`.
    #[serde(default)]
    pub i_understand_closing_circuits: bool,
    /// Circuit ids never acted on (e.g. a monitoring client's circuits).
    /// Ids are per tor process: they mean nothing after tor restarts.
    /// Default empty.
    #[serde(default)]
    pub allow: Vec<u32>,
    /// Seconds after a decision during which the same circuit gets no new
    /// decision, 1 to 31,536,000 (a year). Default 300.
    #[serde(default = "default_cooldown_secs")]
    pub cooldown_secs: u32,
    /// Decide, count and log as usual, but mark every decision as a dry run
    /// so that nothing is executed (no `CLOSECIRCUIT`). Default `false`.
    #[serde(default)]
    pub dry_run: bool,
    /// Most circuits tracked at once, 1 to 10,000,000; beyond that the
    /// circuit seen least recently is forgotten. Default 100,000 (about
    /// 10 MB).
    #[serde(default = "default_max_tracked_circuits")]
    pub max_tracked_circuits: usize,
    /// Treat circuit ids read from the `$http_x_onion_circuitid` header
    /// like the ones tor wrote into the address: count them together and
    /// let `action: close` close them. Only for logs of an nginx that every
    /// request reaches through a proxy replacing that header with the real
    /// circuit id (`onionwatch gateway`); otherwise any client could name
    /// the circuit to close. Default `false`: header ids are counted apart
    /// and never closed.
    #[serde(default)]
    pub trust_circuit_header: bool,
}

fn default_max_requests() -> u32 {
    300
}
fn default_window_secs() -> u32 {
    60
}
fn default_cooldown_secs() -> u32 {
    300
}
fn default_max_tracked_circuits() -> usize {
    100_000
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            max_requests: default_max_requests(),
            window_secs: default_window_secs(),
            action: Action::default(),
            i_understand_closing_circuits: false,
            allow: Vec::new(),
            cooldown_secs: default_cooldown_secs(),
            dry_run: false,
            max_tracked_circuits: default_max_tracked_circuits(),
            trust_circuit_header: false,
        }
    }
}

/// A configuration value out of range; the message names the field and
/// what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid abusive-circuit policy: {0}")]
pub struct PolicyConfigError(pub String);

fn in_range<T: PartialOrd + fmt::Display>(
    field: &str,
    v: T,
    min: T,
    max: T,
) -> Result<(), PolicyConfigError> {
    if v < min || v > max {
        return Err(PolicyConfigError(format!(
            "{field} must be between {min} and {max}, got {v}"
        )));
    }
    Ok(())
}

/// A policy file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The file could not be read.
    #[error("cannot read the policy file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a policy (YAML syntax, an unknown field, a wrong type).
    #[error("invalid policy file {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the YAML reader found (boxed: it is large).
        source: Box<serde_saphyr::Error>,
    },
    /// A value is out of range.
    #[error("invalid policy file {}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which value and what to write instead.
        source: PolicyConfigError,
    },
}

impl PolicyConfig {
    /// Read a policy file (YAML, the fields of [`PolicyConfig`]) and
    /// [validate](PolicyConfig::validate) it.
    pub fn load(path: &Path) -> Result<PolicyConfig, PolicyLoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyLoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let policy: PolicyConfig =
            serde_saphyr::from_str(&text).map_err(|source| PolicyLoadError::Parse {
                path: path.to_owned(),
                source: Box::new(source),
            })?;
        policy
            .validate()
            .map_err(|source| PolicyLoadError::Invalid {
                path: path.to_owned(),
                source,
            })?;
        Ok(policy)
    }

    /// Check the values the types alone do not restrict.
    pub fn validate(&self) -> Result<(), PolicyConfigError> {
        in_range("max_requests", self.max_requests, 1, 1_000_000)?;
        in_range("window_secs", self.window_secs, 1, 604_800)?;
        in_range("cooldown_secs", self.cooldown_secs, 1, 31_536_000)?;
        in_range(
            "max_tracked_circuits",
            self.max_tracked_circuits,
            1,
            10_000_000,
        )?;
        if self.action == Action::Close && !self.i_understand_closing_circuits {
            return Err(PolicyConfigError(
                "action: close sends CLOSECIRCUIT to tor and cuts off Tor users; confirm it with \
                 `i_understand_closing_circuits: true` (or use action: alert, or dry_run: true first)"
                    .into(),
            ));
        }
        if self.allow.contains(&0) {
            return Err(PolicyConfigError(
                "allow: 0 is not a circuit id (tor uses it for streams without a circuit)".into(),
            ));
        }
        Ok(())
    }
}

/// One circuit found abusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The circuit (of the tor `worker` names).
    pub circuit: CircuitId,
    /// The tor it belongs to, as given to [`Policy::observe_on`] (0 from
    /// [`Policy::observe`]): the caller closes the circuit there and
    /// nowhere else.
    pub worker: u32,
    /// Where the circuit id was read.
    pub source: CircuitSource,
    /// The circuit may be closed: its id comes from the address tor wrote,
    /// or from the header with [`PolicyConfig::trust_circuit_header`].
    pub closable: bool,
    /// The configured action.
    pub action: Action,
    /// The policy is in dry-run mode: log only, execute nothing.
    pub dry_run: bool,
    /// Requests counted in the circuit's window (`max_requests + 1`).
    pub requests: u32,
    /// Time of the record that decided (Unix seconds, the circuit's clock).
    pub time: i64,
    /// Why, for humans and logs.
    pub reason: String,
}

impl Decision {
    /// The circuit should now be closed (`close`, not a dry run, and an id
    /// that may be closed).
    pub fn should_close(&self) -> bool {
        self.action == Action::Close && !self.dry_run && self.closable
    }
}

/// Counts of a [`Policy`], for metrics and JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyCounters {
    /// Records counted against a tracked circuit (not allow-listed, not
    /// circuit 0).
    pub records: u64,
    /// Records given to [`Policy::observe_record`] without a circuit id, or
    /// with circuit 0.
    pub records_without_circuit: u64,
    /// Records given to [`Policy::observe_record`] without a time.
    pub records_without_time: u64,
    /// Records of allow-listed circuits (not tracked).
    pub records_allowed: u64,
    /// Records older than their circuit's newest record (counted at that
    /// newest time).
    pub records_out_of_order: u64,
    decisions: [u64; Action::ALL.len()],
    /// Decisions made in dry-run mode (also counted by action).
    pub dry_run_decisions: u64,
    /// Records whose circuit id came from the `$http_x_onion_circuitid`
    /// header (also counted in `records`, `records_allowed`...).
    pub records_from_header: u64,
    /// `close` decisions not to be executed because their circuit id came
    /// from the header and [`PolicyConfig::trust_circuit_header`] is off
    /// (also counted by action).
    pub untrusted_not_closed: u64,
    /// Windows in which a circuit exceeded the limit during its cool-down
    /// (no decision).
    pub suppressed_by_cooldown: u64,
    /// Circuits forgotten because `max_tracked_circuits` were tracked.
    pub evicted_circuits: u64,
    /// Circuits tracked now.
    pub tracked_circuits: u64,
}

impl PolicyCounters {
    /// Decisions made with `action` (dry runs included).
    pub fn decisions(&self, action: Action) -> u64 {
        self.decisions[action.index()]
    }

    /// The counters as metric families (`onionwatch_log_abusive_circuits_total{action}`
    /// and friends), with a `project` label when given; never a circuit id.
    pub fn to_families(&self, project: Option<&str>) -> Vec<Family> {
        let project: Vec<(&str, &str)> = project.map(|p| ("project", p)).into_iter().collect();
        let mut abusive = Family::counter(
            "onionwatch_log_abusive_circuits",
            "Circuits found abusive by the policy, by configured action (dry runs included).",
        );
        for a in Action::ALL {
            let mut labels = project.clone();
            labels.push(("action", a.as_str()));
            abusive.push(&labels, self.decisions(a) as f64);
        }
        let mut out = vec![abusive];
        for (name, kind, help, value) in [
            (
                "onionwatch_log_abusive_circuits_dry_run",
                MetricType::Counter,
                "Abusive-circuit decisions made in dry-run mode (not executed).",
                self.dry_run_decisions,
            ),
            (
                "onionwatch_log_abusive_circuits_untrusted",
                MetricType::Counter,
                "Close decisions not executed because the circuit id came from the X-Onion-CircuitID header, which clients can set (trust_circuit_header is off).",
                self.untrusted_not_closed,
            ),
            (
                "onionwatch_log_abusive_circuits_suppressed",
                MetricType::Counter,
                "Windows in which a circuit exceeded the limit again during its cool-down.",
                self.suppressed_by_cooldown,
            ),
            (
                "onionwatch_log_policy_tracked_circuits",
                MetricType::Gauge,
                "Circuits tracked by the abusive-circuit policy.",
                self.tracked_circuits,
            ),
            (
                "onionwatch_log_policy_evicted_circuits",
                MetricType::Counter,
                "Circuits forgotten by the policy because max_tracked_circuits were tracked.",
                self.evicted_circuits,
            ),
        ] {
            let mut f = Family::new(name, help, kind);
            f.push(&project, value as f64);
            out.push(f);
        }
        out
    }
}

#[derive(Debug, Clone)]
struct CircuitState {
    window_start: i64,
    last: i64,
    requests: u32,
    /// A decision was made in this window.
    decided: bool,
    /// A suppression was counted in this window.
    suppressed: bool,
    acted_at: Option<i64>,
    /// Position in the recency order.
    seq: u64,
}

/// The abusive-circuit policy over one project's access log, circuits
/// tracked per tor ([`Policy::observe_on`]); see the module documentation.
#[derive(Debug, Clone)]
pub struct Policy {
    config: PolicyConfig,
    allow: HashSet<u32>,
    /// Keyed by [`key`]: ids from an untrusted header apart from tor's.
    circuits: HashMap<u64, CircuitState>,
    /// Recency order: sequence number → circuit key; the first is the least
    /// recently seen.
    recency: BTreeMap<u64, u64>,
    next_seq: u64,
    counters: PolicyCounters,
}

impl Policy {
    /// A policy with a validated configuration.
    pub fn new(config: PolicyConfig) -> Result<Policy, PolicyConfigError> {
        config.validate()?;
        Ok(Policy {
            allow: config.allow.iter().copied().collect(),
            config,
            circuits: HashMap::new(),
            recency: BTreeMap::new(),
            next_seq: 0,
            counters: PolicyCounters::default(),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The counters so far.
    pub fn counters(&self) -> &PolicyCounters {
        &self.counters
    }

    /// Observe a parsed access-log record: its circuit id (and where it
    /// was read, [`AccessRecord::circuit`]) and its time. Records without
    /// either are counted and otherwise ignored.
    pub fn observe_record(&mut self, rec: &AccessRecord<'_>) -> Option<Decision> {
        let Some((circuit, source)) = rec.circuit() else {
            self.counters.records_without_circuit += 1;
            return None;
        };
        let Some(time) = rec.time else {
            self.counters.records_without_time += 1;
            return None;
        };
        self.observe_from(circuit, source, time)
    }

    /// Observe one request of `circuit`, an id tor wrote into the address,
    /// at `time` (Unix seconds, from the log line); a [`Decision`] when this
    /// request makes the circuit abusive. Logs the decision with its reason.
    pub fn observe(&mut self, circuit: CircuitId, time: i64) -> Option<Decision> {
        self.observe_from(circuit, CircuitSource::Address, time)
    }

    /// [`Policy::observe`] for an id read from `source`: ids from the
    /// header are counted apart and never closed unless
    /// [`PolicyConfig::trust_circuit_header`] is set.
    pub fn observe_from(
        &mut self,
        circuit: CircuitId,
        source: CircuitSource,
        time: i64,
    ) -> Option<Decision> {
        self.observe_on(0, circuit, source, time)
    }

    /// [`Policy::observe_from`] for a circuit of tor `worker`: circuit ids
    /// are per tor, so the same id on two workers is two circuits, counted
    /// and decided apart. Workers are numbered by the caller; the number is
    /// carried to [`Decision::worker`].
    pub fn observe_on(
        &mut self,
        worker: u32,
        circuit: CircuitId,
        source: CircuitSource,
        time: i64,
    ) -> Option<Decision> {
        if circuit.0 == 0 {
            self.counters.records_without_circuit += 1;
            return None;
        }
        if source == CircuitSource::Header {
            self.counters.records_from_header += 1;
        }
        if self.allow.contains(&circuit.0) {
            self.counters.records_allowed += 1;
            return None;
        }
        let trusted = source == CircuitSource::Address || self.config.trust_circuit_header;
        let key = key(worker, circuit, trusted);
        self.counters.records += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.forget_idle(time);
        if !self.circuits.contains_key(&key) {
            self.make_room();
        }
        let state = self.circuits.entry(key).or_insert_with(|| CircuitState {
            window_start: time,
            last: time,
            requests: 0,
            decided: false,
            suppressed: false,
            acted_at: None,
            seq,
        });
        self.recency.remove(&state.seq);
        state.seq = seq;
        self.recency.insert(seq, key);
        self.counters.tracked_circuits = self.circuits.len() as u64;

        let state = self.circuits.get_mut(&key)?;
        if time < state.last {
            self.counters.records_out_of_order += 1;
        }
        let now = time.max(state.last);
        state.last = now;
        if now.saturating_sub(state.window_start) >= i64::from(self.config.window_secs) {
            state.window_start = now;
            state.requests = 0;
            state.decided = false;
            state.suppressed = false;
        }
        state.requests = state.requests.saturating_add(1);
        if state.requests <= self.config.max_requests || state.decided {
            return None;
        }
        if let Some(at) = state.acted_at {
            if now.saturating_sub(at) < i64::from(self.config.cooldown_secs) {
                if !state.suppressed {
                    state.suppressed = true;
                    self.counters.suppressed_by_cooldown += 1;
                    tracing::debug!(
                        circuit = circuit.0,
                        "circuit exceeded the request limit again during its cool-down"
                    );
                }
                return None;
            }
        }
        state.decided = true;
        state.acted_at = Some(now);
        let decision = Decision {
            circuit,
            worker,
            source,
            closable: trusted,
            action: self.config.action,
            dry_run: self.config.dry_run,
            requests: state.requests,
            time: now,
            reason: format!(
                "{} requests in {} s, more than the {} allowed per {} s",
                state.requests,
                now.saturating_sub(state.window_start),
                self.config.max_requests,
                self.config.window_secs
            ),
        };
        self.counters.decisions[decision.action.index()] += 1;
        if decision.dry_run {
            self.counters.dry_run_decisions += 1;
        }
        if decision.action == Action::Close && !decision.closable {
            self.counters.untrusted_not_closed += 1;
        }
        log_decision(&decision);
        Some(decision)
    }

    /// Forget the least recently seen circuits whose state no longer
    /// matters at `now`: their window is over and they are not in a
    /// cool-down, so a new request would start them afresh anyway. Without
    /// this, idle circuits stayed until `max_tracked_circuits` were tracked
    /// (per project in `watch`: 20 projects, 200 MB; found by scripts/soak).
    /// A few per record, so each costs O(log n) and idle circuits leave as
    /// fast as new ones come; one in its cool-down goes behind the others.
    fn forget_idle(&mut self, now: i64) {
        for _ in 0..IDLE_CHECKS_PER_RECORD {
            let Some((&seq, &key)) = self.recency.first_key_value() else {
                return;
            };
            let Some(state) = self.circuits.get_mut(&key) else {
                self.recency.remove(&seq);
                continue;
            };
            if now.saturating_sub(state.window_start) < i64::from(self.config.window_secs) {
                return;
            }
            self.recency.remove(&seq);
            let cooling = state
                .acted_at
                .is_some_and(|at| now.saturating_sub(at) < i64::from(self.config.cooldown_secs));
            if cooling {
                state.seq = self.next_seq;
                self.next_seq += 1;
                self.recency.insert(state.seq, key);
            } else {
                self.circuits.remove(&key);
            }
        }
    }

    /// Forget the least recently seen circuit if the table is full.
    fn make_room(&mut self) {
        while self.circuits.len() >= self.config.max_tracked_circuits {
            let Some((_, oldest)) = self.recency.pop_first() else {
                return;
            };
            self.circuits.remove(&oldest);
            self.counters.evicted_circuits += 1;
        }
    }
}

/// Least recently seen circuits [`Policy::forget_idle`] looks at per record.
const IDLE_CHECKS_PER_RECORD: usize = 4;

/// The tracking key of a circuit: its tor (bits 33 and up; 31 bits are
/// plenty for workers), and ids from an untrusted header apart (bit 32
/// set), so forged ones never add to a real circuit's count.
fn key(worker: u32, circuit: CircuitId, trusted: bool) -> u64 {
    u64::from(circuit.0) | u64::from(!trusted) << 32 | u64::from(worker & 0x7fff_ffff) << 33
}

fn log_decision(d: &Decision) {
    let circuit = d.circuit.0;
    let action = d.action.as_str();
    let source = d.source.as_str();
    let dry = if d.dry_run { "dry run: " } else { "" };
    if d.action == Action::Close && !d.closable {
        tracing::warn!(
            circuit,
            action,
            source,
            dry_run = d.dry_run,
            "{dry}abusive circuit {circuit}, not closing it: its id comes from the \
             X-Onion-CircuitID header, which any client can set (set trust_circuit_header: true \
             only if a proxy such as onionwatch gateway sets it): {}",
            d.reason
        );
        return;
    }
    match d.action {
        Action::Log => {
            tracing::info!(
                circuit,
                action,
                dry_run = d.dry_run,
                "{dry}abusive circuit {circuit}: {}",
                d.reason
            )
        }
        Action::Alert => {
            tracing::warn!(
                circuit,
                action,
                dry_run = d.dry_run,
                "{dry}abusive circuit {circuit}: {}",
                d.reason
            )
        }
        Action::Close => tracing::warn!(
            circuit,
            action,
            dry_run = d.dry_run,
            "{dry}abusive circuit {circuit}, {}: {}",
            if d.dry_run {
                "would close it"
            } else {
                "closing it"
            },
            d.reason
        ),
    }
}

#[cfg(test)]
mod tests;
