//! The Prometheus exporter-toolkit web configuration file
//! (`--web.config.file`), so the file operators already give node_exporter
//! works unchanged:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt            # relative paths: from the file's directory
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.crt
//!   min_version: TLS12
//! http_server_config:
//!   headers:
//!     X-Content-Type-Options: nosniff
//! basic_auth_users:
//!   prometheus: $2y$10$...           # bcrypt (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Everything the toolkit defines is either honoured or refused with a
//! message saying so; unknown keys are refused too. Honoured: `cert_file`,
//! `key_file`, `client_ca_file`, `client_auth_type` `NoClientCert` and
//! `RequireAndVerifyClientCert`, `min_version: TLS12` and `max_version:
//! TLS13` (rustls' range), `prefer_server_cipher_suites` (no effect: rustls
//! chooses), `http2` (no effect: the endpoint speaks HTTP/1.1), the five
//! `headers`, `basic_auth_users`. Refused: inline `cert`/`key`/`client_ca`,
//! the client auth types that let an unverified client in
//! (`RequestClientCert`, `RequireAnyClientCert`, `VerifyClientCertIfGiven`),
//! `client_allowed_sans`, other TLS versions, `cipher_suites`,
//! `curve_preferences` and `rate_limit`.
//!
//! The toolkit re-reads the file at every request; onionwatch reads it at
//! start and on SIGHUP ([`crate::RunningServer::reload`]: certificates and
//! users; headers and turning TLS on or off need a restart).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::security::{AuthConfig, BasicUser, SecurityError, TlsConfig};

/// A web configuration file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// TLS of the endpoint; no `cert_file` means plain HTTP.
    #[serde(default)]
    pub tls_server_config: Option<WebTlsConfig>,
    /// HTTP settings: response headers.
    #[serde(default)]
    pub http_server_config: Option<WebHttpConfig>,
    /// User name → bcrypt hash of the password.
    #[serde(default)]
    pub basic_auth_users: Option<BTreeMap<String, String>>,
    /// The toolkit's rate limiter: refused (not implemented).
    #[serde(default)]
    pub rate_limit: Option<IgnoredAny>,
}

/// `tls_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebTlsConfig {
    /// PEM certificate chain of the server.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the server.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates client certificates must be signed by.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
    /// `NoClientCert` (default) or `RequireAndVerifyClientCert`.
    #[serde(default)]
    pub client_auth_type: Option<String>,
    /// Inline certificate: refused (use `cert_file`).
    #[serde(default)]
    pub cert: Option<IgnoredAny>,
    /// Inline key: refused (use `key_file`).
    #[serde(default)]
    pub key: Option<IgnoredAny>,
    /// Inline client CA: refused (use `client_ca_file`).
    #[serde(default)]
    pub client_ca: Option<IgnoredAny>,
    /// SAN allow-list of client certificates: refused (not implemented).
    #[serde(default)]
    pub client_allowed_sans: Option<Vec<String>>,
    /// `TLS12` only (rustls speaks TLS 1.2 and 1.3).
    #[serde(default)]
    pub min_version: Option<String>,
    /// `TLS13` only.
    #[serde(default)]
    pub max_version: Option<String>,
    /// Refused when not empty: rustls' own list is used.
    #[serde(default)]
    pub cipher_suites: Option<Vec<String>>,
    /// Accepted, no effect (rustls chooses the cipher suite).
    #[serde(default)]
    pub prefer_server_cipher_suites: Option<bool>,
    /// Refused when not empty: rustls' own list is used.
    #[serde(default)]
    pub curve_preferences: Option<Vec<String>>,
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebHttpConfig {
    /// Accepted, no effect: the endpoint speaks HTTP/1.1.
    #[serde(default)]
    pub http2: Option<bool>,
    /// Headers added to every response.
    #[serde(default)]
    pub headers: Option<WebHeaders>,
}

/// The response headers the toolkit allows; blank ones are not sent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebHeaders {
    /// `Content-Security-Policy`.
    #[serde(rename = "Content-Security-Policy", default)]
    pub content_security_policy: Option<String>,
    /// `X-Frame-Options`: `deny` or `sameorigin`.
    #[serde(rename = "X-Frame-Options", default)]
    pub x_frame_options: Option<String>,
    /// `X-Content-Type-Options`: `nosniff`.
    #[serde(rename = "X-Content-Type-Options", default)]
    pub x_content_type_options: Option<String>,
    /// `X-XSS-Protection`.
    #[serde(rename = "X-XSS-Protection", default)]
    pub x_xss_protection: Option<String>,
    /// `Strict-Transport-Security`.
    #[serde(rename = "Strict-Transport-Security", default)]
    pub strict_transport_security: Option<String>,
}

/// A web configuration file, checked and with paths resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebSettings {
    /// TLS, if `cert_file` is given.
    pub tls: Option<TlsConfig>,
    /// The basic-auth users.
    pub auth: AuthConfig,
    /// Response headers (name, value), as the file spells the names.
    pub headers: BTreeMap<String, String>,
}

fn refuse(detail: impl Into<String>) -> Result<(), String> {
    Err(detail.into())
}

impl WebConfig {
    /// Check the file's settings and resolve relative paths against `dir`
    /// (the file's directory, as the toolkit does).
    pub fn settings(self, dir: &Path) -> Result<WebSettings, String> {
        if self.rate_limit.is_some() {
            refuse("rate_limit is not supported by onionwatch; remove it (the endpoint bounds password checks itself)")?;
        }
        let tls = match self.tls_server_config {
            None => None,
            Some(t) => tls(t, dir)?,
        };
        let mut headers = BTreeMap::new();
        if let Some(h) = self.http_server_config.and_then(|h| h.headers) {
            for (name, value) in [
                ("Content-Security-Policy", h.content_security_policy),
                ("X-Frame-Options", h.x_frame_options),
                ("X-Content-Type-Options", h.x_content_type_options),
                ("X-XSS-Protection", h.x_xss_protection),
                ("Strict-Transport-Security", h.strict_transport_security),
            ] {
                let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
                    continue;
                };
                let ok = match name {
                    "X-Frame-Options" => ["deny", "sameorigin"]
                        .iter()
                        .any(|v| v.eq_ignore_ascii_case(&value)),
                    "X-Content-Type-Options" => value.eq_ignore_ascii_case("nosniff"),
                    _ => true,
                };
                let valid = axum::http::HeaderValue::from_str(&value).is_ok();
                if !ok || !valid {
                    refuse(format!("invalid {name} header value {value:?}"))?;
                }
                headers.insert(name.to_owned(), value);
            }
        }
        let auth = AuthConfig {
            bearer_token_sha256: Vec::new(),
            basic: self
                .basic_auth_users
                .unwrap_or_default()
                .into_iter()
                .map(|(username, password_bcrypt)| BasicUser {
                    username,
                    password_bcrypt,
                })
                .collect(),
        };
        Ok(WebSettings { tls, auth, headers })
    }

    /// Read, parse and check the file at `path` (see [`WebConfig::settings`]).
    pub fn load(path: &Path) -> Result<WebSettings, SecurityError> {
        let error = |detail: String| SecurityError::WebConfig {
            path: path.to_owned(),
            detail,
        };
        let text = std::fs::read(path).map_err(|source| SecurityError::Read {
            what: "web configuration file",
            path: path.to_owned(),
            source,
        })?;
        let text = std::str::from_utf8(&text).map_err(|e| error(e.to_string()))?;
        // An empty file is an empty configuration, as for the toolkit.
        let config: WebConfig = if text.trim().is_empty() {
            WebConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| error(e.to_string()))?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let settings = config.settings(dir).map_err(error)?;
        // Hashes are checked now, so a bad file is refused at start and reload.
        crate::Authenticator::new(&settings.auth).map_err(|e| error(e.to_string()))?;
        Ok(settings)
    }
}

fn tls(t: WebTlsConfig, dir: &Path) -> Result<Option<TlsConfig>, String> {
    for (set, key, instead) in [
        (t.cert.is_some(), "cert", "cert_file"),
        (t.key.is_some(), "key", "key_file"),
        (t.client_ca.is_some(), "client_ca", "client_ca_file"),
    ] {
        if set {
            refuse(format!(
                "tls_server_config.{key} (inline PEM) is not supported by onionwatch; put it in a file and name it with {instead}"
            ))?;
        }
    }
    if t.client_allowed_sans
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        refuse("tls_server_config.client_allowed_sans is not supported by onionwatch; use a client CA that signs only the scrapers' certificates")?;
    }
    for (list, key) in [
        (&t.cipher_suites, "cipher_suites"),
        (&t.curve_preferences, "curve_preferences"),
    ] {
        if list.as_ref().is_some_and(|l| !l.is_empty()) {
            refuse(format!(
                "tls_server_config.{key} is not supported by onionwatch (rustls' safe defaults are used); remove it"
            ))?;
        }
    }
    if let Some(v) = t.min_version.as_deref().filter(|v| *v != "TLS12") {
        refuse(format!(
            "tls_server_config.min_version {v:?} is not supported: onionwatch serves TLS 1.2 and 1.3 (min_version: TLS12)"
        ))?;
    }
    if let Some(v) = t.max_version.as_deref().filter(|v| *v != "TLS13") {
        refuse(format!(
            "tls_server_config.max_version {v:?} is not supported: onionwatch serves TLS 1.2 and 1.3 (max_version: TLS13)"
        ))?;
    }
    let auth_type = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let verify = match auth_type {
        "" | "NoClientCert" => false,
        "RequireAndVerifyClientCert" => true,
        "RequestClientCert" | "RequireAnyClientCert" | "VerifyClientCertIfGiven" => {
            return Err(format!(
                "tls_server_config.client_auth_type {auth_type} is not supported: it lets clients without a verified certificate in. Use RequireAndVerifyClientCert (with client_ca_file) or NoClientCert"
            ))
        }
        other => {
            return Err(format!(
                "unknown tls_server_config.client_auth_type {other:?} (expected NoClientCert or RequireAndVerifyClientCert)"
            ))
        }
    };
    let path = |p: PathBuf| if p.is_absolute() { p } else { dir.join(p) };
    let client_ca = match (verify, t.client_ca_file) {
        (true, Some(ca)) => Some(path(ca)),
        (true, None) => {
            return Err("client_auth_type RequireAndVerifyClientCert needs client_ca_file".into())
        }
        (false, Some(_)) => {
            return Err("client_ca_file is set but client_auth_type is not RequireAndVerifyClientCert: client certificates would not be checked".into())
        }
        (false, None) => None,
    };
    match (t.cert_file, t.key_file) {
        (Some(cert), Some(key)) => Ok(Some(TlsConfig {
            cert: path(cert),
            key: path(key),
            client_ca,
        })),
        (None, None) if client_ca.is_none() => Ok(None),
        (None, None) => Err("client certificates need TLS: set cert_file and key_file".into()),
        (Some(_), None) => Err("tls_server_config has cert_file but no key_file".into()),
        (None, Some(_)) => Err("tls_server_config has key_file but no cert_file".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<WebSettings, String> {
        let config: WebConfig = serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?;
        config.settings(Path::new("/etc/node_exporter"))
    }

    #[test]
    fn a_node_exporter_web_config_is_read_unchanged() {
        let s = parse(
            "tls_server_config:\n  cert_file: node_exporter.crt\n  key_file: /abs/node_exporter.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS12\n  \
             prefer_server_cipher_suites: true\n\
             http_server_config:\n  http2: true\n  headers:\n    X-Frame-Options: deny\n    \
             X-Content-Type-Options: nosniff\n    Content-Security-Policy: \"\"\n\
             basic_auth_users:\n  prometheus: $2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG\n",
        )
        .unwrap();
        assert_eq!(
            s.tls,
            Some(TlsConfig {
                cert: "/etc/node_exporter/node_exporter.crt".into(),
                key: "/abs/node_exporter.key".into(),
                client_ca: Some("/etc/node_exporter/ca.crt".into()),
            })
        );
        assert_eq!(s.auth.basic.len(), 1);
        assert_eq!(s.auth.basic[0].username, "prometheus");
        assert!(s.auth.basic[0].password_bcrypt.starts_with("$2y$10$"));
        let headers: Vec<_> = s.headers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        assert_eq!(
            headers,
            ["X-Content-Type-Options: nosniff", "X-Frame-Options: deny"]
        );
        assert_eq!(parse("{}\n").unwrap(), WebSettings::default());
        assert_eq!(parse("basic_auth_users: {}\n").unwrap().tls, None);
    }

    #[test]
    fn unsupported_and_unknown_keys_are_refused_by_name() {
        for (yaml, says) in [
            ("rate_limit:\n  interval: 1s\n  burst: 5\n", "rate_limit"),
            ("tls_server_config:\n  cert: |\n    ---\n", "inline PEM"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n", "RequireAnyClientCert is not supported"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: c\n", "verified certificate"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Maybe\n", "unknown"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n", "would not be checked"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n", "needs client_ca_file"),
            ("tls_server_config:\n  cert_file: a\n", "no key_file"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS10\n", "min_version"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  max_version: TLS12\n", "max_version"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher_suites"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [X25519]\n", "curve_preferences"),
            ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n", "client_allowed_sans"),
            ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "X-Frame-Options"),
            ("http_server_config:\n  headers:\n    X-Powered-By: me\n", "X-Powered-By"),
            ("tls_config:\n  cert_file: a\n", "tls_config"),
            ("basic_auth:\n  u: p\n", "basic_auth"),
        ] {
            let err = parse(yaml).unwrap_err();
            assert!(err.contains(says), "{yaml:?}: {err}");
        }
    }

    #[test]
    fn load_checks_hashes_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, "basic_auth_users:\n  prom: plaintext\n").unwrap();
        let err = WebConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("web.yml") && err.contains("bcrypt"), "{err}");
        std::fs::write(&path, "").unwrap();
        assert_eq!(WebConfig::load(&path).unwrap(), WebSettings::default());
        let err = WebConfig::load(&dir.path().join("none.yml")).unwrap_err();
        assert!(err.to_string().contains("none.yml"), "{err}");
    }
}
