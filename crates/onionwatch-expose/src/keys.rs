//! x25519 client-authorization keys in tor's encodings.

use data_encoding::{BASE32_NOPAD, BASE64};
use x25519_dalek::{PublicKey, StaticSecret};

/// A client-authorization key pair.
#[derive(Clone)]
pub struct ClientKey {
    secret: StaticSecret,
}

impl std::fmt::Debug for ClientKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey(public {})", self.public_base32())
    }
}

/// A key that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The line is not `<address>:descriptor:x25519:<base32 key>`.
    #[error("not a client authorization line: expected `<56-char address>:descriptor:x25519:<base32 private key>` (what `onionwatch expose-onion` prints); {0}")]
    BadLine(String),
    /// The key is not 32 bytes in the expected encoding.
    #[error("invalid x25519 private key: {0}")]
    BadKey(String),
    /// The system random generator failed.
    #[error("cannot get random bytes for a new key: {0}")]
    Random(String),
}

impl ClientKey {
    /// A fresh random key.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_bytes(bytes))
    }

    fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            secret: StaticSecret::from(bytes),
        }
    }

    /// Parse a `.auth_private` line (tor's `ClientOnionAuthDir` format):
    /// `<address>:descriptor:x25519:<base32 private key>`. Returns the onion
    /// address (56 characters, no `.onion`) and the key.
    pub fn from_auth_private(line: &str) -> Result<(String, Self), KeyError> {
        let mut parts = line.trim().split(':');
        let (Some(address), Some("descriptor"), Some("x25519"), Some(key), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(KeyError::BadLine("wrong number or kind of fields".into()));
        };
        let address = address.trim_end_matches(".onion").to_ascii_lowercase();
        if address.len() != 56 {
            return Err(KeyError::BadLine(format!(
                "{address:?} is not a v3 onion address"
            )));
        }
        let bytes = BASE32_NOPAD
            .decode(key.to_ascii_uppercase().as_bytes())
            .map_err(|e| KeyError::BadKey(e.to_string()))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| KeyError::BadKey(format!("{} bytes, expected 32", b.len())))?;
        Ok((address, Self::from_bytes(bytes)))
    }

    /// The `.auth_private` line for `address`.
    pub fn to_auth_private(&self, address: &str) -> String {
        format!(
            "{}:descriptor:x25519:{}",
            address.trim_end_matches(".onion"),
            BASE32_NOPAD.encode(self.secret.as_bytes())
        )
    }

    /// The public key in base32, as `ClientAuthV3=` and `authorized_clients/`
    /// files (`descriptor:x25519:<this>`) want it.
    pub fn public_base32(&self) -> String {
        BASE32_NOPAD.encode(PublicKey::from(&self.secret).as_bytes())
    }

    /// The private key in base64, as `ONION_CLIENT_AUTH_ADD` wants it.
    pub fn private_base64(&self) -> String {
        BASE64.encode(self.secret.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDR: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";

    #[test]
    fn auth_private_round_trips() {
        let k = ClientKey::generate().unwrap();
        let line = k.to_auth_private(&format!("{ADDR}.onion"));
        assert!(line.starts_with(&format!("{ADDR}:descriptor:x25519:")));
        let (addr, back) = ClientKey::from_auth_private(&line).unwrap();
        assert_eq!(addr, ADDR);
        assert_eq!(back.private_base64(), k.private_base64());
        assert_eq!(back.public_base32(), k.public_base32());
        assert_eq!(k.public_base32().len(), 52);
        assert_eq!(k.private_base64().len(), 44);
    }

    #[test]
    fn known_x25519_vector() {
        // RFC 7748 §6.1: Alice's private and public keys.
        let secret = data_encoding::HEXLOWER
            .decode(b"77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
            .unwrap();
        let public = data_encoding::HEXLOWER
            .decode(b"8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
            .unwrap();
        let k = ClientKey::from_bytes(secret.try_into().unwrap());
        assert_eq!(k.public_base32(), BASE32_NOPAD.encode(&public));
    }

    #[test]
    fn bad_lines_are_refused_clearly() {
        for bad in [
            "",
            "garbage",
            &format!("{ADDR}:descriptor:x25519"),
            &format!("{ADDR}:descriptor:ed25519:AAAA"),
            &format!("short:descriptor:x25519:{}", "A".repeat(52)),
            &format!("{ADDR}:descriptor:x25519:!!!"),
            &format!("{ADDR}:descriptor:x25519:AAAA"),
            &format!("{ADDR}:descriptor:x25519:{}:extra", "A".repeat(52)),
        ] {
            let err = ClientKey::from_auth_private(bad).unwrap_err();
            assert!(!err.to_string().is_empty());
        }
        let dbg = format!("{:?}", ClientKey::generate().unwrap());
        assert!(dbg.starts_with("ClientKey(public "), "{dbg}");
    }
}
