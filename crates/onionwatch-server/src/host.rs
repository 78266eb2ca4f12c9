//! The `Host` check that keeps DNS rebinding away from the endpoint.
//!
//! A web page on `evil.example` can make its name resolve to 127.0.0.1 and
//! then read a loopback endpoint with the browser's blessing, since the
//! origin is still `evil.example`. The browser sends `Host: evil.example`
//! though, so the endpoint answers only names that cannot be rebound:
//!
//! - `localhost` and IP addresses (a rebinding needs a DNS name);
//! - `.onion` names (never resolved through DNS, RFC 7686; requests that
//!   `expose-onion` forwards carry the onion address);
//! - the names configured in `allowed_hosts` (`--allowed-host`), e.g. the
//!   name of a reverse proxy in front of the endpoint.
//!
//! Any port is accepted: the name is what a rebinding forges, and an SSH
//! tunnel (`ssh -L 8080:127.0.0.1:9925`) changes the port. A request without
//! `Host` (HTTP/1.0) passes, as browsers always send one. The check applies
//! to loopback listeners always, and off loopback (where TLS and
//! authentication already guard the endpoint) only when names are
//! configured.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Why a configured host name is unusable.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid allowed host {name:?}: {detail} (give a bare DNS name such as \
     metrics.example.org; any port is accepted)"
)]
pub struct HostError {
    /// The name as configured.
    pub name: String,
    /// What is wrong with it.
    pub detail: &'static str,
}

/// The names an endpoint answers to; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HostCheck {
    names: Arc<Vec<String>>,
}

/// Lower case, without the trailing dot of a fully qualified name.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The host part of a `Host` value or URI authority, without its port.
fn host_part(authority: &str) -> &str {
    let a = authority.trim();
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match a.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => a,
    }
}

impl HostCheck {
    /// Loopback names, IP addresses, `.onion` names and `allowed` (DNS
    /// names, validated here).
    pub fn new(allowed: &[String]) -> Result<Self, HostError> {
        let mut names = Vec::new();
        for name in allowed {
            let error = |detail| HostError {
                name: name.clone(),
                detail,
            };
            let n = normalize(name.trim());
            if n.is_empty() {
                return Err(error("it is empty"));
            }
            if n.contains(':') {
                return Err(error(
                    "it has a port or is an IPv6 address (IP addresses are always accepted)",
                ));
            }
            if !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
            {
                return Err(error(
                    "only letters, digits, '-', '_' and '.' make a host name",
                ));
            }
            names.push(n);
        }
        Ok(Self {
            names: Arc::new(names),
        })
    }

    /// `true` when host names are configured.
    pub fn has_names(&self) -> bool {
        !self.names.is_empty()
    }

    /// `true` if a request for `authority` (a `Host` value) is answered.
    pub fn allows(&self, authority: &str) -> bool {
        let host = host_part(authority);
        if host.parse::<IpAddr>().is_ok() {
            return true;
        }
        let host = normalize(host);
        host == "localhost" || host.ends_with(".onion") || self.names.contains(&host)
    }
}

/// Middleware: 421 for a request naming a host this endpoint does not
/// answer to, 400 for more than one `Host` header.
pub async fn check_host(State(check): State<HostCheck>, req: Request, next: Next) -> Response {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let (first, second) = (hosts.next(), hosts.next());
    if second.is_some() {
        return (StatusCode::BAD_REQUEST, "more than one Host header\n").into_response();
    }
    // An absolute-form request target names the host instead of `Host`.
    let authority = match req.uri().authority() {
        Some(a) => Some(a.as_str().to_owned()),
        None => first.map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    };
    match authority {
        Some(a) if !check.allows(&a) => {
            let shown: String = a.chars().take(100).collect();
            (
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this endpoint does not answer to the host name {shown:?} (a guard against \
                     DNS rebinding): use localhost or an IP address, or allow the name with \
                     --allowed-host (allowed_hosts)\n"
                ),
            )
                .into_response()
        }
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_addresses_onions_and_configured_names_pass() {
        let check = HostCheck::new(&["Metrics.Example.org.".into()]).unwrap();
        for ok in [
            "localhost",
            "LOCALHOST:9925",
            "localhost.",
            "127.0.0.1",
            "127.0.0.1:9925",
            "[::1]:9925",
            "[::1]",
            "192.0.2.7:443",
            "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz2345.onion",
            "metrics.example.org",
            "metrics.example.org:8443",
            "METRICS.example.org.",
        ] {
            assert!(check.allows(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:9925",
            "localhost.evil.example",
            "metrics.example.org.evil.example",
            "onion.evil.example",
            "x",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!check.allows(refused), "{refused}");
        }
    }

    #[test]
    fn configured_names_are_validated() {
        for bad in ["", "a.example:80", "a b", "a/b", "::1"] {
            let err = HostCheck::new(&[bad.into()]).unwrap_err();
            assert!(err.to_string().contains("invalid allowed host"), "{err}");
        }
        HostCheck::new(&["a-b_c.example".into()]).unwrap();
    }
}
