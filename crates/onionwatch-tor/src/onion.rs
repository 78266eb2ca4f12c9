//! v3 onion service addresses and tor's base32/base64 text forms.
//!
//! [`OnionAddress`] parses untrusted text (a config file, a command line)
//! and never panics: bad input is an [`OnionAddressError`] that names what
//! is wrong. Encodings go through the `data-encoding` crate: [`BASE32`] is
//! the alphabet of onion addresses and x25519 client keys, [`base64_decode`]
//! reads tor's base64 with or without padding.
//!
//! ```
//! use onionwatch_tor::onion::OnionAddress;
//! let a: OnionAddress = "www.2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
//!     .parse()
//!     .unwrap();
//! assert_eq!(a.service_id(), "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid");
//! assert_eq!(a.identity_key().len(), 32);
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::{Encoding, Specification};
use sha3::{Digest, Sha3_256};

/// Length of a v3 service id (the address without subdomains and `.onion`).
pub const SERVICE_ID_LEN: usize = 56;

/// RFC 4648 base32 without padding, as tor writes it: lower case out,
/// either case in. Trailing bits are not checked (tor does not check them
/// in keys either).
pub static BASE32: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str("abcdefghijklmnopqrstuvwxyz234567");
    spec.translate.from.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    spec.translate.to.push_str("abcdefghijklmnopqrstuvwxyz");
    spec.check_trailing_bits = false;
    spec.encoding().expect("a valid base32 specification")
});

/// Standard base64 without padding and without checking trailing bits:
/// see [`base64_decode`].
static BASE64_LAX: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = data_encoding::BASE64_NOPAD.specification();
    spec.check_trailing_bits = false;
    spec.encoding().expect("a valid base64 specification")
});

/// Standard base64 as tor writes it in descriptors and keys, padding
/// optional; `None` on any other character. Encode with
/// [`data_encoding::BASE64`].
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    BASE64_LAX.decode(s.trim_end_matches('=').as_bytes()).ok()
}

/// Why an onion service address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnionAddressError {
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
}

/// A validated v3 onion service address, possibly with subdomains
/// (`www.<56 chars>.onion`): base32 alphabet, checksum and version 3
/// checked (rend-spec-v3 §6).
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
        &self.host[self.id_start..self.id_start + SERVICE_ID_LEN]
    }

    /// `<service id>.onion`, without subdomains.
    pub fn service_host(&self) -> &str {
        &self.host[self.id_start..]
    }

    /// The 32-byte ed25519 identity key encoded in the address.
    pub fn identity_key(&self) -> [u8; 32] {
        let raw = BASE32
            .decode(self.service_id().as_bytes())
            .expect("validated at parse time");
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
    type Err = OnionAddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty()
            || input.len() > 253
            || input.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(OnionAddressError::NotV3(input.to_owned()));
        }
        let mut host = input.to_ascii_lowercase();
        if host.ends_with('.') {
            host.pop();
        }
        let Some(without) = host.strip_suffix(".onion") else {
            return Err(OnionAddressError::NotV3(input.to_owned()));
        };
        let id = without.rsplit('.').next().unwrap_or(without);
        if !is_service_id(id) {
            return Err(OnionAddressError::NotV3(input.to_owned()));
        }
        let id_start = without.len() - SERVICE_ID_LEN;
        if id_start > 0 {
            let subdomains = &without[..id_start - 1];
            let ok = subdomains.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
            if !ok {
                return Err(OnionAddressError::BadSubdomain(input.to_owned()));
            }
        }
        if !checksum_ok(id) {
            return Err(OnionAddressError::BadChecksum(input.to_owned()));
        }
        Ok(OnionAddress { host, id_start })
    }
}

/// 56 lower-case base32 characters (checksum not checked).
pub(crate) fn is_service_id(id: &str) -> bool {
    id.len() == SERVICE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// rend-spec-v3 §6: `CHECKSUM = H(".onion checksum" | PUBKEY | VERSION)[:2]`, VERSION 3.
fn checksum_ok(id: &str) -> bool {
    let Ok(raw) = BASE32.decode(id.as_bytes()) else {
        return false;
    };
    if raw.len() != 35 || raw[34] != 3 {
        return false;
    }
    let mut h = Sha3_256::new();
    h.update(b".onion checksum");
    h.update(&raw[..32]);
    h.update([3u8]);
    let sum = h.finalize();
    sum[..2] == raw[32..34]
}

#[cfg(test)]
mod tests {
    use super::*;

    const TPO: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";

    #[test]
    fn real_addresses_parse() {
        let a: OnionAddress = format!("{TPO}.onion").parse().unwrap();
        assert_eq!(a.service_id(), TPO);
        assert_eq!(a.host(), format!("{TPO}.onion"));
        assert_eq!(a.to_string(), format!("{TPO}.onion"));
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
        assert!(matches!(err, OnionAddressError::BadChecksum(_)), "{err}");
        assert!(err.to_string().contains("onion service address"));
    }

    #[test]
    fn encodings() {
        assert_eq!(BASE32.decode(b"mzxw6ytboi").unwrap(), b"foobar");
        assert_eq!(BASE32.decode(b"MZXW6YTBOI").unwrap(), b"foobar");
        assert_eq!(BASE32.encode(b"foobar"), "mzxw6ytboi");
        assert!(BASE32.decode(b"a1").is_err());
        // base32 of 32 bytes of 7 = 52 characters.
        let b32 = "a4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dq";
        assert_eq!(BASE32.decode(b32.as_bytes()).unwrap(), vec![7u8; 32]);
        let key = data_encoding::BASE64.encode(&[7u8; 32]);
        assert_eq!(base64_decode(&key).unwrap(), vec![7u8; 32]);
        assert_eq!(base64_decode(key.trim_end_matches('=')).unwrap(), [7; 32]);
        assert_eq!(data_encoding::BASE64.encode(b"ab"), "YWI=");
        assert_eq!(data_encoding::BASE64.encode(b"a"), "YQ==");
        assert!(base64_decode("a*b").is_none());
    }
}
