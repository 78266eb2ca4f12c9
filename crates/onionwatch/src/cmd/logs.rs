//! `onionwatch logs`: analyse nginx access logs.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::builder::TypedValueParser as _;
use clap::{Args, ValueEnum};
use flate2::read::MultiGzDecoder;
use onionwatch_logs::access::{LogFormat, ParseError};
use onionwatch_logs::analytics::{Analytics, AnalyticsConfig};
use onionwatch_logs::lines::{Line, LineReader, DEFAULT_MAX_LINE};
use onionwatch_logs::summary::FileSummary;

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
invalid, 2 on bad usage.";

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
pub struct LogsArgs {
    /// Read every FILE to its end, print one summary and exit. Following
    /// files as they grow is not implemented yet, so this flag is required.
    #[arg(long, required = true)]
    once: bool,
    /// nginx access logs, plain or gzip-compressed (as logrotate's `compress`
    /// leaves them); `-` reads standard input.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
    /// The nginx log_format string the files were written with; `combined`
    /// (nginx's and Onionspray's default) uses a faster parser.
    #[arg(long, value_name = "NGINX FORMAT", default_value = "combined")]
    log_format: String,
    /// Output format.
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

/// Run `onionwatch logs`.
pub fn run(args: LogsArgs) -> Result<ExitCode> {
    debug_assert!(args.once, "clap requires --once");
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
        Format::Json => println!("{}", serde_json::to_string(&summary)?),
        Format::Prometheus => print!("{}", summary.to_prometheus()),
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
