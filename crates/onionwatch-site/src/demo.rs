//! `onionwatch demo`'s site on a private Tor network: `watch`'s site (the
//! same [`Site`]), the network's onion-service tors watched from the inside,
//! its onion services (and an offline one) probed from the outside through
//! its client tor, on one endpoint.
//!
//! Start the network with [`NetworkConfig::demo`](onionwatch_testnet::NetworkConfig::demo)
//! (tor `hs0` hosts a healthy and a slow onion service, the "news" project;
//! `hs1` a failing one, the "shop"), then [`start`] on its [`NetworkInfo`].

use std::path::PathBuf;

use onionwatch_inside::targets::{Flags, Settings};
use onionwatch_probe::Config as ProbeConfig;
use onionwatch_server::EndpointConfig;
use onionwatch_testnet::NetworkInfo;

use crate::{Error, Probing, RunningSite, Site, SiteConfig};

/// A real v3 address (the Tor Project's website) that the private network
/// never publishes: the demo's offline onion service.
pub const OFFLINE: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

/// How the demo serves, besides the network.
#[derive(Debug)]
pub struct DemoConfig {
    /// Seconds between probe rounds and inside scrapes (at least 1).
    pub interval: u64,
    /// Where the dashboard and /metrics listen (checked by the caller first).
    pub endpoint: EndpointConfig,
    /// Keep the dashboard's history here; in memory only if `None`.
    pub state_dir: Option<PathBuf>,
}

/// Build the site as `watch` builds it ([`Site::build`]): the network's
/// onion-service tors watched from the inside and its onion services (and
/// [`OFFLINE`]) probed through its client tor, on one endpoint.
pub async fn start(info: &NetworkInfo, config: DemoConfig) -> Result<RunningSite, Error> {
    let interval = config.interval;
    let (options, warnings) = ProbeConfig::from_yaml(&probe_yaml(info, interval), "demo")?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let site = Site::build(SiteConfig {
        settings: Settings::build(None, &watch_flags(info, interval))?,
        endpoint: config.endpoint,
        policy: None,
        state_dir: config.state_dir,
        probe: Some(Probing {
            options,
            file: None,
            discover: false,
        }),
    })?;
    site.serve().await
}

/// Onionprobe-format configuration for the demo's four endpoints: the
/// network's three onion services and [`OFFLINE`].
fn probe_yaml(info: &NetworkInfo, interval: u64) -> String {
    let mut yaml = format!(
        "launch_tor: false\ntor_address: 127.0.0.1\nsocks_port: {}\ncontrol_port: {}\n\
         loop: true\ninterval: 0\nsleep: {interval}\nshuffle: false\nrandomize: false\n\
         new_circuit: true\ndescriptor_timeout: 30\nhttp_connect_timeout: 30\nhttp_read_timeout: 30\n\
         endpoints:\n",
        info.client.socks.port(),
        info.client.control.port(),
    );
    let names = ["healthy", "slow", "failing"];
    for (name, onion) in names.iter().zip(&info.onions) {
        yaml.push_str(&format!(
            "  {name}:\n    address: '{}'\n    protocol: http\n    port: 80\n    paths:\n      - path: '/'\n        pattern: 'onionwatch testnet backend'\n        allowed_statuses: [200]\n",
            onion.address
        ));
    }
    yaml.push_str(&format!(
        "  offline:\n    address: '{OFFLINE}'\n    protocol: http\n    port: 80\n    paths:\n      - path: '/'\n        allowed_statuses: [200]\n"
    ));
    yaml
}

/// The inside monitor's targets: each onion-service tor is a project, its
/// MetricsPort, control port, notice log and (built-in backends log like
/// nginx, circuit ids included) access logs.
pub fn watch_flags(info: &NetworkInfo, interval: u64) -> Flags {
    let mut flags = Flags {
        interval_seconds: Some(interval as f64),
        timeout_seconds: Some(interval.clamp(1, 5) as f64),
        ..Flags::default()
    };
    for (project, tor) in ["news", "shop"].iter().zip(["hs0", "hs1"]) {
        let mut onions = info.onions.iter().filter(|o| o.tor == tor).peekable();
        let Some(first) = onions.peek() else {
            continue;
        };
        if let Some(m) = first.metrics {
            flags.metrics_ports.push(format!("{project}={m}"));
        }
        flags
            .control_ports
            .push(format!("{project}={}", first.control));
        let notice = info.dir.join(tor).join("notice.log");
        flags
            .tor_logs
            .push(format!("{project}={}", notice.display()));
        for log in onions.filter_map(|o| o.access_log.as_ref()) {
            flags
                .access_logs
                .push(format!("{project}={}", log.display()));
        }
    }
    flags
}
