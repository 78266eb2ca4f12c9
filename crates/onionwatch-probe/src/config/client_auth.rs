//! Client authorization keys: inline base64, or tor's `.auth_private` files.

use std::path::Path;

use data_encoding::BASE64;
use onionwatch_tor::onion::{base64_decode, BASE32};

/// A base64 x25519 private key: 32 bytes.
pub(super) fn check_base64_key(k: &str) -> Result<String, String> {
    match base64_decode(k) {
        Some(b) if b.len() == 32 => Ok(k.to_owned()),
        _ => Err("expected a base64 x25519 private key (44 characters, 32 bytes)".into()),
    }
}

/// Read tor's `.auth_private` format: `<56 chars>:descriptor:x25519:<base32 key>`.
pub(super) fn read_auth_private(path: &Path, service_id: &str) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > 4096 {
        return Err(format!("{} is too large for a key file", path.display()));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_auth_private(&text, service_id).map_err(|m| format!("{}: {m}", path.display()))
}

/// Parse an `.auth_private` line and return the key in base64.
pub(crate) fn parse_auth_private(text: &str, service_id: &str) -> Result<String, String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("no key line")?;
    let parts: Vec<&str> = line.split(':').collect();
    if parts.len() != 4 || parts[1] != "descriptor" || parts[2] != "x25519" {
        return Err("expected <onion address>:descriptor:x25519:<base32 key>".into());
    }
    let addr = parts[0].trim_end_matches(".onion").to_ascii_lowercase();
    if addr != service_id {
        return Err(format!(
            "the key is for {addr}.onion, not for the endpoint's onion service {service_id}.onion"
        ));
    }
    let key = BASE32
        .decode(parts[3].as_bytes())
        .ok()
        .filter(|k| k.len() == 32)
        .ok_or("the key is not 52 base32 characters")?;
    Ok(BASE64.encode(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";

    #[test]
    fn auth_private_files() {
        let key = BASE64.encode(&[7u8; 32]);
        // base32 of 32 bytes of 7 = 52 chars.
        let b32 = "a4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dq";
        let line = format!("{A}:descriptor:x25519:{}\n", b32.to_uppercase());
        assert_eq!(parse_auth_private(&line, A).unwrap(), key);
        assert!(parse_auth_private(&line, &"b".repeat(56))
            .unwrap_err()
            .contains("not for"));
        for bad in [
            "",
            "x",
            &format!("{A}:descriptor:ed25519:{b32}"),
            &format!("{A}:descriptor:x25519:abc"),
        ] {
            assert!(parse_auth_private(bad, A).is_err(), "{bad:?}");
        }
    }
}
