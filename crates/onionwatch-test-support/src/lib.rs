//! Helpers for onionwatch's tests and benchmarks, in one place: every crate
//! takes them as a `dev-dependency` (this crate is never published).
//!
//! - [`golden`]: [`assert_golden`] compares output with a stored file and
//!   shows the lines that differ; [`fixture!`] names a file of the calling
//!   crate's `tests/fixtures/` (the one fixture folder name of the
//!   workspace).
//! - [`fuzz`]: [`fuzz::smoke`] runs a fuzz target's body on its seed corpus
//!   and on deterministic mutations of it, in every `cargo test`.
//! - [`http`]: free ports, `GET` over HTTP/1.0, a loopback server with a
//!   fixed body, an address that refuses connections, polling an endpoint
//!   until an answer is there.
//! - [`recorder`]: [`Recorder`], a loopback HTTP receiver recording each
//!   request, optionally down (`503`) for the first ones.
//! - [`alertmanager`]: [`Alertmanager`], a real Alertmanager on a free
//!   loopback port with a temporary config and storage.
//! - [`smtp`]: [`SmtpSink`], a real SMTP server (aiosmtpd) storing each
//!   message, plain, STARTTLS or implicit TLS, with or without AUTH.
//! - [`echo`]: [`EchoServer`], an upstream that answers with what it
//!   received (the gateway's tests and benchmark).
//! - [`onionspray`]: [`onionspray::SprayTree`], an Onionspray installation
//!   laid out as its templates lay it out (hardmap, softmap, unix sockets,
//!   0700 directories, per-domain and error logs), listing every path.
//! - [`poll`]: [`wait_for`], a bounded poll for conditions with no event to
//!   wait on.
//! - [`notify`]: a fake systemd notification socket (`NOTIFY_SOCKET`).
//! - [`process`], [`fs`]: a child process stopped when a test fails,
//!   appending to logs, copying fixture trees.
//! - [`TOR_METRICSPORT_PAGE`]: a real tor MetricsPort page, the input of
//!   the metrics, inside and `watch` tests.
//!
//! ```
//! use onionwatch_test_support::{serve, get};
//! let addr = serve("up 1\n");
//! assert!(get(addr, "/metrics").ends_with("\r\n\r\nup 1\n"));
//! ```

pub mod alertmanager;
pub mod echo;
pub mod fs;
pub mod fuzz;
pub mod golden;
pub mod http;
pub mod notify;
pub mod onionspray;
pub mod poll;
pub mod process;
pub mod recorder;
pub mod smtp;

pub use alertmanager::Alertmanager;
pub use echo::{EchoAddr, EchoServer};
pub use fs::{append, copy_tree, file_names, mode};
pub use golden::{assert_golden, mask_exporter_families};
pub use http::{
    dead_addr, free_port, get, get_until, json_until, read_response, serve, value, DeadAddr,
};
pub use poll::wait_for;
pub use process::{start_logs, wait_exit, Running};
pub use recorder::{Received, Recorder};
pub use smtp::SmtpSink;

/// A real MetricsPort page of tor 0.4.9.11 hosting two onion services
/// (captured from `onionwatch testnet up --onions 2 --onions-per-tor 2`
/// with curl).
pub const TOR_METRICSPORT_PAGE: &str =
    include_str!("../fixtures/tor-0.4.9-metricsport-2onions.txt");
