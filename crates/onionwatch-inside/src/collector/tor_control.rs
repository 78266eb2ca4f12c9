//! The tor control-port collector: bootstrap progress, version, number of
//! onion services and circuit counts by status and purpose (never circuit
//! ids: they identify clients' circuits).

use std::collections::BTreeMap;
use std::time::Duration;

use onionwatch_metrics::Family;
use onionwatch_tor::control::{
    ConnectOptions, ControlAddr, ControlClient, ControlError, ControlTarget,
};
use tokio::sync::Mutex;

use onionwatch_onionspray::torrc::Listen;
use onionwatch_onionspray::tree::TorInstance;

use super::{Collector, Endpoint, Scrape};
use crate::names;

/// What one control-port scrape learnt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlFacts {
    /// Bootstrap progress, 0 to 100.
    pub bootstrap_percent: u8,
    /// `GETINFO version`.
    pub version: String,
    /// Onion services: `HiddenServiceDir`s of the configuration plus
    /// services added over the control port.
    pub onion_services: usize,
    /// Circuits by (status, purpose).
    pub circuits: BTreeMap<(String, String), usize>,
}

/// One tor's control connection, kept open between scrapes and opened
/// again after a failure.
#[derive(Debug)]
pub struct ControlSource {
    target: ControlTarget,
    timeout: Duration,
    client: Mutex<Option<ControlClient>>,
}

impl ControlSource {
    /// A source for `target`.
    pub fn new(target: ControlTarget, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            client: Mutex::new(None),
        }
    }

    /// Ask tor for the facts; reconnects if the connection is gone.
    pub async fn scrape(&self) -> Result<ControlFacts, ControlError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_none_or(ControlClient::is_closed) {
            let opts = ConnectOptions {
                timeout: self.timeout,
                command_timeout: Some(self.timeout),
                ..ConnectOptions::default()
            };
            let (client, _events) = self.target.connect(opts).await?;
            *guard = Some(client);
        }
        let client = guard.as_ref().expect("connected above");
        let result = facts(client).await;
        if result.is_err() {
            *guard = None;
        }
        result
    }
}

/// The collector of one tor's control port.
#[derive(Debug)]
pub struct TorControl {
    source: ControlSource,
    project: String,
    tor_instance: String,
}

impl TorControl {
    /// Scrape through `source`, labelling the families with `project` and
    /// `tor_instance`.
    pub fn new(source: ControlSource, project: String, tor_instance: String) -> Self {
        Self {
            source,
            project,
            tor_instance,
        }
    }
}

impl Collector for TorControl {
    fn scrape(&self) -> Scrape<'_> {
        Box::pin(async move {
            let facts = self.source.scrape().await?;
            Ok(families(&self.project, &self.tor_instance, &facts))
        })
    }
}

/// The control port (and cookie) of a tor found in an Onionspray tree.
pub fn from_tor(t: &TorInstance) -> Option<Endpoint> {
    let addr = match t.control_port()? {
        Listen::Unix(path) => ControlAddr::Unix(path),
        l => ControlAddr::Tcp(super::tcp(&l)?),
    };
    Some(Endpoint::Control(ControlTarget {
        control_port: addr,
        control_password: None,
        control_cookie: t.cookie_file(),
    }))
}

async fn facts(tor: &ControlClient) -> Result<ControlFacts, ControlError> {
    let bootstrap = tor.bootstrap_phase().await?;
    let version = tor.get_info_one("version").await?;
    let configured = tor
        .get_conf(&["HiddenServiceOptions"])
        .await?
        .iter()
        .filter(|(k, v)| k.eq_ignore_ascii_case("HiddenServiceDir") && v.is_some())
        .count();
    let added = tor.onions_current().await?.len();
    let mut circuits = BTreeMap::new();
    for c in tor.circuit_status().await? {
        let purpose = c.purpose.unwrap_or_else(|| "GENERAL".into());
        *circuits
            .entry((c.status.as_str().to_owned(), purpose))
            .or_default() += 1;
    }
    Ok(ControlFacts {
        bootstrap_percent: bootstrap.progress,
        version: version.split_whitespace().next().unwrap_or("").to_owned(),
        onion_services: configured + added,
        circuits,
    })
}

/// The families of one tor's facts.
pub fn families(project: &str, tor_instance: &str, f: &ControlFacts) -> Vec<Family> {
    let l = [("project", project), ("tor_instance", tor_instance)];
    let mut boot = Family::gauge(
        names::TOR_BOOTSTRAP_PERCENT,
        "Bootstrap progress of the tor hosting the onion services (100 = done), from its control port.",
    );
    boot.push(&l, f.bootstrap_percent as f64);
    let mut version = Family::info(
        names::TOR_VERSION,
        "Version of the tor hosting the onion services.",
    );
    version.push(&[l[0], l[1], ("version", &f.version)], 1.0);
    let mut services = Family::gauge(
        names::TOR_ONION_SERVICES,
        "Onion services this tor hosts (configured and added over the control port).",
    );
    services.push(&l, f.onion_services as f64);
    let mut circuits = Family::gauge(
        names::TOR_CIRCUITS,
        "Circuits of this tor by status and purpose, from GETINFO circuit-status.",
    );
    for ((status, purpose), n) in &f.circuits {
        circuits.push(
            &[l[0], l[1], ("status", status), ("purpose", purpose)],
            *n as f64,
        );
    }
    vec![boot, version, services, circuits]
}
