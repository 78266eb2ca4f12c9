//! `onionwatch expose-onion` and `onionwatch scrape-gateway`: metrics through
//! an onion service with client authorization.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use onionwatch_expose::{expose, ClientKey, ScrapeProxy};
use onionwatch_server::{start, EndpointConfig};
use onionwatch_tor::control::{ConnectOptions, ControlAddr, ControlClient, ControlTarget};

use super::secret;
use crate::signals::Signals;

/// Options shared by both commands: how to reach a tor's control port.
#[derive(Debug, Args)]
pub struct TorControl {
    /// The tor's control port: HOST:PORT or unix:/path.
    #[arg(long, default_value = "127.0.0.1:9051")]
    control_port: ControlAddr,
    /// Control password, if tor uses HashedControlPassword (else whatever
    /// tor offers: cookie or none). Other local users can read it in the process list: prefer
    /// --control-password-file or the ONIONWATCH_CONTROL_PASSWORD
    /// environment variable.
    #[arg(long, conflicts_with = "control_password_file")]
    control_password: Option<String>,
    /// File holding the control password on its first line (a pipe works
    /// too). Without it and --control-password, the
    /// ONIONWATCH_CONTROL_PASSWORD environment variable is used.
    #[arg(long, value_name = "FILE")]
    control_password_file: Option<PathBuf>,
}

impl TorControl {
    async fn connect(&self) -> Result<ControlClient> {
        let secret = secret::control_password(
            self.control_password.as_deref(),
            self.control_password_file.as_deref(),
            std::env::var_os(secret::PASSWORD_ENV),
            secret::Sources {
                flag: "--control-password",
                file_flag: "--control-password-file",
                env: Some(secret::PASSWORD_ENV),
            },
        )?;
        for w in &secret.warnings {
            tracing::warn!("{w}");
        }
        let target = ControlTarget {
            control_password: secret.password,
            ..ControlTarget::new(self.control_port.clone())
        };
        let (client, _events) = target
            .connect(ConnectOptions::default())
            .await
            .with_context(|| format!("connect to tor's control port {}", self.control_port))?;
        Ok(client)
    }
}

/// Publish onionwatch's endpoint as an onion service only key holders can reach.
#[derive(Debug, Args)]
pub struct ExposeArgs {
    #[command(flatten)]
    tor: TorControl,
    /// The endpoint to publish (onionwatch's --listen address).
    #[arg(long, default_value = "127.0.0.1:9925")]
    target: SocketAddr,
    /// The onion service's virtual port.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Where the onion service key and the client key are kept, so the
    /// address and the client line survive restarts (made mode 0700).
    #[arg(long)]
    key_dir: PathBuf,
    /// Print the client key even when it is not new. By default it is
    /// printed only when created (or when the address changed), since
    /// journald and terminal logs keep what a service prints; otherwise the
    /// file holding it is named.
    #[arg(long)]
    print_client_key: bool,
}

/// Serve, on loopback, the metrics of an onion service published with
/// `expose-onion`, for a local Prometheus to scrape.
#[derive(Debug, Args)]
pub struct ScrapeGatewayArgs {
    #[command(flatten)]
    tor: TorControl,
    /// The local tor's SOCKS port.
    #[arg(long, default_value = "127.0.0.1:9050")]
    socks_port: SocketAddr,
    /// The client line printed by `expose-onion` (its file:
    /// `<address>:descriptor:x25519:<key>`).
    #[arg(long)]
    client_key_file: PathBuf,
    /// The onion service's virtual port.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Where Prometheus scrapes (loopback only).
    #[arg(long, default_value = "127.0.0.1:9926")]
    listen: SocketAddr,
    /// TLS, client certificates and basic-auth users of this endpoint from
    /// a Prometheus exporter-toolkit web configuration file (as for
    /// node_exporter), read at start.
    #[arg(long = "web.config.file", value_name = "FILE")]
    web_config_file: Option<PathBuf>,
}

pub async fn expose_onion(args: ExposeArgs) -> Result<ExitCode> {
    let tor = args.tor.connect().await?;
    let exposed = expose(&tor, args.target, args.port, &args.key_dir)
        .await
        .context("publish the metrics onion service")?;
    outln!(
        "onion service: {}.onion (port {} → {})",
        exposed.address,
        args.port,
        args.target
    )?;
    if exposed.client_key_written || args.print_client_key {
        outln!(
            "client key (in {}; give it to `onionwatch scrape-gateway --client-key-file`, keep it secret):",
            exposed.client_key_file.display()
        )?;
        outln!("{}", exposed.client_line)?;
    } else {
        outln!(
            "client key: unchanged, in {} (give that file to `onionwatch scrape-gateway --client-key-file`; --print-client-key prints it)",
            exposed.client_key_file.display()
        )?;
    }
    outln!("The onion service lives while this command runs; Ctrl-C removes it.")?;
    let signals = Signals::install()?;
    crate::notify::ready(&format!("publishing {}.onion", exposed.address));
    signals.stop().await;
    crate::notify::stopping();
    Ok(ExitCode::SUCCESS)
}

pub async fn scrape_gateway(args: ScrapeGatewayArgs) -> Result<ExitCode> {
    let line = std::fs::read_to_string(&args.client_key_file)
        .with_context(|| format!("read {}", args.client_key_file.display()))?;
    let (address, key) = ClientKey::from_auth_private(&line)
        .with_context(|| format!("parse {}", args.client_key_file.display()))?;
    let tor = args.tor.connect().await?;
    let proxy = ScrapeProxy::new(&tor, args.socks_port, &address, args.port, Some(&key)).await?;
    let config = match &args.web_config_file {
        Some(web) => EndpointConfig::from_web_config(args.listen, web, Vec::new(), false)?,
        None => EndpointConfig::new(args.listen, None, None, Vec::new(), false)?,
    };
    // Its /metrics is the onion service's; /-/healthy and /-/ready are its own.
    let app = onionwatch_server::health_router(Default::default()).merge(proxy.router());
    let server = start(&config, app).await?;
    outln!(
        "scrape http://{}/metrics to reach {address}.onion through tor",
        server.local_addr()
    )?;
    let signals = Signals::install()?;
    crate::notify::ready(&format!("serving http://{}/metrics", server.local_addr()));
    signals.stop().await;
    crate::notify::stopping();
    server.shutdown(std::time::Duration::from_secs(5)).await?;
    Ok(ExitCode::SUCCESS)
}
