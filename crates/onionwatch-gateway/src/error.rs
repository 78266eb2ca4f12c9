//! Errors of the gateway library.

use std::path::PathBuf;

/// A failure to configure or start the gateway. Per-connection problems are
/// logged and counted in [`crate::Metrics`], never returned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read the gateway configuration {}: {source}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error("invalid gateway configuration{}: {source}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Config {
        /// The file, if the configuration came from one.
        path: Option<PathBuf>,
        /// What is wrong and how to fix it.
        source: ConfigError,
    },
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}: {source} (is another process using it? for unix sockets, may this user create files in that directory?)")]
    Listen {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A live reload asked for something only a restart can change.
    #[error("{0} cannot change on reload; restart the gateway to apply it")]
    NeedsRestart(&'static str),
}

/// What is wrong in a gateway configuration, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The YAML does not parse or has unknown fields (boxed: the parser's
    /// error is large and every other error is small).
    #[error(transparent)]
    Yaml(#[from] Box<serde_saphyr::Error>),
    /// `unix:` without a path.
    #[error("{value:?}: a unix socket needs a path, e.g. {example}")]
    UnixWithoutPath {
        /// What was given.
        value: String,
        /// An example of a valid value.
        example: &'static str,
    },
    /// Neither a socket address nor `unix:PATH`.
    #[error("{value:?} is not {expected} or unix:/path/to/socket")]
    BadAddress {
        /// What was given.
        value: String,
        /// The TCP form expected, with an example.
        expected: &'static str,
    },
    /// `proxy_protocol` is not a known mode.
    #[error("{0:?}: expected require or optional")]
    BadProxyProtocol(String),
    /// `header_name` is not an HTTP header name.
    #[error("header_name {0:?} is not a valid HTTP header name (letters, digits and -)")]
    BadHeaderName(String),
    /// A duration field is zero, negative or not finite.
    #[error("{field} must be a positive number of seconds, got {value}")]
    BadSeconds {
        /// The field.
        field: &'static str,
        /// What was given.
        value: f64,
    },
    /// `unix_socket_mode` is not octal permission bits.
    #[error("unix_socket_mode {0:?} is not octal permission bits such as \"660\"")]
    BadUnixMode(String),
    /// `max_request_head_bytes` below what the HTTP parser can work with.
    #[error("max_request_head_bytes must be at least {min}, got {value}")]
    SmallRequestHead {
        /// What was given.
        value: usize,
        /// The smallest allowed.
        min: usize,
    },
    /// A count that must be positive is 0.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// `limits.rate` is negative or not finite.
    #[error("limits.rate must be a number of requests per second >= 0, got {0}")]
    BadRate(f64),
    /// A rate without a burst would never admit a request.
    #[error("limits.burst must be at least 1 when limits.rate is set")]
    ZeroBurst,
    /// Escalation enabled with nowhere to send `CLOSECIRCUIT`.
    #[error("escalation.enabled needs escalation.control_port (the onion-service tor's ControlPort, IP:PORT or unix:PATH), or escalation.dry_run")]
    EscalationWithoutControlPort,
    /// An entry of `trusted_proxy_sources` is not an address block.
    #[error("trusted_proxy_sources: {0:?} is not IP or IP/PREFIX (e.g. 127.0.0.1 or 10.0.0.0/8)")]
    BadCidr(String),
    /// `trusted_proxy_sources` with a unix listening socket.
    #[error("trusted_proxy_sources only applies to a TCP listen address; a unix socket has no source address (restrict it with unix_socket_mode instead)")]
    TrustedSourcesOnUnix,
    /// Escalation on a listener anyone may reach, where a forged PROXY
    /// header would choose which circuit tor closes.
    #[error("escalation.enabled on the non-loopback address {listen} needs trusted_proxy_sources (the addresses tor connects from, e.g. [127.0.0.1]): otherwise anyone who can connect can forge a PROXY header and have any circuit closed. Listen on loopback or a unix socket, list the trusted sources, or use escalation.dry_run")]
    EscalationWithoutTrustedSources {
        /// The listening address.
        listen: String,
    },
    /// Escalation enabled without a limit that could reject anything.
    #[error("escalation.enabled has no effect without a limit: set limits.rate, limits.max_connections_per_circuit or limits.max_requests_per_circuit")]
    EscalationWithoutLimit,
}
