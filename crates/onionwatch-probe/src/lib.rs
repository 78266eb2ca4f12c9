//! Outside monitoring of onion services: a concurrent, Onionprobe-compatible
//! prober.
//!
//! - [`config`]: Onionprobe 1.4.1's YAML (same keys and defaults), validated
//!   once at load into [`config::Target`]s.
//! - [`address`]: the `-e ADDRESS_OR_URL` syntax (onion service addresses
//!   are [`onionwatch_tor::onion::OnionAddress`]).
//! - [`tor`]: an existing tor, or a launched one with a temporary
//!   DataDirectory; HS_DESC events routed to the probes waiting for them.
//! - [`descriptor`]: the outer descriptor layer and decryption of both
//!   encrypted layers (introduction points, PoW parameters).
//! - [`conn`]: one HTTP(S) or TCP attempt through SOCKS, with timings, TLS
//!   and certificate details.
//! - [`probe`]: the descriptor and connection steps (I/O and retries,
//!   returning typed outcomes), rounds. One private module records those
//!   outcomes into the metrics and the [`ProbeResult`]s.
//! - [`metrics`]: Onionprobe's metric families (names, types, labels) plus
//!   `onionwatch_*` ones, as an [`onionwatch_metrics::Collect`] source:
//!   typed handles in [`metrics::family`] (label counts checked by the
//!   compiler), family names in [`metrics::names`] for readers.
//! - [`runner`]: rounds at an interval, configuration reloads and the
//!   Prometheus exporter around a [`Prober`]; the caller gets the results
//!   through a callback and keeps presentation and signals.
//! - [`output`]: JSON lines, the round table, Nagios verdicts.
//! - [`on_demand`]: `GET /probe?target=…`, probes Prometheus schedules
//!   (the blackbox_exporter model).
//! - [`shard`]: which endpoints of the list one of N probers covers
//!   (rendezvous hashing).

pub mod address;
pub mod config;
pub mod conn;
pub mod descriptor;
pub mod metrics;
pub mod on_demand;
pub mod output;
pub mod probe;
mod record;
pub mod runner;
pub mod shard;
pub mod tor;

pub use config::{Config, ConfigError, Target};
pub use metrics::ProbeMetrics;
pub use probe::{ProbeResult, Prober, Settings};
pub use runner::{Event, Finish, Runner};
pub use tor::{LaunchOptions, Tor, TorError};
