//! `onionwatch probe`: outside monitoring, a concurrent drop-in for Onionprobe.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use onionwatch_probe::config::{Config, ControlPassword, ControlPort};
use onionwatch_probe::output::{json_line, nagios, table};
use onionwatch_probe::{LaunchOptions, ProbeMetrics, ProbeResult, Prober, Settings, Target, Tor};
use onionwatch_tor::control::{Auth, ControlAddr};
use tokio::signal::unix::{signal, SignalKind};

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
    /// Tor control password.
    #[arg(long = "control_password", alias = "control-password")]
    control_password: Option<String>,
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
    /// Metrics address (loopback only).
    #[arg(
        long = "prometheus_exporter_address",
        alias = "prometheus-exporter-address"
    )]
    prometheus_exporter_address: Option<IpAddr>,

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
        let (mut c, warnings) = match &self.config {
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
        if let Some(p) = &self.control_password {
            c.control_password = Some(ControlPassword::Password(p.clone()));
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
            prometheus_exporter / no_prometheus_exporter => prometheus_exporter
        );
        if let Some(v) = flag(self.tls_verify, self.no_tls_verify) {
            c.tls_verify = Some(v);
        }
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

fn tor_ip(c: &Config) -> Result<IpAddr> {
    c.tor_address
        .parse()
        .or_else(|_| {
            if c.tor_address == "localhost" {
                Ok(IpAddr::from([127, 0, 0, 1]))
            } else {
                Err(())
            }
        })
        .map_err(|_| {
            anyhow::anyhow!(
                "tor_address {:?} is not an IP address (use e.g. 127.0.0.1)",
                c.tor_address
            )
        })
}

async fn open_tor(c: &Config) -> Result<Tor> {
    let ip = tor_ip(c)?;
    let socks = SocketAddr::new(ip, c.socks_port);
    let control = match &c.control_port {
        ControlPort::Tcp(p) => ControlAddr::Tcp(SocketAddr::new(ip, *p)),
        ControlPort::Unix(p) => ControlAddr::Unix(p.clone()),
    };
    if c.launch_tor {
        tracing::info!(%socks, %control, "launching a private tor (temporary DataDirectory)");
        let o = LaunchOptions {
            binary: c.tor_binary.clone(),
            socks,
            control,
            circuit_stream_timeout: c.circuit_stream_timeout,
            metrics_port: c.metrics_port.clone(),
            metrics_port_policy: c.metrics_port_policy.clone(),
            extra: c.tor_config.clone(),
            bootstrap_timeout: Duration::from_secs(120),
        };
        return Tor::launch(&o).await.context("cannot launch tor");
    }
    let auth = match &c.control_password {
        Some(ControlPassword::Password(p)) => Auth::Password(p.clone()),
        _ => Auth::Auto { password: None },
    };
    Tor::connect(&control, auth, socks)
        .await
        .with_context(|| format!("cannot use the tor at control {control}, SOCKS {socks}"))
}

fn expected_results(targets: &[Target]) -> u64 {
    targets.iter().map(|t| t.paths.len().max(1) as u64).sum()
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
    let mut sigterm = signal(SignalKind::terminate()).context("install the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("install the SIGINT handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("install the SIGHUP handler")?;

    let metrics = Arc::new(ProbeMetrics::new());
    let tor = tokio::select! {
        t = open_tor(&config) => match t {
            Ok(t) => Arc::new(t),
            Err(e) if args.check => {
                outln!("ONIONWATCH UNKNOWN - {e:#}")?;
                return Ok(ExitCode::from(3));
            }
            Err(e) => return Err(e),
        },
        _ = sigint.recv() => return Ok(ExitCode::from(130)),
        _ = sigterm.recv() => return Ok(ExitCode::from(143)),
    };
    let prober = Prober::new(tor.clone(), metrics.clone(), Settings::from_config(&config));

    let mut server = None;
    if config.prometheus_exporter && !args.check {
        let registry = Arc::new(onionwatch_server::Registry::default());
        registry.register(metrics.clone());
        let addr = SocketAddr::new(
            config.prometheus_exporter_address,
            config.prometheus_exporter_port,
        );
        let listener = onionwatch_server::bind(addr, false)
            .await
            .with_context(|| format!("cannot serve metrics on {addr}"))?;
        eprintln!(
            "serving Prometheus metrics on http://{}/metrics",
            listener.local_addr()?
        );
        let app = onionwatch_server::router(registry);
        server = Some(tokio::spawn(onionwatch_server::serve_on(
            listener,
            app,
            std::future::pending(),
        )));
    }

    let mut config = config;
    let mut targets = config.targets()?;
    let tty = std::io::stdout().is_terminal() && args.format == Format::Text;
    let mut all_passed = true;
    let mut round = 0u64;
    let mut last_results: Vec<ProbeResult> = Vec::new();
    let code = 'outer: loop {
        round += 1;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ProbeResult>();
        let bar = (tty && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(expected_results(&targets));
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "round {msg} [{bar:30}] {pos}/{len} {elapsed}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(round.to_string());
            b
        });
        let p = prober.clone();
        let t = targets.clone();
        let mut round_task = tokio::spawn(async move { p.run_round(&t, round, Some(tx)).await });
        let results = loop {
            tokio::select! {
                r = rx.recv() => {
                    if let Some(r) = r {
                        if args.format == Format::Json {
                            outln!("{}", json_line(&r))?;
                        }
                        if let Some(b) = &bar { b.inc(1); }
                    }
                }
                done = &mut round_task => break done.unwrap_or_default(),
                _ = sigint.recv() => { round_task.abort(); break 'outer Interrupted::Int; }
                _ = sigterm.recv() => { round_task.abort(); break 'outer Interrupted::Term; }
            }
        };
        while let Ok(r) = rx.try_recv() {
            if args.format == Format::Json {
                outln!("{}", json_line(&r))?;
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        if args.format == Format::Text {
            out!("{}", table(&results))?;
        }
        all_passed &= results.iter().all(|r| r.passed);
        last_results = results;
        if args.check {
            break Interrupted::No;
        }
        if !config.looping() || (config.rounds > 0 && round >= config.rounds) {
            break Interrupted::No;
        }
        // Sleep between rounds; SIGHUP reloads the config meanwhile.
        let sleep = prober.wait(config.sleep, config.randomize);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                _ = sighup.recv() => reload(&args, &mut config, &mut targets, &prober),
                _ = sigint.recv() => break 'outer Interrupted::Int,
                _ = sigterm.recv() => break 'outer Interrupted::Term,
            }
        }
    };
    metrics.set_state(onionwatch_probe::metrics::State::Stopping);
    if let Some(s) = server {
        s.abort();
    }
    drop(prober);
    // Kills a launched tor (kill_on_drop) whatever way we leave.
    if let Ok(t) = Arc::try_unwrap(tor) {
        t.shutdown().await;
    }
    if args.check {
        let (state, line) = nagios(&last_results);
        outln!("{line}")?;
        return Ok(ExitCode::from(state as u8));
    }
    Ok(match code {
        Interrupted::Int => ExitCode::from(130),
        Interrupted::Term => ExitCode::from(143),
        Interrupted::No if all_passed => ExitCode::SUCCESS,
        Interrupted::No => ExitCode::FAILURE,
    })
}

enum Interrupted {
    No,
    Int,
    Term,
}

fn reload(args: &ProbeArgs, config: &mut Config, targets: &mut Vec<Target>, prober: &Arc<Prober>) {
    match args
        .build_config()
        .and_then(|(c, w)| Ok((c.targets()?, c, w)))
    {
        Ok((t, c, warnings)) => {
            apply_logging(&c, &warnings);
            let keep: Vec<(String, String)> = t
                .iter()
                .map(|t| (t.name.clone(), t.address.host().to_owned()))
                .collect();
            let keep_ref: Vec<(&str, &str)> =
                keep.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            prober.metrics().retain_endpoints(&keep_ref);
            prober.set_settings(Settings::from_config(&c));
            tracing::info!(endpoints = t.len(), "configuration reloaded (SIGHUP)");
            *targets = t;
            *config = c;
        }
        Err(e) => tracing::error!("configuration not reloaded, keeping the previous one: {e:#}"),
    }
}
