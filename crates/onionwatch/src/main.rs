//! `onionwatch`: monitor Tor onion services from the inside and from the outside.

/// `print!` that returns the write error instead of panicking. Every
/// command writes its standard output through `out!`/`outln!`, so a reader
/// that goes away (`| head`) ends the command quietly (see `main`).
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` that returns the write error instead of panicking (see `out!`).
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

mod cmd;
mod logging;
mod memory;
mod notify;
mod signals;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Monitor Tor onion services: reachability from the Tor network, descriptors,
/// and the health of the tor daemons and web servers behind them.
#[derive(Debug, Parser)]
#[command(name = "onionwatch", version, about, long_about = None, propagate_version = true)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides it; either
    /// overrides `probe`'s log_level.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    /// Log line format on standard error: text, logfmt or json (one object
    /// per line, with ts, level, target, msg and the event's fields).
    #[arg(
        id = "log_output_format",
        long = "log.format",
        value_name = "FORMAT",
        value_enum,
        default_value = "text",
        env = "ONIONWATCH_LOG_FORMAT",
        global = true
    )]
    log_format: logging::LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show everything at once: a private Tor network with a healthy, a
    /// slow, a failing and an offline onion service, probed from the
    /// outside, watched from the inside, on a dashboard on 127.0.0.1.
    Demo(cmd::demo::DemoArgs),
    /// Probe onion services from the outside (descriptor, HTTP(S), TCP),
    /// concurrently; reads Onionprobe configs and exports its metrics.
    // Boxed: its many Onionprobe options make it the largest by far.
    Probe(Box<cmd::probe::ProbeArgs>),
    /// Watch a whole site: scrape every project's tor MetricsPort, control
    /// port and nginx stub_status, follow its logs, probe its onion services
    /// from the outside, and serve it all on one loopback endpoint.
    Watch(cmd::watch::WatchArgs),
    /// Check torrc files and Onionspray configurations for unsafe or broken
    /// monitoring settings; suggest per-project MetricsPorts.
    Audit(cmd::audit::AuditArgs),
    /// Analyse nginx access logs: requests by status and method, bytes,
    /// unique onion circuits, requests per circuit (JSON or Prometheus); or
    /// follow them and tor/onionbalance logs across rotations, serving /metrics.
    Logs(cmd::logs::LogsArgs),
    /// Reverse proxy for onion services: reads tor's PROXY header, adds
    /// X-Onion-CircuitID upstream, rate-limits per circuit (SIGHUP reloads).
    Gateway(cmd::gateway::GatewayArgs),
    /// Publish onionwatch's endpoint as an onion service with client
    /// authorization: only holders of the printed key can reach it.
    ExposeOnion(cmd::expose::ExposeArgs),
    /// On the Prometheus side: serve on loopback the metrics of an onion
    /// service published with expose-onion, fetched through tor.
    ScrapeGateway(cmd::expose::ScrapeGatewayArgs),
    /// Run a private Tor network on loopback (authorities, relays, onion
    /// services, a client) for trying onionwatch out and for tests.
    #[command(subcommand)]
    Testnet(cmd::testnet::TestnetCommand),
    /// Print a shell completion script: `onionwatch completions bash >
    /// /etc/bash_completion.d/onionwatch` (zsh: a `_onionwatch` file in
    /// $fpath; fish: ~/.config/fish/completions/onionwatch.fish).
    Completions(cmd::completions::CompletionsArgs),
    /// Write the man pages (onionwatch.1, onionwatch-probe.1, ...) into a
    /// directory; the Debian package is built with it.
    #[command(hide = true)]
    Manpages(cmd::completions::ManpagesArgs),
}

/// The clap definition of the whole command line, for the generated
/// completions and man pages.
pub(crate) fn cli_command() -> clap::Command {
    Cli::command()
}

/// Exit status of a command-line usage error: Nagios' UNKNOWN, so it never
/// reads as `audit`'s or `probe --check`'s CRITICAL (2, clap's default).
const USAGE_ERROR: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version go to stdout and succeed.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(USAGE_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    // Before any thread starts: it takes NOTIFY_SOCKET out of the
    // environment, so the tors we launch do not notify in our name.
    notify::init();
    memory::init();
    logging::init(cli.verbose, cli.log_format);
    onionwatch_server::exporter::set_build(
        env!("ONIONWATCH_REVISION"),
        env!("ONIONWATCH_RUSTC_VERSION"),
    );

    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        memory::spawn_trim();
        match cli.command {
            Command::Testnet(c) => cmd::testnet::run(c).await,
            Command::Demo(a) => cmd::demo::run(a).await,
            Command::ExposeOnion(a) => cmd::expose::expose_onion(a).await,
            Command::ScrapeGateway(a) => cmd::expose::scrape_gateway(a).await,
            Command::Logs(a) => cmd::logs::run(a).await,
            Command::Audit(a) => cmd::audit::run(a),
            Command::Watch(a) => cmd::watch::run(a).await,
            Command::Probe(a) => cmd::probe::run(*a).await,
            Command::Gateway(a) => cmd::gateway::run(a).await,
            Command::Completions(a) => cmd::completions::completions(a),
            Command::Manpages(a) => cmd::completions::manpages(a),
        }
    });
    // Dropping the runtime would wait without end for a blocking task
    // (a file read, a bcrypt check) still running: the command has finished,
    // so it exits within a second whatever such a task does.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        // Whoever read our output stopped (`| head`): not worth a message.
        Err(e) if stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A write to standard output failed. Its own type, so `main` can tell our
/// reader going away from a broken pipe anywhere else (a tor's stdin, a
/// SOCKS or control connection), which is a real failure.
#[derive(Debug)]
struct StdoutError(std::io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cannot write to standard output")
    }
}

impl std::error::Error for StdoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn write_stdout(args: std::fmt::Arguments<'_>) -> Result<(), StdoutError> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args).map_err(StdoutError)?;
    // Flushed now, so a closed pipe is seen here and not lost at exit.
    stdout.flush().map_err(StdoutError)
}

/// Whether `e` comes from our standard output's reader having gone away.
fn stdout_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<StdoutError>()
            .is_some_and(|s| s.0.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use std::io::{Error, ErrorKind};

    #[test]
    fn only_a_closed_stdout_is_quiet() {
        let closed = || StdoutError(Error::from(ErrorKind::BrokenPipe));
        assert!(stdout_closed(&anyhow::Error::new(closed())));
        assert!(stdout_closed(
            &Err::<(), _>(closed())
                .context("print the table")
                .unwrap_err()
        ));
        // A broken pipe elsewhere, e.g. writing to tor-gencert's stdin.
        let elsewhere = Err::<(), _>(Error::from(ErrorKind::BrokenPipe))
            .context("write the passphrase to tor-gencert")
            .unwrap_err();
        assert!(!stdout_closed(&elsewhere));
        // Standard output failing otherwise (a full disk) is reported.
        let full = StdoutError(Error::from(ErrorKind::StorageFull));
        assert!(!stdout_closed(&anyhow::Error::new(full)));
    }
}
