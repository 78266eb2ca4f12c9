//! `onionwatch demo`: everything at once on a private Tor network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use onionwatch_inside::targets::{Flags, Settings as WatchSettings};
use onionwatch_probe::{
    Config as ProbeConfig, ProbeMetrics, Prober, Settings as ProbeSettings, Tor,
};
use onionwatch_server::EndpointConfig;
use onionwatch_site::{Site, SiteConfig};
use onionwatch_testnet::{
    BuiltInResponse, NetworkConfig, NetworkInfo, ServiceConfig, ServiceTorConfig, TestNetwork,
};
use onionwatch_tor::control::{Auth, ControlAddr};

use crate::signals::Signals;

/// A real v3 address (the Tor Project's website) that the private network
/// never publishes: the demo's offline onion service.
const OFFLINE: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

/// Start a private Tor network with a healthy, a slow, a failing and an
/// offline onion service, monitor it from the inside and the outside, and
/// serve the dashboard and /metrics on loopback until Ctrl-C.
#[derive(Debug, Args)]
#[command(
    after_long_help = "Prints `dashboard: http://127.0.0.1:PORT/` on a line of its own \
once everything runs (15-40 s: tor's first consensus). The same server's /metrics carries \
the prober's (Onionprobe-compatible) and the inside monitor's series. Ctrl-C or SIGTERM \
stops every process it started."
)]
pub struct DemoArgs {
    /// Where the dashboard and /metrics listen (loopback only).
    #[arg(long, default_value = "127.0.0.1:9925")]
    listen: SocketAddr,
    /// Seconds between probe rounds and inside scrapes.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    /// Keep the dashboard's history here (survives restarts); memory only if unset.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The tor binary.
    #[arg(long, default_value = "tor")]
    tor: PathBuf,
}

fn network(tor: PathBuf) -> NetworkConfig {
    let svc = |status, delay_ms| ServiceConfig {
        // As Onionspray does: the access logs then count unique circuits.
        export_circuit_id: true,
        response: BuiltInResponse {
            status,
            delay: Duration::from_millis(delay_ms),
        },
        ..ServiceConfig::default()
    };
    NetworkConfig {
        // Two "projects": a news site (healthy + slow) and a shop that fails.
        service_tors: vec![
            ServiceTorConfig {
                services: vec![svc(200, 0), svc(200, 2500)],
                ..ServiceTorConfig::default()
            },
            ServiceTorConfig {
                services: vec![svc(500, 0)],
                ..ServiceTorConfig::default()
            },
        ],
        tor,
        ..NetworkConfig::default()
    }
}

/// Onionprobe-format configuration for the demo's four endpoints.
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

/// The inside monitor's targets: each onion-service tor is a project.
fn watch_flags(info: &NetworkInfo, interval: u64) -> Flags {
    let mut flags = Flags {
        interval_seconds: Some(interval as f64),
        timeout_seconds: Some(interval.clamp(1, 5) as f64),
        ..Flags::default()
    };
    for (project, tor) in ["news", "shop"].iter().zip(["hs0", "hs1"]) {
        let onion = info
            .onions
            .iter()
            .find(|o| o.tor == tor)
            .expect("each tor hosts an onion service");
        if let Some(m) = onion.metrics {
            flags.metrics_ports.push(format!("{project}={m}"));
        }
        flags
            .control_ports
            .push(format!("{project}={}", onion.control));
        flags.tor_logs.push(format!(
            "{project}={}",
            info.dir.join(tor).join("notice.log").display()
        ));
        // The built-in backends log like nginx, circuit ids included.
        for log in info
            .onions
            .iter()
            .filter(|o| o.tor == tor)
            .filter_map(|o| o.access_log.as_ref())
        {
            flags
                .access_logs
                .push(format!("{project}={}", log.display()));
        }
    }
    flags
}

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let signals = Signals::install()?;
    // Fail before spending 30 s on tor if the port is taken or not loopback.
    let endpoint = EndpointConfig {
        listen: args.listen,
        ..EndpointConfig::default()
    };
    endpoint.check()?;

    tracing::info!("starting the private Tor network (15-40 s)");
    let net = tokio::select! {
        net = TestNetwork::start(network(args.tor.clone())) => net.context("the private Tor network did not start")?,
        stop = signals.stop() => return Ok(stop.exit_code()),
    };
    let info = net.info().clone();

    let site = Site::build(SiteConfig {
        settings: WatchSettings::build(None, &watch_flags(&info, args.interval))?,
        endpoint,
        policy: None,
        state_dir: args.state_dir,
    })?;

    // Outside: the prober against all four, through the network's client.
    let (probe_config, warnings) =
        ProbeConfig::from_yaml(&probe_yaml(&info, args.interval), "demo")?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    let targets = probe_config.targets()?;
    let tor = Tor::connect(
        &ControlAddr::Tcp(info.client.control),
        Auth::default(),
        info.client.socks,
    )
    .await
    .context("connect the prober to the client tor")?;
    let metrics = Arc::new(ProbeMetrics::new());
    site.register(metrics.clone());
    let prober = Prober::new(
        Arc::new(tor),
        metrics,
        ProbeSettings::from_config(&probe_config),
    );

    let site = site.serve().await?;
    outln!("dashboard: http://{}/", site.local_addr())?;
    outln!("metrics:   http://{}/metrics", site.local_addr())?;
    outln!(
        "client SOCKS {} · control {}",
        info.client.socks,
        info.client.control
    )?;

    let probing = tokio::spawn(async move {
        let mut round = 0;
        loop {
            round += 1;
            let results = prober.run_round(&targets, round, None).await;
            let ok = results.iter().filter(|r| r.reachable).count();
            tracing::info!(
                round,
                reachable = ok,
                probes = results.len(),
                "probe round done"
            );
            prober.wait(args.interval as f64, false).await;
        }
    });

    signals.stop().await;
    tracing::info!("stopping the demo");
    probing.abort();
    site.stop().await?;
    net.shutdown();
    Ok(ExitCode::SUCCESS)
}
