//! `onionwatch testnet`: a private Tor network on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use onionwatch_testnet::{BackendKind, ControlKind, NetworkConfig, ServiceConfig, TestNetwork};

use crate::signals::Signals;

#[derive(Debug, Subcommand)]
pub enum TestnetCommand {
    /// Start the network, print its endpoints once every onion service is
    /// reachable, and keep it running until Ctrl-C or SIGTERM.
    ///
    /// Everything listens on 127.0.0.1 only. Cold start takes 15-40 s (tor's
    /// first consensus vote). Example:
    ///
    ///   onionwatch testnet up --onions 3 --format json
    Up(UpArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// Exactly one line of JSON once everything is reachable.
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Control {
    /// `ControlPort 127.0.0.1:PORT`.
    Tcp,
    /// `ControlPort unix:DIR/control.sock` (as Onionspray does).
    Unix,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Number of onion services.
    #[arg(long, default_value_t = 1)]
    onions: usize,
    /// Onion services per tor process (one HiddenServiceDir each); pack many
    /// into one tor to keep large networks cheap.
    #[arg(long, default_value_t = 1)]
    onions_per_tor: usize,
    /// Relays besides the 3 directory authorities (at least 1).
    #[arg(long, default_value_t = 2)]
    relays: usize,
    /// Keep every node's data and logs here instead of a temporary directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The tor binary.
    #[arg(long, default_value = "tor")]
    tor: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Send a PROXY v1 line with the circuit id to the backends
    /// (HiddenServiceExportCircuitID haproxy).
    #[arg(long)]
    export_circuit_id: bool,
    /// Enable proof-of-work defences (HiddenServicePoWDefensesEnabled 1).
    #[arg(long)]
    pow: bool,
    /// Enable the introduction-point DoS defence with this many
    /// introductions per second (HiddenServiceEnableIntroDoSDefense 1,
    /// HiddenServiceEnableIntroDoSRatePerSec).
    #[arg(long, value_name = "N", requires = "intro_dos_burst")]
    intro_dos_rate: Option<u32>,
    /// The introduction-point DoS defence's burst per second
    /// (HiddenServiceEnableIntroDoSBurstPerSec); needs --intro-dos-rate.
    #[arg(long, value_name = "N", requires = "intro_dos_rate")]
    intro_dos_burst: Option<u32>,
    /// Send every onion service's connections to this address (e.g. your
    /// web server on 127.0.0.1:8080) instead of a built-in HTTP server.
    #[arg(long, value_name = "IP:PORT")]
    backend: Option<SocketAddr>,
    /// The MetricsPortPolicy of the onion-service tors.
    #[arg(long, value_name = "POLICY", default_value = "accept 127.0.0.1")]
    metrics_policy: String,
    /// How the onion-service tors' control ports listen.
    #[arg(long, value_enum, default_value_t = Control::Tcp)]
    control: Control,
    /// Do not open a MetricsPort on the onion-service tors.
    #[arg(long)]
    no_metrics: bool,
    /// Give up if the network is not reachable after this many seconds.
    #[arg(long, default_value_t = 240)]
    timeout: u64,
}

impl UpArgs {
    fn config(&self) -> NetworkConfig {
        let mut config = NetworkConfig::with_onions(self.onions, self.onions_per_tor);
        for t in &mut config.service_tors {
            t.metrics_port = !self.no_metrics;
            t.metrics_policy = self.metrics_policy.clone();
            t.control = match self.control {
                Control::Tcp => ControlKind::Tcp,
                Control::Unix => ControlKind::Unix,
            };
            for s in &mut t.services {
                *s = ServiceConfig {
                    export_circuit_id: self.export_circuit_id,
                    pow_defenses: self.pow,
                    intro_dos: self.intro_dos_rate.zip(self.intro_dos_burst),
                    backend: self
                        .backend
                        .map_or(BackendKind::BuiltIn, BackendKind::Address),
                    ..ServiceConfig::default()
                };
            }
        }
        config.relays = self.relays;
        config.dir = self.dir.clone();
        config.tor = self.tor.clone();
        config.ready_timeout = Duration::from_secs(self.timeout);
        config
    }
}

pub async fn run(cmd: TestnetCommand) -> Result<ExitCode> {
    match cmd {
        TestnetCommand::Up(args) => up(args).await,
    }
}

async fn up(args: UpArgs) -> Result<ExitCode> {
    if args.onions == 0 {
        anyhow::bail!("--onions must be at least 1");
    }
    let signals = Signals::install()?;
    tracing::info!(onions = args.onions, "starting the private Tor network");

    // A signal during start-up drops the half-built network, which kills its tors.
    let mut net = tokio::select! {
        net = TestNetwork::start(args.config()) => net.context("the test network did not start")?,
        stop = signals.stop() => return Ok(stop.exit_code()),
    };
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string(net.info())?)?,
        Format::Text => {
            out!("{}", net.info())?;
            outln!("Ctrl-C stops every tor.")?;
        }
    }

    let stop = async {
        signals.stop().await;
    };
    net.run_until(stop)
        .await
        .context("the test network broke")?;
    tracing::info!("stopping the private Tor network");
    net.shutdown();
    Ok(ExitCode::SUCCESS)
}
