//! Metrics through an authenticated onion service.
//!
//! tor's MetricsPort data must not reach strangers, and a public HTTPS
//! endpoint is one more thing to secure. The alternative tor itself offers:
//! publish the metrics endpoint as an onion service that only holders of a
//! client-authorization key can even find (its descriptor is encrypted to
//! them), and let Prometheus reach it through a local tor.
//!
//! - [`expose`] (`onionwatch expose-onion`) adds that onion service with
//!   `ADD_ONION … ClientAuthV3=` on the monitored host's tor, keeping its
//!   keys in a directory so the address survives restarts, and returns the
//!   line to give the Prometheus side.
//! - [`ScrapeProxy`] (`onionwatch scrape-gateway`) runs beside Prometheus:
//!   it registers the key with `ONION_CLIENT_AUTH_ADD` on a local tor and
//!   forwards each plain-HTTP scrape through tor's SOCKS port.

mod keys;
mod onion;
mod proxy;

pub use keys::{ClientKey, KeyError};
pub use onion::{expose, ExposeError, Exposed};
pub use proxy::{ScrapeProxy, ScrapeProxyError};
