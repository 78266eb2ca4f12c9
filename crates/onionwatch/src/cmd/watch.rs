//! `onionwatch watch`: the inside monitor of every project's tor and nginx.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use onionwatch_inside::targets::{Config, Flags, Settings};
use onionwatch_logs::policy::PolicyConfig;
use onionwatch_server::ConstLabels;
use onionwatch_site::{Probing, Site, SiteConfig};

use crate::signals;

const AFTER: &str = "\
Examples:
  # Every project of an Onionspray installation (MetricsPort and control
  # socket from each projects/<name>/tor.conf; SIGHUP re-reads the tree):
  onionwatch watch --onionspray /home/onionspray/onionspray

  # The same, and the onion services' reachability through the system
  # tor (an Onionprobe YAML: launch_tor: false, socks_port, control_port,
  # endpoints to probe besides the discovered onion services):
  onionwatch watch --onionspray /home/onionspray/onionspray --probe-config probe.yaml

  # Explicit targets:
  onionwatch watch --metrics-port news=127.0.0.1:9035 \\
      --control-port news=unix:/home/onionspray/onionspray/projects/news/tor-control.sock \\
      --nginx-status news=http://127.0.0.1:8081/nginx_status

Each project's nginx access logs and tor logs are followed across
rotations (discovered: log/nginx-access*.log and tor's Log file, else
log/tor.log or a softmap worker's <worker>/tor.log, plus the installation's
onionbalance/*.log; or --access-log/--tor-log, or access_logs/tor_logs/
onionbalance_logs in the YAML), exported as onionwatch_log_* series with a
`project` label (requests by status class, unique circuits, tor and
onionbalance log lines by severity) and onionwatch_log_tail_*
health counters; --log-state keeps the positions across restarts.

Outside probing in the same process: every onion service found in the
Onionspray trees (the hostname file of each HiddenServiceDir) is probed at
/ through a tor launched for it (port 80 as http, named PROJECT/PREFIX; 443
as https, PROJECT/PREFIX:443; other ports as tcp), plus the endpoints of
--probe-config FILE (an Onionprobe YAML) or of the configuration's
`probe:` section; `probe: {discover: false}` probes only those. The
prober's families (onion_service_*, as `onionwatch probe` exports them)
are on the same /metrics and the dashboard.

Serves the dashboard at /, /metrics (Prometheus text; OpenMetrics if asked
for; with onionwatch_build_info and process_*), /healthz, /-/healthy,
/-/ready (200 once every target was scraped once) and /api/v1/targets. Off
loopback it needs --tls-cert/--tls-key and --auth-file or --tls-client-ca, or
a --web.config.file (node_exporter's format) with TLS and users or client
certificates. Every tor family is re-exported with `project` and
`tor_instance` labels; per target: onionwatch_scrape_up and
onionwatch_scrape_duration_seconds. Exit status: 0 after SIGINT/SIGTERM,
1 on an error (bad configuration, port in use), 3 on bad usage.";

/// Scrape every project's tor MetricsPort, tor control port and nginx
/// stub_status, and serve them on one loopback endpoint.
#[derive(Debug, Args)]
#[command(after_long_help = AFTER)]
pub struct WatchArgs {
    /// YAML configuration (listen, interval_seconds, timeout_seconds,
    /// onionspray, rediscover_seconds, log_state, follow_onionspray_logs, policy,
    /// probe (Onionprobe options and endpoints, or `config: FILE`; `discover`),
    /// `projects.NAME.tors[].{instance, metrics_port, control_port,
    /// control_cookie}`, `projects.NAME.{nginx_status, access_logs,
    /// tor_logs, onionbalance_logs}`, remote_write (receivers: url, name,
    /// basic_auth, bearer_token_file, tls, headers, interval_seconds,
    /// batch_size, max_buffer_bytes, timeout_seconds)).
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
    /// Follow an nginx access log (combined format): PROJECT=FILE, globs
    /// with `*`/`?` in the file name allowed (repeatable).
    #[arg(long, value_name = "PROJECT=FILE")]
    access_log: Vec<String>,
    /// Follow a tor log and count its lines by severity: PROJECT=FILE
    /// (repeatable).
    #[arg(long, value_name = "PROJECT=FILE")]
    tor_log: Vec<String>,
    /// Save the positions in the followed logs here (JSON) and resume from
    /// them at start.
    #[arg(long, value_name = "FILE")]
    log_state: Option<PathBuf>,
    /// The nginx log_format string of the access logs (the format's text,
    /// not the directive), when the projects changed nginx's; overrides the
    /// configuration's `log_format`. Default combined.
    #[arg(long, value_name = "NGINX FORMAT")]
    log_format: Option<String>,
    /// Abusive-circuit policy for every project's access logs (YAML, as
    /// for `onionwatch logs --policy`); overrides the configuration's
    /// `policy`. `action: close` closes a circuit on the tor that owns it:
    /// the project's only tor, or in softmap the worker whose listener
    /// served the request (`$server_addr` in the log format).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Discover the projects of this Onionspray installation (repeatable).
    #[arg(long, value_name = "DIR")]
    onionspray: Vec<PathBuf>,
    /// Where to serve [default: 127.0.0.1:9925]. A non-loopback address
    /// needs --tls-cert/--tls-key and --auth-file or --tls-client-ca.
    #[arg(long, value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,
    /// Seconds between scrapes of each target [default: 15].
    #[arg(long, value_name = "SECONDS")]
    interval: Option<f64>,
    /// Keep the dashboard's history here, so a restart keeps the charts,
    /// and the remote_write buffers (samples kept across a receiver outage
    /// and a restart; in memory without it).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    endpoint: super::endpoint::EndpointArgs,
    /// Seconds a scrape may take [default: 5].
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<f64>,
    /// Probe from the outside too, as `onionwatch probe -c FILE` would: an
    /// Onionprobe YAML (its endpoints, launch_tor, tor_address, socks_port,
    /// control_port, …); overrides the configuration's `probe:` options.
    /// Re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    probe_config: Option<PathBuf>,
    /// Notify this webhook (Alertmanager's webhook payload) when a built-in
    /// alert fires or resolves; repeatable. Adds to the configuration's
    /// `notifiers:`; with any notifier (or an `alerts:` section) the alert
    /// rules run, their state kept in --state-dir.
    #[arg(long = "notify-webhook", value_name = "URL")]
    notify_webhook: Vec<String>,
    /// Push everything /metrics serves to this remote_write receiver, e.g.
    /// http://127.0.0.1:9090/api/v1/write (repeatable; the configuration's
    /// remote_write: list has authentication, TLS and headers), every
    /// --interval; buffered in --state-dir (in memory without it).
    #[arg(long = "remote-write", value_name = "URL")]
    remote_write: Vec<String>,
}

pub async fn run(args: WatchArgs) -> Result<ExitCode> {
    let signals = signals::Signals::with_hangup()?;
    let config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the configuration {}", path.display()))?;
            Some(Config::from_yaml(&text, &path.display().to_string())?)
        }
        None => None,
    };
    let policy = match &args.policy {
        Some(path) => Some(PolicyConfig::load(path)?),
        None => config.as_ref().and_then(|c| c.policy.clone()),
    };
    let flags = Flags {
        metrics_ports: args.metrics_port,
        control_ports: args.control_port,
        nginx_status: args.nginx_status,
        listen: args.listen,
        interval_seconds: args.interval,
        timeout_seconds: args.timeout,
        onionspray: args.onionspray,
        access_logs: args.access_log,
        tor_logs: args.tor_log,
        log_state: args.log_state,
        log_format: args.log_format,
    };
    let section = config.as_ref().and_then(|c| c.probe.clone());
    let alerts = config.as_ref().and_then(|c| c.alerts.clone());
    let notifiers = config
        .as_ref()
        .map(|c| c.notifiers.clone())
        .unwrap_or_default();
    let mut remote_write = config
        .as_ref()
        .map(|c| c.remote_write.clone())
        .unwrap_or_default();
    remote_write.extend(
        args.remote_write
            .iter()
            .map(onionwatch_remote_write::RemoteWriteConfig::from_url),
    );
    for (i, rw) in remote_write.iter().enumerate() {
        rw.check(i)?;
    }
    let settings = Settings::build(config, &flags)?;
    let probe = Probing::for_watch(section, args.probe_config, !settings.onionspray.is_empty())?;
    // Alerts carry the probe section's vantage and external labels, as the
    // prober's series do.
    let labels = match &probe {
        Some(p) => p.options.labels()?,
        None => ConstLabels::new(),
    };
    let alerting = super::alerting::start(
        alerts.as_ref(),
        notifiers,
        &args.notify_webhook,
        args.state_dir.as_deref(),
        &labels,
    )?;
    let endpoint = args.endpoint.config(settings.listen)?;
    let scheme = if endpoint.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut site = Site::build(SiteConfig {
        settings,
        endpoint,
        policy,
        state_dir: args.state_dir.clone(),
        probe,
    })?
    .push_to(&remote_write, args.state_dir)?;
    if let Some(a) = &alerting {
        site.register(Arc::new(a.notifiers.clone()));
        site = site.with_alerts(a.engine.clone());
    }
    let site = site.serve().await?;
    crate::notify::ready(&format!("serving {scheme}://{}/", site.local_addr()));
    let code = signals::serve_until_stopped(site, signals).await;
    if let Some(a) = &alerting {
        a.shutdown().await;
    }
    code
}
