//! Tor protocols used by onionwatch.
//!
//! This crate knows how to talk to a `tor` process and nothing about
//! onionwatch's command line, configuration or metrics:
//!
//! - [`socks`]: open a stream through tor's SOCKS5 port, with per-probe
//!   stream isolation and typed errors for tor's extended SOCKS5 replies.
//! - [`control`]: an asynchronous control-port client (authentication,
//!   GETINFO/GETCONF, circuits, onion services, typed events), the
//!   [`control::ControlTarget`] configurations name, and the one
//!   circuit-closing executor ([`control::CloseExecutor`]) shared by the
//!   gateway's escalation and the access-log policy.
//! - [`onion`]: v3 onion service addresses (checksum, service id, identity
//!   key) and tor's base32/base64 text forms.
//! - [`circuit_id`]: decode the global circuit id that
//!   `HiddenServiceExportCircuitID haproxy` puts in the PROXY source address.
//! - [`proxy`]: parse, read and write PROXY protocol v1 headers.
//! - [`persist`]: atomic, durable file writes (temp file, `fsync`, rename,
//!   directory `fsync`) and private modes, for the keys and state files the
//!   crates above this one keep.

pub mod circuit_id;
pub mod control;
pub mod onion;
pub mod persist;
pub mod proxy;
pub mod socks;
