//! `onionwatch logs`: analyse nginx access logs once (`--once`), or follow
//! them (and tor and onionbalance logs) and serve their metrics.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::builder::TypedValueParser as _;
use clap::{ArgGroup, Args, ValueEnum};
use onionwatch_logs::access::LogFormat;
use onionwatch_logs::analytics::AnalyticsConfig;
use onionwatch_logs::follow::{FollowConfig, Source};
use onionwatch_logs::lines::DEFAULT_MAX_LINE;
use onionwatch_logs::policy::{Action, PolicyConfig};
use onionwatch_logs::tail::TailConfig;
use onionwatch_site::{LogsConfig, Site};
use onionwatch_tor::control::ControlTarget;

use crate::signals;

const EXAMPLES: &str = "\
Examples:
  # One JSON summary of today's and yesterday's (compressed) logs:
  onionwatch logs --once projects/shop/log/nginx-access.log \\
      projects/shop/log/nginx-access.log-20240111.gz

  # The same as Prometheus metrics, labelled project=\"shop\":
  onionwatch logs --once --format prometheus --project shop nginx-access.log

  # A custom nginx log_format (paste the format string, not the directive):
  onionwatch logs --once --log-format \\
      '$remote_addr [$time_local] \"$request\" $status $body_bytes_sent $request_time' access.log

  # Follow a project's logs across rotations and serve /metrics on
  # 127.0.0.1:9927, resuming where it stopped after a restart:
  onionwatch logs --project shop --state /var/lib/onionwatch/shop.json \\
      --tor-log 'projects/shop/log/tor.log' 'projects/shop/log/nginx-access*.log'

Follow mode (without --once) reads every FILE (paths, or globs in the file
name such as 'nginx-access*.log', quoted so the shell leaves them alone) from
its start, then follows it: rename-and-create rotation (the old file is read
to its end), copytruncate, deletion and re-creation. It serves /metrics (the
families --format prometheus prints, plus onionwatch_log_severity_lines_total
for --tor-log/--onionbalance-log and onionwatch_log_tail_* health counters)
/healthz, /-/healthy, /-/ready (200 once the files were read to their ends),
and /api/v1/warnings (the last --keep-warnings warn/err lines of
each tor and onionbalance log, JSON). With --state it saves each file's position after counting its
lines, and resumes there after a restart: no line lost or counted twice.

JSON keys: lines, requests, parse_errors, parse_errors_by_reason,
requests_by_status ({\"200\": n}), requests_by_status_class, requests_by_method,
bytes, unique_circuits (HyperLogLog estimate: exact up to 1024 circuits, about
0.8% standard error above), unique_circuits_windows (1m/5m/1h up to the newest
log time), request_duration, circuit_window (requests per circuit and the
busiest circuits), files.

Circuit ids come from Onionspray's HiddenServiceExportCircuitID addresses
(fc00:dead:beef:4dad::/96) in $proxy_protocol_addr or $remote_addr, and only
when neither holds one from $http_x_onion_circuitid, which any client can set:
the policy never closes such an id unless it says trust_circuit_header: true
(for logs behind `onionwatch gateway`, which replaces the header). Lines that do not parse are counted and skipped
(-v shows the first few with line numbers).

Exit status: 0 on success, 1 if a file cannot be read or --log-format is
invalid, 3 on bad usage.";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// One line of JSON.
    Json,
    /// Prometheus text exposition format.
    Prometheus,
}

/// Analyse nginx access logs: requests by status and method, bytes, unique
/// onion circuits, requests per circuit.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
#[command(group(ArgGroup::new("inputs").required(true).multiple(true)))]
pub struct LogsArgs {
    /// Read every FILE to its end, print one summary and exit. Without it,
    /// follow the files and serve their metrics.
    #[arg(long)]
    once: bool,
    /// nginx access logs. With --once: plain or gzip-compressed (as
    /// logrotate's `compress` leaves them), `-` reads standard input.
    /// Following: paths, or globs with `*`/`?` in the file name.
    #[arg(value_name = "FILE", group = "inputs")]
    files: Vec<PathBuf>,
    /// Follow this tor log and count its lines by severity (repeatable;
    /// globs in the file name allowed).
    #[arg(long, value_name = "FILE", group = "inputs", conflicts_with = "once")]
    tor_log: Vec<PathBuf>,
    /// Follow this onionbalance log and count its lines by severity
    /// (repeatable; globs in the file name allowed).
    #[arg(long, value_name = "FILE", group = "inputs", conflicts_with = "once")]
    onionbalance_log: Vec<PathBuf>,
    /// Save each followed file's position here (JSON, replaced atomically)
    /// and resume from it at start.
    #[arg(long, value_name = "FILE", conflicts_with = "once")]
    state: Option<PathBuf>,
    /// Where to serve /metrics, /healthz and /api/v1/warnings when following (loopback
    /// unless TLS and authentication are configured); port 0 picks a free
    /// port, printed on standard error.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9927",
        conflicts_with = "once"
    )]
    listen: SocketAddr,
    /// Milliseconds between two looks at the followed files when nothing
    /// is new.
    #[arg(long, value_name = "MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    poll_interval: u64,
    /// Files found at start (and not in --state) are followed from their
    /// end instead of read from their start.
    #[arg(long, conflicts_with = "once")]
    from_end: bool,
    /// Warnings and errors kept per tor/onionbalance log (served at
    /// /api/v1/warnings when following).
    #[arg(long, value_name = "N", default_value_t = 50)]
    keep_warnings: usize,
    /// Abusive-circuit policy when following: a YAML file with
    /// `max_requests`, `window_secs`, `action` (log, alert or close),
    /// `i_understand_closing_circuits`, `allow`, `cooldown_secs`, `dry_run`,
    /// `trust_circuit_header`
    /// (every field documented in crates/onionwatch-logs/src/policy.rs).
    #[arg(long, value_name = "FILE", conflicts_with = "once")]
    policy: Option<PathBuf>,
    /// The onion-service tor's control port (IP:PORT or unix:PATH), where
    /// the policy's `action: close` sends CLOSECIRCUIT.
    #[arg(long, value_name = "ADDR", conflicts_with = "once")]
    control_port: Option<String>,
    /// The control cookie file, when not the one tor names.
    #[arg(long, value_name = "FILE", requires = "control_port")]
    control_cookie: Option<PathBuf>,
    #[command(flatten)]
    endpoint: super::endpoint::EndpointArgs,
    /// The nginx log_format string the files were written with; `combined`
    /// (nginx's and Onionspray's default) uses a faster parser.
    #[arg(long, value_name = "NGINX FORMAT", default_value = "combined")]
    log_format: String,
    /// Output format of --once (following always serves Prometheus/OpenMetrics).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Project name: a "project" key in JSON, a project label in Prometheus.
    #[arg(long, value_name = "NAME")]
    project: Option<String>,
    /// Length of the per-circuit window (requests per circuit, busiest
    /// circuits), in seconds of log time.
    #[arg(long, value_name = "SECONDS", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    window: u32,
    /// How many of the busiest circuits to list (JSON only).
    #[arg(long, value_name = "N", default_value_t = 10)]
    top: usize,
    /// Lines longer than this many bytes are counted as parse errors
    /// (reason too_long) and skipped.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 30)).map(|n| n as usize))]
    max_line: usize,
}

impl LogsArgs {
    /// The access-log analytics settings, the same once and following.
    fn analytics(&self) -> AnalyticsConfig {
        AnalyticsConfig {
            circuit_window_secs: self.window,
            top_k: self.top,
            ..AnalyticsConfig::default()
        }
    }
}

/// Run `onionwatch logs`.
pub async fn run(args: LogsArgs) -> Result<ExitCode> {
    if args.once {
        once(args)
    } else {
        follow(args).await
    }
}

/// Follow mode: tail the files, serve the metrics until SIGINT/SIGTERM.
async fn follow(args: LogsArgs) -> Result<ExitCode> {
    let signals = signals::Signals::with_hangup()?;
    let format = compile(&args.log_format)?;
    let project = args.project.clone().unwrap_or_default();
    let sources = Source::project(&project, &args.files, &args.tor_log, &args.onionbalance_log)?;
    let endpoint = args.endpoint.config(args.listen)?;
    let follow = FollowConfig {
        tail: TailConfig {
            poll_interval: Duration::from_millis(args.poll_interval),
            max_line: args.max_line,
            start_at_end: args.from_end,
            ..TailConfig::default()
        },
        analytics: args.analytics(),
        keep_warnings: args.keep_warnings,
        state_file: args.state.clone(),
        ..FollowConfig::default()
    };
    let (policy, control) = match &args.policy {
        None => (None, None),
        Some(path) => {
            let policy = PolicyConfig::load(path)?;
            let control = match &args.control_port {
                Some(addr) => Some(ControlTarget {
                    control_port: addr.parse().context("--control-port")?,
                    control_password: None,
                    control_cookie: args.control_cookie.clone(),
                }),
                None if policy.action == Action::Close => anyhow::bail!(
                    "{}: action: close needs the onion-service tor's --control-port",
                    path.display()
                ),
                None => None,
            };
            (Some(policy), control)
        }
    };
    let scheme = if endpoint.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let site = Site::serve_logs(LogsConfig {
        follow,
        format,
        sources,
        policy,
        control,
        endpoint,
    })
    .await?;
    eprintln!(
        "following {} log pattern(s); serving {scheme}://{}/metrics",
        site.follower().sources().len(),
        site.local_addr()
    );
    crate::notify::ready(&format!("serving {scheme}://{}/metrics", site.local_addr()));

    signals::serve_until_stopped(site, signals).await
}

/// `--once`: read every file to its end and print one summary.
fn once(args: LogsArgs) -> Result<ExitCode> {
    if args.files.is_empty() {
        anyhow::bail!("--once needs at least one FILE");
    }
    let format = compile(&args.log_format)?;
    let mut summary =
        onionwatch_logs::once::summarise(&args.files, &format, args.analytics(), args.max_line)?;
    summary.project = args.project;
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string(&summary)?)?,
        Format::Prometheus => out!("{}", summary.to_prometheus())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The access-log format from `--log-format`.
fn compile(log_format: &str) -> Result<LogFormat> {
    LogFormat::compile(log_format).with_context(|| {
        format!(
            "invalid --log-format {log_format:?}; give the string of nginx's log_format directive"
        )
    })
}
