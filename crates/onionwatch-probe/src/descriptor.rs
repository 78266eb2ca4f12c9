//! v3 onion service descriptors: the outer layer, and both encrypted layers.
//!
//! [`OuterLayer::parse`] reads the plaintext outer document an HSDir serves
//! (lifetime, revision counter, the signing-key certificate that carries the
//! blinded key, the superencrypted blob) with bounded, panic-free parsing.
//! [`analyse`] then decrypts both layers (rend-spec-v3 2.5: SHAKE-256 KDF,
//! AES-256-CTR, SHA3-256 MAC) to count introduction points and read the PoW
//! parameters. The subcredential is derived from the onion address and the
//! blinded key found in the descriptor itself, so no time-period arithmetic
//! is needed (a TestingTorNetwork's time periods are 24 voting intervals,
//! not a day). Signatures and the inner layer are checked by arti's
//! `tor-netdoc` ([`HsDesc::parse_decrypt_validate`]); the first layer is
//! decrypted here because `tor-netdoc` does not expose its plaintext, which
//! Onionprobe's `second_layer_size_bytes` and PoW metrics need.

use cipher::{KeyIvInit, StreamCipher};
use digest::{Digest, ExtendableOutput, Update, XofReader};
use tor_hscrypto::pk::HsBlindId;
use tor_hscrypto::{RevisionCounter, Subcredential};
use tor_netdoc::doc::hsdesc::{HsDesc, HsDescMiddle};

use onionwatch_tor::onion::base64_decode;

/// Largest descriptor accepted (tor's own limit is 50 000 bytes).
pub const MAX_DESCRIPTOR_BYTES: usize = 256 * 1024;

/// Why a descriptor could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    /// The outer document is malformed.
    #[error("malformed onion service descriptor: {0}")]
    Malformed(String),
    /// The first (superencrypted) layer did not decrypt: wrong address, or corrupt.
    #[error("the onion service descriptor's outer encryption layer does not decrypt (MAC mismatch): it is corrupt or not for this address")]
    FirstLayer,
    /// The second layer needs client authorization.
    #[error("the onion service requires client authorization: configure client_auth_key (x25519) for it")]
    ClientAuthRequired,
    /// The given client-authorization key does not open the descriptor.
    #[error("the client authorization key does not decrypt this onion service's descriptor: check that the key belongs to this onion service")]
    WrongClientAuthKey,
    /// The second layer did not decrypt or parse.
    #[error("the onion service descriptor's inner layer is invalid: {0}")]
    Inner(String),
}

/// The plaintext outer layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuterLayer {
    /// `hs-descriptor` version (3).
    pub version: u32,
    /// `descriptor-lifetime`, minutes.
    pub lifetime_minutes: u32,
    /// `revision-counter`.
    pub revision_counter: u64,
    /// The blinded public key (from the signing-key certificate's extension).
    pub blinded_key: [u8; 32],
    /// The `superencrypted` blob (salt | ciphertext | MAC).
    pub superencrypted: Vec<u8>,
}

impl OuterLayer {
    /// Parse the outer document. Never panics; refuses more than
    /// [`MAX_DESCRIPTOR_BYTES`].
    pub fn parse(text: &str) -> Result<Self, DescriptorError> {
        let bad = |m: &str| DescriptorError::Malformed(m.to_owned());
        if text.len() > MAX_DESCRIPTOR_BYTES {
            return Err(bad("larger than 256 KiB"));
        }
        let items = items(text)?;
        let first = items.first().ok_or_else(|| bad("empty"))?;
        if first.keyword != "hs-descriptor" {
            return Err(bad("does not start with hs-descriptor"));
        }
        let version: u32 = first
            .args
            .first()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("hs-descriptor has no version"))?;
        if version != 3 {
            return Err(DescriptorError::Malformed(format!(
                "hs-descriptor version {version}; only v3 is supported"
            )));
        }
        let once = |kw: &str| -> Result<&Item, DescriptorError> {
            let mut found = items.iter().filter(|i| i.keyword == kw);
            let item = found
                .next()
                .ok_or_else(|| DescriptorError::Malformed(format!("no {kw} line")))?;
            if found.next().is_some() {
                return Err(DescriptorError::Malformed(format!("{kw} appears twice")));
            }
            Ok(item)
        };
        let lifetime_minutes: u32 = once("descriptor-lifetime")?
            .args
            .first()
            .and_then(|v| v.parse().ok())
            .filter(|v| (30..=720).contains(v))
            .ok_or_else(|| bad("descriptor-lifetime is not 30-720 minutes"))?;
        let revision_counter: u64 = once("revision-counter")?
            .args
            .first()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad("revision-counter is not a number"))?;
        let cert = once("descriptor-signing-key-cert")?;
        let cert = match &cert.object {
            Some((tag, data)) if tag == "ED25519 CERT" => data,
            _ => {
                return Err(bad(
                    "descriptor-signing-key-cert has no ED25519 CERT object",
                ))
            }
        };
        let blinded_key = cert_signing_key(cert).ok_or_else(|| {
            bad("descriptor-signing-key-cert does not carry the blinded key extension")
        })?;
        let superencrypted = match &once("superencrypted")?.object {
            Some((tag, data)) if tag == "MESSAGE" => data.clone(),
            _ => return Err(bad("superencrypted has no MESSAGE object")),
        };
        once("signature")?;
        Ok(OuterLayer {
            version,
            lifetime_minutes,
            revision_counter,
            blinded_key,
            superencrypted,
        })
    }
}

/// One keyword line and its optional object.
#[derive(Debug)]
struct Item {
    keyword: String,
    args: Vec<String>,
    object: Option<(String, Vec<u8>)>,
}

/// Split a netdoc into items; objects are base64-decoded and bounded.
fn items(text: &str) -> Result<Vec<Item>, DescriptorError> {
    let bad = |m: String| DescriptorError::Malformed(m);
    let mut out: Vec<Item> = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        if let Some(tag) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|r| r.strip_suffix("-----"))
        {
            let item = out
                .last_mut()
                .ok_or_else(|| bad("an object before any keyword".into()))?;
            if item.object.is_some() {
                return Err(bad(format!("{} has two objects", item.keyword)));
            }
            let end = format!("-----END {tag}-----");
            let mut b64 = String::new();
            let mut closed = false;
            for l in lines.by_ref() {
                if l == end {
                    closed = true;
                    break;
                }
                b64.push_str(l.trim());
            }
            if !closed {
                return Err(bad(format!("object {tag:?} is not closed")));
            }
            let data =
                base64_decode(&b64).ok_or_else(|| bad(format!("object {tag:?} is not base64")))?;
            item.object = Some((tag.to_owned(), data));
            continue;
        }
        let mut words = line.split(' ').filter(|w| !w.is_empty());
        let keyword = words.next().unwrap_or_default();
        if keyword.is_empty()
            || !keyword
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad(format!(
                "bad keyword line {:?}",
                line.chars().take(40).collect::<String>()
            )));
        }
        if out.len() > 10_000 {
            return Err(bad("too many lines".into()));
        }
        out.push(Item {
            keyword: keyword.to_owned(),
            args: words.map(str::to_owned).collect(),
            object: None,
        });
    }
    Ok(out)
}

/// The `signed-with-ed25519-key` extension (type 4) of a tor ed25519
/// certificate (cert-spec 2.1): for a descriptor signing key cert, the
/// blinded key.
fn cert_signing_key(cert: &[u8]) -> Option<[u8; 32]> {
    // VERSION(1) CERT_TYPE(1) EXPIRATION(4) CERT_KEY_TYPE(1) CERTIFIED_KEY(32) N_EXTENSIONS(1)
    if cert.len() < 40 || cert[0] != 1 {
        return None;
    }
    let n = cert[39] as usize;
    let mut pos = 40;
    for _ in 0..n {
        let len = u16::from_be_bytes([*cert.get(pos)?, *cert.get(pos + 1)?]) as usize;
        let kind = *cert.get(pos + 2)?;
        let data = cert.get(pos + 4..pos + 4 + len)?;
        if kind == 4 && len == 32 {
            let mut k = [0u8; 32];
            k.copy_from_slice(data);
            return Some(k);
        }
        pos += 4 + len;
    }
    None
}

/// `N_hs_subcred = H("subcredential" | H("credential" | KP_hs_id) | KP_blind_id)`.
pub fn subcredential(identity: &[u8; 32], blinded: &[u8; 32]) -> [u8; 32] {
    let mut h = tor_llcrypto::d::Sha3_256::new();
    Digest::update(&mut h, b"credential");
    Digest::update(&mut h, identity);
    let credential = h.finalize();
    let mut h = tor_llcrypto::d::Sha3_256::new();
    Digest::update(&mut h, b"subcredential");
    Digest::update(&mut h, credential);
    Digest::update(&mut h, blinded);
    h.finalize().into()
}

/// Decrypt the first (superencrypted) layer (rend-spec-v3 2.5.1.1).
fn decrypt_layer(
    blob: &[u8],
    secret: &[u8],
    subcred: &[u8; 32],
    revision: u64,
    constant: &[u8],
) -> Option<Vec<u8>> {
    const SALT: usize = 16;
    const MAC: usize = 32;
    if blob.len() < SALT + MAC {
        return None;
    }
    let salt = &blob[..SALT];
    let ciphertext = &blob[SALT..blob.len() - MAC];
    let mac = &blob[blob.len() - MAC..];
    let mut kdf = tor_llcrypto::d::Shake256::default();
    kdf.update(secret);
    kdf.update(subcred);
    kdf.update(&revision.to_be_bytes());
    kdf.update(salt);
    kdf.update(constant);
    let mut reader = kdf.finalize_xof();
    let (mut key, mut iv, mut mac_key) = ([0u8; 32], [0u8; 16], [0u8; 32]);
    reader.read(&mut key);
    reader.read(&mut iv);
    reader.read(&mut mac_key);
    let mut h = tor_llcrypto::d::Sha3_256::new();
    Digest::update(&mut h, (mac_key.len() as u64).to_be_bytes());
    Digest::update(&mut h, mac_key);
    Digest::update(&mut h, (SALT as u64).to_be_bytes());
    Digest::update(&mut h, salt);
    Digest::update(&mut h, ciphertext);
    let expected = h.finalize();
    // Not secret-dependent timing that matters here: the MAC is public data.
    if expected.as_slice() != mac {
        return None;
    }
    let mut plain = ciphertext.to_vec();
    let mut c = tor_llcrypto::cipher::aes::Aes256Ctr::new((&key).into(), (&iv).into());
    c.apply_keystream(&mut plain);
    Some(plain)
}

/// PoW `v1` parameters (`pow-params v1 SEED EFFORT EXPIRATION`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PowV1 {
    /// The seed as Onionprobe exports it: its bytes as a little-endian
    /// integer, as a float.
    pub seed: f64,
    /// Suggested effort.
    pub effort: u64,
    /// Seed expiration, seconds since the epoch (UTC).
    pub expiration: Option<f64>,
}

/// What the prober reports about a descriptor.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct DescriptorInfo {
    /// Bytes of the document as served.
    pub outer_size: usize,
    /// `descriptor-lifetime` in seconds.
    pub lifetime_seconds: u64,
    /// `revision-counter`.
    pub revision_counter: u64,
    /// Bytes of the decrypted second layer.
    pub second_layer_size: Option<usize>,
    /// Introduction points in the second layer.
    pub introduction_points: Option<u32>,
    /// `single-onion-service` present.
    pub single_onion: Option<bool>,
    /// Any `pow-params` line.
    pub pow_enabled: Option<bool>,
    /// `pow-params v1`.
    pub pow_v1: Option<PowV1>,
    /// Signatures and inner structure checked by tor-netdoc.
    pub validated: bool,
    /// Why decryption or validation failed, if it did.
    #[serde(serialize_with = "ser_error")]
    pub error: Option<DescriptorError>,
}

fn ser_error<S: serde::Serializer>(e: &Option<DescriptorError>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_some(&e.to_string()),
        None => s.serialize_none(),
    }
}

/// Parse, decrypt and validate `text`, the descriptor of the onion service
/// whose ed25519 identity key is `identity`. `client_key` is the base64
/// x25519 private key for client authorization, if any. Outer-layer
/// failures are errors; inner failures are reported in
/// [`DescriptorInfo::error`] with the outer facts kept.
pub fn analyse(
    text: &str,
    identity: &[u8; 32],
    client_key: Option<&str>,
) -> Result<DescriptorInfo, DescriptorError> {
    let outer = OuterLayer::parse(text)?;
    let mut info = DescriptorInfo {
        outer_size: text.len(),
        lifetime_seconds: u64::from(outer.lifetime_minutes) * 60,
        revision_counter: outer.revision_counter,
        ..DescriptorInfo::default()
    };
    let subcred = subcredential(identity, &outer.blinded_key);
    let Some(mut middle) = decrypt_layer(
        &outer.superencrypted,
        &outer.blinded_key,
        &subcred,
        outer.revision_counter,
        b"hsdir-superencrypted-data",
    ) else {
        info.error = Some(DescriptorError::FirstLayer);
        return Ok(info);
    };
    let pad = middle.iter().rev().take_while(|b| **b == 0).count();
    middle.truncate(middle.len() - pad);
    if !middle.ends_with(b"\n") {
        middle.push(b'\n');
    }
    let inner = match second_layer(&middle, &outer, &subcred, client_key) {
        Ok(inner) => inner,
        Err(e) => {
            info.error = Some(e);
            return Ok(info);
        }
    };
    info.second_layer_size = Some(inner.len());
    let inner_text = String::from_utf8_lossy(&inner);
    let mut intro = 0u32;
    let mut single = false;
    let mut pow_enabled = false;
    for line in inner_text.lines() {
        let mut w = line.split(' ');
        match w.next() {
            Some("introduction-point") => intro += 1,
            Some("single-onion-service") => single = true,
            Some("pow-params") => {
                pow_enabled = true;
                if w.next() == Some("v1") {
                    info.pow_v1 = parse_pow_v1(w);
                }
            }
            _ => {}
        }
    }
    info.introduction_points = Some(intro);
    info.single_onion = Some(single);
    info.pow_enabled = Some(pow_enabled);

    // Signatures, certificates and the inner document's structure.
    let blind = HsBlindId::from(outer.blinded_key);
    let sub = Subcredential::from(subcred);
    let keypair = client_key.and_then(client_keypair);
    // tor's control port hands the document over without its final newline;
    // the netdoc parser needs it after the signature line.
    let document = if text.ends_with('\n') {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(format!("{text}\n"))
    };
    match HsDesc::parse_decrypt_validate(&document, &blind, &sub, keypair.as_ref()) {
        Ok(desc) => {
            use tor_checkable::Timebound;
            let desc = desc.dangerously_assume_timely();
            info.validated = true;
            // Trust the validated count where the two differ (they should not).
            info.introduction_points = Some(desc.intro_points().len() as u32);
            info.single_onion = Some(desc.is_single_onion_service());
        }
        Err(e) => info.error = Some(DescriptorError::Inner(e.to_string())),
    }
    Ok(info)
}

fn second_layer(
    middle: &[u8],
    outer: &OuterLayer,
    subcred: &[u8; 32],
    client_key: Option<&str>,
) -> Result<Vec<u8>, DescriptorError> {
    let middle_text = std::str::from_utf8(middle)
        .map_err(|_| DescriptorError::Inner("first layer is not UTF-8".into()))?;
    let parsed =
        HsDescMiddle::parse(middle_text).map_err(|e| DescriptorError::Inner(e.to_string()))?;
    let keypair = client_key.and_then(client_keypair);
    parsed
        .decrypt_inner(
            &HsBlindId::from(outer.blinded_key),
            RevisionCounter::from(outer.revision_counter),
            &Subcredential::from(*subcred),
            keypair.as_ref().map(|k| k.secret()),
        )
        .map_err(|e| {
            use tor_netdoc::doc::hsdesc::HsDescError as E;
            match e {
                E::MissingDecryptionKey => DescriptorError::ClientAuthRequired,
                E::WrongDecryptionKey | E::DecryptionFailed if client_key.is_some() => {
                    DescriptorError::WrongClientAuthKey
                }
                other => DescriptorError::Inner(other.to_string()),
            }
        })
}

fn client_keypair(b64: &str) -> Option<tor_hscrypto::pk::HsClientDescEncKeypair> {
    let raw: [u8; 32] = base64_decode(b64)?.try_into().ok()?;
    let secret = tor_llcrypto::pk::curve25519::StaticSecret::from(raw);
    let public = tor_llcrypto::pk::curve25519::PublicKey::from(&secret);
    Some(tor_hscrypto::pk::HsClientDescEncKeypair::new(
        public.into(),
        secret.into(),
    ))
}

fn parse_pow_v1<'a>(mut w: impl Iterator<Item = &'a str>) -> Option<PowV1> {
    let seed = base64_decode(w.next()?)?;
    let effort = w.next()?.parse().ok()?;
    let expiration = w.next().and_then(parse_iso_utc);
    // Onionprobe: int.from_bytes(b64decode(seed), 'little') as a float.
    let seed = seed
        .iter()
        .rev()
        .fold(0.0f64, |acc, b| acc * 256.0 + f64::from(*b));
    Some(PowV1 {
        seed,
        effort,
        expiration,
    })
}

/// `YYYY-MM-DDTHH:MM:SS` as UTC seconds since the epoch.
pub(crate) fn parse_iso_utc(s: &str) -> Option<f64> {
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 {
        return None;
    }
    let (y, m, day) = (d[0], d[1], d[2]);
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || !(0..24).contains(&t[0])
        || !(0..60).contains(&t[1])
        || !(0..=60).contains(&t[2])
    {
        return None;
    }
    Some((days_from_civil(y, m, day) * 86400 + t[0] * 3600 + t[1] * 60 + t[2]) as f64)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with_key(key: [u8; 32]) -> Vec<u8> {
        let mut c = vec![1u8, 8, 0, 0, 0, 0, 1];
        c.extend_from_slice(&[9u8; 32]);
        c.push(1);
        c.extend_from_slice(&32u16.to_be_bytes());
        c.push(4);
        c.push(0);
        c.extend_from_slice(&key);
        c.extend_from_slice(&[0u8; 64]);
        c
    }

    fn b64_lines(data: &[u8]) -> String {
        let s = data_encoding::BASE64.encode(data);
        s.as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap().to_owned() + "\n")
            .collect()
    }

    fn outer_text(key: [u8; 32], blob: &[u8]) -> String {
        format!(
            "hs-descriptor 3\ndescriptor-lifetime 180\ndescriptor-signing-key-cert\n-----BEGIN ED25519 CERT-----\n{}-----END ED25519 CERT-----\nrevision-counter 42\nsuperencrypted\n-----BEGIN MESSAGE-----\n{}-----END MESSAGE-----\nsignature AAAA\n",
            b64_lines(&cert_with_key(key)),
            b64_lines(blob)
        )
    }

    #[test]
    fn outer_layer_fields() {
        let text = outer_text([5u8; 32], &[1u8; 100]);
        let o = OuterLayer::parse(&text).unwrap();
        assert_eq!(o.lifetime_minutes, 180);
        assert_eq!(o.revision_counter, 42);
        assert_eq!(o.blinded_key, [5u8; 32]);
        assert_eq!(o.superencrypted, vec![1u8; 100]);
        // Decryption of garbage reports the first layer, keeping outer facts.
        let info = analyse(&text, &[1u8; 32], None).unwrap();
        assert_eq!(info.lifetime_seconds, 10_800);
        assert_eq!(info.revision_counter, 42);
        assert_eq!(info.error, Some(DescriptorError::FirstLayer));
        assert_eq!(info.introduction_points, None);
    }

    #[test]
    fn first_layer_round_trip() {
        // Encrypt with the same construction, then decrypt.
        let (secret, sub, rev) = ([3u8; 32], [4u8; 32], 7u64);
        let salt = [6u8; 16];
        let plain = b"desc-auth-type x25519\n".to_vec();
        let mut kdf = tor_llcrypto::d::Shake256::default();
        for part in [&secret[..], &sub[..], &rev.to_be_bytes(), &salt, b"c"] {
            kdf.update(part);
        }
        let mut r = kdf.finalize_xof();
        let (mut key, mut iv, mut mk) = ([0u8; 32], [0u8; 16], [0u8; 32]);
        r.read(&mut key);
        r.read(&mut iv);
        r.read(&mut mk);
        let mut ct = plain.clone();
        tor_llcrypto::cipher::aes::Aes256Ctr::new((&key).into(), (&iv).into())
            .apply_keystream(&mut ct);
        let mut h = tor_llcrypto::d::Sha3_256::new();
        Digest::update(&mut h, 32u64.to_be_bytes());
        Digest::update(&mut h, mk);
        Digest::update(&mut h, 16u64.to_be_bytes());
        Digest::update(&mut h, salt);
        Digest::update(&mut h, &ct);
        let mac = h.finalize();
        let blob = [&salt[..], &ct, &mac].concat();
        assert_eq!(
            decrypt_layer(&blob, &secret, &sub, rev, b"c").unwrap(),
            plain
        );
        let mut tampered = blob.clone();
        tampered[20] ^= 1;
        assert!(decrypt_layer(&tampered, &secret, &sub, rev, b"c").is_none());
        assert!(decrypt_layer(&blob, &secret, &sub, rev + 1, b"c").is_none());
        assert!(decrypt_layer(&blob[..40], &secret, &sub, rev, b"c").is_none());
    }

    #[test]
    fn hostile_outer_layers() {
        let good = outer_text([5u8; 32], &[1u8; 64]);
        let cases: Vec<String> = vec![
            String::new(),
            "\n\n".into(),
            "hs-descriptor\n".into(),
            "hs-descriptor 2\n".into(),
            good.replace("hs-descriptor 3", "hs-descriptor 99999999999999999999"),
            good.replace("descriptor-lifetime 180", "descriptor-lifetime 0"),
            good.replace("descriptor-lifetime 180", "descriptor-lifetime abc"),
            good.replace("revision-counter 42", "revision-counter -1"),
            good.replace("revision-counter 42\n", ""),
            good.replace(
                "revision-counter 42\n",
                "revision-counter 42\nrevision-counter 43\n",
            ),
            good.replace("-----END MESSAGE-----\n", ""),
            good.replace("BEGIN MESSAGE", "BEGIN THING")
                .replace("END MESSAGE", "END THING"),
            good.replace("signature AAAA\n", ""),
            good.replace("ED25519 CERT", "RSA KEY"),
            good.replacen(
                "-----BEGIN ED25519 CERT-----\n",
                "-----BEGIN ED25519 CERT-----\n!!!!\n",
                1,
            ),
            format!("-----BEGIN X-----\n-----END X-----\n{good}"),
            good.replace("hs-descriptor 3", "hs descriptor\u{0} 3"),
            "hs-descriptor 3\n".to_owned() + &"x\n".repeat(20_000),
            "a".repeat(MAX_DESCRIPTOR_BYTES + 1),
        ];
        for c in cases {
            assert!(
                OuterLayer::parse(&c).is_err(),
                "{:?} accepted",
                c.chars().take(80).collect::<String>()
            );
            assert!(analyse(&c, &[0u8; 32], None).is_err());
        }
        // A certificate without the extension, or truncated.
        let mut cert = cert_with_key([1u8; 32]);
        cert[39] = 0;
        assert!(cert_signing_key(&cert).is_none());
        assert!(cert_signing_key(&cert_with_key([1u8; 32])[..50]).is_none());
        let mut cert = cert_with_key([1u8; 32]);
        cert[40] = 0xFF;
        assert!(cert_signing_key(&cert).is_none());
    }

    #[test]
    fn pow_and_dates() {
        let p = parse_pow_v1(
            "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= 250 2026-11-25T01:00:00".split(' '),
        )
        .unwrap();
        assert_eq!(p.seed, 1.0);
        assert_eq!(p.effort, 250);
        assert_eq!(p.expiration, Some(1_795_568_400.0));
        assert_eq!(parse_iso_utc("1970-01-01T00:00:00"), Some(0.0));
        assert_eq!(parse_iso_utc("2000-03-01T00:00:00"), Some(951_868_800.0));
        for bad in [
            "",
            "2026-13-01T00:00:00",
            "2026-01-01",
            "2026-01-01T25:00:00",
            "x-y-zTa:b:c",
        ] {
            assert_eq!(parse_iso_utc(bad), None, "{bad}");
        }
        assert!(parse_pow_v1("!!! 1 x".split(' ')).is_none());
        assert!(parse_pow_v1("AA== notanumber".split(' ')).is_none());
    }
}
