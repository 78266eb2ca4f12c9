//! The global circuit id exported by `HiddenServiceExportCircuitID haproxy`.
//!
//! For every stream to the backend, tor writes a PROXY protocol line whose
//! source address is `fc00:dead:beef:4dad::<hi16>:<lo16>`: the low 32 bits are
//! the circuit's global identifier, the number the control port uses as
//! `CircuitID` (for `GETINFO circuit-status` and `CLOSECIRCUIT`). The id is
//! only meaningful for the tor process that wrote it, until it restarts.
//!
//! Logs may hold the address verbatim (`fc00:dead:beef:4dad::0:30`, nginx
//! `$proxy_protocol_addr`) or canonicalised (`fc00:dead:beef:4dad::30`, nginx
//! realip `$remote_addr`), so the address is parsed as IPv6, never split on
//! `:` by hand.
//!
//! ```
//! use onionwatch_tor::circuit_id::CircuitId;
//! assert_eq!(CircuitId::from_addr_str("fc00:dead:beef:4dad::0:30"), Some(CircuitId(48)));
//! assert_eq!(CircuitId::from_addr_str("fc00:dead:beef:4dad::30"), Some(CircuitId(48)));
//! assert_eq!(CircuitId(48).to_string(), "48");
//! assert_eq!(CircuitId::from_addr_str("127.0.0.1"), None);
//! ```

use std::fmt;
use std::net::Ipv6Addr;

/// The first 96 bits of every exported address: `fc00:dead:beef:4dad::/96`.
pub const PREFIX: [u8; 12] = [
    0xfc, 0x00, 0xde, 0xad, 0xbe, 0xef, 0x4d, 0xad, 0x00, 0x00, 0x00, 0x00,
];

/// Every valid spelling starts with these characters (case-insensitively),
/// because each of the first four groups has exactly four hex digits.
const TEXT_PREFIX: &[u8] = b"fc00:dead:beef:4dad:";

/// Longest IPv6 text (45 characters) plus two brackets.
const MAX_TEXT_LEN: usize = 47;

/// A tor global circuit identifier (`CircuitID` on the control port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CircuitId(pub u32);

impl CircuitId {
    /// Decode an address inside `fc00:dead:beef:4dad::/96`; `None` for any
    /// other address.
    pub fn from_ipv6(addr: &Ipv6Addr) -> Option<Self> {
        let octets = addr.octets();
        if octets[..12] != PREFIX {
            return None;
        }
        Some(CircuitId(u32::from_be_bytes([
            octets[12], octets[13], octets[14], octets[15],
        ])))
    }

    /// Decode the text of an address, in any valid IPv6 spelling, optionally
    /// inside `[...]`. Garbage, IPv4 and other prefixes give `None`.
    pub fn from_addr_str(s: &str) -> Option<Self> {
        Self::from_addr_bytes(s.as_bytes())
    }

    /// Like [`CircuitId::from_addr_str`] on raw bytes (log parsing hot path):
    /// rejects most non-matching input before any parsing; invalid UTF-8
    /// gives `None`.
    pub fn from_addr_bytes(b: &[u8]) -> Option<Self> {
        if b.len() > MAX_TEXT_LEN {
            return None;
        }
        let b = match b {
            [b'[', inner @ .., b']'] => inner,
            _ => b,
        };
        if b.len() < TEXT_PREFIX.len() || !b[..TEXT_PREFIX.len()].eq_ignore_ascii_case(TEXT_PREFIX)
        {
            return None;
        }
        let text = std::str::from_utf8(b).ok()?;
        let addr: Ipv6Addr = text.parse().ok()?;
        Self::from_ipv6(&addr)
    }

    /// The address tor would use as the PROXY source for this circuit.
    pub fn to_ipv6(self) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        octets[..12].copy_from_slice(&PREFIX);
        octets[12..].copy_from_slice(&self.0.to_be_bytes());
        Ipv6Addr::from(octets)
    }

    /// The address exactly as tor writes it (`fc00:dead:beef:4dad::0:30` for
    /// 48: the high half is always printed), which is what nginx's
    /// `$proxy_protocol_addr` holds.
    pub fn to_tor_string(self) -> String {
        format!(
            "fc00:dead:beef:4dad::{:x}:{:x}",
            self.0 >> 16,
            self.0 & 0xffff
        )
    }
}

impl From<u32> for CircuitId {
    fn from(id: u32) -> Self {
        CircuitId(id)
    }
}

impl fmt::Display for CircuitId {
    /// Decimal, as the control port prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_decode() {
        let cases = [
            ("fc00:dead:beef:4dad::0:30", 48),
            ("fc00:dead:beef:4dad::30", 48),
            ("fc00:dead:beef:4dad:0:0:0:30", 48),
            ("fc00:dead:beef:4dad:0000:0000:0000:0030", 48),
            ("FC00:DEAD:BEEF:4DAD::0:30", 48),
            ("[fc00:dead:beef:4dad::0:30]", 48),
            ("fc00:dead:beef:4dad::aabb:ccdd", 0xAABB_CCDD),
            ("fc00:dead:beef:4dad::1:30", 0x1_0030),
            ("fc00:dead:beef:4dad::", 0),
            ("fc00:dead:beef:4dad::ffff:ffff", u32::MAX),
            ("fc00:dead:beef:4dad::0.0.0.48", 48),
        ];
        for (text, id) in cases {
            assert_eq!(
                CircuitId::from_addr_str(text),
                Some(CircuitId(id)),
                "{text}"
            );
            assert_eq!(
                CircuitId::from_addr_bytes(text.as_bytes()),
                Some(CircuitId(id))
            );
        }
    }

    #[test]
    fn everything_else_is_none() {
        let cases = [
            "",
            "[",
            "[]",
            "::1",
            "127.0.0.1",
            "unix:",
            "fc00:dead:beef:4dad",
            "fc00:dead:beef:4dad:",
            "fc00:dead:beef:4dad:1::30",  // bits 64..96 not zero
            "fc00:dead:beef:4dae::30",    // other prefix
            "fc00:dead:beef:4dad::0:30:", // trailing colon
            "fc00:dead:beef:4dad::1:2:3:4:5",
            "fc00:dead:beef:4dad::0:30%eth0",
            "[fc00:dead:beef:4dad::0:30",
            "fc00:dead:beef:4dad::0:30]",
            " fc00:dead:beef:4dad::0:30",
            "fc00:dead:beef:4dad::0:30 ",
            "fc00:dead:beef:4dad::10000",
            "48",
        ];
        for text in cases {
            assert_eq!(CircuitId::from_addr_str(text), None, "{text:?}");
        }
        assert_eq!(CircuitId::from_addr_bytes(&[0xff; 30]), None);
        let mut bad = TEXT_PREFIX.to_vec();
        bad.extend_from_slice(b":\xff\xfe");
        assert_eq!(CircuitId::from_addr_bytes(&bad), None);
        assert_eq!(CircuitId::from_addr_bytes(&vec![b'f'; 1 << 20]), None);
    }

    #[test]
    fn round_trips() {
        for id in [0, 1, 48, 0xffff, 0x1_0000, 0xAABB_CCDD, u32::MAX] {
            let c = CircuitId(id);
            assert_eq!(CircuitId::from_ipv6(&c.to_ipv6()), Some(c));
            assert_eq!(CircuitId::from_addr_str(&c.to_tor_string()), Some(c));
            assert_eq!(CircuitId::from_addr_str(&c.to_ipv6().to_string()), Some(c));
        }
        assert_eq!(CircuitId(48).to_tor_string(), "fc00:dead:beef:4dad::0:30");
        assert_eq!(
            CircuitId(0x1_0030).to_tor_string(),
            "fc00:dead:beef:4dad::1:30"
        );
        assert_eq!(
            CircuitId(48).to_ipv6().to_string(),
            "fc00:dead:beef:4dad::30"
        );
        assert_eq!(CircuitId::from(7).to_string(), "7");
    }
}
