//! `onionwatch probe`: outside monitoring, a concurrent drop-in for Onionprobe.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use onionwatch_probe::config::{Config, ControlPassword, ControlPort};
use onionwatch_probe::output::{json_line, nagios_with, table};
use onionwatch_probe::runner::{exporter_endpoint, start_exporter, Exposition};
use onionwatch_probe::{Event, Finish, ProbeMetrics, ProbeResult, Runner, Tor};

use crate::signals::Signals;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// A table at the end of each round (and a progress bar on a terminal).
    Text,
    /// One JSON object per probe result per line, as results come in.
    Json,
}

const AFTER: &str = "\
Examples:
  onionwatch probe -e ADDRESS.onion --no-launch_tor --socks_port 9050 --control_port 9051
  onionwatch probe -c configs/tor.yaml --format json
  onionwatch probe -c site.yaml --check     (Nagios/Icinga exit codes)
  onionwatch probe -c all.yaml --vantage eu-1 --shard 2/3 --prometheus_exporter
  onionwatch probe -c all.yaml --list --shard 2/3   (the endpoints shard 2 of 3 covers)
  onionwatch probe -c all.yaml --vantage eu-1 --loop --state-dir /var/lib/onionwatch \\
      --remote-write https://prometheus.example/api/v1/write   (push, no exporter needed)
  onionwatch probe -c site.yaml --prometheus_exporter --prometheus_exporter_address 0.0.0.0 \\
      --tls-cert cert.pem --tls-key key.pem --auth-file auth.yaml

Exit status: 0 when every probe of every round passed, 1 otherwise (or on
error), 3 on bad usage; with --check 0 OK, 1 WARNING, 2 CRITICAL,
3 UNKNOWN (bad usage or no usable tor included).";

/// Probe onion services from the outside: descriptor (HSFETCH, decrypted),
/// then HTTP(S) or TCP through tor, concurrently. Reads Onionprobe's YAML
/// config and exports its metric names.
#[derive(Debug, Args, Clone)]
#[command(after_long_help = AFTER)]
pub struct ProbeArgs {
    /// Onionprobe YAML config file (ONIONPROBE_CONFIG also works).
    #[arg(short = 'c', long, env = "ONIONPROBE_CONFIG")]
    config: Option<PathBuf>,
    /// Endpoints to probe: ADDRESS.onion or http(s)://ADDRESS.onion:PORT/PATH (port optional) or tcp://ADDRESS.onion:PORT.
    #[arg(short = 'e', long = "endpoints", num_args = 1..)]
    endpoints: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Run one round and print a Nagios/Icinga one-line summary; exit 0 OK,
    /// 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    #[arg(long)]
    check: bool,
    /// Onion services probed at the same time (default 32).
    #[arg(long)]
    concurrency: Option<usize>,
    /// The tor binary to launch.
    #[arg(long = "tor_binary", alias = "tor-binary")]
    tor_binary: Option<PathBuf>,
    /// PEM file of CA certificates trusted (besides the web PKI roots) to
    /// verify HTTPS onion services (onionwatch extension; config key
    /// tls_ca_file).
    #[arg(long = "tls_ca_file", alias = "tls-ca-file")]
    tls_ca_file: Option<PathBuf>,
    /// Extra torrc line for the launched tor (repeatable).
    #[arg(long = "tor_config", alias = "tor-config")]
    tor_config: Vec<String>,

    // Onionprobe's options, same names.
    /// Log level (debug, info, warning, error, critical; critical shows
    /// errors). RUST_LOG and -v take precedence.
    #[arg(long = "log_level", alias = "log-level")]
    log_level: Option<String>,
    /// Tor address (SOCKS and control).
    #[arg(long = "tor_address", alias = "tor-address")]
    tor_address: Option<String>,
    /// Tor SOCKS port (default 19050).
    #[arg(long = "socks_port", alias = "socks-port")]
    socks_port: Option<u16>,
    /// Tor control port (default 19051) or unix:/path.
    #[arg(long = "control_port", alias = "control-port")]
    control_port: Option<String>,
    /// Tor control password. Other local users can read it in the process
    /// list: prefer --control_password_file (or the config file's
    /// control_password).
    #[arg(
        long = "control_password",
        alias = "control-password",
        conflicts_with = "control_password_file"
    )]
    control_password: Option<String>,
    /// File holding the tor control password on its first line (a pipe
    /// works too); overrides the config file's control_password, re-read on
    /// SIGHUP.
    #[arg(
        long = "control_password_file",
        alias = "control-password-file",
        value_name = "FILE"
    )]
    control_password_file: Option<PathBuf>,
    /// MetricsPort of the launched tor.
    #[arg(long = "metrics_port", alias = "metrics-port")]
    metrics_port: Option<String>,
    /// MetricsPortPolicy of the launched tor.
    #[arg(long = "metrics_port_policy", alias = "metrics-port-policy")]
    metrics_port_policy: Option<String>,
    /// With --loop: stop after this many rounds (0: no limit).
    #[arg(long)]
    rounds: Option<u64>,
    /// Max seconds between starting two endpoints.
    #[arg(long)]
    interval: Option<f64>,
    /// Max seconds between rounds.
    #[arg(long)]
    sleep: Option<f64>,
    /// Extra descriptor fetches.
    #[arg(long = "descriptor_max_retries", alias = "descriptor-max-retries")]
    descriptor_max_retries: Option<u32>,
    /// Seconds per descriptor fetch.
    #[arg(long = "descriptor_timeout", alias = "descriptor-timeout")]
    descriptor_timeout: Option<f64>,
    /// Seconds to open a stream (rendezvous included).
    #[arg(long = "http_connect_timeout", alias = "http-connect-timeout")]
    http_connect_timeout: Option<f64>,
    /// Seconds per read.
    #[arg(long = "http_read_timeout", alias = "http-read-timeout")]
    http_read_timeout: Option<f64>,
    /// Extra connection attempts per path.
    #[arg(long = "http_connect_max_retries", alias = "http-connect-max-retries")]
    http_connect_max_retries: Option<u32>,
    /// Seconds for the TLS handshake.
    #[arg(long = "tls_connect_timeout", alias = "tls-connect-timeout")]
    tls_connect_timeout: Option<f64>,
    /// Extra TLS attempts.
    #[arg(long = "tls_connect_max_retries", alias = "tls-connect-max-retries")]
    tls_connect_max_retries: Option<u32>,
    /// CircuitStreamTimeout of the launched tor.
    #[arg(long = "circuit_stream_timeout", alias = "circuit-stream-timeout")]
    circuit_stream_timeout: Option<u32>,
    /// Metrics port (default 9935, on 127.0.0.1).
    #[arg(long = "prometheus_exporter_port", alias = "prometheus-exporter-port")]
    prometheus_exporter_port: Option<u16>,
    /// Metrics address (default 127.0.0.1). A non-loopback one (e.g.
    /// 0.0.0.0 in a container) is served even without TLS and
    /// authentication, with a warning.
    #[arg(
        long = "prometheus_exporter_address",
        alias = "prometheus-exporter-address"
    )]
    prometheus_exporter_address: Option<IpAddr>,
    /// The metrics endpoint's TLS, authentication and limits, as for
    /// `watch` (--i-understand-the-risk is not needed here: an explicit
    /// non-loopback --prometheus_exporter_address is served with a warning).
    #[command(flatten)]
    exporter: super::endpoint::EndpointArgs,

    #[arg(long = "launch_tor", overrides_with = "no_launch_tor")]
    launch_tor: bool,
    /// Use the tor at --tor_address/--control_port/--socks_port instead of launching one.
    #[arg(long = "no-launch_tor", alias = "no-launch-tor")]
    no_launch_tor: bool,
    /// Run rounds continuously.
    #[arg(long = "loop", overrides_with = "no_loop")]
    loop_: bool,
    #[arg(long = "no-loop")]
    no_loop: bool,
    /// Shuffle the endpoints each round.
    #[arg(long, overrides_with = "no_shuffle")]
    shuffle: bool,
    #[arg(long = "no-shuffle")]
    no_shuffle: bool,
    /// Randomize waits.
    #[arg(long, overrides_with = "no_randomize")]
    randomize: bool,
    #[arg(long = "no-randomize")]
    no_randomize: bool,
    /// Fresh circuit for every attempt.
    #[arg(
        long = "new_circuit",
        alias = "new-circuit",
        overrides_with = "no_new_circuit"
    )]
    new_circuit: bool,
    #[arg(long = "no-new_circuit", alias = "no-new-circuit")]
    no_new_circuit: bool,
    /// Follow redirects that leave the onion service (onionwatch
    /// extension; config key follow_redirects_elsewhere).
    #[arg(
        long = "follow_redirects_elsewhere",
        alias = "follow-redirects-elsewhere",
        overrides_with = "no_follow_redirects_elsewhere"
    )]
    follow_redirects_elsewhere: bool,
    #[arg(
        long = "no-follow_redirects_elsewhere",
        alias = "no-follow-redirects-elsewhere"
    )]
    no_follow_redirects_elsewhere: bool,
    /// Verify certificates.
    #[arg(
        long = "tls_verify",
        alias = "tls-verify",
        overrides_with = "no_tls_verify"
    )]
    tls_verify: bool,
    #[arg(long = "no-tls_verify", alias = "no-tls-verify")]
    no_tls_verify: bool,
    /// Record TLS details of https endpoints.
    #[arg(
        long = "test_tls_connection",
        overrides_with = "no_test_tls_connection"
    )]
    test_tls_connection: bool,
    #[arg(long = "no-test_tls_connection")]
    no_test_tls_connection: bool,
    /// Record certificate details.
    #[arg(
        long = "get_certificate_info",
        overrides_with = "no_get_certificate_info"
    )]
    get_certificate_info: bool,
    #[arg(long = "no-get_certificate_info")]
    no_get_certificate_info: bool,
    /// Serve Prometheus metrics (implies --loop).
    #[arg(
        long = "prometheus_exporter",
        alias = "prometheus-exporter",
        overrides_with = "no_prometheus_exporter"
    )]
    prometheus_exporter: bool,
    #[arg(long = "no-prometheus_exporter", alias = "no-prometheus-exporter")]
    no_prometheus_exporter: bool,

    // Several probers (issue 17).
    /// Name of this prober's vantage point, added as a `vantage` label to
    /// every exported series (config key vantage).
    #[arg(long, value_name = "NAME")]
    vantage: Option<String>,
    /// Probe only shard I of N of the endpoint list (rendezvous hashing of
    /// the endpoint names; config key shard), e.g. 1/3.
    #[arg(long, value_name = "I/N")]
    shard: Option<onionwatch_probe::shard::Shard>,
    /// Print the names of the endpoints this prober (its --shard) covers,
    /// one per line, and exit without probing.
    #[arg(long)]
    list: bool,

    // Alerts (onionwatch extension).
    /// Notify this webhook (Alertmanager's webhook payload) when a built-in
    /// alert fires or resolves; repeatable. Adds to the config's
    /// `notifiers:`; with any notifier (or an `alerts:` section) the alert
    /// rules run (not with --check).
    #[arg(long = "notify-webhook", alias = "notify_webhook", value_name = "URL")]
    notify_webhook: Vec<String>,

    // remote_write (issue 17).
    /// Push every exported series to this remote_write receiver, e.g.
    /// http://127.0.0.1:9090/api/v1/write (repeatable; config key
    /// remote_write for authentication, TLS and headers). Works without
    /// --prometheus_exporter; pushes at the probe interval (`interval`).
    #[arg(long = "remote-write", alias = "remote_write", value_name = "URL")]
    remote_write: Vec<String>,
    /// Keep state here: the alert state (alerts.json: a restart neither
    /// repeats a firing notification nor loses a resolution) and the
    /// remote_write buffer (samples survive a receiver outage and a
    /// restart); without it both live in memory only.
    #[arg(long = "state-dir", alias = "state_dir", value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

fn flag(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

impl ProbeArgs {
    /// The config file (if any) with the command line applied on top, and
    /// the file's warnings (logged by [`apply_logging`] once the level is
    /// known).
    fn build_config(&self) -> Result<(Config, Vec<String>)> {
        let (mut c, mut warnings) = match &self.config {
            Some(path) => Config::load(path)?,
            None => (Config::default(), Vec::new()),
        };
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = self.$f.clone() { c.$f = v; } )* };
        }
        set!(
            log_level,
            tor_address,
            socks_port,
            metrics_port_policy,
            rounds,
            interval,
            sleep,
            descriptor_max_retries,
            descriptor_timeout,
            http_connect_timeout,
            http_read_timeout,
            http_connect_max_retries,
            tls_connect_timeout,
            tls_connect_max_retries,
            circuit_stream_timeout,
            prometheus_exporter_port,
            prometheus_exporter_address,
            concurrency,
            tor_binary
        );
        if let Some(p) = &self.control_port {
            c.control_port = p
                .parse::<ControlPort>()
                .map_err(|e| anyhow::anyhow!("--control_port: {e}"))?;
        }
        if let Some(p) = &self.tls_ca_file {
            c.tls_ca_file = Some(p.clone());
        }
        // No environment variable here: one exported for expose-onion would
        // silently override the config's control_password (Onionprobe reads
        // none either).
        let secret = super::secret::control_password(
            self.control_password.as_deref(),
            self.control_password_file.as_deref(),
            None,
            super::secret::Sources {
                flag: "--control_password",
                file_flag: "--control_password_file",
                env: None,
            },
        )?;
        warnings.extend(secret.warnings);
        if let Some(p) = secret.password {
            c.control_password = Some(ControlPassword::Password(p));
        }
        if let Some(m) = &self.metrics_port {
            c.metrics_port = (!m.is_empty() && m != "0").then(|| m.clone());
        }
        c.tor_config.extend(self.tor_config.iter().cloned());
        macro_rules! boolean {
            ($($f:ident / $no:ident => $field:ident),*) => { $( if let Some(v) = flag(self.$f, self.$no) { c.$field = v; } )* };
        }
        boolean!(
            launch_tor / no_launch_tor => launch_tor,
            loop_ / no_loop => loop_,
            shuffle / no_shuffle => shuffle,
            randomize / no_randomize => randomize,
            new_circuit / no_new_circuit => new_circuit,
            test_tls_connection / no_test_tls_connection => test_tls_connection,
            get_certificate_info / no_get_certificate_info => get_certificate_info,
            prometheus_exporter / no_prometheus_exporter => prometheus_exporter,
            follow_redirects_elsewhere / no_follow_redirects_elsewhere => follow_redirects_elsewhere
        );
        if let Some(v) = flag(self.tls_verify, self.no_tls_verify) {
            c.tls_verify = Some(v);
        }
        if let Some(v) = &self.vantage {
            c.vantage = Some(v.clone());
        }
        if let Some(shard) = self.shard {
            c.shard = Some(shard);
        }
        c.remote_write.extend(
            self.remote_write
                .iter()
                .map(onionwatch_remote_write::RemoteWriteConfig::from_url),
        );
        for e in &self.endpoints {
            let (name, endpoint) = onionwatch_probe::address::endpoint_from_arg(e)
                .with_context(|| format!("-e {e}"))?;
            c.endpoints.insert(name, endpoint);
        }
        c.targets().context("invalid configuration")?;
        Ok((c, warnings))
    }
}

/// Apply `log_level` (unless RUST_LOG or -v decided, see `crate::logging`),
/// then log the config's warnings at that level.
fn apply_logging(config: &Config, warnings: &[String]) {
    crate::logging::apply_config_level(&config.log_level);
    for w in warnings {
        tracing::warn!("{w}");
    }
    tracing::debug!(
        log_level = %config.log_level,
        endpoints = config.endpoints.len(),
        launch_tor = config.launch_tor,
        looping = config.looping(),
        concurrency = config.concurrency,
        "configuration loaded"
    );
}

/// A progress bar for a round on a terminal.
fn progress_bar(round: u64, expected: u64) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(expected);
    b.set_style(
        indicatif::ProgressStyle::with_template("round {msg} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b.set_message(round.to_string());
    b
}

pub async fn run(args: ProbeArgs) -> Result<ExitCode> {
    if args.config.is_none() && args.endpoints.is_empty() {
        bail!("nothing to probe: give a config file (-c FILE) or endpoints (-e ADDRESS_OR_URL…)");
    }
    let config = match args.build_config() {
        Ok((c, warnings)) => {
            apply_logging(&c, &warnings);
            c
        }
        Err(e) if args.check => {
            outln!("ONIONWATCH UNKNOWN - {e:#}")?;
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e),
    };
    if args.list {
        for t in config.shard_targets()? {
            outln!("{}", t.name)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let labels = config.labels()?;
    // Where and how metrics are served is checked before tor starts, and
    // the endpoint bound: a bad address, file or busy port fails at once.
    // The endpoint options are checked as for a loopback address; where
    // the prober may listen is exporter_endpoint's rule.
    let options = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 0);
    let endpoint = match args
        .exporter
        .config(options)
        .map_err(anyhow::Error::from)
        .and_then(|base| Ok(exporter_endpoint(&config, base)?))
    {
        Ok(e) => e.filter(|_| !args.check),
        Err(e) if args.check => {
            outln!("ONIONWATCH UNKNOWN - {e:#}")?;
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(e),
    };
    // A single --check round never fills an alert window: no alerts there.
    let alerting = if args.check {
        None
    } else {
        super::alerting::start(
            config.alerts.as_ref(),
            config.notifiers.clone(),
            &args.notify_webhook,
            args.state_dir.as_deref(),
            &labels,
        )?
    };
    let metrics = Arc::new(ProbeMetrics::new());
    let exposition = Exposition::new(metrics.clone(), labels);
    // The engine's and notifiers' families, labelled and pushed as the rest.
    for source in alerting.iter().flat_map(|a| a.collectors()) {
        exposition.registry.register(source);
    }
    // Pushes what /metrics serves, whether or not it is served.
    let remote_write = if config.remote_write.is_empty() || args.check {
        None
    } else {
        let rw = onionwatch_remote_write::RemoteWrite::start(
            &config.remote_write,
            exposition.root.clone(),
            onionwatch_remote_write::Options {
                state_dir: args.state_dir.clone(),
                default_interval: std::time::Duration::from_secs_f64(config.interval.max(1.0)),
            },
        )?;
        exposition.registry.register(rw.collector());
        Some(rw)
    };
    let (exporter, ready_status) = match &endpoint {
        Some(endpoint) => {
            let routes = alerting.as_ref().map(|a| a.engine.router());
            let server = start_exporter(endpoint, &exposition, config.concurrency, routes).await?;
            let scheme = if endpoint.tls.is_some() {
                "https"
            } else {
                "http"
            };
            let url = format!("{scheme}://{}/metrics", server.local_addr());
            eprintln!("serving Prometheus metrics on {url}");
            let status = format!("serving {url}");
            (Some(server), Some(status))
        }
        None => (None, None),
    };
    let signals = Arc::new(Signals::with_hangup()?);
    let stop = signals.stop();
    tokio::pin!(stop);
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
    let hup = tokio::spawn({
        let signals = Arc::clone(&signals);
        async move {
            loop {
                signals.hangup().await;
                if reload_tx.send(()).is_err() {
                    break;
                }
            }
        }
    });

    let tor = tokio::select! {
        t = Tor::from_config(&config) => match t {
            Ok(t) => Arc::new(t),
            Err(e) if args.check => {
                outln!("ONIONWATCH UNKNOWN - {:#}", anyhow::Error::from(e))?;
                return Ok(ExitCode::from(3));
            }
            Err(e) => return Err(e.into()),
        },
        stop = &mut stop => return Ok(stop.exit_code()),
    };
    let rebuild_args = args.clone();
    let round_metrics = metrics.clone();
    // --check warns of certificates under the alert rule's threshold.
    let cert_warning = config.alerts.as_ref().map_or(
        onionwatch_alert::CERT_WARNING_SECONDS,
        onionwatch_alert::AlertsConfig::certificate_warning_seconds,
    );
    let mut runner = Runner::new(tor, metrics, config)?.reload_on(reload_rx, move || {
        let (c, warnings) = rebuild_args.build_config()?;
        apply_logging(&c, &warnings);
        Ok(c)
    });
    if args.check {
        runner = runner.once();
    }
    if !args.check {
        // systemd hears READY once tor is up and the exporter (if any) answers.
        crate::notify::ready(ready_status.as_deref().unwrap_or("probing"));
    }
    if let Some(server) = exporter {
        runner = runner
            .with_exporter(server)
            .with_on_demand(exposition.on_demand.clone());
    }

    let tty = std::io::stdout().is_terminal() && args.format == Format::Text;
    let mut bar = None;
    let mut all_passed = true;
    let mut last_results: Vec<ProbeResult> = Vec::new();
    let finish = runner
        .run(&mut stop, |event| -> Result<()> {
            match event {
                Event::RoundStarted { round, expected } => {
                    bar = (tty && std::io::stderr().is_terminal())
                        .then(|| progress_bar(round, expected));
                }
                Event::Result(r) => {
                    if args.format == Format::Json {
                        outln!("{}", json_line(&r))?;
                    }
                    if let Some(b) = &bar {
                        b.inc(1);
                    }
                }
                Event::RoundDone { results, .. } => {
                    if let Some(b) = bar.take() {
                        b.finish_and_clear();
                    }
                    if args.format == Format::Text {
                        out!("{}", table(&results))?;
                    }
                    all_passed &= results.iter().all(|r| r.passed);
                    last_results = results;
                    if let Some(a) = &alerting {
                        // Never blocks: the notifiers queue and retry on their own.
                        let mut families = Vec::new();
                        onionwatch_server::Collect::collect(&*round_metrics, &mut families);
                        a.engine.observe(
                            onionwatch_alert::Source::Probe,
                            &families,
                            std::time::SystemTime::now(),
                        );
                    }
                }
            }
            Ok(())
        })
        .await?;
    hup.abort();
    if matches!(finish, Finish::Stopped(_)) {
        crate::notify::stopping();
    }
    runner.shutdown().await;
    if let Some(a) = &alerting {
        a.shutdown().await;
    }
    if let Some(rw) = remote_write {
        // The last round's results are pushed too (or stay buffered).
        rw.stop(std::time::Duration::from_secs(5)).await;
    }
    if args.check {
        let (state, line) = nagios_with(&last_results, cert_warning);
        outln!("{line}")?;
        return Ok(ExitCode::from(state as u8));
    }
    Ok(match finish {
        Finish::Stopped(stop) => stop.exit_code(),
        Finish::Done if all_passed => ExitCode::SUCCESS,
        Finish::Done => ExitCode::FAILURE,
    })
}
