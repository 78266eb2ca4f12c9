//! The ad-hoc endpoint syntax of `-e ADDRESS_OR_URL`; onion service
//! addresses themselves are [`onionwatch_tor::onion::OnionAddress`].
//!
//! Everything here parses untrusted text (a command line) and never panics:
//! bad input is an [`AddressError`] that names what is wrong.

use onionwatch_tor::onion::{OnionAddress, OnionAddressError, SERVICE_ID_LEN};

use crate::config::{Endpoint, PathSpec, Protocol};

/// Why an onion address or endpoint URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The onion service address is not a valid v3 address.
    #[error(transparent)]
    Onion(#[from] OnionAddressError),
    /// The URL scheme is not http, https or tcp.
    #[error("unsupported scheme {scheme:?} in {input:?}: use http://, https:// or tcp://")]
    BadScheme {
        /// The scheme found.
        scheme: String,
        /// The whole input.
        input: String,
    },
    /// The port is not a number between 1 and 65535.
    #[error("invalid port {port:?} in {input:?}: use a number from 1 to 65535")]
    BadPort {
        /// The port text.
        port: String,
        /// The whole input.
        input: String,
    },
    /// User information (`user@`) or other URL parts the prober cannot use.
    #[error("{0:?} has user information (user@host), which onionwatch does not send; remove it")]
    UserInfo(String),
    /// The input contains spaces or control characters.
    #[error("{0:?} contains spaces or control characters")]
    BadCharacters(String),
}

/// An endpoint given on the command line (`-e`): the name is the argument
/// itself, as in Onionprobe.
///
/// Accepted forms: `ADDRESS.onion`, `http://ADDRESS.onion[:PORT][/PATH[?QUERY]]`,
/// `https://…` and `tcp://ADDRESS.onion:PORT`. Without a scheme, `http://`
/// is assumed; without a port, 80 (http), 443 (https). The path defaults to
/// `/`; like Onionprobe's `-e`, no pattern and no status list are set, so any
/// HTTP answer counts as reachable.
pub fn endpoint_from_arg(input: &str) -> Result<(String, Endpoint), AddressError> {
    if input.is_empty() || input.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(AddressError::BadCharacters(input.to_owned()));
    }
    let (scheme, rest) = match input.split_once("://") {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => ("http".to_owned(), input),
    };
    let protocol = match scheme.as_str() {
        "http" => Protocol::Http,
        "https" => Protocol::Https,
        "tcp" => Protocol::Tcp,
        _ => {
            return Err(AddressError::BadScheme {
                scheme,
                input: input.to_owned(),
            })
        }
    };
    // Drop a fragment: it is never sent.
    let rest = rest.split('#').next().unwrap_or("");
    let split_at = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split_at);
    if authority.contains('@') {
        return Err(AddressError::UserInfo(input.to_owned()));
    }
    let (host, port) =
        match authority.rsplit_once(':') {
            Some((h, p)) => {
                let port = p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                    AddressError::BadPort {
                        port: p.to_owned(),
                        input: input.to_owned(),
                    }
                })?;
                (h, Some(port))
            }
            None => (authority, None),
        };
    let address: OnionAddress = if host.len() == SERVICE_ID_LEN && !host.contains('.') {
        format!("{host}.onion").parse()?
    } else {
        host.parse()?
    };
    if protocol == Protocol::Tcp && port.is_none() {
        return Err(AddressError::BadPort {
            port: String::new(),
            input: input.to_owned(),
        });
    }
    let path = match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    let endpoint = Endpoint {
        address: address.host().to_owned(),
        protocol,
        port: Some(port.unwrap_or(protocol.default_port())),
        paths: Some(vec![PathSpec {
            path,
            pattern: None,
            allowed_statuses: None,
        }]),
        ..Endpoint::default()
    };
    Ok((input.to_owned(), endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TPO: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";

    #[test]
    fn endpoint_urls() {
        let (name, e) = endpoint_from_arg(&format!("{TPO}.onion")).unwrap();
        assert_eq!(name, format!("{TPO}.onion"));
        assert_eq!((e.protocol, e.port), (Protocol::Http, Some(80)));
        assert_eq!(e.paths.as_ref().unwrap()[0].path, "/");
        assert!(e.paths.as_ref().unwrap()[0].allowed_statuses.is_none());

        let (_, e) = endpoint_from_arg(TPO).unwrap();
        assert_eq!(e.address, format!("{TPO}.onion"));

        let (_, e) = endpoint_from_arg(&format!("HTTPS://www.{TPO}.onion/a/b?x=1#frag")).unwrap();
        assert_eq!((e.protocol, e.port), (Protocol::Https, Some(443)));
        assert_eq!(e.address, format!("www.{TPO}.onion"));
        assert_eq!(e.paths.as_ref().unwrap()[0].path, "/a/b?x=1");

        let (_, e) = endpoint_from_arg(&format!("http://{TPO}.onion:8080?q")).unwrap();
        assert_eq!(e.port, Some(8080));
        assert_eq!(e.paths.as_ref().unwrap()[0].path, "/?q");

        let (_, e) = endpoint_from_arg(&format!("tcp://{TPO}.onion:22")).unwrap();
        assert_eq!((e.protocol, e.port), (Protocol::Tcp, Some(22)));
    }

    #[test]
    fn hostile_endpoint_urls() {
        let cases = [
            "".to_owned(),
            format!("ftp://{TPO}.onion"),
            format!("http://{TPO}.onion:0"),
            format!("http://{TPO}.onion:65536"),
            format!("http://{TPO}.onion:-1"),
            format!("http://{TPO}.onion:"),
            format!("http://user:pw@{TPO}.onion/"),
            format!("http://{TPO}.onion/ a"),
            format!("tcp://{TPO}.onion"),
            "http://example.com/".into(),
            "http://[::1]:80/".into(),
            "://".into(),
            "http://".into(),
            format!("http://{TPO}.onion\r\nHost: evil"),
        ];
        for c in cases {
            assert!(endpoint_from_arg(&c).is_err(), "{c:?} accepted");
        }
    }
}
