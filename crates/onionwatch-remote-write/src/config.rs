//! One receiver's configuration (`remote_write:` list items, `--remote-write URL`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Samples per request unless configured (Prometheus' `max_samples_per_send`).
pub const DEFAULT_BATCH_SIZE: usize = 2000;
/// Buffer bound unless configured: 64 MiB of compressed batches.
pub const DEFAULT_MAX_BUFFER_BYTES: u64 = 64 << 20;
/// Seconds one request may take unless configured (Prometheus' `remote_timeout`).
pub const DEFAULT_TIMEOUT_SECONDS: f64 = 30.0;
/// Smallest buffer accepted: one batch of a few thousand samples must fit.
const MIN_BUFFER_BYTES: u64 = 64 << 10;
/// Largest batch accepted; a receiver refuses bigger requests anyway.
const MAX_BATCH_SIZE: usize = 100_000;

/// A remote_write receiver (Prometheus with `--web.enable-remote-write-receiver`,
/// Thanos Receive, Grafana Mimir, VictoriaMetrics…).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's URL, `http://` or `https://`, e.g.
    /// `http://127.0.0.1:9090/api/v1/write`. Credentials do not belong in
    /// it (use `basic_auth` or `bearer_token_file`); logs show only its
    /// scheme, host and port.
    pub url: String,
    /// A name for this receiver in onionwatch's own metrics (`remote`
    /// label) and logs; default its position in the list (`0`, `1`…).
    /// Letters, digits, `_`, `-` and `.`, at most 64.
    #[serde(default)]
    pub name: Option<String>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// A file holding a bearer token (first line), sent as
    /// `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// An environment variable holding a bearer token.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// TLS settings for `https://` URLs.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Extra request headers (e.g. `X-Scope-OrgID` for Mimir). The
    /// protocol's own headers, `Host` and `Authorization` are refused.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds between two collections pushed; default the command's own
    /// interval (`probe`: `interval`; `watch`: `interval_seconds`).
    #[serde(default)]
    pub interval_seconds: Option<f64>,
    /// Most samples per request (default 2000).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Most bytes of compressed batches kept while the receiver is
    /// unreachable (default 64 MiB); past it the oldest batches are
    /// dropped and counted. On disk under `--state-dir`, else in memory.
    #[serde(default = "default_max_buffer_bytes")]
    pub max_buffer_bytes: u64,
    /// Seconds one request may take (default 30).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
}

fn default_batch_size() -> usize {
    DEFAULT_BATCH_SIZE
}
fn default_max_buffer_bytes() -> u64 {
    DEFAULT_MAX_BUFFER_BYTES
}
fn default_timeout() -> f64 {
    DEFAULT_TIMEOUT_SECONDS
}

/// `basic_auth:` of a receiver.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// A file holding the password (first line).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// `tls:` of a receiver.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates trusted besides the web PKI roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain), for receivers that require mTLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Do not verify the receiver's certificate. Dangerous: anyone on
    /// the path can then read the samples and the credentials sent.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A receiver configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value is invalid.
    #[error("remote_write[{index}].{key}: {message}")]
    Invalid {
        /// Position in the list.
        index: usize,
        /// The key.
        key: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
    /// A secret or certificate file cannot be read.
    #[error("remote_write[{index}].{key}: cannot read {}: {source}", path.display())]
    Read {
        /// Position in the list.
        index: usize,
        /// The key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A parsed receiver URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `https`?
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Port (80/443 when absent).
    pub port: u16,
    /// `Host` header value (`host[:port]` as written).
    pub authority: String,
    /// Path and query, at least `/`.
    pub path_and_query: String,
}

impl Url {
    /// Parse an `http://` or `https://` URL without user information or fragment.
    pub fn parse(url: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err("the URL must start with http:// or https://".into());
        };
        if url.contains('#') {
            return Err("a URL fragment (#…) is not sent; remove it".into());
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the URL contains spaces or control characters".into());
        }
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(
                "credentials in the URL are refused (they would show in logs): use basic_auth"
                    .into(),
            );
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("invalid port {p:?}"))?,
            None if tls => 443,
            None => 80,
        };
        let path_and_query = if path.starts_with('?') {
            format!("/{path}")
        } else if path.is_empty() {
            "/".into()
        } else {
            path.into()
        };
        http::uri::PathAndQuery::try_from(path_and_query.as_str())
            .map_err(|e| format!("invalid path: {e}"))?;
        http::uri::Authority::try_from(authority).map_err(|e| format!("invalid host: {e}"))?;
        Ok(Url {
            tls,
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path_and_query,
        })
    }

    /// What logs may show: scheme, host and port, never path or query
    /// (which some receivers use for tokens).
    pub fn redacted(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.authority
        )
    }
}

/// Headers a configuration may not set: the protocol's own, and what
/// onionwatch derives from other options.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "content-encoding",
    "content-type",
    "content-length",
    "user-agent",
    "x-prometheus-remote-write-version",
    "transfer-encoding",
    "connection",
];

impl RemoteWriteConfig {
    /// A receiver with default options (`--remote-write URL`).
    pub fn from_url(url: impl Into<String>) -> Self {
        RemoteWriteConfig {
            url: url.into(),
            name: None,
            basic_auth: None,
            bearer_token_file: None,
            bearer_token_env: None,
            tls: TlsConfig::default(),
            headers: BTreeMap::new(),
            interval_seconds: None,
            batch_size: DEFAULT_BATCH_SIZE,
            max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
        }
    }

    /// The name in metrics and logs: `name`, else the position `index`.
    pub fn display_name(&self, index: usize) -> String {
        self.name.clone().unwrap_or_else(|| index.to_string())
    }

    /// Check everything that needs no file or environment (done at load,
    /// so a bad value fails before anything starts); returns the URL.
    pub fn check(&self, index: usize) -> Result<Url, ConfigError> {
        let invalid = |key, message: String| ConfigError::Invalid {
            index,
            key,
            message,
        };
        let url = Url::parse(&self.url).map_err(|m| invalid("url", m))?;
        if let Some(n) = &self.name {
            let ok = !n.is_empty()
                && n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            if !ok {
                return Err(invalid(
                    "name",
                    format!("{n:?}: use 1 to 64 letters, digits, '_', '-' or '.'"),
                ));
            }
        }
        if self.bearer_token_file.is_some() && self.bearer_token_env.is_some() {
            return Err(invalid(
                "bearer_token_file",
                "give bearer_token_file or bearer_token_env, not both".into(),
            ));
        }
        if let Some(b) = &self.basic_auth {
            if self.bearer_token_file.is_some() || self.bearer_token_env.is_some() {
                return Err(invalid(
                    "basic_auth",
                    "basic_auth and a bearer token exclude each other".into(),
                ));
            }
            if b.username.contains(':') || b.username.is_empty() {
                return Err(invalid(
                    "basic_auth.username",
                    "must be non-empty and contain no ':'".into(),
                ));
            }
            if b.password_file.is_some() == b.password_env.is_some() {
                return Err(invalid(
                    "basic_auth",
                    "give exactly one of password_file and password_env".into(),
                ));
            }
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(invalid("tls", "cert_file and key_file go together".into()));
        }
        let tls_set = self.tls != TlsConfig::default();
        if tls_set && !url.tls {
            return Err(invalid("tls", "TLS options need an https:// URL".into()));
        }
        for (k, v) in &self.headers {
            let name = http::HeaderName::try_from(k.as_str())
                .map_err(|_| invalid("headers", format!("{k:?} is not a header name")))?;
            if RESERVED_HEADERS.contains(&name.as_str()) {
                return Err(invalid(
                    "headers",
                    format!("{k:?} is set by onionwatch itself (use basic_auth or a bearer token for Authorization)"),
                ));
            }
            http::HeaderValue::try_from(v.as_str()).map_err(|_| {
                invalid(
                    "headers",
                    format!("the value of {k:?} is not a valid header value"),
                )
            })?;
        }
        if let Some(s) = self.interval_seconds {
            if !(s.is_finite() && (0.1..=86_400.0).contains(&s)) {
                return Err(invalid(
                    "interval_seconds",
                    format!("{s}: give 0.1 to 86400 seconds"),
                ));
            }
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(invalid(
                "batch_size",
                format!("{}: give 1 to {MAX_BATCH_SIZE} samples", self.batch_size),
            ));
        }
        if self.max_buffer_bytes < MIN_BUFFER_BYTES {
            return Err(invalid(
                "max_buffer_bytes",
                format!(
                    "{}: give at least {MIN_BUFFER_BYTES} bytes",
                    self.max_buffer_bytes
                ),
            ));
        }
        if !(self.timeout_seconds.is_finite() && (0.1..=600.0).contains(&self.timeout_seconds)) {
            return Err(invalid(
                "timeout_seconds",
                format!("{}: give 0.1 to 600 seconds", self.timeout_seconds),
            ));
        }
        Ok(url)
    }

    /// The interval, or `default`.
    pub fn interval(&self, default: Duration) -> Duration {
        self.interval_seconds
            .map(Duration::from_secs_f64)
            .unwrap_or(default)
    }

    /// The `Authorization` header value, read from its file or variable.
    pub(crate) fn authorization(&self, index: usize) -> Result<Option<String>, ConfigError> {
        let read = |key: &'static str, path: &PathBuf| -> Result<String, ConfigError> {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                index,
                key,
                path: path.clone(),
                source,
            })?;
            Ok(text.lines().next().unwrap_or("").trim_end().to_owned())
        };
        let env = |key: &'static str, var: &str| -> Result<String, ConfigError> {
            std::env::var(var).map_err(|_| ConfigError::Invalid {
                index,
                key,
                message: format!("the environment variable {var} is not set (or not UTF-8)"),
            })
        };
        let token = match (&self.bearer_token_file, &self.bearer_token_env) {
            (Some(p), _) => Some(read("bearer_token_file", p)?),
            (None, Some(v)) => Some(env("bearer_token_env", v)?),
            (None, None) => None,
        };
        if let Some(t) = token {
            if t.is_empty() {
                return Err(ConfigError::Invalid {
                    index,
                    key: "bearer_token_file",
                    message: "the bearer token is empty".into(),
                });
            }
            return Ok(Some(format!("Bearer {t}")));
        }
        let Some(b) = &self.basic_auth else {
            return Ok(None);
        };
        let password = match (&b.password_file, &b.password_env) {
            (Some(p), _) => read("basic_auth.password_file", p)?,
            (None, Some(v)) => env("basic_auth.password_env", v)?,
            (None, None) => String::new(),
        };
        let plain = format!("{}:{password}", b.username);
        Ok(Some(format!("Basic {}", base64(plain.as_bytes()))))
    }
}

/// Standard base64 with padding (for basic authentication only).
fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_redact() {
        let u = Url::parse("https://mimir.example:8443/api/v1/push?token=s3cret").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, 8443);
        assert_eq!(u.path_and_query, "/api/v1/push?token=s3cret");
        assert_eq!(u.redacted(), "https://mimir.example:8443");
        let u = Url::parse("http://[::1]/w").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 80));
        assert_eq!(Url::parse("http://h").unwrap().path_and_query, "/");
        for bad in [
            "ftp://h/",
            "http://user:pw@h/",
            "http:///x",
            "http://h:0/",
            "http://h:99999/",
            "http://h/a b",
            "http://h/#f",
            "http://[::1/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn checks_refuse_what_cannot_work() {
        let ok = RemoteWriteConfig::from_url("http://127.0.0.1:9090/api/v1/write");
        assert!(ok.check(0).is_ok());
        let mut c = ok.clone();
        c.headers.insert("Authorization".into(), "x".into());
        assert!(c.check(0).unwrap_err().to_string().contains("headers"));
        let mut c = ok.clone();
        c.headers.insert("X-Scope-OrgID".into(), "tenant".into());
        assert!(c.check(0).is_ok());
        let mut c = ok.clone();
        c.tls.insecure_skip_verify = true;
        assert!(c.check(0).unwrap_err().to_string().contains("https"));
        let mut c = ok.clone();
        c.batch_size = 0;
        assert!(c
            .check(3)
            .unwrap_err()
            .to_string()
            .starts_with("remote_write[3].batch_size"));
        let mut c = ok.clone();
        c.max_buffer_bytes = 10;
        assert!(c.check(0).is_err());
        let mut c = ok.clone();
        c.name = Some("a b".into());
        assert!(c.check(0).is_err());
        let mut c = ok.clone();
        c.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password_file: None,
            password_env: None,
        });
        assert!(c.check(0).is_err());
        let mut c = ok;
        c.interval_seconds = Some(f64::NAN);
        assert!(c.check(0).is_err());
    }

    #[test]
    fn credentials_come_from_files_and_variables() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "open sesame\nignored\n").unwrap();
        let mut c = RemoteWriteConfig::from_url("http://h/");
        c.basic_auth = Some(BasicAuth {
            username: "Aladdin".into(),
            password_file: Some(pw.clone()),
            password_env: None,
        });
        // RFC 7617's example.
        assert_eq!(
            c.authorization(0).unwrap().as_deref(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        let mut c = RemoteWriteConfig::from_url("http://h/");
        c.bearer_token_file = Some(pw);
        assert_eq!(
            c.authorization(0).unwrap().as_deref(),
            Some("Bearer open sesame")
        );
        c.bearer_token_file = Some(dir.path().join("missing"));
        assert!(c
            .authorization(0)
            .unwrap_err()
            .to_string()
            .contains("missing"));
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn yaml_is_strict() {
        let c: RemoteWriteConfig =
            serde_saphyr::from_str("url: http://h/\nheaders: {X-A: b}\nbatch_size: 10\n").unwrap();
        assert_eq!(c.batch_size, 10);
        assert_eq!(c.max_buffer_bytes, DEFAULT_MAX_BUFFER_BYTES);
        assert!(serde_saphyr::from_str::<RemoteWriteConfig>("url: http://h/\nbogus: 1\n").is_err());
    }
}
