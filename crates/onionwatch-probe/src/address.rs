//! Onion addresses and the ad-hoc endpoint syntax of `-e ADDRESS_OR_URL`.
//!
//! Everything here parses untrusted text (a config file, a command line) and
//! never panics: bad input is an [`AddressError`] that names what is wrong.

use std::fmt;
use std::str::FromStr;

use crate::config::{Endpoint, PathSpec, Protocol};

/// Why an onion address or endpoint URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not `[subdomain.]<56 base32 characters>.onion`.
    #[error("{0:?} is not a v3 onion service address: expected 56 base32 characters (a-z, 2-7) followed by .onion, optionally after subdomains (www.<56 chars>.onion)")]
    NotV3(String),
    /// The 56 characters are well formed but the checksum or version is wrong.
    #[error(
        "{0:?} has a bad checksum or version byte: check for a typo in the onion service address"
    )]
    BadChecksum(String),
    /// A label before the onion service id is not a DNS label.
    #[error("{0:?} has an invalid subdomain label: use letters, digits and '-' only")]
    BadSubdomain(String),
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

/// A validated v3 onion address, possibly with subdomains
/// (`www.<56 chars>.onion`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OnionAddress {
    host: String,
    id_start: usize,
}

impl OnionAddress {
    /// The whole host name, lower case, with subdomains and `.onion`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The 56-character service id (no subdomains, no `.onion`), which is
    /// what tor's control port (HSFETCH, HS_DESC) speaks.
    pub fn service_id(&self) -> &str {
        &self.host[self.id_start..self.id_start + 56]
    }

    /// `<service id>.onion`, without subdomains.
    pub fn service_host(&self) -> &str {
        &self.host[self.id_start..]
    }

    /// The 32-byte ed25519 identity key encoded in the address.
    pub fn identity_key(&self) -> [u8; 32] {
        let raw = base32_decode(self.service_id()).expect("validated at parse time");
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[..32]);
        key
    }
}

impl fmt::Display for OnionAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.host)
    }
}

impl FromStr for OnionAddress {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty()
            || input.len() > 253
            || input.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(AddressError::NotV3(input.to_owned()));
        }
        let mut host = input.to_ascii_lowercase();
        if host.ends_with('.') {
            host.pop();
        }
        let Some(without) = host.strip_suffix(".onion") else {
            return Err(AddressError::NotV3(input.to_owned()));
        };
        let id = without.rsplit('.').next().unwrap_or(without);
        if id.len() != 56
            || !id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        {
            return Err(AddressError::NotV3(input.to_owned()));
        }
        let id_start = without.len() - 56;
        if id_start > 0 {
            let subdomains = &without[..id_start - 1];
            let ok = subdomains.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
            if !ok {
                return Err(AddressError::BadSubdomain(input.to_owned()));
            }
        }
        if !checksum_ok(id) {
            return Err(AddressError::BadChecksum(input.to_owned()));
        }
        Ok(OnionAddress { host, id_start })
    }
}

/// rend-spec-v3 6: `CHECKSUM = H(".onion checksum" | PUBKEY | VERSION)[:2]`, VERSION 3.
fn checksum_ok(id: &str) -> bool {
    use digest::Digest;
    let Some(raw) = base32_decode(id) else {
        return false;
    };
    if raw.len() != 35 || raw[34] != 3 {
        return false;
    }
    let mut h = tor_llcrypto::d::Sha3_256::new();
    h.update(b".onion checksum");
    h.update(&raw[..32]);
    h.update([3u8]);
    let sum = h.finalize();
    sum[..2] == raw[32..34]
}

/// RFC 4648 base32 (lower or upper case, no padding).
pub(crate) fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let mut buf: u64 = 0;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'A'..=b'Z' => c - b'A',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buf = (buf << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    Some(out)
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
    let address: OnionAddress = if host.len() == 56 && !host.contains('.') {
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

    pub(crate) const TPO: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";

    #[test]
    fn real_addresses_parse() {
        let a: OnionAddress = format!("{TPO}.onion").parse().unwrap();
        assert_eq!(a.service_id(), TPO);
        assert_eq!(a.host(), format!("{TPO}.onion"));
        let b: OnionAddress = format!("WWW.{}.ONION.", TPO.to_uppercase())
            .parse()
            .unwrap();
        assert_eq!(b.host(), format!("www.{TPO}.onion"));
        assert_eq!(b.service_id(), TPO);
        assert_eq!(b.service_host(), format!("{TPO}.onion"));
        assert_eq!(a.identity_key(), b.identity_key());
    }

    #[test]
    fn hostile_addresses_are_refused() {
        let mut bad_sum = TPO.to_owned();
        bad_sum.replace_range(0..1, "3");
        let cases = [
            String::new(),
            ".onion".into(),
            "onion".into(),
            TPO.to_string(),
            format!("{TPO}.com"),
            format!("{}.onion", &TPO[..55]),
            format!("{TPO}a.onion"),
            format!("{}1.onion", &TPO[..55]),
            format!("{bad_sum}.onion"),
            format!("..{TPO}.onion"),
            format!("a_b.{TPO}.onion"),
            format!("{TPO}.onion\n"),
            format!(" {TPO}.onion"),
            format!("{}.{TPO}.onion", "a".repeat(64)),
            "é".repeat(60) + ".onion",
            format!("{}.onion", "a".repeat(10_000)),
            "\0".into(),
        ];
        for c in cases {
            assert!(c.parse::<OnionAddress>().is_err(), "{c:?} accepted");
        }
        let err = format!("{bad_sum}.onion")
            .parse::<OnionAddress>()
            .unwrap_err();
        assert!(matches!(err, AddressError::BadChecksum(_)), "{err}");
        assert!(err.to_string().contains("onion service address"));
    }

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

    #[test]
    fn base32() {
        assert_eq!(base32_decode("mzxw6ytboi").unwrap(), b"foobar");
        assert!(base32_decode("a1").is_none());
    }
}
