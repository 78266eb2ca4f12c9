//! `onionwatch audit`: check torrc files and Onionspray configurations.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, ValueEnum};
use onionwatch_onionspray::audit::{audit, suggest_ports, suggestions_text};

const AFTER: &str = "\
Rules: metrics-port-exposed, metrics-policy-missing, metrics-policy-empty,
metrics-policy-accept-all, metrics-port-shared, control-port-shared,
control-port-no-auth, export-circuit-id-without-proxy-protocol,
proxy-protocol-without-export-circuit-id (checked when both the project's
tor.conf and nginx.conf are there).

Examples:
  onionwatch audit /etc/tor/torrc
  onionwatch audit /home/onionspray/onionspray            # every project
  onionwatch audit --format json projects/news/tor.conf news.conf
  onionwatch audit --suggest-ports /home/onionspray/onionspray

Exit status (Nagios' OK, WARNING, CRITICAL, UNKNOWN): 0 nothing found,
1 warnings only, 2 critical findings, 3 an input could not be read or bad
usage.";

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// Human-readable findings.
    Text,
    /// One JSON document.
    Json,
}

/// Check torrc files and Onionspray configurations for unsafe or broken
/// monitoring settings (MetricsPort exposure and policy, shared ports,
/// unauthenticated control ports, circuit-id export without proxy_protocol).
#[derive(Debug, Args)]
#[command(after_long_help = AFTER)]
pub struct AuditArgs {
    /// torrc files, Onionspray configurations (`set tor_metrics_port …`),
    /// project directories or Onionspray installation directories.
    #[arg(value_name = "PATH", required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Instead of auditing, print a distinct loopback `tor_metrics_port` for
    /// every project of each Onionspray installation given (one per tor
    /// worker of a softmap project), avoiding every port a tor uses or a
    /// project configuration names.
    #[arg(long)]
    suggest_ports: bool,
    /// First port --suggest-ports hands out.
    #[arg(long, default_value_t = 9035, requires = "suggest_ports")]
    base_port: u16,
}

pub fn run(args: AuditArgs) -> Result<ExitCode> {
    if args.suggest_ports {
        let mut all = Vec::new();
        for p in &args.paths {
            match suggest_ports(p, args.base_port) {
                Ok(s) => all.push((p.clone(), s)),
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(3));
                }
            }
        }
        match args.format {
            Format::Json => {
                let v: Vec<_> = all
                    .iter()
                    .map(|(p, s)| serde_json::json!({"installation": p, "projects": s}))
                    .collect();
                outln!("{}", serde_json::to_string(&v)?)?;
            }
            Format::Text => {
                for (p, s) in &all {
                    outln!("# {}", p.display())?;
                    out!("{}", suggestions_text(s))?;
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = match audit(&args.paths) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(3));
        }
    };
    match args.format {
        Format::Json => outln!("{}", serde_json::to_string(&report)?)?,
        Format::Text => out!("{}", report.to_text())?,
    }
    Ok(ExitCode::from(report.exit_code()))
}
