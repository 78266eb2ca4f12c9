//! Tor protocols used by onionwatch.
//!
//! This crate knows how to talk to a `tor` process and nothing about
//! onionwatch's command line, configuration or metrics:
//!
//! - [`socks`]: open a stream through tor's SOCKS5 port, with per-probe
//!   stream isolation and typed errors for tor's extended SOCKS5 replies.

pub mod socks;
