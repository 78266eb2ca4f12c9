//! `onionwatch watch`: the inside monitor of every project's tor and nginx.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use onionwatch_dashboard::{Dashboard, DashboardConfig};
use onionwatch_inside::targets::{Config, Flags, Settings};
use onionwatch_inside::tor_log::recent_warnings;
use onionwatch_inside::watch::{rediscover_loop, Watcher};
use onionwatch_server::Registry;
use tokio::signal::unix::{signal, SignalKind};

const AFTER: &str = "\
Examples:
  # Every project of an Onionspray installation (MetricsPort and control
  # socket from each projects/<name>/tor.conf; SIGHUP re-reads the tree):
  onionwatch watch --onionspray /home/onionspray/onionspray

  # Explicit targets:
  onionwatch watch --metrics-port news=127.0.0.1:9035 \\
      --control-port news=unix:/home/onionspray/onionspray/projects/news/tor-control.sock \\
      --nginx-status news=http://127.0.0.1:8081/nginx_status

Serves the dashboard at /, /metrics (Prometheus text; OpenMetrics if asked
for), /healthz and /api/v1/targets. Off loopback it needs --tls-cert/--tls-key
and --auth-file or --tls-client-ca. Every tor family is re-exported with `project` and
`tor_instance` labels; per target: onionwatch_scrape_up and
onionwatch_scrape_duration_seconds. Exit status: 0 after SIGINT/SIGTERM,
1 on an error (bad configuration, port in use), 2 on bad usage.";

/// Scrape every project's tor MetricsPort, tor control port and nginx
/// stub_status, and serve them on one loopback endpoint.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER)]
pub struct WatchArgs {
    /// YAML configuration (listen, interval_seconds, timeout_seconds,
    /// onionspray, rediscover_seconds, `projects.NAME.tors[].{instance,
    /// metrics_port, control_port, control_cookie}`, `projects.NAME.nginx_status`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A tor MetricsPort: PROJECT=HOST:PORT or PROJECT/INSTANCE=HOST:PORT.
    #[arg(long, value_name = "PROJECT=HOST:PORT")]
    metrics_port: Vec<String>,
    /// A tor ControlPort: PROJECT=HOST:PORT or PROJECT=unix:PATH.
    #[arg(long, value_name = "PROJECT=ADDR")]
    control_port: Vec<String>,
    /// An nginx stub_status URL: PROJECT=http://HOST:PORT/PATH.
    #[arg(long, value_name = "PROJECT=URL")]
    nginx_status: Vec<String>,
    /// Discover the projects of this Onionspray installation (repeatable).
    #[arg(long, value_name = "DIR")]
    onionspray: Vec<PathBuf>,
    /// Where to serve (loopback only) [default: 127.0.0.1:9925].
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,
    /// Seconds between scrapes of each target [default: 15].
    #[arg(long, value_name = "SECONDS")]
    interval: Option<f64>,
    /// Keep the dashboard's history here, so a restart keeps the charts.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    endpoint: super::endpoint::EndpointArgs,
    /// Seconds a scrape may take [default: 5].
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
}

pub async fn run(args: WatchArgs) -> Result<ExitCode> {
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the configuration {}", path.display()))?;
            Some(Config::from_yaml(&text, &path.display().to_string())?)
        }
        None => None,
    };
    let flags = Flags {
        metrics_ports: args.metrics_port,
        control_ports: args.control_port,
        nginx_status: args.nginx_status,
        listen: args.listen,
        interval_seconds: args.interval,
        timeout_seconds: args.timeout,
        onionspray: args.onionspray,
    };
    let settings = Settings::build(config, &flags)?;
    if settings.targets.is_empty() && settings.onionspray.is_empty() {
        anyhow::bail!(
            "nothing to watch: give --onionspray DIR, --metrics-port, --control-port, --nginx-status or --config FILE"
        );
    }
    let endpoint = args.endpoint.config(settings.listen)?;
    let interval = settings.interval;
    let roots = settings.onionspray.clone();
    let watcher = Watcher::new(settings);
    watcher.start();
    let registry = Arc::new(Registry::default());
    registry.register(watcher.collector());
    let dashboard = Dashboard::open(
        registry.clone(),
        DashboardConfig {
            interval,
            ..DashboardConfig::default()
        },
        args.state_dir.as_deref(),
    )?;
    let sampler = dashboard.spawn();
    let warnings = tokio::spawn(feed_tor_warnings(roots, dashboard.clone(), interval));
    let app = onionwatch_server::router(registry)
        .merge(watcher.api_router())
        .merge(dashboard.router());
    let server = onionwatch_server::start(&endpoint, app).await?;

    let mut sigterm = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut discovery_stop = stop_rx;
    let discovery = tokio::spawn(rediscover_loop(watcher.clone(), async move {
        let _ = discovery_stop.wait_for(|s| *s).await;
    }));
    loop {
        tokio::select! {
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            // The discovery loop re-reads the Onionspray tree on SIGHUP too.
            _ = sighup.recv() => {
                if let Err(e) = server.reload_tls() {
                    tracing::error!("TLS not reloaded, keeping the old certificate: {e}");
                }
            }
        }
    }
    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    let _ = discovery.await;
    sampler.abort();
    warnings.abort();
    server.shutdown(std::time::Duration::from_secs(5)).await?;
    Ok(ExitCode::SUCCESS)
}

/// Show each discovered project's latest tor warnings on the dashboard.
async fn feed_tor_warnings(roots: Vec<PathBuf>, dashboard: Arc<Dashboard>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let roots = roots.clone();
        // Discovery and the log reads are small blocking file reads.
        let found = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for root in &roots {
                let Ok((inst, _)) = onionwatch_inside::discovery::discover(root) else {
                    continue;
                };
                for project in inst.projects {
                    let lines: Vec<String> = project
                        .logs
                        .iter()
                        .filter(|l| {
                            l.file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with("tor"))
                        })
                        .filter_map(|l| recent_warnings(l, 5).ok())
                        .flatten()
                        .collect();
                    out.push((project.name, lines));
                }
            }
            out
        })
        .await
        .unwrap_or_default();
        for (project, lines) in found {
            dashboard.set_recent_warnings(&project, lines);
        }
    }
}
