//! The gateway's configuration: a YAML file, every field optional.
//!
//! ```yaml
//! listen: unix:/run/onionwatch/gateway.sock   # where HiddenServicePort points
//! upstream: 127.0.0.1:8080                    # the web application
//! proxy_protocol: require
//! header_name: X-Onion-CircuitID
//! # Only for a TCP listener others can reach: who may send PROXY headers.
//! # trusted_proxy_sources: [127.0.0.1, 10.0.0.0/8]
//! limits:
//!   rate: 5          # requests per second per circuit
//!   burst: 20
//!   max_connections_per_circuit: 8   # default 16
//! # Every wait on a client is bounded (defaults shown):
//! # header_timeout_secs: 5           # PROXY header
//! # request_header_timeout_secs: 30  # request head, and idle keep-alive
//! # body_timeout_secs: 60            # pause within a request body
//! # send_timeout_secs: 60            # client not reading the response
//! # max_request_head_bytes: 65536    # larger heads get 431
//! escalation:
//!   enabled: true
//!   control_port: unix:/run/tor/control
//!   rejections: 50
//!   window_secs: 10
//! ```
//!
//! [`Config::load`] parses and validates once; the gateway then only works
//! with validated values.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;
use onionwatch_tor::control::{ControlAddr, ControlTarget};
use serde::{Deserialize, Deserializer};

use crate::error::{ConfigError, Error};

/// Where the gateway listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// A TCP address, e.g. `127.0.0.1:8080`.
    Tcp(SocketAddr),
    /// A unix socket path (`unix:/run/onionwatch/gateway.sock`).
    Unix(PathBuf),
}

impl FromStr for ListenAddr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ConfigError::UnixWithoutPath {
                    value: s.to_owned(),
                    example: "unix:/run/onionwatch/gateway.sock",
                });
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        s.parse()
            .map(ListenAddr::Tcp)
            .map_err(|_| ConfigError::BadAddress {
                value: s.to_owned(),
                expected: "IP:PORT (e.g. 127.0.0.1:8080)",
            })
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The upstream the gateway forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// `HOST:PORT`; a name is resolved at every new upstream connection.
    Tcp(String),
    /// A unix socket path (`unix:/run/app.sock`).
    Unix(PathBuf),
}

impl FromStr for UpstreamAddr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ConfigError::UnixWithoutPath {
                    value: s.to_owned(),
                    example: "unix:/run/app.sock",
                });
            }
            return Ok(UpstreamAddr::Unix(PathBuf::from(path)));
        }
        let bad = || ConfigError::BadAddress {
            value: s.to_owned(),
            expected: "HOST:PORT (e.g. 127.0.0.1:8080)",
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        if host.is_empty() || port.parse::<u16>().is_err() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(UpstreamAddr::Tcp(s.to_owned()))
    }
}

impl fmt::Display for UpstreamAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamAddr::Tcp(a) => write!(f, "{a}"),
            UpstreamAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Whether every connection must start with a PROXY v1 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProxyProtocol {
    /// Refuse connections without a valid header (what tor with
    /// `HiddenServiceExportCircuitID haproxy` always sends).
    #[default]
    Require,
    /// Use the header when present; connections without one are served
    /// without a circuit id and without per-circuit limits.
    Optional,
}

impl FromStr for ProxyProtocol {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "require" => Ok(ProxyProtocol::Require),
            "optional" => Ok(ProxyProtocol::Optional),
            _ => Err(ConfigError::BadProxyProtocol(s.to_owned())),
        }
    }
}

/// An address block, `IP/PREFIX` (e.g. `10.0.0.0/8`, `fd00::/8`); a bare
/// IP is a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpCidr {
    addr: IpAddr,
    prefix: u8,
}

impl IpCidr {
    /// Whether `ip` is in this block (an IPv4-mapped IPv6 address, as a
    /// dual-stack listener reports IPv4 peers, counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpCidr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ConfigError::BadCidr(s.to_owned());
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip.trim().parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(IpCidr { addr, prefix })
    }
}

impl fmt::Display for IpCidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> Deserialize<'de> for IpCidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de_from_str(d)
    }
}

fn de_from_str<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = ConfigError>,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

fn de_from_str_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen: `IP:PORT` or `unix:PATH`. Default `127.0.0.1:8080`.
    /// Point tor's `HiddenServicePort` here; non-loopback addresses are
    /// accepted only when given explicitly.
    #[serde(default = "default_listen", deserialize_with = "de_from_str")]
    pub listen: ListenAddr,
    /// Permissions of a unix listening socket, in octal (e.g. `"660"`), so
    /// that the tor user can connect. Default `"660"`.
    #[serde(default = "default_unix_mode")]
    pub unix_socket_mode: String,
    /// Where to forward: `HOST:PORT` or `unix:PATH`. Default `127.0.0.1:80`.
    #[serde(default = "default_upstream", deserialize_with = "de_from_str")]
    pub upstream: UpstreamAddr,
    /// `require` (default) or `optional`: whether connections must start
    /// with a PROXY v1 header.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// The header carrying the decimal circuit id upstream. Any header of
    /// this name sent by a client is removed. Default `X-Onion-CircuitID`.
    #[serde(default = "default_header_name")]
    pub header_name: String,
    /// Also send a PROXY v1 header (the one tor sent) at the start of every
    /// upstream connection. Default `false`.
    #[serde(default)]
    pub send_proxy_header: bool,
    /// Seconds a new connection has to deliver its complete PROXY header;
    /// also the whole life of a connection refused by
    /// `limits.max_connections_per_circuit` (it only gets its `429`).
    /// Default 5.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: f64,
    /// Seconds a client has to send a complete request head, which is also
    /// how long an idle keep-alive connection is kept. Default 30.
    #[serde(default = "default_request_timeout")]
    pub request_header_timeout_secs: f64,
    /// Seconds a client may pause while sending a request body (between two
    /// reads, counted only while the gateway waits for it, like nginx's
    /// `client_body_timeout`). A stalled upload is cut: `408` if the
    /// upstream has not answered yet, else the connection is closed.
    /// Default 60.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: f64,
    /// Seconds a client may leave unread what the gateway sends it (a
    /// response or tunnel data; between two writes, like nginx's
    /// `send_timeout`); then the connection is closed. Default 60.
    #[serde(default = "default_send_timeout")]
    pub send_timeout_secs: f64,
    /// Largest request head (request line and headers) in bytes; a larger
    /// one is answered `431` and the connection closed. At least 8192.
    /// Default 65536.
    #[serde(default = "default_max_request_head")]
    pub max_request_head_bytes: usize,
    /// Seconds to connect to the upstream. Default 5.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: f64,
    /// Seconds the upstream has to answer with a response head. Default 60.
    #[serde(default = "default_upstream_timeout")]
    pub upstream_timeout_secs: f64,
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    /// Default 10.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace_secs: f64,
    /// Most client connections open at once (all circuits); more wait in the
    /// kernel's backlog. Default 4096, lowered at start (with a warning) to
    /// what the open-file limit holds: two descriptors per connection.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Threads serving connections, each its own event loop (as nginx's
    /// worker processes): a connection and its upstream connection stay on
    /// one thread. Default 0: one per CPU.
    #[serde(default)]
    pub workers: usize,
    /// Addresses allowed to connect over TCP and send PROXY headers
    /// (`IP/PREFIX` or `IP`): when set, connections from any other address
    /// are refused before their PROXY header is read. Needed to escalate
    /// (`escalation.enabled`) on a non-loopback `listen` address, since
    /// whoever can connect can name any circuit in a forged PROXY header
    /// and have tor close it. A loopback listener only hears local
    /// processes and a unix socket is guarded by its file permissions: both
    /// are trusted without a list. Not allowed with a unix `listen`.
    /// Default: empty (every source).
    #[serde(default)]
    pub trusted_proxy_sources: Vec<IpCidr>,
    /// Per-circuit limits.
    #[serde(default)]
    pub limits: Limits,
    /// Closing abusive circuits through tor's control port.
    #[serde(default)]
    pub escalation: Escalation,
    /// Serve `GET /metrics` (Prometheus text) here: a loopback address, or
    /// any with the command's TLS and authentication options. Default: none.
    #[serde(default, deserialize_with = "de_from_str_opt")]
    pub metrics_listen: Option<SocketAddr>,
}

/// Per-circuit limits; a circuit is what tor's PROXY header identifies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per second per circuit, refilled continuously (token
    /// bucket); 0 disables rate limiting. Default 0.
    #[serde(default)]
    pub rate: f64,
    /// Requests a circuit may send at once after being idle (bucket size).
    /// Default 20; at least 1 when `rate` is set.
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// Open connections (tor streams) per circuit; 0 = unlimited. Default
    /// 16 (a browser opens about 6 per site): without a cap, one circuit
    /// could hold all `max_connections` and lock every other client out.
    #[serde(default = "default_max_conns_per_circuit")]
    pub max_connections_per_circuit: u32,
    /// Requests in flight per circuit (across its connections); 0 =
    /// unlimited. Default 0.
    #[serde(default)]
    pub max_requests_per_circuit: u32,
    /// Most circuits tracked at once; idle circuits are forgotten first.
    /// Default 100000 (about 10 MB).
    #[serde(default = "default_max_circuits")]
    pub max_circuits: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rate: 0.0,
            burst: default_burst(),
            max_connections_per_circuit: default_max_conns_per_circuit(),
            max_requests_per_circuit: 0,
            max_circuits: default_max_circuits(),
        }
    }
}

/// Escalation of sustained abuse to `CLOSECIRCUIT` (opt-in).
///
/// The control port's three keys are those of a [`ControlTarget`] (see
/// [`Escalation::control`]); they stay plain optional fields here because
/// `control_port` may be left out for a dry run. Its `Debug` (what
/// `gateway --check` prints) never shows the password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// Close circuits whose requests keep being refused. Default `false`.
    #[serde(default)]
    pub enabled: bool,
    /// Only log which circuit would be closed. Default `false`.
    #[serde(default)]
    pub dry_run: bool,
    /// The onion-service tor's control port: `IP:PORT` or `unix:PATH`.
    /// Required when `enabled` (unless `dry_run`).
    #[serde(default, deserialize_with = "de_from_str_opt")]
    pub control_port: Option<ControlAddr>,
    /// Control-port password (`HashedControlPassword`); otherwise the
    /// cookie tor names is used.
    #[serde(default)]
    pub control_password: Option<String>,
    /// Cookie file to use instead of the one tor names (e.g. tor in a
    /// container).
    #[serde(default)]
    pub control_cookie: Option<PathBuf>,
    /// Refusals (429s) of one circuit within `window_secs` that close it.
    /// Default 50.
    #[serde(default = "default_rejections")]
    pub rejections: u32,
    /// The window for `rejections`, in seconds. Default 10.
    #[serde(default = "default_window")]
    pub window_secs: f64,
    /// Seconds during which a closed circuit is not closed again. Default 300.
    #[serde(default = "default_cooldown")]
    pub cooldown_secs: f64,
}

impl Default for Escalation {
    fn default() -> Self {
        Escalation {
            enabled: false,
            dry_run: false,
            control_port: None,
            control_password: None,
            control_cookie: None,
            rejections: default_rejections(),
            window_secs: default_window(),
            cooldown_secs: default_cooldown(),
        }
    }
}

impl Escalation {
    /// The control port to close circuits on, when `control_port` is set.
    pub fn control(&self) -> Option<ControlTarget> {
        Some(ControlTarget {
            control_port: self.control_port.clone()?,
            control_password: self.control_password.clone(),
            control_cookie: self.control_cookie.clone(),
        })
    }
}

impl fmt::Debug for Escalation {
    /// Never prints the password. Every field is named, so a new one cannot
    /// be left out (or a new secret printed) unnoticed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Escalation {
            enabled,
            dry_run,
            control_port,
            control_password,
            control_cookie,
            rejections,
            window_secs,
            cooldown_secs,
        } = self;
        f.debug_struct("Escalation")
            .field("enabled", enabled)
            .field("dry_run", dry_run)
            .field("control_port", control_port)
            .field(
                "control_password",
                &control_password.as_ref().map(|_| "<secret>"),
            )
            .field("control_cookie", control_cookie)
            .field("rejections", rejections)
            .field("window_secs", window_secs)
            .field("cooldown_secs", cooldown_secs)
            .finish()
    }
}

fn default_listen() -> ListenAddr {
    ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080)))
}
fn default_unix_mode() -> String {
    "660".into()
}
fn default_upstream() -> UpstreamAddr {
    UpstreamAddr::Tcp("127.0.0.1:80".into())
}
fn default_header_name() -> String {
    "X-Onion-CircuitID".into()
}
fn default_header_timeout() -> f64 {
    5.0
}
fn default_request_timeout() -> f64 {
    30.0
}
fn default_body_timeout() -> f64 {
    60.0
}
fn default_send_timeout() -> f64 {
    60.0
}
/// hyper's smallest read buffer: it panics below this.
const MIN_REQUEST_HEAD: usize = 8192;
fn default_max_request_head() -> usize {
    65536
}
fn default_max_conns_per_circuit() -> u32 {
    16
}
fn default_connect_timeout() -> f64 {
    5.0
}
fn default_upstream_timeout() -> f64 {
    60.0
}
fn default_shutdown_grace() -> f64 {
    10.0
}
fn default_max_connections() -> usize {
    4096
}
fn default_burst() -> u32 {
    20
}
fn default_max_circuits() -> usize {
    100_000
}
fn default_rejections() -> u32 {
    50
}
fn default_window() -> f64 {
    10.0
}
fn default_cooldown() -> f64 {
    300.0
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            unix_socket_mode: default_unix_mode(),
            upstream: default_upstream(),
            proxy_protocol: ProxyProtocol::default(),
            header_name: default_header_name(),
            send_proxy_header: false,
            header_timeout_secs: default_header_timeout(),
            request_header_timeout_secs: default_request_timeout(),
            body_timeout_secs: default_body_timeout(),
            send_timeout_secs: default_send_timeout(),
            max_request_head_bytes: default_max_request_head(),
            connect_timeout_secs: default_connect_timeout(),
            upstream_timeout_secs: default_upstream_timeout(),
            shutdown_grace_secs: default_shutdown_grace(),
            max_connections: default_max_connections(),
            workers: 0,
            trusted_proxy_sources: Vec::new(),
            limits: Limits::default(),
            escalation: Escalation::default(),
            metrics_listen: None,
        }
    }
}

/// A duration in seconds that must be positive and finite.
fn secs(field: &'static str, value: f64) -> Result<Duration, ConfigError> {
    if value.is_finite() && value > 0.0 && value < 1e9 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError::BadSeconds { field, value })
    }
}

impl Config {
    /// Read, parse and validate a YAML file.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::from_yaml(&text).map_err(|source| Error::Config {
            path: Some(path.to_owned()),
            source,
        })?;
        Ok(config)
    }

    /// Parse and validate YAML text.
    pub fn from_yaml(text: &str) -> Result<Config, ConfigError> {
        // An empty file is a valid "all defaults" configuration.
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(text).map_err(Box::new)?
        };
        config.validate()?;
        Ok(config)
    }

    /// Check values that the types alone do not restrict.
    pub fn validate(&self) -> Result<(), ConfigError> {
        HeaderName::from_bytes(self.header_name.as_bytes())
            .map_err(|_| ConfigError::BadHeaderName(self.header_name.clone()))?;
        self.header_timeout()?;
        self.request_header_timeout()?;
        self.body_timeout()?;
        self.send_timeout()?;
        if self.max_request_head_bytes < MIN_REQUEST_HEAD {
            return Err(ConfigError::SmallRequestHead {
                value: self.max_request_head_bytes,
                min: MIN_REQUEST_HEAD,
            });
        }
        self.connect_timeout()?;
        self.upstream_timeout()?;
        self.shutdown_grace()?;
        self.unix_mode()?;
        if self.max_connections == 0 {
            return Err(ConfigError::Zero("max_connections"));
        }
        let l = &self.limits;
        if !(l.rate.is_finite() && l.rate >= 0.0) {
            return Err(ConfigError::BadRate(l.rate));
        }
        if l.rate > 0.0 && l.burst == 0 {
            return Err(ConfigError::ZeroBurst);
        }
        if l.max_circuits == 0 {
            return Err(ConfigError::Zero("limits.max_circuits"));
        }
        let e = &self.escalation;
        if e.enabled {
            if e.control_port.is_none() && !e.dry_run {
                return Err(ConfigError::EscalationWithoutControlPort);
            }
            if e.rejections == 0 {
                return Err(ConfigError::Zero("escalation.rejections"));
            }
            if l.rate == 0.0
                && l.max_connections_per_circuit == 0
                && l.max_requests_per_circuit == 0
            {
                return Err(ConfigError::EscalationWithoutLimit);
            }
        }
        let public_tcp = match &self.listen {
            ListenAddr::Tcp(a) => !a.ip().to_canonical().is_loopback(),
            ListenAddr::Unix(_) => {
                if !self.trusted_proxy_sources.is_empty() {
                    return Err(ConfigError::TrustedSourcesOnUnix);
                }
                false
            }
        };
        if e.enabled && !e.dry_run && public_tcp && self.trusted_proxy_sources.is_empty() {
            return Err(ConfigError::EscalationWithoutTrustedSources {
                listen: self.listen.to_string(),
            });
        }
        secs("escalation.window_secs", e.window_secs)?;
        secs("escalation.cooldown_secs", e.cooldown_secs)?;
        Ok(())
    }

    /// The parsed header name (valid after [`Config::validate`]).
    pub fn header(&self) -> HeaderName {
        HeaderName::from_bytes(self.header_name.as_bytes())
            .unwrap_or_else(|_| HeaderName::from_static("x-onion-circuitid"))
    }

    /// Whether a TCP peer at `ip` may connect (see `trusted_proxy_sources`).
    pub fn trusts_source(&self, ip: IpAddr) -> bool {
        self.trusted_proxy_sources.is_empty()
            || self.trusted_proxy_sources.iter().any(|c| c.contains(ip))
    }

    /// `header_timeout_secs` as a duration.
    pub fn header_timeout(&self) -> Result<Duration, ConfigError> {
        secs("header_timeout_secs", self.header_timeout_secs)
    }
    /// `request_header_timeout_secs` as a duration.
    pub fn request_header_timeout(&self) -> Result<Duration, ConfigError> {
        secs(
            "request_header_timeout_secs",
            self.request_header_timeout_secs,
        )
    }
    /// `body_timeout_secs` as a duration.
    pub fn body_timeout(&self) -> Result<Duration, ConfigError> {
        secs("body_timeout_secs", self.body_timeout_secs)
    }
    /// `send_timeout_secs` as a duration.
    pub fn send_timeout(&self) -> Result<Duration, ConfigError> {
        secs("send_timeout_secs", self.send_timeout_secs)
    }
    /// `connect_timeout_secs` as a duration.
    pub fn connect_timeout(&self) -> Result<Duration, ConfigError> {
        secs("connect_timeout_secs", self.connect_timeout_secs)
    }
    /// `upstream_timeout_secs` as a duration.
    pub fn upstream_timeout(&self) -> Result<Duration, ConfigError> {
        secs("upstream_timeout_secs", self.upstream_timeout_secs)
    }
    /// `shutdown_grace_secs` as a duration.
    pub fn shutdown_grace(&self) -> Result<Duration, ConfigError> {
        secs("shutdown_grace_secs", self.shutdown_grace_secs)
    }
    /// `unix_socket_mode` as permission bits.
    pub fn unix_mode(&self) -> Result<u32, ConfigError> {
        let s = self.unix_socket_mode.trim_start_matches("0o");
        match u32::from_str_radix(s, 8) {
            Ok(m) if m <= 0o777 && !s.is_empty() => Ok(m),
            _ => Err(ConfigError::BadUnixMode(self.unix_socket_mode.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_full_file_parse() {
        let c = Config::from_yaml("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.proxy_protocol, ProxyProtocol::Require);
        assert_eq!(c.header().as_str(), "x-onion-circuitid");
        let c = Config::from_yaml(
            "listen: unix:/tmp/gw.sock\nupstream: localhost:8080\nproxy_protocol: optional\n\
             header_name: X-Circuit\nsend_proxy_header: true\nheader_timeout_secs: 1.5\n\
             limits:\n  rate: 2.5\n  burst: 3\n  max_connections_per_circuit: 4\n\
             escalation:\n  enabled: true\n  control_port: unix:/run/tor/control\n  rejections: 7\n\
             metrics_listen: 127.0.0.1:9100\n",
        )
        .unwrap();
        assert_eq!(c.listen, ListenAddr::Unix("/tmp/gw.sock".into()));
        assert_eq!(c.upstream, UpstreamAddr::Tcp("localhost:8080".into()));
        assert_eq!(c.proxy_protocol, ProxyProtocol::Optional);
        assert_eq!(c.limits.burst, 3);
        assert_eq!(c.escalation.rejections, 7);
        assert_eq!(
            c.escalation.control_port,
            Some(ControlAddr::Unix("/run/tor/control".into()))
        );
        assert_eq!(c.header_timeout().unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = Config::from_yaml("listne: 127.0.0.1:1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("listne"), "{e}");
        let e = Config::from_yaml("limits:\n  rate: 1\n  brust: 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("brust"), "{e}");
        let e = Config::from_yaml("listen: localhost\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("IP:PORT"), "{e}");
        let e = Config::from_yaml("upstream: nohost\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("HOST:PORT"), "{e}");
        let e = Config::from_yaml("proxy_protocol: maybe\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("maybe"), "{e}");
        let e = Config::from_yaml("header_name: \"bad header\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("header_name"), "{e}");
        let e = Config::from_yaml("header_timeout_secs: 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("header_timeout_secs"), "{e}");
        let e = Config::from_yaml("escalation:\n  enabled: true\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("control_port"), "{e}");
        let e = Config::from_yaml("max_request_head_bytes: 100\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("max_request_head_bytes") && e.contains("8192"),
            "{e}"
        );
        let e = Config::from_yaml("body_timeout_secs: -1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("body_timeout_secs"), "{e}");
        let e = Config::from_yaml("limits:\n  rate: 1\n  burst: 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("burst"), "{e}");
        let e = Config::from_yaml("unix_socket_mode: \"999\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unix_socket_mode"), "{e}");
    }

    #[test]
    fn escalation_on_a_public_listener_needs_trusted_proxy_sources() {
        let escalate =
            "limits:\n  rate: 1\nescalation:\n  enabled: true\n  control_port: 127.0.0.1:9051\n";
        let public = format!("listen: 0.0.0.0:8080\n{escalate}");
        let e = Config::from_yaml(&public).unwrap_err().to_string();
        assert!(
            e.contains("trusted_proxy_sources") && e.contains("0.0.0.0:8080"),
            "{e}"
        );
        let e = Config::from_yaml(&format!("listen: \"[::]:8080\"\n{escalate}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("trusted_proxy_sources"), "{e}");
        // With the list, or on loopback, or a unix socket, or as a dry run: fine.
        let c = Config::from_yaml(&format!(
            "{public}trusted_proxy_sources: [10.0.0.5, \"fd00::/8\"]\n"
        ))
        .unwrap();
        assert!(c.trusts_source("10.0.0.5".parse().unwrap()));
        assert!(c.trusts_source("::ffff:10.0.0.5".parse().unwrap()));
        assert!(c.trusts_source("fd12::1".parse().unwrap()));
        assert!(!c.trusts_source("10.0.0.6".parse().unwrap()));
        assert!(!c.trusts_source("127.0.0.1".parse().unwrap()));
        for ok in [
            format!("listen: 127.0.0.2:8080\n{escalate}"),
            format!("listen: \"[::1]:8080\"\n{escalate}"),
            format!("listen: unix:/run/gw.sock\n{escalate}"),
            format!("{public}  dry_run: true\n"),
        ] {
            Config::from_yaml(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        // Without escalation a public listener is allowed (the binary warns).
        Config::from_yaml("listen: 0.0.0.0:8080\n").unwrap();
        let e = Config::from_yaml("listen: unix:/a\ntrusted_proxy_sources: [127.0.0.1]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unix"), "{e}");
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c: IpCidr = "192.168.1.0/24".parse().unwrap();
        assert!(c.contains("192.168.1.200".parse().unwrap()));
        assert!(!c.contains("192.168.2.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let all: IpCidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let one: IpCidr = "::1".parse().unwrap();
        assert_eq!(one.to_string(), "::1/128");
        assert!(one.contains("::1".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "nope",
            "10.0.0.0/8/8",
            "",
        ] {
            let e = bad.parse::<IpCidr>().unwrap_err().to_string();
            assert!(e.contains("trusted_proxy_sources"), "{bad}: {e}");
        }
    }

    #[test]
    fn debug_hides_the_control_password() {
        let c = Config::from_yaml(
            "limits:\n  rate: 1\nescalation:\n  enabled: true\n  control_port: 127.0.0.1:9051\n  control_password: hunter2\n",
        )
        .unwrap();
        let dbg = format!("{c:#?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("control_password: Some(\n"), "{dbg}");
        assert!(dbg.contains("rejections: 50"), "{dbg}");
        // The password is still there to use.
        assert_eq!(c.escalation.control_password.as_deref(), Some("hunter2"));
    }

    #[test]
    fn addresses_parse() {
        assert!("unix:".parse::<ListenAddr>().is_err());
        assert!("[::1]:80".parse::<ListenAddr>().is_ok());
        assert!("unix:/a".parse::<UpstreamAddr>().is_ok());
        assert!("[::1]:80".parse::<UpstreamAddr>().is_ok());
        assert!("host:99999".parse::<UpstreamAddr>().is_err());
        assert!(":80".parse::<UpstreamAddr>().is_err());
    }
}
