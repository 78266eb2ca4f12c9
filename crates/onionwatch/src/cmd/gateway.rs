//! `onionwatch gateway`: the circuit-aware reverse proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use onionwatch_gateway::{Config, Gateway, IpCidr, ListenAddr};
use onionwatch_server::Registry;
use onionwatch_tor::control::ControlAddr;

use crate::signals::Signals;

/// Options given on the command line override the configuration file.
#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// YAML configuration file (every field optional; see the crate docs).
    /// Re-read on SIGHUP.
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Listen on IP:PORT or unix:PATH (default 127.0.0.1:8080). Point tor's
    /// HiddenServicePort here.
    #[arg(long)]
    listen: Option<String>,
    /// Forward to HOST:PORT or unix:PATH (default 127.0.0.1:80).
    #[arg(long)]
    upstream: Option<String>,
    /// Whether connections must start with a PROXY v1 header.
    #[arg(long, value_parser = ["require", "optional"])]
    proxy_protocol: Option<String>,
    /// Header carrying the circuit id upstream (default X-Onion-CircuitID).
    #[arg(long)]
    header_name: Option<String>,
    /// Also send tor's PROXY header at the start of each upstream connection.
    #[arg(long)]
    send_proxy_header: bool,
    /// Requests per second per circuit (token bucket; 0 = unlimited).
    #[arg(long)]
    rate: Option<f64>,
    /// Token bucket size: requests a circuit may send at once.
    #[arg(long)]
    burst: Option<u32>,
    /// Open connections per circuit (default 16; 0 = unlimited).
    #[arg(long)]
    max_conns_per_circuit: Option<u32>,
    /// Requests in flight per circuit (0 = unlimited).
    #[arg(long)]
    max_requests_per_circuit: Option<u32>,
    /// Seconds a connection has to send its PROXY header.
    #[arg(long)]
    header_timeout: Option<f64>,
    /// Seconds a client may pause within a request body (default 60).
    #[arg(long)]
    body_timeout: Option<f64>,
    /// Seconds a client may leave a response unread (default 60).
    #[arg(long)]
    send_timeout: Option<f64>,
    /// The onion-service tor's control port (IP:PORT or unix:PATH), for
    /// --close-abusive.
    #[arg(long)]
    control_port: Option<String>,
    /// Close circuits that keep getting 429s (CLOSECIRCUIT on --control-port).
    #[arg(long)]
    close_abusive: bool,
    /// Only accept TCP connections (and PROXY headers) from this IP or
    /// IP/PREFIX; repeat for several. Required for --close-abusive on a
    /// non-loopback --listen address (replaces the file's list).
    #[arg(long = "trusted-proxy-source", value_name = "CIDR")]
    trusted_proxy_sources: Vec<String>,
    /// With --close-abusive: only log which circuits would be closed.
    #[arg(long)]
    dry_run: bool,
    /// Refusals within --abuse-window that close a circuit.
    #[arg(long)]
    abuse_rejections: Option<u32>,
    /// Window for --abuse-rejections, in seconds.
    #[arg(long)]
    abuse_window: Option<f64>,
    /// Serve GET /metrics (Prometheus text) on IP:PORT: loopback, or
    /// anywhere with --tls-cert and --auth-file.
    #[arg(long)]
    metrics_listen: Option<String>,
    #[command(flatten)]
    endpoint: super::endpoint::EndpointArgs,
    /// Check the configuration, print it, and exit.
    #[arg(long)]
    check: bool,
}

impl GatewayArgs {
    /// The file (or defaults) with the command-line options applied, validated.
    fn load(&self) -> Result<Config> {
        let mut c = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(v) = &self.listen {
            c.listen = parse(v, "--listen")?;
        }
        if let Some(v) = &self.upstream {
            c.upstream = parse(v, "--upstream")?;
        }
        if let Some(v) = &self.proxy_protocol {
            c.proxy_protocol = parse(v, "--proxy-protocol")?;
        }
        set(&mut c.header_name, &self.header_name);
        c.send_proxy_header |= self.send_proxy_header;
        set(&mut c.limits.rate, &self.rate);
        set(&mut c.limits.burst, &self.burst);
        set(
            &mut c.limits.max_connections_per_circuit,
            &self.max_conns_per_circuit,
        );
        set(
            &mut c.limits.max_requests_per_circuit,
            &self.max_requests_per_circuit,
        );
        set(&mut c.header_timeout_secs, &self.header_timeout);
        set(&mut c.body_timeout_secs, &self.body_timeout);
        set(&mut c.send_timeout_secs, &self.send_timeout);
        if let Some(v) = &self.control_port {
            c.escalation.control_port = Some(v.parse::<ControlAddr>().context("--control-port")?);
        }
        if !self.trusted_proxy_sources.is_empty() {
            c.trusted_proxy_sources = self
                .trusted_proxy_sources
                .iter()
                .map(|v| parse::<IpCidr>(v, "--trusted-proxy-source"))
                .collect::<Result<_>>()?;
        }
        c.escalation.enabled |= self.close_abusive;
        c.escalation.dry_run |= self.dry_run;
        set(&mut c.escalation.rejections, &self.abuse_rejections);
        set(&mut c.escalation.window_secs, &self.abuse_window);
        if let Some(v) = &self.metrics_listen {
            c.metrics_listen = Some(
                v.parse::<SocketAddr>()
                    .with_context(|| format!("--metrics-listen {v:?} is not IP:PORT"))?,
            );
        }
        c.validate()
            .map_err(|source| onionwatch_gateway::Error::Config {
                path: self.config.clone(),
                source,
            })?;
        Ok(c)
    }
}

/// A command-line value parsed with the gateway's own parser, the option named.
fn parse<T>(value: &str, option: &str) -> Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static,
{
    value
        .parse()
        .map_err(anyhow::Error::msg)
        .context(option.to_owned())
}

/// An option given on the command line overrides the file's value.
fn set<T: Clone>(field: &mut T, option: &Option<T>) {
    if let Some(v) = option {
        *field = v.clone();
    }
}

pub async fn run(args: GatewayArgs) -> Result<ExitCode> {
    let config = args.load()?;
    if args.check {
        outln!("configuration OK: {config:#?}")?;
        return Ok(ExitCode::SUCCESS);
    }
    if let ListenAddr::Tcp(a) = config.listen {
        if !a.ip().is_loopback() && config.trusted_proxy_sources.is_empty() {
            tracing::warn!(listen = %a, "listening on a non-loopback address: the gateway trusts PROXY headers, so only tor should reach it");
        }
    }
    let signals = Signals::with_hangup()?;

    let metrics_endpoint = config
        .metrics_listen
        .map(|addr| args.endpoint.config(addr))
        .transpose()?;
    let gateway = Gateway::bind(config).await?;
    let handle = gateway.handle();
    let server = match metrics_endpoint {
        Some(endpoint) => {
            let registry = Arc::new(Registry::default());
            registry.register(handle.metrics());
            Some(onionwatch_server::start(&endpoint, onionwatch_server::router(registry)).await?)
        }
        None => None,
    };
    let status = match &server {
        Some(s) => format!("proxying; metrics on http://{}/metrics", s.local_addr()),
        None => "proxying".to_owned(),
    };
    crate::notify::ready(&status);
    let mut running = tokio::spawn(gateway.run());
    let mut stopping = false;
    loop {
        tokio::select! {
            r = &mut running => {
                r.context("the gateway task panicked")??;
                if let Some(server) = server {
                    server.shutdown(Duration::from_secs(1)).await?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            _ = signals.hangup() => {
                match args.load().and_then(|c| handle.reload(c).map_err(Into::into)) {
                    Ok(()) => tracing::info!("SIGHUP: configuration reloaded"),
                    Err(e) => tracing::error!("SIGHUP: configuration not reloaded, keeping the old one: {e:#}"),
                }
                if let Err(e) = server.as_ref().map_or(Ok(()), |s| s.reload()) {
                    tracing::error!("SIGHUP: {e}");
                }
            }
            stop = signals.stop() => {
                // A second signal does not wait for the drain.
                if stopping {
                    return Ok(stop.exit_code());
                }
                stopping = true;
                crate::notify::stopping();
                handle.shutdown();
            }
        }
    }
}
