//! `onionwatch logs`: analyse nginx access logs once (`--once`), or follow
//! them (and tor and onionbalance logs) and serve their metrics.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::builder::TypedValueParser as _;
use clap::{ArgGroup, Args, ValueEnum};
use flate2::read::MultiGzDecoder;
use onionwatch_logs::access::{LogFormat, ParseError};
use onionwatch_logs::analytics::{Analytics, AnalyticsConfig};
use onionwatch_logs::follow::{FollowConfig, Follower, LogKind, Source};
use onionwatch_logs::guard::AbuseGuard;
use onionwatch_logs::lines::{Line, LineReader, DEFAULT_MAX_LINE};
use onionwatch_logs::policy::{Action, PolicyConfig};
use onionwatch_logs::severity::RecentLine;
use onionwatch_logs::summary::FileSummary;
use onionwatch_logs::tail::{TailConfig, TailState};
use onionwatch_server::Registry;
use onionwatch_tor::control::ControlTarget;

/// Read buffer per file. 64 KiB stays in the CPU cache between the kernel's
/// copy and the parser; 128 KiB and more measured slower (more system time).
const READ_BUFFER: usize = 64 * 1024;

/// Parse errors reported per file at debug level (-v) with line numbers.
const ERRORS_SHOWN: u64 = 5;

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
/healthz, and /api/v1/warnings (the last --keep-warnings warn/err lines of
each tor and onionbalance log, JSON). With --state it saves each file's position after counting its
lines, and resumes there after a restart: no line lost or counted twice.

JSON keys: lines, requests, parse_errors, parse_errors_by_reason,
requests_by_status ({\"200\": n}), requests_by_status_class, requests_by_method,
bytes, unique_circuits (HyperLogLog estimate: exact up to 1024 circuits, about
0.8% standard error above), unique_circuits_windows (1m/5m/1h up to the newest
log time), request_duration, circuit_window (requests per circuit and the
busiest circuits), files.

Circuit ids come from Onionspray's HiddenServiceExportCircuitID addresses
(fc00:dead:beef:4dad::/96) in $remote_addr or $proxy_protocol_addr, or from
$http_x_onion_circuitid. Lines that do not parse are counted and skipped
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
    /// `i_understand_closing_circuits`, `allow`, `cooldown_secs`, `dry_run`
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

/// `/api/v1/logs` (each project's summary, busiest circuits included: they
/// are never metric labels) and `/api/v1/warnings` (the kept tor and
/// onionbalance warnings).
pub(crate) fn api(follower: &Follower) -> axum::Router {
    let (logs, warnings) = (follower.clone(), follower.clone());
    axum::Router::new()
        .route(
            "/api/v1/logs",
            axum::routing::get(move || {
                let f = logs.clone();
                async move { axum::Json(f.summaries()) }
            }),
        )
        .route(
            "/api/v1/warnings",
            axum::routing::get(move || {
                let f = warnings.clone();
                async move { axum::Json(f.recent_warnings()) }
            }),
        )
}

/// Show each project's last tor and onionbalance warnings, as the follower
/// keeps them, on the dashboard (the logs are already being read: no
/// second read).
pub(crate) async fn feed_recent_warnings(
    follower: Follower,
    dashboard: Arc<onionwatch_dashboard::Dashboard>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for (project, lines) in dashboard_warnings(follower.recent_warnings()) {
            dashboard.set_recent_warnings(&project, lines);
        }
    }
}

/// Each project's last warning lines for its dashboard row: tor's last,
/// onionbalance's filling in when tor has fewer.
fn dashboard_warnings(
    recent: BTreeMap<String, BTreeMap<&'static str, Vec<RecentLine>>>,
) -> Vec<(String, Vec<String>)> {
    const SHOWN: usize = 5;
    recent
        .into_iter()
        // An installation-wide Onionbalance log has no project: no row.
        .filter(|(project, _)| !project.is_empty())
        .map(|(project, logs)| {
            let lines: Vec<String> = [LogKind::Onionbalance, LogKind::Tor]
                .iter()
                .filter_map(|k| logs.get(k.as_str()))
                .flatten()
                .map(|r| r.text.clone())
                .collect();
            let shown = lines[lines.len().saturating_sub(SHOWN)..].to_vec();
            (project, shown)
        })
        .collect()
}

/// Read and check an abusive-circuit policy file.
pub(crate) fn load_policy(path: &Path) -> Result<PolicyConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy file {}", path.display()))?;
    let policy: PolicyConfig = serde_saphyr::from_str(&text)
        .with_context(|| format!("invalid policy file {}", path.display()))?;
    policy
        .validate()
        .with_context(|| format!("invalid policy file {}", path.display()))?;
    Ok(policy)
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
    let format = LogFormat::compile(&args.log_format).with_context(|| {
        format!(
            "invalid --log-format {:?}; give the string of nginx's log_format directive",
            args.log_format
        )
    })?;
    if args.files.iter().any(|f| f == Path::new("-")) {
        anyhow::bail!("standard input cannot be followed: use --once to read it");
    }
    let all = args
        .files
        .iter()
        .chain(&args.tor_log)
        .chain(&args.onionbalance_log);
    if let Some(gz) = all
        .into_iter()
        .find(|f| f.extension().is_some_and(|e| e == "gz"))
    {
        anyhow::bail!(
            "{} is compressed and cannot be followed: analyse rotated .gz files with --once, \
             and follow the live log (e.g. nginx-access.log)",
            gz.display()
        );
    }
    let project = args.project.clone().unwrap_or_default();
    let mut sources = Vec::new();
    for (kind, paths) in [
        (LogKind::Access, &args.files),
        (LogKind::Tor, &args.tor_log),
        (LogKind::Onionbalance, &args.onionbalance_log),
    ] {
        for p in paths {
            sources.push(Source {
                project: project.clone(),
                kind,
                pattern: p.clone(),
            });
        }
    }
    let state = match &args.state {
        Some(path) => TailState::load(path)?,
        None => TailState::default(),
    };
    let endpoint = args.endpoint.config(args.listen)?;
    let config = FollowConfig {
        tail: TailConfig {
            poll_interval: Duration::from_millis(args.poll_interval),
            max_line: args.max_line,
            start_at_end: args.from_end,
            ..TailConfig::default()
        },
        analytics: AnalyticsConfig {
            circuit_window_secs: args.window,
            top_k: args.top,
            ..AnalyticsConfig::default()
        },
        keep_warnings: args.keep_warnings,
        state_file: args.state.clone(),
        ..FollowConfig::default()
    };
    let follower = Follower::new(config, format, sources, state);
    let registry = Arc::new(Registry::default());
    registry.register(follower.collector());
    // The policy sees every record, so it is in place before the follower starts.
    if let Some(path) = &args.policy {
        let policy = load_policy(path)?;
        let target = match &args.control_port {
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
        let guard = AbuseGuard::new(
            policy,
            Box::new(move |_| {
                target
                    .clone()
                    .ok_or_else(|| "no --control-port given".into())
            }),
        )?;
        follower.set_record_hook(guard.hook());
        registry.register(guard);
    }
    let handle = follower
        .spawn()
        .context("cannot start the log follower thread")?;
    let app = onionwatch_server::router(registry).merge(api(&follower));
    let server = onionwatch_server::start(&endpoint, app).await?;
    let scheme = if endpoint.tls.is_some() {
        "https"
    } else {
        "http"
    };
    eprintln!(
        "following {} log pattern(s); serving {scheme}://{}/metrics",
        follower.sources().len(),
        server.local_addr()
    );

    super::endpoint::until_stopped(&server).await?;
    tracing::info!("stopping");
    // Joins the follower thread, which saves the state.
    tokio::task::spawn_blocking(move || handle.stop())
        .await
        .context("the log follower panicked")?;
    server.shutdown(Duration::from_secs(5)).await?;
    Ok(ExitCode::SUCCESS)
}

/// `--once`: read every file to its end and print one summary.
fn once(args: LogsArgs) -> Result<ExitCode> {
    if args.files.is_empty() {
        anyhow::bail!("--once needs at least one FILE");
    }
    let format = LogFormat::compile(&args.log_format).with_context(|| {
        format!(
            "invalid --log-format {:?}; give the string of nginx's log_format directive",
            args.log_format
        )
    })?;
    tracing::debug!(fast_path = format.is_fast_path(), "log format compiled");

    // Open everything first: a wrong path fails before any long parse.
    let mut inputs = Vec::with_capacity(args.files.len());
    for path in &args.files {
        inputs.push((path, open(path)?));
    }

    let mut analytics = Analytics::new(AnalyticsConfig {
        circuit_window_secs: args.window,
        top_k: args.top,
        ..AnalyticsConfig::default()
    });
    let mut files = Vec::with_capacity(inputs.len());
    for (path, reader) in inputs {
        let file = analyse(path, reader, &format, &mut analytics, args.max_line)
            .with_context(|| format!("cannot read {}", path.display()))?;
        files.push(file);
    }

    let mut summary = analytics.summary();
    summary.project = args.project;
    summary.files = files;
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string(&summary)?)?,
        Format::Prometheus => out!("{}", summary.to_prometheus())?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Open a file (or stdin for `-`), transparently decompressing gzip.
fn open(path: &Path) -> Result<Box<dyn BufRead>> {
    let raw: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(path).with_context(|| {
            format!(
                "cannot open {}: check the path, and that this user may read it \
                 (nginx logs are often readable only by root or the adm group)",
                path.display()
            )
        })?;
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, raw);
    let magic = reader
        .fill_buf()
        .with_context(|| format!("cannot read {}", path.display()))?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        tracing::debug!(path = %path.display(), "gzip-compressed");
        return Ok(Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(reader),
        )));
    }
    Ok(Box::new(reader))
}

/// Feed every line of one file into `analytics`.
fn analyse(
    path: &Path,
    reader: Box<dyn BufRead>,
    format: &LogFormat,
    analytics: &mut Analytics,
    max_line: usize,
) -> io::Result<FileSummary> {
    let (lines_before, errors_before) = (analytics.lines(), analytics.parse_errors());
    let mut lines = LineReader::new(reader, max_line);
    let mut line_no: u64 = 0;
    let mut first_error: Option<(u64, ParseError)> = None;
    while let Some(line) = lines.next_line()? {
        line_no += 1;
        let result = match line {
            Line::Complete(bytes) => format.parse(bytes),
            Line::TooLong { .. } => Err(ParseError::TooLong { limit: max_line }),
        };
        match result {
            Ok(record) => analytics.record(&record),
            Err(e) => {
                analytics.error(&e);
                let errors = analytics.parse_errors() - errors_before;
                if errors <= ERRORS_SHOWN {
                    tracing::debug!(path = %path.display(), line = line_no, "{e}");
                }
                first_error.get_or_insert((line_no, e));
            }
        }
    }
    let file = FileSummary {
        path: path.display().to_string(),
        lines: analytics.lines() - lines_before,
        parse_errors: analytics.parse_errors() - errors_before,
        bytes_read: lines.bytes_read(),
    };
    if let Some((at, e)) = first_error {
        let hint = if file.parse_errors == file.lines {
            "; no line parsed: is --log-format the one nginx writes this file with?"
        } else {
            ""
        };
        tracing::warn!(
            "{}: {} of {} lines did not parse (first at line {at}: {e}){hint}",
            path.display(),
            file.parse_errors,
            file.lines
        );
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionwatch_logs::severity::Severity;

    fn lines(kind: LogKind, texts: &[&str]) -> BTreeMap<&'static str, Vec<RecentLine>> {
        let lines = texts
            .iter()
            .map(|t| RecentLine {
                severity: Severity::Warn,
                text: (*t).to_owned(),
            })
            .collect();
        BTreeMap::from([(kind.as_str(), lines)])
    }

    #[test]
    fn dashboard_rows_skip_only_the_installation_wide_log() {
        let mut both = lines(LogKind::Onionbalance, &["ob1", "ob2"]);
        both.extend(lines(LogKind::Tor, &["t1", "t2", "t3", "t4"]));
        let recent = BTreeMap::from([
            (
                String::new(),
                lines(LogKind::Onionbalance, &["whole install"]),
            ),
            ("news".to_owned(), lines(LogKind::Onionbalance, &["ob"])),
            ("shop".to_owned(), both),
        ]);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dashboard_warnings(recent),
            [
                ("news".to_owned(), s(&["ob"])),
                ("shop".to_owned(), s(&["ob2", "t1", "t2", "t3", "t4"])),
            ]
        );
    }
}
