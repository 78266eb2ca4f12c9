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
//! `concurrency`, `max_body_bytes`, `prometheus_exporter_address`,
//! `tls_ca_file`, `tor_binary`, `tor_config`, and per endpoint `client_auth_key` /
//! `client_auth_key_file`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use data_encoding::BASE64;
use onionwatch_tor::onion::{base64_decode, OnionAddress, OnionAddressError, BASE32};
use serde::{Deserialize, Deserializer};

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

/// What to connect to after the descriptor step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 GET (the default).
    #[default]
    Http,
    /// HTTP/1.1 GET over TLS.
    Https,
    /// A plain TCP connection (onionwatch extension): reachable when the
    /// stream opens.
    Tcp,
}

impl Protocol {
    /// `http`, `https` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Tcp => "tcp",
        }
    }

    /// 80 for http (and tcp), 443 for https.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Https => 443,
            _ => 80,
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(Protocol::Http),
            "https" => Ok(Protocol::Https),
            "tcp" => Ok(Protocol::Tcp),
            other => Err(serde::de::Error::custom(format!(
                "unknown protocol {other:?}: use http, https or tcp"
            ))),
        }
    }
}

/// `control_password`: a password, or `false` (cookie or no authentication).
/// Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub enum ControlPassword {
    /// `HASHEDPASSWORD` authentication with this password.
    Password(String),
    /// `false` in YAML: cookie or no authentication (Onionprobe would then
    /// prompt; onionwatch never prompts and uses what tor offers).
    Disabled,
}

impl fmt::Debug for ControlPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlPassword::Password(_) => f.write_str("Password(<secret>)"),
            ControlPassword::Disabled => f.write_str("Disabled"),
        }
    }
}

impl<'de> Deserialize<'de> for ControlPassword {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
            N(i64),
        }
        Ok(match Raw::deserialize(d)? {
            // Only `false` is documented; `true` names no password either.
            Raw::B(false | true) => ControlPassword::Disabled,
            Raw::S(s) => ControlPassword::Password(s),
            Raw::N(n) => ControlPassword::Password(n.to_string()),
        })
    }
}

/// `control_port`: a TCP port on `tor_address`, or (onionwatch extension)
/// `unix:/path/to/control.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlPort {
    /// A TCP port on `tor_address`.
    Tcp(u16),
    /// A unix socket.
    Unix(PathBuf),
}

impl std::str::FromStr for ControlPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/tor/control".into());
            }
            return Ok(ControlPort::Unix(PathBuf::from(p)));
        }
        parse_port(s).map(ControlPort::Tcp)
    }
}

impl<'de> Deserialize<'de> for ControlPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match PortLike::deserialize(d)? {
            PortLike::N(n) => port_from_int(n)
                .map(ControlPort::Tcp)
                .map_err(serde::de::Error::custom),
            PortLike::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortLike {
    N(i64),
    S(String),
}

fn port_from_int(n: i64) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {n} is out of range: use 1 to 65535"))
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| format!("port {s:?} is not a number: use 1 to 65535"))
        .and_then(port_from_int)
}

fn lenient_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    match PortLike::deserialize(d)? {
        PortLike::N(n) => port_from_int(n),
        PortLike::S(s) => parse_port(&s),
    }
    .map_err(serde::de::Error::custom)
}

fn lenient_opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    lenient_port(d).map(Some)
}

fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        F(f64),
        S(String),
    }
    let v = match Raw::deserialize(d)? {
        Raw::F(f) => f,
        Raw::S(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a number of seconds")))?,
    };
    if !v.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "{v} seconds is out of range: use 0 to one year"
        )));
    }
    Ok(v)
}

/// `metrics_port`: `''`, null or 0 disable it; a port or `ADDR:PORT` enables it.
fn lenient_metrics_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(i64),
        S(String),
        Nothing(()),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None | Some(Raw::Nothing(())) => None,
        Some(Raw::N(0)) => None,
        Some(Raw::N(n)) => Some(n.to_string()),
        Some(Raw::S(s)) if s.trim().is_empty() || s.trim() == "0" => None,
        Some(Raw::S(s)) => Some(s),
    })
}

/// One path of an HTTP(S) endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PathSpec {
    /// The path (and query) appended to `PROTOCOL://ADDRESS:PORT`; must
    /// start with `/`.
    pub path: String,
    /// A regular expression searched for in the response body (Rust `regex`
    /// syntax, which covers the Python `re` subset configs use; look-around
    /// and back-references are refused at load).
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
    /// Address of tor's SOCKS and control ports (default `127.0.0.1`).
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
    /// Extra TLS attempts (default 3; onionwatch reads TLS details from the
    /// HTTPS connection itself, so this only bounds HTTPS retries together
    /// with `http_connect_max_retries`).
    pub tls_connect_max_retries: u32,
    /// `CircuitStreamTimeout` of the launched tor (default 60).
    pub circuit_stream_timeout: u32,
    /// Serve Prometheus metrics (default `false`); implies `loop`.
    pub prometheus_exporter: bool,
    /// Port of the metrics endpoint (default 9935).
    #[serde(deserialize_with = "lenient_port")]
    pub prometheus_exporter_port: u16,
    /// onionwatch: address of the metrics endpoint (default 127.0.0.1; a
    /// non-loopback address is refused, as the endpoint has no TLS or auth).
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
            circuit_stream_timeout: 60,
            prometheus_exporter: false,
            prometheus_exporter_port: 9935,
            prometheus_exporter_address: IpAddr::from([127, 0, 0, 1]),
            concurrency: 32,
            max_body_bytes: 1 << 20,
            tor_binary: PathBuf::from("tor"),
            tor_config: Vec::new(),
            endpoints: BTreeMap::new(),
        }
    }
}

/// Top-level keys this crate knows (Onionprobe's plus extensions).
const KNOWN_KEYS: &[&str] = &[
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
    "circuit_stream_timeout",
    "prometheus_exporter",
    "prometheus_exporter_port",
    "prometheus_exporter_address",
    "concurrency",
    "max_body_bytes",
    "tor_binary",
    "tor_config",
    "endpoints",
];

/// Largest config file read (the biggest bundled one is ~40 KiB).
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// A validated endpoint, ready to probe.
#[derive(Debug, Clone)]
pub struct Target {
    /// The endpoint's name (the `name` label).
    pub name: String,
    /// The address as configured (the `address` label), lower case.
    pub address: OnionAddress,
    /// The protocol.
    pub protocol: Protocol,
    /// The port.
    pub port: u16,
    /// The paths (empty for tcp).
    pub paths: Vec<TargetPath>,
    /// Verify the certificate (https).
    pub tls_verify: bool,
    /// Record TLS/certificate details (https).
    pub test_tls: bool,
    /// Base64 x25519 key for client authorization.
    pub client_auth_key: Option<String>,
}

/// A validated path.
#[derive(Debug, Clone)]
pub struct TargetPath {
    /// The path as configured.
    pub path: String,
    /// The compiled pattern and its text.
    pub pattern: Option<(regex::Regex, String)>,
    /// Allowed statuses; `None` accepts any.
    pub allowed_statuses: Option<Vec<u16>>,
}

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
        let warnings = keys
            .keys()
            .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
            .map(|k| format!("{origin}: unknown key {k:?} ignored (Onionprobe ignores it too)"))
            .collect();
        let config: Config = serde_saphyr::from_str(text).map_err(yaml_err)?;
        config.targets().map_err(|e| match e {
            ConfigError::Invalid { key, message, .. } => ConfigError::Invalid {
                origin: Some(origin.to_owned()),
                key,
                message,
            },
            other => other,
        })?;
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

    /// The DER certificates of `tls_ca_file` (empty without it). Refuses a
    /// file that cannot be read or holds no parsable PEM certificate.
    pub fn tls_ca_certificates(&self) -> Result<Vec<Vec<u8>>, ConfigError> {
        let Some(path) = &self.tls_ca_file else {
            return Ok(Vec::new());
        };
        let bad = |m: String| invalid("tls_ca_file", m);
        let data =
            std::fs::read(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        let mut certs = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(&data) {
            let pem = pem.map_err(|e| bad(format!("{}: invalid PEM: {e}", path.display())))?;
            if pem.label != "CERTIFICATE" {
                continue;
            }
            pem.parse_x509().map_err(|e| {
                bad(format!(
                    "{}: a CERTIFICATE block is not X.509: {e}",
                    path.display()
                ))
            })?;
            certs.push(pem.contents);
        }
        if certs.is_empty() {
            return Err(bad(format!(
                "{} holds no PEM CERTIFICATE block",
                path.display()
            )));
        }
        Ok(certs)
    }

    /// Check everything and compile the endpoints, in name order.
    pub fn targets(&self) -> Result<Vec<Target>, ConfigError> {
        let level = self.log_level.to_ascii_lowercase();
        if !["debug", "info", "warning", "warn", "error", "critical"].contains(&level.as_str()) {
            return Err(invalid(
                "log_level",
                format!(
                    "{:?} is not a level: use debug, info, warning, error or critical",
                    self.log_level
                ),
            ));
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            return Err(invalid("concurrency", "use 1 to 4096"));
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > 256 << 20 {
            return Err(invalid("max_body_bytes", "use 1 byte to 256 MiB"));
        }
        if self.descriptor_max_retries > 100
            || self.http_connect_max_retries > 100
            || self.tls_connect_max_retries > 100
        {
            return Err(invalid(
                "*_max_retries",
                "retries above 100 are surely a typo",
            ));
        }
        if self.tor_address.trim().is_empty() {
            return Err(invalid("tor_address", "must not be empty"));
        }
        for line in &self.tor_config {
            if line.contains(['\n', '\r', '\0']) {
                return Err(invalid("tor_config", "one torrc line per list item"));
            }
        }
        self.tls_ca_certificates()?;
        let global_verify = self.tls_verify.unwrap_or(true);
        let mut out = Vec::new();
        for (name, e) in self.effective_endpoints() {
            let key = |k: &str| format!("endpoints.{name:?}.{k}");
            if name.is_empty() {
                return Err(invalid("endpoints", "an endpoint name is empty"));
            }
            let address: OnionAddress =
                e.address
                    .trim()
                    .parse()
                    .map_err(|source| ConfigError::Address {
                        name: name.clone(),
                        source,
                    })?;
            let port = e.port.unwrap_or(e.protocol.default_port());
            let specs = e.paths.clone().unwrap_or_else(|| {
                vec![PathSpec {
                    path: "/".into(),
                    pattern: None,
                    allowed_statuses: Some(vec![200]),
                }]
            });
            let mut paths = Vec::new();
            if e.protocol != Protocol::Tcp {
                if specs.is_empty() {
                    return Err(invalid(
                        key("paths"),
                        "is empty: list at least one path, e.g. [{path: /}]",
                    ));
                }
                for (i, p) in specs.iter().enumerate() {
                    let pkey = key(&format!("paths[{i}]"));
                    if !p.path.starts_with('/')
                        || p.path.len() > 8192
                        || p.path.chars().any(|c| c.is_control() || c == ' ')
                    {
                        return Err(invalid(
                            format!("{pkey}.path"),
                            format!("{:?} must start with '/' and contain no spaces or control characters", p.path),
                        ));
                    }
                    let pattern = match &p.pattern {
                        None => None,
                        Some(text) => {
                            let re = regex::RegexBuilder::new(text)
                                .size_limit(1 << 20)
                                .build()
                                .map_err(|err| {
                                    invalid(
                                        format!("{pkey}.pattern"),
                                        format!(
                                            "{text:?} is not a supported regular expression: {err}"
                                        ),
                                    )
                                })?;
                            Some((re, text.clone()))
                        }
                    };
                    if let Some(list) = &p.allowed_statuses {
                        if let Some(bad) = list.iter().find(|s| !(100..=999).contains(*s)) {
                            return Err(invalid(
                                format!("{pkey}.allowed_statuses"),
                                format!("{bad} is not an HTTP status code (100-999)"),
                            ));
                        }
                    }
                    paths.push(TargetPath {
                        path: p.path.clone(),
                        pattern,
                        allowed_statuses: p.allowed_statuses.clone(),
                    });
                }
            }
            let client_auth_key = match (&e.client_auth_key, &e.client_auth_key_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        key("client_auth_key"),
                        "set client_auth_key or client_auth_key_file, not both",
                    ))
                }
                (Some(k), None) => Some(
                    check_base64_key(k.trim()).map_err(|m| invalid(key("client_auth_key"), m))?,
                ),
                (None, Some(path)) => Some(
                    read_auth_private(path, address.service_id())
                        .map_err(|m| invalid(key("client_auth_key_file"), m))?,
                ),
                (None, None) => None,
            };
            out.push(Target {
                name,
                address,
                protocol: e.protocol,
                port,
                paths,
                tls_verify: e.tls_verify.unwrap_or(global_verify),
                test_tls: e.test_tls_connection.unwrap_or(false) || self.test_tls_connection,
                client_auth_key,
            });
        }
        Ok(out)
    }
}

/// A base64 x25519 private key: 32 bytes.
fn check_base64_key(k: &str) -> Result<String, String> {
    match base64_decode(k) {
        Some(b) if b.len() == 32 => Ok(k.to_owned()),
        _ => Err("expected a base64 x25519 private key (44 characters, 32 bytes)".into()),
    }
}

/// Read tor's `.auth_private` format: `<56 chars>:descriptor:x25519:<base32 key>`.
fn read_auth_private(path: &Path, service_id: &str) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > 4096 {
        return Err(format!("{} is too large for a key file", path.display()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_auth_private(&text, service_id).map_err(|m| format!("{}: {m}", path.display()))
}

/// Parse an `.auth_private` line and return the key in base64.
pub(crate) fn parse_auth_private(text: &str, service_id: &str) -> Result<String, String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("no key line")?;
    let parts: Vec<&str> = line.split(':').collect();
    if parts.len() != 4 || parts[1] != "descriptor" || parts[2] != "x25519" {
        return Err("expected <onion address>:descriptor:x25519:<base32 key>".into());
    }
    let addr = parts[0].trim_end_matches(".onion").to_ascii_lowercase();
    if addr != service_id {
        return Err(format!(
            "the key is for {addr}.onion, not for the endpoint's onion service {service_id}.onion"
        ));
    }
    let key = BASE32
        .decode(parts[3].as_bytes())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or("the key is not 52 base32 characters")?;
    Ok(BASE64.encode(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";

    #[test]
    fn tls_ca_file_is_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = Config::from_yaml(&format!("tls_ca_file: '{}'\n", missing.display()), "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tls_ca_file") && err.contains("cannot read"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = Config::from_yaml(&format!("tls_ca_file: '{}'\n", empty.display()), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM CERTIFICATE"), "{err}");
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(Config::from_yaml(&format!("tls_ca_file: '{}'\n", bad.display()), "t").is_err());
        let (c, w) = Config::from_yaml("", "t").unwrap();
        assert!(w.is_empty() && c.tls_ca_file.is_none());
        assert!(c.tls_ca_certificates().unwrap().is_empty());
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
            (format!("endpoints: {{x: {{address: {A}.onion, paths: [{{path: /, pattern: '(?<=a)b'}}]}}}}"), "pattern"),
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

    #[test]
    fn metrics_port_and_control_port_forms() {
        let (c, _) = Config::from_yaml("metrics_port: 9936", "t").unwrap();
        assert_eq!(c.metrics_port.as_deref(), Some("9936"));
        let (c, _) = Config::from_yaml("metrics_port: '0.0.0.0:9936'", "t").unwrap();
        assert_eq!(c.metrics_port.as_deref(), Some("0.0.0.0:9936"));
        let (c, _) = Config::from_yaml("metrics_port: 0", "t").unwrap();
        assert!(c.metrics_port.is_none());
        let (c, _) = Config::from_yaml("metrics_port: null", "t").unwrap();
        assert!(c.metrics_port.is_none());
        let (c, _) = Config::from_yaml("control_port: unix:/run/tor/control", "t").unwrap();
        assert_eq!(c.control_port, ControlPort::Unix("/run/tor/control".into()));
        let (c, _) = Config::from_yaml("control_password: s3cret", "t").unwrap();
        assert_eq!(
            c.control_password,
            Some(ControlPassword::Password("s3cret".into()))
        );
        // Debug (of the whole configuration too) hides it.
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn auth_private_files() {
        let key = BASE64.encode(&[7u8; 32]);
        // base32 of 32 bytes of 7 = 52 chars.
        let b32 = "a4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dq";
        let line = format!("{A}:descriptor:x25519:{}\n", b32.to_uppercase());
        assert_eq!(parse_auth_private(&line, A).unwrap(), key);
        assert!(parse_auth_private(&line, &"b".repeat(56))
            .unwrap_err()
            .contains("not for"));
        for bad in [
            "",
            "x",
            &format!("{A}:descriptor:ed25519:{b32}"),
            &format!("{A}:descriptor:x25519:abc"),
        ] {
            assert!(parse_auth_private(bad, A).is_err(), "{bad:?}");
        }
    }
}
