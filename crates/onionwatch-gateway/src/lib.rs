//! `onionwatch gateway`: a circuit-aware reverse proxy for onion services.
//!
//! Placed where tor's `HiddenServicePort` points, with
//! `HiddenServiceExportCircuitID haproxy` set, it:
//!
//! - reads the PROXY v1 header tor sends on every connection (required by
//!   default; bounded in time and size) and decodes the circuit id;
//! - forwards HTTP/1.1 to the upstream (TCP or unix socket), keep-alive on
//!   both sides, streaming bodies, `Upgrade`/WebSocket tunnels;
//! - adds `X-Onion-CircuitID: <decimal id>` upstream and removes any header
//!   of that name the client sent (every spelling);
//! - answers `400` without forwarding to a request with no `Host`, more
//!   than one, or one that is not `host[:port]` (RFC 9112 §3.2). An HTTP/1.0
//!   request without `Host` is refused too rather than given the upstream's
//!   address, which would route it to the upstream's default virtual host;
//! - bounds every wait on a client (PROXY header, request head and idle
//!   keep-alive, pauses in a request body, responses left unread) and the
//!   size of request heads, and caps connections per circuit by default, so
//!   that a few slow circuits cannot hold every connection;
//! - limits each circuit (token bucket, connections, requests in flight),
//!   answering `429` with `Retry-After`, and can escalate sustained abuse to
//!   `CLOSECIRCUIT` on tor's control port (opt-in, logged, with cool-down).
//!   A PROXY header names the circuit, so escalation on a non-loopback TCP
//!   listener requires `trusted_proxy_sources`; other sources are refused;
//! - counts everything in [`Metrics`] (no circuit ids as labels), an
//!   [`onionwatch_metrics::Collect`] source for the shared endpoint.
//!
//! ```no_run
//! # async fn demo() -> Result<(), onionwatch_gateway::Error> {
//! use onionwatch_gateway::{Config, Gateway};
//! let config = Config::from_yaml("listen: 127.0.0.1:8080\nupstream: 127.0.0.1:3000\nlimits:\n  rate: 5\n")
//!     .expect("valid configuration");
//! let gateway = Gateway::bind(config).await?;
//! let handle = gateway.handle(); // reload(), shutdown(), metrics()
//! gateway.run().await?;
//! # drop(handle); Ok(()) }
//! ```

mod body;
pub mod config;
mod error;
mod escalate;
mod io;
mod limiter;
pub mod metrics;
mod server;
mod timer;

pub use config::{Config, Escalation, IpCidr, Limits, ListenAddr, ProxyProtocol, UpstreamAddr};
pub use error::{ConfigError, Error};
pub use escalate::EscalationEvent;
pub use metrics::{EscalationResult, Metrics, RejectReason};
/// For the fuzz targets (`fuzz/`) and their smoke tests; not a stable API.
#[doc(hidden)]
pub use server::fuzzing;
pub use server::{Gateway, GatewayHandle};
