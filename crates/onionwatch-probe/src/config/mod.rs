//! Onionprobe-compatible configuration.
//!
//! Reads Onionprobe 1.4.1's YAML unchanged: every top-level option it has, with
//! the same names and defaults, and its `endpoints:` map. Compatibility
//! leniency: ports may be integers or strings, `interval`/`sleep`/timeouts may
//! be integers or floats, `control_password` may be `false`, unknown keys are
//! reported (as warnings) but not refused, as Onionprobe ignores them. Beyond
//! that, everything is checked once, at load ([`Config::from_yaml`],
//! [`Config::load`]): addresses, protocols, ports, paths, patterns and status
//! lists, so a probe round never meets a bad value.
//!
//! A few keys are onionwatch extensions (Onionprobe ignores them):
//! `concurrency`, `follow_redirects_elsewhere`, `max_body_bytes`,
//! `prometheus_exporter_address`, `vantage`, `external_labels`, `shard`, `remote_write`,
//! `tls_ca_file`, `tor_binary`, `tor_config`, and per endpoint `client_auth_key` /
//! `client_auth_key_file`.
//!
//! Here: the schema ([`Config`], [`Endpoint`]) and loading. Private
//! submodules hold the lenient value forms (`values`), the validation into
//! [`Target`]s (`targets`) and the client authorization keys
//! (`client_auth`).

mod client_auth;
mod targets;
mod values;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use onionwatch_metrics::ConstLabels;
use onionwatch_tor::onion::OnionAddressError;

use crate::shard::Shard;
use serde::Deserialize;

pub use targets::{Pattern, Target, TargetPath};
use values::{lenient_metrics_port, lenient_opt_port, lenient_port, lenient_seconds};
pub use values::{ControlPassword, ControlPort, Protocol};

/// The endpoint Onionprobe probes when a config names none.
pub const DEFAULT_ENDPOINT_NAME: &str = "www.torproject.org";
const DEFAULT_ENDPOINT_ADDRESS: &str =
    "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

/// A configuration that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or a value has the wrong type.
    #[error("invalid YAML in {origin}: {message}")]
    Yaml {
        /// File name or `<text>`.
        origin: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid config{}: {key}: {message}", origin.as_deref().map(|o| format!(" in {o}")).unwrap_or_default())]
    Invalid {
        /// File name, when known.
        origin: Option<String>,
        /// The key (e.g. `endpoints."My site".port`).
        key: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// An endpoint's onion service address is invalid.
    #[error("invalid config: endpoints.{name:?}.address: {source}")]
    Address {
        /// The endpoint name.
        name: String,
        /// Why.
        source: OnionAddressError,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        origin: None,
        key: key.into(),
        message: message.into(),
    }
}

/// One path of an HTTP(S) endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PathSpec {
    /// The path (and query) appended to `PROTOCOL://ADDRESS:PORT`; must
    /// start with `/`.
    pub path: String,
    /// A regular expression searched for in the response body, in Python
    /// `re` syntax: compiled by Rust's `regex` when it can, else by
    /// `fancy-regex` (look-around, back-references). A pattern neither
    /// compiles leaves this path out, with a warning naming it; the rest of
    /// the configuration loads.
    #[serde(default)]
    pub pattern: Option<String>,
    /// HTTP status codes that count as success; absent means any status.
    #[serde(default)]
    pub allowed_statuses: Option<Vec<u16>>,
}

/// One endpoint (`endpoints: NAME: {...}`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
pub struct Endpoint {
    /// The onion service address, optionally with subdomains
    /// (`www.<56 chars>.onion`). Required.
    pub address: String,
    /// `http` (default), `https` or `tcp` (onionwatch extension).
    #[serde(default)]
    pub protocol: Protocol,
    /// The virtual port (integer or string); default 80, or 443 for https.
    #[serde(default, deserialize_with = "lenient_opt_port")]
    pub port: Option<u16>,
    /// Paths to GET, in order; default `[{path: /, allowed_statuses: [200]}]`.
    #[serde(default)]
    pub paths: Option<Vec<PathSpec>>,
    /// Verify the HTTPS certificate for this endpoint (overrides the global
    /// `tls_verify` both ways).
    #[serde(default)]
    pub tls_verify: Option<bool>,
    /// Record TLS and certificate details for this https endpoint (can only
    /// switch it on, as in Onionprobe).
    #[serde(default)]
    pub test_tls_connection: Option<bool>,
    /// onionwatch: base64 x25519 private key for a client-authorized onion
    /// service (given to tor with `ONION_CLIENT_AUTH_ADD`).
    #[serde(default)]
    pub client_auth_key: Option<String>,
    /// onionwatch: a tor `.auth_private` file
    /// (`<56 chars>:descriptor:x25519:<base32 key>`).
    #[serde(default)]
    pub client_auth_key_file: Option<PathBuf>,
}

/// The whole configuration, with Onionprobe 1.4.1's keys and defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Log level: debug, info, warning, error or critical (default `info`).
    pub log_level: String,
    /// Launch a private tor with a temporary DataDirectory (default `true`);
    /// `false` uses the tor at `tor_address:control_port`.
    pub launch_tor: bool,
    /// Address of tor's SOCKS and control ports (default `127.0.0.1`): an
    /// IP address or a host name, resolved at start (IPv4 preferred).
    pub tor_address: String,
    /// Tor's SOCKS port (default 19050).
    #[serde(deserialize_with = "lenient_port")]
    pub socks_port: u16,
    /// Tor's control port (default 19051), or `unix:/path`.
    pub control_port: ControlPort,
    /// Control password; `false` or absent means cookie or no authentication.
    pub control_password: Option<ControlPassword>,
    /// `MetricsPort` of the launched tor (`''`, null or 0 disable it).
    #[serde(deserialize_with = "lenient_metrics_port")]
    pub metrics_port: Option<String>,
    /// `MetricsPortPolicy` of the launched tor (default `reject *`).
    pub metrics_port_policy: String,
    /// Run rounds forever (or `rounds` times) instead of once (default `false`).
    #[serde(rename = "loop")]
    pub loop_: bool,
    /// With `loop`: stop after this many rounds; 0 means no limit (default 0).
    pub rounds: u64,
    /// Longest wait in seconds between starting two endpoints (default 60).
    #[serde(deserialize_with = "lenient_seconds")]
    pub interval: f64,
    /// Longest wait in seconds between rounds (default 60).
    #[serde(deserialize_with = "lenient_seconds")]
    pub sleep: f64,
    /// New random endpoint order every round (default `true`).
    pub shuffle: bool,
    /// Waits are uniform in `[0, value)` instead of exact (default `true`).
    pub randomize: bool,
    /// A fresh circuit for every connection attempt, not only every probe
    /// (default `false`; onionwatch isolates every probe anyway).
    pub new_circuit: bool,
    /// Verify HTTPS certificates (default: verify).
    pub tls_verify: Option<bool>,
    /// Record TLS and certificate details of https endpoints (default `true`).
    pub test_tls_connection: bool,
    /// onionwatch: a PEM file of CA certificates trusted in addition to the
    /// bundled web PKI roots when verifying HTTPS certificates (for onion
    /// services whose certificates come from a private CA).
    pub tls_ca_file: Option<PathBuf>,
    /// Record certificate details (default `true`).
    pub get_certificate_info: bool,
    /// Extra descriptor fetches after a failed one (default 5).
    pub descriptor_max_retries: u32,
    /// Seconds to wait for each descriptor fetch (default 30).
    #[serde(deserialize_with = "lenient_seconds")]
    pub descriptor_timeout: f64,
    /// Seconds to open the stream (rendezvous included) and TLS (default 30).
    #[serde(deserialize_with = "lenient_seconds")]
    pub http_connect_timeout: f64,
    /// Seconds to wait for each read of the response (default 30).
    #[serde(deserialize_with = "lenient_seconds")]
    pub http_read_timeout: f64,
    /// Extra connection attempts per path after a failed one (default 3).
    pub http_connect_max_retries: u32,
    /// Seconds for the TLS handshake (default 30).
    #[serde(deserialize_with = "lenient_seconds")]
    pub tls_connect_timeout: f64,
    /// Extra attempts of the TLS step (default 3): TLS and certificate
    /// details come from the HTTPS requests themselves; only when none of an
    /// https endpoint's paths completed a handshake (and
    /// `test_tls_connection` is on) does a separate TLS connection, not
    /// verifying, try 1 + this many times, as Onionprobe's TLS probe does.
    pub tls_connect_max_retries: u32,
    /// onionwatch: follow redirects that leave the onion service (to
    /// another onion service, or a clearnet site through a tor exit; default
    /// `false`). Redirects within the onion service (any subdomain, port or
    /// scheme) are always followed, up to 30 as Python requests does; a
    /// redirect elsewhere is not, and its 3xx status is the answer checked
    /// against `allowed_statuses`.
    pub follow_redirects_elsewhere: bool,
    /// `CircuitStreamTimeout` of the launched tor (default 60).
    pub circuit_stream_timeout: u32,
    /// Serve Prometheus metrics (default `false`); implies `loop`.
    pub prometheus_exporter: bool,
    /// Port of the metrics endpoint (default 9935).
    #[serde(deserialize_with = "lenient_port")]
    pub prometheus_exporter_port: u16,
    /// onionwatch: address of the metrics endpoint (default 127.0.0.1). A
    /// non-loopback address (e.g. 0.0.0.0 in a container) is served even
    /// without TLS and authentication, with a warning: probe results are
    /// observations of public onion services. TLS and authentication come
    /// from the command line (`--tls-cert`, `--auth-file`…, as for `watch`).
    pub prometheus_exporter_address: IpAddr,
    /// onionwatch: endpoints probed at the same time (default 32). Each
    /// probe waits mostly for tor to build its circuits (about a second
    /// each, whatever the number in flight), so waves of 8 made a round of
    /// 20 three times slower than one wave; tor builds 32 at once easily.
    pub concurrency: usize,
    /// onionwatch: most response-body bytes read for `pattern` (default 1 MiB).
    pub max_body_bytes: usize,
    /// onionwatch: the tor binary to launch (default `tor` from PATH).
    pub tor_binary: PathBuf,
    /// onionwatch: extra torrc lines for the launched tor.
    pub tor_config: Vec<String>,
    /// The endpoints by name; Onionprobe's default endpoint when empty.
    pub endpoints: BTreeMap<String, Endpoint>,

    // Several probers (issue 17): vantage points and shards.
    /// onionwatch: the name of this prober's vantage point (e.g. `eu-1`),
    /// added as a `vantage` label to every series it exports, so probers in
    /// several places can be told apart and compared (default: none).
    pub vantage: Option<String>,
    /// onionwatch: fixed labels added to everything this prober exports
    /// (e.g. `{region: eu, team: ops}`), as Prometheus's own
    /// `external_labels`; names are label names not starting with `__`, and
    /// `vantage` is set with `vantage:` (default: none).
    pub external_labels: BTreeMap<String, String>,
    /// onionwatch: `I/N` probes only the endpoints that shard I of N
    /// covers (rendezvous hashing of the endpoint name, see
    /// [`crate::shard`]), so N probers split one list (default: all).
    pub shard: Option<Shard>,
    /// onionwatch: the built-in alert rules' settings (windows, `for`,
    /// thresholds, labels, grouping, silences; see `onionwatch_alert::config`).
    /// With it, or a notifier, the alert engine runs.
    pub alerts: Option<onionwatch_alert::AlertsConfig>,
    /// onionwatch: where alerts go (webhook, Alertmanager, e-mail, ntfy,
    /// exec; see `onionwatch_notify`). With at least one, the alert
    /// engine runs with its built-in rules.
    pub notifiers: Vec<onionwatch_notify::NotifierConfig>,

    // remote_write (issue 17).
    /// onionwatch: push every series exported here to these remote_write
    /// receivers (`url`, `name`, `basic_auth`, `bearer_token_file`/`_env`,
    /// `tls`, `headers`, `interval_seconds` (default: `interval`),
    /// `batch_size`, `max_buffer_bytes`, `timeout_seconds`; see
    /// `onionwatch_remote_write::RemoteWriteConfig`), with or without the
    /// exporter. Buffered on disk under `--state-dir`, else in memory.
    pub remote_write: Vec<onionwatch_remote_write::RemoteWriteConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: "info".into(),
            launch_tor: true,
            tor_address: "127.0.0.1".into(),
            socks_port: 19050,
            control_port: ControlPort::Tcp(19051),
            control_password: None,
            metrics_port: None,
            metrics_port_policy: "reject *".into(),
            loop_: false,
            rounds: 0,
            interval: 60.0,
            sleep: 60.0,
            shuffle: true,
            randomize: true,
            new_circuit: false,
            tls_verify: None,
            test_tls_connection: true,
            tls_ca_file: None,
            get_certificate_info: true,
            descriptor_max_retries: 5,
            descriptor_timeout: 30.0,
            http_connect_timeout: 30.0,
            http_read_timeout: 30.0,
            http_connect_max_retries: 3,
            tls_connect_timeout: 30.0,
            tls_connect_max_retries: 3,
            follow_redirects_elsewhere: false,
            circuit_stream_timeout: 60,
            prometheus_exporter: false,
            prometheus_exporter_port: 9935,
            prometheus_exporter_address: IpAddr::from([127, 0, 0, 1]),
            concurrency: 32,
            max_body_bytes: 1 << 20,
            tor_binary: PathBuf::from("tor"),
            tor_config: Vec::new(),
            endpoints: BTreeMap::new(),
            vantage: None,
            external_labels: BTreeMap::new(),
            shard: None,
            alerts: None,
            notifiers: Vec::new(),
            remote_write: Vec::new(),
        }
    }
}

/// Top-level keys this crate knows (Onionprobe's plus extensions); `watch`
/// refuses others in its `probe:` section.
pub const KNOWN_KEYS: &[&str] = &[
    "log_level",
    "launch_tor",
    "tor_address",
    "socks_port",
    "control_port",
    "control_password",
    "metrics_port",
    "metrics_port_policy",
    "loop",
    "rounds",
    "interval",
    "sleep",
    "shuffle",
    "randomize",
    "new_circuit",
    "tls_verify",
    "test_tls_connection",
    "tls_ca_file",
    "get_certificate_info",
    "descriptor_max_retries",
    "descriptor_timeout",
    "http_connect_timeout",
    "http_read_timeout",
    "http_connect_max_retries",
    "tls_connect_timeout",
    "tls_connect_max_retries",
    "follow_redirects_elsewhere",
    "circuit_stream_timeout",
    "prometheus_exporter",
    "prometheus_exporter_port",
    "prometheus_exporter_address",
    "concurrency",
    "max_body_bytes",
    "tor_binary",
    "tor_config",
    "endpoints",
    "vantage",
    "external_labels",
    "shard",
    "alerts",
    "notifiers",
    "remote_write",
];

/// Largest config file read (the biggest bundled one is ~40 KiB).
const MAX_CONFIG_BYTES: u64 = 16 << 20;

impl Config {
    /// Parse and validate YAML text (`origin` names it in errors).
    pub fn from_yaml(text: &str, origin: &str) -> Result<(Config, Vec<String>), ConfigError> {
        let yaml_err = |e: serde_saphyr::Error| ConfigError::Yaml {
            origin: origin.to_owned(),
            message: e.to_string(),
        };
        // An empty document (or only comments) is an empty config, as in Onionprobe.
        let has_content = text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#') && l.trim() != "---");
        if !has_content {
            let c = Config::default();
            c.targets()?;
            return Ok((c, Vec::new()));
        }
        let keys: BTreeMap<String, serde::de::IgnoredAny> =
            serde_saphyr::from_str(text).map_err(yaml_err)?;
        let mut warnings: Vec<String> = keys
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .map(|k| format!("{origin}: unknown key {k:?} ignored (Onionprobe ignores it too)"))
            .collect();
        let config: Config = serde_saphyr::from_str(text).map_err(yaml_err)?;
        if let Some(alerts) = &config.alerts {
            alerts.validate().map_err(|e| ConfigError::Invalid {
                origin: Some(origin.to_owned()),
                key: "alerts".into(),
                message: e.to_string(),
            })?;
        }
        let (_, rejected) = config.checked_targets().map_err(|e| match e {
            ConfigError::Invalid { key, message, .. } => ConfigError::Invalid {
                origin: Some(origin.to_owned()),
                key,
                message,
            },
            other => other,
        })?;
        warnings.extend(rejected.into_iter().map(|r| format!("{origin}: {r}")));
        Ok((config, warnings))
    }

    /// Read and validate a YAML file; returns the config and warnings.
    pub fn load(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        use std::io::Read;
        let read_err = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        file.take(MAX_CONFIG_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_CONFIG_BYTES {
            return Err(invalid(
                "(file)",
                format!("{} is larger than 16 MiB", path.display()),
            ));
        }
        Self::from_yaml(&text, &path.display().to_string())
    }

    /// `loop`, forced on by `prometheus_exporter` as in Onionprobe.
    pub fn looping(&self) -> bool {
        self.loop_ || self.prometheus_exporter
    }

    /// The endpoints, or Onionprobe's default endpoint when none is configured.
    pub fn effective_endpoints(&self) -> BTreeMap<String, Endpoint> {
        if !self.endpoints.is_empty() {
            return self.endpoints.clone();
        }
        let mut m = BTreeMap::new();
        m.insert(
            DEFAULT_ENDPOINT_NAME.to_owned(),
            Endpoint {
                address: DEFAULT_ENDPOINT_ADDRESS.into(),
                protocol: Protocol::Http,
                port: Some(80),
                paths: Some(vec![PathSpec {
                    path: "/".into(),
                    pattern: Some("Tor Project".into()),
                    allowed_statuses: Some(vec![200]),
                }]),
                ..Endpoint::default()
            },
        );
        m
    }

    /// The labels added to everything exported: `vantage` (when set), then
    /// `external_labels` in name order. The exporter wraps its root
    /// collector in them ([`onionwatch_metrics::Labelled`]); a pusher or an
    /// alert engine takes the same value.
    pub fn labels(&self) -> Result<ConstLabels, ConfigError> {
        let mut labels = ConstLabels::new();
        if let Some(v) = &self.vantage {
            labels = labels
                .with("vantage", v)
                .map_err(|e| invalid("vantage", e.to_string()))?;
        }
        for (k, v) in &self.external_labels {
            if k == "vantage" {
                return Err(invalid(
                    "external_labels.vantage",
                    "set the vantage point with the vantage key (or --vantage)",
                ));
            }
            labels = labels
                .with(k, v)
                .map_err(|e| invalid(format!("external_labels.{k}"), e.to_string()))?;
        }
        Ok(labels)
    }

    /// The endpoints this prober probes: [`Config::targets`], only those
    /// of its `shard` when one is set (possibly none).
    pub fn shard_targets(&self) -> Result<Vec<Target>, ConfigError> {
        let all = self.targets()?;
        Ok(match self.shard {
            Some(shard) => shard.select(all, |t| t.name.as_str()),
            None => all,
        })
    }

    /// Durations as [`Duration`]s.
    pub fn descriptor_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.descriptor_timeout.max(0.001))
    }

    /// The connect timeout (SOCKS, rendezvous).
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.http_connect_timeout.max(0.001))
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.http_read_timeout.max(0.001))
    }

    /// The TLS handshake timeout.
    pub fn tls_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.tls_connect_timeout.max(0.001))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";

    #[test]
    fn the_alerts_section_is_read_and_checked_at_load() {
        let (c, w) = Config::from_yaml(
            "alerts:\n  rules:\n    OnionServiceUnreachable: {window: 2 of 4}\n",
            "t",
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        let rules = c.alerts.unwrap().validate().unwrap();
        assert_eq!(rules[0].window.to_string(), "2 of 4");
        let err = Config::from_yaml("alerts: {rules: {Nope: {}}}", "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("alerts") && err.contains("no built-in rule"),
            "{err}"
        );
    }

    #[test]
    fn defaults_match_onionprobe() {
        let (c, w) = Config::from_yaml("", "t").unwrap();
        assert!(w.is_empty());
        assert_eq!(c.socks_port, 19050);
        assert_eq!(c.control_port, ControlPort::Tcp(19051));
        assert_eq!(c.prometheus_exporter_port, 9935);
        assert_eq!((c.interval, c.sleep, c.rounds), (60.0, 60.0, 0));
        assert!(c.shuffle && c.randomize && !c.new_circuit && c.launch_tor && !c.loop_);
        assert_eq!(c.descriptor_timeout, 30.0);
        assert_eq!(c.descriptor_max_retries, 5);
        assert_eq!((c.http_connect_timeout, c.http_read_timeout), (30.0, 30.0));
        assert_eq!(
            (c.http_connect_max_retries, c.tls_connect_max_retries),
            (3, 3)
        );
        assert_eq!(c.circuit_stream_timeout, 60);
        assert_eq!(c.metrics_port_policy, "reject *");
        assert!(c.metrics_port.is_none());
        assert!(c.test_tls_connection && c.get_certificate_info);
        let t = c.targets().unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, DEFAULT_ENDPOINT_NAME);
        assert_eq!(t[0].paths[0].pattern.as_ref().unwrap().1, "Tor Project");
        assert!(t[0].tls_verify);
    }

    #[test]
    fn onionprobe_style_yaml() {
        let text = format!(
            r#"---
log_level: INFO
loop: true
interval: 1.5
sleep: 5
control_password: false
metrics_port: ''
socks_port: '9050'
tls_verify: false
some_future_key: 3
endpoints:
  "Alexander F\xE6r\xF8y":
    address: {A}.onion
    protocol: https
    port: '443'
    tls_verify: true
    paths:
      - path: /
        pattern: 'Tor Project'
        allowed_statuses: [200, 401]
      - path: /news?lang=en
  '2600: The Hacker Quarterly':
    address: www.{A}.onion
    protocol: http
    port: 80
  ssh:
    address: {A}.onion
    protocol: tcp
    port: 22
"#
        );
        let (c, warnings) = Config::from_yaml(&text, "t.yaml").unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("some_future_key"));
        assert!(c.loop_ && c.interval == 1.5 && c.socks_port == 9050);
        assert_eq!(c.control_password, Some(ControlPassword::Disabled));
        let t = c.targets().unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["2600: The Hacker Quarterly", "Alexander Færøy", "ssh"]
        );
        assert_eq!(t[0].paths[0].allowed_statuses, Some(vec![200]));
        assert_eq!(t[0].address.host(), format!("www.{A}.onion"));
        assert!(!t[0].tls_verify, "global tls_verify false applies");
        assert!(t[1].tls_verify, "endpoint tls_verify wins");
        assert_eq!(t[1].port, 443);
        assert_eq!(t[1].paths[1].path, "/news?lang=en");
        assert_eq!(t[1].paths[1].allowed_statuses, None);
        assert!(t[2].paths.is_empty());
    }

    #[test]
    fn hostile_configs_fail_with_the_key_named() {
        let cases: Vec<(String, &str)> = vec![
            ("endpoints: {x: {address: nope.onion}}".into(), "address"),
            (format!("endpoints: {{x: {{address: {A}.onion, port: 0}}}}"), "port"),
            (format!("endpoints: {{x: {{address: {A}.onion, port: 70000}}}}"), "port"),
            (format!("endpoints: {{x: {{address: {A}.onion, port: 'eighty'}}}}"), "port"),
            (format!("endpoints: {{x: {{address: {A}.onion, protocol: gopher}}}}"), "protocol"),
            (format!("endpoints: {{x: {{address: {A}.onion, paths: [{{path: 'no-slash'}}]}}}}"), "path"),
            (format!("endpoints: {{x: {{address: {A}.onion, paths: [{{path: /, pattern: '('}}]}}}}"), "pattern"),
            (format!("endpoints: {{x: {{address: {A}.onion, paths: [{{path: /, allowed_statuses: [42]}}]}}}}"), "allowed_statuses"),
            (format!("endpoints: {{x: {{address: {A}.onion, paths: []}}}}"), "paths"),
            (format!("endpoints: {{x: {{address: {A}.onion, client_auth_key: 'short'}}}}"), "client_auth_key"),
            ("endpoints: {x: {protocol: http}}".into(), "address"),
            ("interval: -1".into(), "interval"),
            ("interval: .nan".into(), "interval"),
            ("log_level: loud".into(), "log_level"),
            ("concurrency: 0".into(), "concurrency"),
            ("socks_port: [1]".into(), "socks_port"),
            ("loop: maybe".into(), "loop"),
            ("endpoints: [1, 2]".into(), "endpoints"),
            ("- just\n- a list".into(), ""),
            ("{{{{".into(), ""),
            ("a: &x [*x]".into(), ""),
            ("tor_config: [\"a\\nb\"]".into(), "tor_config"),
        ];
        for (text, key) in cases {
            let err = Config::from_yaml(&text, "t.yaml")
                .err()
                .unwrap_or_else(|| panic!("{text:?} accepted"));
            let msg = err.to_string();
            assert!(msg.contains(key), "{text:?}: {msg}");
        }
    }

    #[test]
    fn remote_write_receivers_are_read_and_checked_at_load() {
        let (c, warnings) = Config::from_yaml(
            "remote_write:\n  - url: http://127.0.0.1:9090/api/v1/write\n    name: central\n    interval_seconds: 5\n    headers: {X-Scope-OrgID: probes}\n  - url: https://mimir.example/api/v1/push\n    bearer_token_file: /etc/onionwatch/token\n",
            "t.yaml",
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.remote_write.len(), 2);
        assert_eq!(c.remote_write[0].name.as_deref(), Some("central"));
        assert_eq!(c.remote_write[1].batch_size, 2000);
        for (yaml, key) in [
            ("remote_write: [{url: 'ftp://x/'}]", "remote_write[0].url"),
            ("remote_write: [{url: 'http://x/', bogus: 1}]", "bogus"),
            (
                "remote_write: [{url: 'http://x/'}, {url: 'http://y/', batch_size: 0}]",
                "remote_write[1].batch_size",
            ),
        ] {
            let e = Config::from_yaml(yaml, "t.yaml").unwrap_err().to_string();
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn vantage_and_external_labels_become_the_constant_labels() {
        let (c, w) = Config::from_yaml(
            "vantage: eu-1\nexternal_labels: {team: ops, region: eu}\nshard: 2/3\n",
            "t",
        )
        .unwrap();
        assert!(w.is_empty(), "{w:?}");
        let labels = c.labels().unwrap();
        let pairs: Vec<(&str, &str)> = labels
            .pairs()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [("vantage", "eu-1"), ("region", "eu"), ("team", "ops")]
        );
        assert_eq!(c.shard.unwrap().to_string(), "2/3");
        for (yaml, key) in [
            ("vantage: ''", "vantage"),
            ("external_labels: {vantage: x}", "external_labels.vantage"),
            ("external_labels: {__name__: x}", "external_labels.__name__"),
            ("external_labels: {'a-b': x}", "external_labels.a-b"),
            ("external_labels: {a: ''}", "external_labels.a"),
            ("shard: 3/2", "shard"),
            ("shard: 3", "shard"),
        ] {
            let err = Config::from_yaml(yaml, "t").unwrap_err().to_string();
            assert!(err.contains(key), "{yaml}: {err}");
        }
    }

    #[test]
    fn billion_laughs_is_bounded() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        // Either refused by the parser's budget or ignored as unknown keys, but fast.
        let start = std::time::Instant::now();
        let _ = Config::from_yaml(&text, "bomb.yaml");
        assert!(start.elapsed() < Duration::from_secs(30));
    }
}
