//! Log parsing and analytics for onionwatch.
//!
//! This crate turns log lines into numbers and follows log files; it knows
//! nothing about the command line. Both engines take each access-log line
//! through one step, [`analytics::Analytics::ingest`] (parse, count the
//! record or the parse error by reason):
//!
//! - [`once`]: the one-shot analyser behind `onionwatch logs --once`: plain
//!   or gzip-compressed files, or standard input, read to their end into
//!   one summary.
//! - [`tail`]: follow many files (paths and globs) by polling, across
//!   rename-and-create rotation, copytruncate, deletion and re-creation,
//!   with positions saved in a state file to resume after a restart, and
//!   bounded memory whatever the log rate.
//! - [`follow`]: the follow-mode pipeline: a tailer over every project's
//!   access, tor and onionbalance logs feeding their analytics and severity
//!   counters, exported as metric families.
//! - [`access`]: nginx access logs. A byte-level fast path for the `combined`
//!   format and a general parser compiled from any nginx `log_format` string,
//!   both returning a borrowed [`access::AccessRecord`] without allocating.
//! - [`lines`]: read lines of bounded length from any reader; overlong lines
//!   are reported, never buffered whole.
//! - [`severity`]: count tor and onionbalance log lines by severity and keep
//!   the last warnings and errors.
//! - [`hll`]: a HyperLogLog sketch (exact below 1,024 distinct items, about
//!   0.8 % standard error above).
//! - [`analytics`]: per-stream aggregates fed record by record: requests by
//!   method and status, bytes, durations, unique circuits in sliding windows,
//!   requests per circuit and the busiest circuits.
//! - [`policy`]: the abusive-circuit policy, fed record by record:
//!   too many requests of one circuit in a window give a decision to log,
//!   alert on or close the circuit (executed by [`guard`]); its
//!   configuration is read with [`policy::PolicyConfig::load`].
//! - [`guard`]: the policy applied per project to followed logs, its
//!   `close` decisions executed with `CLOSECIRCUIT` on the project's tor
//!   (through onionwatch-tor's circuit-closing executor) and counted.
//! - [`summary`]: the serialisable [`summary::Summary`], its Prometheus
//!   text rendering and the names of its families ([`summary::family`]).
//! - [`time`]: nginx timestamps to Unix seconds and back to RFC 3339.
//!
//! ```
//! use onionwatch_logs::access::LogFormat;
//! use onionwatch_logs::analytics::Analytics;
//!
//! let format = LogFormat::combined();
//! let mut analytics = Analytics::default();
//! let line = br#"fc00:dead:beef:4dad::0:30 - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8""#;
//! match format.parse(line) {
//!     Ok(record) => analytics.record(&record),
//!     Err(e) => analytics.error(&e),
//! }
//! let summary = analytics.summary();
//! assert_eq!(summary.requests_by_status["200"], 1);
//! assert_eq!(summary.unique_circuits, 1);
//! ```

pub mod access;
pub mod analytics;
pub mod follow;
pub mod guard;
pub mod hll;
pub mod lines;
pub mod once;
pub mod policy;
pub mod severity;
pub mod summary;
pub mod tail;
pub mod time;
