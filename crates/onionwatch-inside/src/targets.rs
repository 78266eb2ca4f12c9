//! What `onionwatch watch` scrapes: targets from a YAML file and from
//! command-line flags, validated once into [`Settings`].
//!
//! ```yaml
//! listen: 127.0.0.1:9925
//! interval_seconds: 15
//! timeout_seconds: 5
//! onionspray: [/home/onionspray/onionspray]
//! projects:
//!   news:
//!     tors:
//!       - metrics_port: 127.0.0.1:9035
//!         # max_samples: 50000     # most samples one page may hold
//!         control_port: unix:/home/onionspray/onionspray/projects/news/tor-control.sock
//!     nginx_status: http://127.0.0.1:8080/stub_status
//!     access_logs: ["/var/log/nginx/news-access*.log"]
//!     tor_logs: [/var/log/tor/news.log]
//! log_state: /var/lib/onionwatch/logs.json
//! probe:                       # outside probing: see crate::probe
//!   launch_tor: false
//!   socks_port: 9050
//!   control_port: 9051
//! dashboard:                   # history kept: see crate::dashboard
//!   retention_days: 7
//!   ranges: [1h, 24h, 7d]
//! ```
//!
//! Discovered Onionspray projects have their logs followed too
//! (`log/nginx-access*.log` and each tor's log, see
//! [`crate::discovery::log_sources`]); the `onionwatch_log_*` series then
//! carry their `project` label.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use onionwatch_tor::control::{ControlAddr, ControlTarget};
use serde::{Deserialize, Serialize};

use crate::collector::tor_metrics::{MetricsPort, MAX_MAX_SAMPLES};
use crate::collector::{Endpoint, Kind};
use crate::http::HttpUrl;
use crate::Error;

/// The `onionwatch watch --config` file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address of the HTTP endpoint (`/metrics`, `/healthz`,
    /// `/api/v1/targets`). Default `127.0.0.1:9925`; a non-loopback
    /// address needs TLS and authentication (`onionwatch watch --help`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Seconds between two scrapes of each target. Default 15.
    #[serde(default = "default_interval")]
    pub interval_seconds: f64,
    /// Seconds one scrape may take before it counts as failed. Default 5.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Onionspray installation directories whose projects are discovered
    /// (and re-discovered on SIGHUP and every `rediscover_seconds`).
    #[serde(default)]
    pub onionspray: Vec<PathBuf>,
    /// Seconds between two discoveries of the Onionspray trees. Default 300.
    #[serde(default = "default_rediscover")]
    pub rediscover_seconds: f64,
    /// Projects by name (the value of the `project` label).
    #[serde(default)]
    pub projects: BTreeMap<String, ProjectConfig>,
    /// Where to save the positions in the followed logs (JSON), so a
    /// restart resumes without counting a line twice. Default: none (logs
    /// are read from their start at each start).
    #[serde(default)]
    pub log_state: Option<PathBuf>,
    /// Whether to follow the logs of discovered Onionspray projects.
    /// Default true.
    #[serde(default = "default_true")]
    pub follow_onionspray_logs: bool,
    /// The nginx `log_format` string of the access logs followed (the
    /// format's text, not the directive), for installations that changed
    /// nginx's format. Default `combined` (nginx's and Onionspray's).
    #[serde(default)]
    pub log_format: Option<String>,
    /// Abusive-circuit policy applied to every project's access logs
    /// (fields in `onionwatch_logs::policy::PolicyConfig`); `action: close`
    /// sends CLOSECIRCUIT to the project's control port when it has exactly
    /// one tor. Default: none.
    #[serde(default)]
    pub policy: Option<onionwatch_logs::policy::PolicyConfig>,
    /// Outside probing in the same process: Onionprobe's options and
    /// endpoints inline, or `config: FILE` (an Onionprobe YAML), and
    /// `discover: false` not to probe the onion services found in the
    /// Onionspray trees ([`crate::probe`]). Default: none (the trees'
    /// onion services are still probed).
    #[serde(default)]
    pub probe: Option<crate::probe::ProbeSection>,
    /// The dashboard's history: retention, full-resolution points, bucket
    /// size and the range picker's ranges ([`crate::dashboard`]). Default:
    /// 7 days, 1 hour at the interval then 5-minute means, 1 h / 24 h / 7 d.
    #[serde(default)]
    pub dashboard: crate::dashboard::DashboardSection,
    /// The built-in alert rules' settings (windows, `for`, thresholds,
    /// labels, grouping, silences; `onionwatch_alert::config`). With it, or
    /// a notifier, the alert engine runs. Default: none.
    #[serde(default)]
    pub alerts: Option<onionwatch_alert::AlertsConfig>,
    /// Where alerts go (webhook, Alertmanager, e-mail, ntfy, exec; see
    /// `onionwatch_notify`). With at least one, the alert engine runs with
    /// its built-in rules. Default: none.
    #[serde(default)]
    pub notifiers: Vec<onionwatch_notify::NotifierConfig>,
    /// Push everything `/metrics` serves to these remote_write receivers
    /// (`url`, `name`, `basic_auth`, `bearer_token_file`/`_env`, `tls`,
    /// `headers`, `interval_seconds` (default: `interval_seconds` above),
    /// `batch_size`, `max_buffer_bytes`, `timeout_seconds`; see
    /// `onionwatch_remote_write::RemoteWriteConfig`). Buffered on disk
    /// under `--state-dir`, else in memory. Default: none.
    #[serde(default)]
    pub remote_write: Vec<onionwatch_remote_write::RemoteWriteConfig>,
}

/// One project's targets.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Its tor processes (one, or one per softmap worker).
    #[serde(default)]
    pub tors: Vec<TorConfig>,
    /// URL of its nginx/OpenResty `stub_status` page, e.g.
    /// `http://127.0.0.1:8080/stub_status`, or on a unix socket (nginx's
    /// `proxy_pass` syntax) `http://unix:/path/nginx-status.sock:/nginx_status`.
    #[serde(default)]
    pub nginx_status: Option<String>,
    /// nginx access logs (combined format) to follow: paths, or globs with
    /// `*`/`?` in the file name, e.g. `/var/log/nginx/news-access*.log`.
    #[serde(default)]
    pub access_logs: Vec<PathBuf>,
    /// tor logs to follow and count by severity.
    #[serde(default)]
    pub tor_logs: Vec<PathBuf>,
    /// onionbalance logs to follow and count by severity.
    #[serde(default)]
    pub onionbalance_logs: Vec<PathBuf>,
}

/// One tor process of a project.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TorConfig {
    /// Its name within the project (the `tor_instance` label). Default `tor`.
    #[serde(default = "default_instance")]
    pub instance: String,
    /// Its MetricsPort, `HOST:PORT`.
    #[serde(default)]
    pub metrics_port: Option<SocketAddr>,
    /// Most samples one page of its MetricsPort may hold, 1 to 200,000; a
    /// larger page fails the scrape (`onionwatch_scrape_up` 0, the error
    /// names this option), which bounds the memory one MetricsPort can make
    /// watch use (a few KB per sample). Default 50,000 (tor 0.4.9 with 100
    /// onion services sends about 3,600).
    #[serde(default = "crate::collector::tor_metrics::default_max_samples")]
    pub max_samples: usize,
    /// Its ControlPort: `HOST:PORT` or `unix:/path`.
    #[serde(default)]
    pub control_port: Option<String>,
    /// Its control cookie file, when tor's own path is not readable here
    /// (e.g. tor in a container). Default: the file tor names.
    #[serde(default)]
    pub control_cookie: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9925))
}
fn default_interval() -> f64 {
    15.0
}
fn default_timeout() -> f64 {
    5.0
}
fn default_rediscover() -> f64 {
    300.0
}
fn default_true() -> bool {
    true
}
fn default_instance() -> String {
    "tor".into()
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            interval_seconds: default_interval(),
            timeout_seconds: default_timeout(),
            onionspray: Vec::new(),
            rediscover_seconds: default_rediscover(),
            projects: BTreeMap::new(),
            log_state: None,
            follow_onionspray_logs: true,
            policy: None,
            log_format: None,
            probe: None,
            dashboard: crate::dashboard::DashboardSection::default(),
            alerts: None,
            notifiers: Vec::new(),
            remote_write: Vec::new(),
        }
    }
}

impl Config {
    /// Parse YAML text; `origin` names the file in errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, Error> {
        let config: Config = serde_saphyr::from_str(text).map_err(|e| Error::ConfigFile {
            origin: origin.to_owned(),
            source: Box::new(e),
        })?;
        for (i, rw) in config.remote_write.iter().enumerate() {
            rw.check(i)?;
        }
        Ok(config)
    }
}

/// Where a target came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// A command-line flag.
    Flag,
    /// The configuration file.
    Config,
    /// Discovered in an Onionspray tree.
    Onionspray,
}

/// One scrape target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The project (`project` label).
    pub project: String,
    /// The tor instance (`tor_instance` label); `None` for nginx.
    pub tor_instance: Option<String>,
    /// What to scrape.
    pub endpoint: Endpoint,
    /// Where it came from.
    pub origin: Origin,
}

impl Target {
    /// Its collector.
    pub fn collector(&self) -> Kind {
        self.endpoint.kind()
    }

    /// Identity for de-duplication: collector, project, instance.
    pub fn key(&self) -> (Kind, String, String) {
        (
            self.collector(),
            self.project.clone(),
            self.tor_instance.clone().unwrap_or_default(),
        )
    }
}

/// Everything `onionwatch watch` runs with, checked once.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The endpoint's address.
    pub listen: SocketAddr,
    /// Between scrapes of a target.
    pub interval: Duration,
    /// Bound on one scrape.
    pub timeout: Duration,
    /// Onionspray trees to discover.
    pub onionspray: Vec<PathBuf>,
    /// Between discoveries.
    pub rediscover: Duration,
    /// Targets from flags and the file.
    pub targets: Vec<Target>,
    /// Logs to follow from flags and the file (discovered ones are added
    /// at each discovery).
    pub logs: Vec<onionwatch_logs::follow::Source>,
    /// Where to save the positions in the followed logs.
    pub log_state: Option<PathBuf>,
    /// Whether to follow the logs of discovered Onionspray projects.
    pub follow_onionspray_logs: bool,
    /// The access logs' format (`--log-format`, else `log_format:`, else
    /// `combined`), compiled.
    pub log_format: onionwatch_logs::access::LogFormat,
    /// Whether discovery reads the onion services' `hostname` files, for
    /// probing (the `probe:` section's `discover`, default true).
    pub discover_onion_services: bool,
    /// The dashboard's history settings (the `dashboard:` section).
    pub history: crate::dashboard::HistorySettings,
}

/// Command-line targets, `PROJECT[/INSTANCE]=VALUE` each.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--metrics-port`.
    pub metrics_ports: Vec<String>,
    /// `--control-port`.
    pub control_ports: Vec<String>,
    /// `--nginx-status`.
    pub nginx_status: Vec<String>,
    /// `--listen`, overriding the file.
    pub listen: Option<SocketAddr>,
    /// `--interval` seconds, overriding the file.
    pub interval_seconds: Option<f64>,
    /// `--timeout` seconds, overriding the file.
    pub timeout_seconds: Option<f64>,
    /// `--onionspray`, added to the file's.
    pub onionspray: Vec<PathBuf>,
    /// `--access-log PROJECT=FILE`.
    pub access_logs: Vec<String>,
    /// `--tor-log PROJECT=FILE`.
    pub tor_logs: Vec<String>,
    /// `--log-state FILE`, overriding the file.
    pub log_state: Option<PathBuf>,
    /// `--log-format`, overriding the file's `log_format`.
    pub log_format: Option<String>,
}

/// Check a project or instance name: it becomes a label value and a key.
pub fn check_name(what: &'static str, name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(Error::Name {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

fn split_flag<'a>(
    flag: &'static str,
    value: &'a str,
    example: &'static str,
) -> Result<(&'a str, Option<&'a str>, &'a str), Error> {
    let (who, rest) = value.split_once('=').ok_or_else(|| Error::FlagSyntax {
        flag,
        value: value.to_owned(),
        example,
    })?;
    let (project, instance) = match who.split_once('/') {
        Some((p, i)) => (p, Some(i)),
        None => (who, None),
    };
    check_name("project", project)?;
    if let Some(i) = instance {
        check_name("tor instance", i)?;
    }
    Ok((project, instance, rest))
}

fn seconds(what: &'static str, v: f64) -> Result<Duration, Error> {
    if !(v.is_finite() && v > 0.0 && v <= 86_400.0) {
        return Err(Error::Seconds { what, value: v });
    }
    Ok(Duration::from_secs_f64(v))
}

impl Settings {
    /// Merge the file (if any) and the flags, and check everything.
    pub fn build(config: Option<Config>, flags: &Flags) -> Result<Self, Error> {
        let from_file = config.is_some();
        let config = config.unwrap_or_default();
        let interval = seconds(
            "interval",
            flags.interval_seconds.unwrap_or(config.interval_seconds),
        )?;
        let timeout = seconds(
            "timeout",
            flags.timeout_seconds.unwrap_or(config.timeout_seconds),
        )?;
        if timeout > interval {
            return Err(Error::TimeoutAboveInterval { timeout, interval });
        }
        let rediscover = seconds("rediscover_seconds", config.rediscover_seconds)?;
        let history = config.dashboard.check(interval)?;
        let mut targets = Vec::new();
        for (project, p) in &config.projects {
            check_name("project", project)?;
            let origin = if from_file {
                Origin::Config
            } else {
                Origin::Flag
            };
            for t in &p.tors {
                check_name("tor instance", &t.instance)?;
                if t.metrics_port.is_none() && t.control_port.is_none() {
                    return Err(Error::TorWithoutPort {
                        project: project.clone(),
                        instance: t.instance.clone(),
                    });
                }
                if !(1..=MAX_MAX_SAMPLES).contains(&t.max_samples) {
                    return Err(Error::MaxSamples {
                        project: project.clone(),
                        instance: t.instance.clone(),
                        value: t.max_samples,
                    });
                }
                if let Some(m) = t.metrics_port {
                    targets.push(Target {
                        project: project.clone(),
                        tor_instance: Some(t.instance.clone()),
                        endpoint: Endpoint::Metrics(MetricsPort {
                            addr: m,
                            max_samples: t.max_samples,
                        }),
                        origin,
                    });
                }
                if let Some(c) = &t.control_port {
                    let addr: ControlAddr = c.parse().map_err(|source| Error::ControlPort {
                        project: project.clone(),
                        source,
                    })?;
                    targets.push(Target {
                        project: project.clone(),
                        tor_instance: Some(t.instance.clone()),
                        endpoint: Endpoint::Control(ControlTarget {
                            control_port: addr,
                            control_password: None,
                            control_cookie: t.control_cookie.clone(),
                        }),
                        origin,
                    });
                }
            }
            if let Some(u) = &p.nginx_status {
                let url: HttpUrl = u.parse().map_err(|source| Error::NginxStatus {
                    project: project.clone(),
                    source,
                })?;
                targets.push(Target {
                    project: project.clone(),
                    tor_instance: None,
                    endpoint: Endpoint::Nginx(url),
                    origin,
                });
            }
        }
        for v in &flags.metrics_ports {
            let (project, instance, addr) = split_flag("--metrics-port", v, "news=127.0.0.1:9035")?;
            let addr: SocketAddr = addr.parse().map_err(|_| Error::MetricsPortFlag {
                value: v.clone(),
                addr: addr.to_owned(),
            })?;
            targets.push(Target {
                project: project.into(),
                tor_instance: Some(instance.unwrap_or("tor").into()),
                endpoint: Endpoint::Metrics(MetricsPort::new(addr)),
                origin: Origin::Flag,
            });
        }
        for v in &flags.control_ports {
            let (project, instance, addr) =
                split_flag("--control-port", v, "news=unix:/path/tor-control.sock")?;
            let addr: ControlAddr = addr.parse().map_err(|source| Error::ControlPortFlag {
                value: v.clone(),
                source,
            })?;
            targets.push(Target {
                project: project.into(),
                tor_instance: Some(instance.unwrap_or("tor").into()),
                endpoint: Endpoint::Control(ControlTarget::new(addr)),
                origin: Origin::Flag,
            });
        }
        for v in &flags.nginx_status {
            let (project, instance, url) = split_flag(
                "--nginx-status",
                v,
                "news=http://127.0.0.1:8080/stub_status",
            )?;
            if instance.is_some() {
                return Err(Error::NginxInstance { value: v.clone() });
            }
            let url: HttpUrl = url
                .parse()
                .map_err(|source| Error::NginxStatusFlag { source })?;
            targets.push(Target {
                project: project.into(),
                tor_instance: None,
                endpoint: Endpoint::Nginx(url),
                origin: Origin::Flag,
            });
        }
        let mut seen = BTreeSet::new();
        for t in &targets {
            let key = t.key();
            if !seen.insert(key.clone()) {
                let (collector, project, instance) = key;
                return Err(Error::DuplicateTarget {
                    project,
                    collector,
                    instance,
                });
            }
        }
        use onionwatch_logs::follow::{LogKind, Source};
        let mut logs = Vec::new();
        for (project, p) in &config.projects {
            for (kind, paths) in [
                (LogKind::Access, &p.access_logs),
                (LogKind::Tor, &p.tor_logs),
                (LogKind::Onionbalance, &p.onionbalance_logs),
            ] {
                logs.extend(paths.iter().map(|path| Source {
                    project: project.clone(),
                    kind,
                    pattern: path.clone(),
                }));
            }
        }
        for (flag, kind, values) in [
            ("--access-log", LogKind::Access, &flags.access_logs),
            ("--tor-log", LogKind::Tor, &flags.tor_logs),
        ] {
            for v in values {
                let (project, instance, path) =
                    split_flag(flag, v, "news=/var/log/nginx/news-access.log")?;
                if instance.is_some() || path.is_empty() {
                    return Err(Error::LogFlag {
                        flag,
                        value: v.clone(),
                    });
                }
                logs.push(Source {
                    project: project.into(),
                    kind,
                    pattern: path.into(),
                });
            }
        }
        let mut onionspray = config.onionspray.clone();
        onionspray.extend(flags.onionspray.iter().cloned());
        let log_format = match flags.log_format.as_ref().or(config.log_format.as_ref()) {
            Some(f) => onionwatch_logs::access::LogFormat::compile(f)
                .map_err(|source| Error::LogFormat { source })?,
            None => onionwatch_logs::access::LogFormat::combined(),
        };
        Ok(Settings {
            listen: flags.listen.unwrap_or(config.listen),
            interval,
            timeout,
            onionspray,
            rediscover,
            targets,
            logs,
            log_state: flags.log_state.clone().or(config.log_state),
            follow_onionspray_logs: config.follow_onionspray_logs,
            log_format,
            discover_onion_services: config.probe.as_ref().is_none_or(|p| p.discover),
            history,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_with_defaults_and_unknown_fields() {
        let c = Config::from_yaml(
            "projects:\n  news:\n    tors:\n      - metrics_port: 127.0.0.1:9035\n        control_port: unix:/p/tor-control.sock\n    nginx_status: http://127.0.0.1:8080/stub_status\n",
            "test.yaml",
        )
        .unwrap();
        assert_eq!(c.listen, default_listen());
        assert_eq!(c.interval_seconds, 15.0);
        assert_eq!(c.projects["news"].tors[0].instance, "tor");
        let s = Settings::build(Some(c), &Flags::default()).unwrap();
        assert_eq!(s.targets.len(), 3);
        assert!(s.targets.iter().all(|t| t.origin == Origin::Config));

        let err = Config::from_yaml("projects:\n  news:\n    torz: []\n", "bad.yaml").unwrap_err();
        assert!(err.to_string().contains("torz"), "{err}");
        let err = Config::from_yaml("listen: nowhere\n", "bad.yaml").unwrap_err();
        assert!(err.to_string().contains("bad.yaml"), "{err}");
    }

    #[test]
    fn remote_write_receivers_are_checked_at_load() {
        let c = Config::from_yaml(
            "remote_write:\n  - url: http://127.0.0.1:9090/api/v1/write\n    name: central\n",
            "rw.yaml",
        )
        .unwrap();
        assert_eq!(c.remote_write[0].name.as_deref(), Some("central"));
        let err = Config::from_yaml("remote_write:\n  - url: 127.0.0.1:9090\n", "rw.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("remote_write[0].url"), "{err}");
        let err = Config::from_yaml(
            "remote_write:\n  - url: http://h/\n    password: x\n",
            "rw.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("password"), "{err}");
    }

    #[test]
    fn dashboard_section_is_checked_against_the_interval_in_use() {
        let yaml = "dashboard:\n  retention_days: 2\n  bucket_seconds: 60\n  ranges: [10m, 2d]\n";
        let s = Settings::build(
            Some(Config::from_yaml(yaml, "d.yaml").unwrap()),
            &Flags::default(),
        )
        .unwrap();
        assert_eq!(s.history.retention, Duration::from_secs(2 * 86_400));
        assert_eq!(s.history.ranges[0], Duration::from_secs(600));
        // No file: the defaults (demo and flag-only watch).
        let s = Settings::build(None, &Flags::default()).unwrap();
        assert_eq!(s.history, crate::dashboard::HistorySettings::default());
        // --interval 120 makes a 60 s bucket too short.
        let flags = Flags {
            interval_seconds: Some(120.0),
            timeout_seconds: Some(5.0),
            ..Flags::default()
        };
        let err = Settings::build(Some(Config::from_yaml(yaml, "d.yaml").unwrap()), &flags)
            .unwrap_err()
            .to_string();
        assert!(err.contains("dashboard.bucket_seconds"), "{err}");
        let err = Config::from_yaml("dashboard:\n  range: [1h]\n", "d.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("range"), "{err}");
    }

    #[test]
    fn logs_from_yaml_and_flags() {
        use onionwatch_logs::follow::{LogKind, Source};
        let c = Config::from_yaml(
            "log_state: /var/lib/ow/logs.json\nfollow_onionspray_logs: false\nprojects:\n  news:\n    access_logs: ['/l/news-access*.log']\n    tor_logs: [/l/tor.log]\n    onionbalance_logs: [/l/ob.log]\n",
            "test.yaml",
        )
        .unwrap();
        let flags = Flags {
            access_logs: vec!["shop=/l/shop.log".into()],
            tor_logs: vec!["shop=/l/shop-tor.log".into()],
            ..Flags::default()
        };
        let s = Settings::build(Some(c), &flags).unwrap();
        assert!(s.targets.is_empty());
        assert!(!s.follow_onionspray_logs);
        assert_eq!(s.log_state, Some(PathBuf::from("/var/lib/ow/logs.json")));
        let src = |p: &str, kind, path: &str| Source {
            project: p.into(),
            kind,
            pattern: path.into(),
        };
        assert_eq!(
            s.logs,
            vec![
                src("news", LogKind::Access, "/l/news-access*.log"),
                src("news", LogKind::Tor, "/l/tor.log"),
                src("news", LogKind::Onionbalance, "/l/ob.log"),
                src("shop", LogKind::Access, "/l/shop.log"),
                src("shop", LogKind::Tor, "/l/shop-tor.log"),
            ]
        );
        assert!(Config::default().follow_onionspray_logs);
        for bad in ["/l/x.log", "shop/tor=/l/x.log", "bad name=/x", "shop="] {
            let flags = Flags {
                access_logs: vec![bad.into()],
                ..Flags::default()
            };
            let err = Settings::build(None, &flags).unwrap_err().to_string();
            assert!(
                err.contains("--access-log") || err.contains("project"),
                "{bad}: {err}"
            );
        }
        let err =
            Config::from_yaml("projects:\n  news:\n    access_log: [x]\n", "bad.yaml").unwrap_err();
        assert!(err.to_string().contains("access_log"), "{err}");
    }

    #[test]
    fn flags_are_parsed_and_checked() {
        let flags = Flags {
            metrics_ports: vec![
                "news=127.0.0.1:9035".into(),
                "shop/hs-1=127.0.0.1:9036".into(),
            ],
            control_ports: vec!["news=unix:/p/tor-control.sock".into()],
            nginx_status: vec!["news=http://127.0.0.1:8080/stub_status".into()],
            ..Flags::default()
        };
        let s = Settings::build(None, &flags).unwrap();
        assert_eq!(s.listen, default_listen());
        assert_eq!(s.targets.len(), 4);
        assert_eq!(s.targets[1].tor_instance.as_deref(), Some("hs-1"));

        for (bad, needle) in [
            (vec!["news:127.0.0.1:9035".to_owned()], "PROJECT=VALUE"),
            (vec!["n ews=127.0.0.1:1".to_owned()], "invalid project name"),
            (vec!["news=localhost".to_owned()], "HOST:PORT"),
            (
                vec!["a=127.0.0.1:1".to_owned(), "a=127.0.0.1:2".to_owned()],
                "two tor_metrics",
            ),
        ] {
            let f = Flags {
                metrics_ports: bad,
                ..Flags::default()
            };
            let err = Settings::build(None, &f).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let f = Flags {
            interval_seconds: Some(1.0),
            timeout_seconds: Some(2.0),
            ..Flags::default()
        };
        assert!(Settings::build(None, &f)
            .unwrap_err()
            .to_string()
            .contains("must not exceed"));
        let f = Flags {
            nginx_status: vec!["a=https://x/".into()],
            ..Flags::default()
        };
        assert!(Settings::build(None, &f)
            .unwrap_err()
            .to_string()
            .contains("https"));
    }

    #[test]
    fn the_access_log_format_comes_from_the_flag_then_the_file() {
        let file = Config::from_yaml(
            "log_format: '$remote_addr [$time_local] $status'\n",
            "t.yaml",
        )
        .unwrap();
        let s = Settings::build(Some(file.clone()), &Flags::default()).unwrap();
        assert_eq!(s.log_format.source(), "$remote_addr [$time_local] $status");
        let flag = Flags {
            log_format: Some("$remote_addr $status".into()),
            ..Flags::default()
        };
        let s = Settings::build(Some(file), &flag).unwrap();
        assert_eq!(s.log_format.source(), "$remote_addr $status");
        assert!(Settings::build(None, &Flags::default())
            .unwrap()
            .log_format
            .is_fast_path());
        let bad = Flags {
            log_format: Some("$remote_addr$status".into()),
            ..Flags::default()
        };
        let err = Settings::build(None, &bad).unwrap_err().to_string();
        assert!(
            err.starts_with("log_format: $remote_addr is followed directly by $status"),
            "{err}"
        );
    }
}
