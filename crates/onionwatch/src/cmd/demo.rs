//! `onionwatch demo`: everything at once on a private Tor network.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use onionwatch_server::EndpointConfig;
use onionwatch_site::demo::{self, DemoConfig};
use onionwatch_testnet::{NetworkConfig, TestNetwork};

use crate::signals::Signals;

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

pub async fn run(args: DemoArgs) -> Result<ExitCode> {
    let signals = Signals::install()?;
    // Fail before spending 30 s on tor if the port is taken or not loopback.
    let endpoint = EndpointConfig::new(args.listen, None, None, Vec::new(), false)?;

    tracing::info!("starting the private Tor network (15-40 s)");
    let net = tokio::select! {
        net = TestNetwork::start(NetworkConfig::demo(args.tor)) => net.context("the private Tor network did not start")?,
        stop = signals.stop() => return Ok(stop.exit_code()),
    };
    let info = net.info();
    let config = DemoConfig {
        interval: args.interval,
        endpoint,
        state_dir: args.state_dir,
    };
    let demo = demo::start(info, config).await?;
    outln!("dashboard: http://{}/", demo.local_addr())?;
    outln!("metrics:   http://{}/metrics", demo.local_addr())?;
    let (socks, control) = (info.client.socks, info.client.control);
    outln!("client SOCKS {socks} · control {control}")?;

    signals.stop().await;
    tracing::info!("stopping the demo");
    demo.stop().await?;
    net.shutdown();
    Ok(ExitCode::SUCCESS)
}
