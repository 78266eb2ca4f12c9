//! Tor protocols used by onionwatch.
//!
//! This crate knows how to talk to a `tor` process and nothing about
//! onionwatch's command line, configuration or metrics:
//!
//! - [`socks`]: open a stream through tor's SOCKS5 port, with per-probe
//!   stream isolation and typed errors for tor's extended SOCKS5 replies.
//! - [`control`]: an asynchronous control-port client (authentication,
//!   GETINFO/GETCONF, circuits, onion services, typed events).
//! - [`circuit_id`]: decode the global circuit id that
//!   `HiddenServiceExportCircuitID haproxy` puts in the PROXY source address.
//! - [`proxy`]: parse, read and write PROXY protocol v1 headers.

pub mod circuit_id;
pub mod control;
pub mod proxy;
pub mod socks;
