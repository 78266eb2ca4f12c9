//! The collectors of `onionwatch watch`, one file each behind the
//! [`Collector`] trait (like node_exporter's `collector/` directory).
//!
//! A collector scrapes one target and returns its families, already
//! labelled with the target's `project` (and `tor_instance`). The watch
//! runtime ([`crate::watch`]) knows only the trait: it runs each target's
//! collector on the interval, bounds it by the timeout, and caches the
//! result.
//!
//! Adding a collector: a file here with a type implementing [`Collector`],
//! and its registration below: a variant of [`Endpoint`] (what it
//! scrapes) and of [`Kind`] (its `collector` label), its arm in [`start`]
//! and, to find its targets in Onionspray trees, its function in
//! [`FROM_TOR`] or [`FROM_PROJECT`]. Targets given by hand come from the
//! flags and YAML fields of [`crate::targets`].

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use onionwatch_metrics::Family;
use onionwatch_onionspray::torrc::Listen;
use onionwatch_onionspray::tree::{Project, TorInstance};
use onionwatch_tor::control::ControlTarget;
use serde::Serialize;

use crate::http::HttpUrl;
use crate::targets::Target;

pub mod nginx;
pub mod tor_control;
pub mod tor_metrics;

/// Why a scrape failed; its text is the target's `last_error`.
pub type ScrapeError = Box<dyn std::error::Error + Send + Sync>;

/// One scrape in progress.
pub type Scrape<'a> = Pin<Box<dyn Future<Output = Result<Vec<Family>, ScrapeError>> + Send + 'a>>;

/// Scrapes one target.
pub trait Collector: Send + Sync {
    /// Scrape once: the target's families, labelled. The caller bounds the
    /// time.
    fn scrape(&self) -> Scrape<'_>;

    /// The families to export while the target is down (default: none).
    fn down(&self) -> Vec<Family> {
        Vec::new()
    }
}

/// Which collector scrapes a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// tor's MetricsPort.
    TorMetrics,
    /// tor's control port.
    TorControl,
    /// nginx `stub_status`.
    Nginx,
}

impl Kind {
    /// The `collector` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TorMetrics => "tor_metrics",
            Kind::TorControl => "tor_control",
            Kind::Nginx => "nginx",
        }
    }
}

/// What to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A MetricsPort.
    Metrics(tor_metrics::MetricsPort),
    /// A control port and its credentials.
    Control(ControlTarget),
    /// A stub_status URL.
    Nginx(HttpUrl),
}

impl Endpoint {
    /// The collector that scrapes it.
    pub fn kind(&self) -> Kind {
        match self {
            Endpoint::Metrics(_) => Kind::TorMetrics,
            Endpoint::Control(..) => Kind::TorControl,
            Endpoint::Nginx(_) => Kind::Nginx,
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Metrics(m) => write!(f, "http://{}/metrics", m.addr),
            Endpoint::Control(t) => write!(f, "{}", t.control_port),
            Endpoint::Nginx(u) => write!(f, "{u}"),
        }
    }
}

/// Families the collectors scraped but did not export, for all targets
/// together (no per-target labels: a hostile target cannot grow the
/// exposition through it). Exported as
/// `onionwatch_scrape_dropped_families_total{reason}` once non-zero.
#[derive(Debug, Default)]
pub struct Dropped {
    /// A MetricsPort's families not named `tor_*`.
    pub not_tor: AtomicU64,
    /// A MetricsPort's families of tor's names but not tor's type.
    pub type_conflict: AtomicU64,
    /// A MetricsPort's families writing samples under one of tor's names.
    pub name_conflict: AtomicU64,
}

/// The collector of `target`; `timeout` bounds the connections it keeps
/// open between scrapes; what it scrapes but does not export is counted in
/// `dropped`.
pub fn start(target: &Target, timeout: Duration, dropped: Arc<Dropped>) -> Box<dyn Collector> {
    let project = target.project.clone();
    let instance = || target.tor_instance.clone().unwrap_or_else(|| "tor".into());
    match &target.endpoint {
        Endpoint::Metrics(port) => Box::new(tor_metrics::TorMetrics::new(
            *port,
            project,
            instance(),
            dropped,
        )),
        Endpoint::Control(t) => Box::new(tor_control::TorControl::new(
            tor_control::ControlSource::new(t.clone(), timeout),
            project,
            instance(),
        )),
        Endpoint::Nginx(url) => Box::new(nginx::Nginx::new(url.clone(), project)),
    }
}

/// What each collector scrapes of a tor found in an Onionspray tree, in
/// this order.
pub const FROM_TOR: &[fn(&TorInstance) -> Option<Endpoint>] =
    &[tor_metrics::from_tor, tor_control::from_tor];

/// What each collector scrapes of an Onionspray project besides its tors.
pub const FROM_PROJECT: &[fn(&Project) -> Option<Endpoint>] = &[nginx::from_project];

/// A TCP listener's address: `localhost` is 127.0.0.1; another host name
/// is not resolved.
fn tcp(l: &Listen) -> Option<SocketAddr> {
    match l {
        Listen::Tcp(a) => Some(*a),
        Listen::Host(h, port) if h.eq_ignore_ascii_case("localhost") => {
            Some(SocketAddr::from(([127, 0, 0, 1], *port)))
        }
        _ => None,
    }
}
