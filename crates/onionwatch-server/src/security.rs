//! TLS (optionally mutual) and authentication for the endpoint.
//!
//! Secrets are stored hashed in the configuration: bearer tokens as SHA-256
//! hex (tokens are long and random, so a fast hash is enough), basic-auth
//! passwords as bcrypt (as Prometheus' own web config does; a user-chosen
//! password needs a slow hash). Successful basic-auth checks are cached by
//! a SHA-256 of the credentials so a scrape does not pay bcrypt every time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// TLS files, read at start and again on reload.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate
    /// signed by one of them (mutual TLS).
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// One basic-auth user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicUser {
    /// User name.
    pub username: String,
    /// bcrypt hash of the password (`htpasswd -nbBC 10 USER PASS`, or
    /// `onionwatch hash-password`).
    pub password_bcrypt: String,
}

/// Who may read the endpoint. Either kind of credential is accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// SHA-256 (hex) of each accepted bearer token.
    #[serde(default)]
    pub bearer_token_sha256: Vec<String>,
    /// Accepted basic-auth users.
    #[serde(default)]
    pub basic: Vec<BasicUser>,
}

impl AuthConfig {
    /// Read the YAML file of accepted credentials at `path`.
    pub fn load(path: &Path) -> Result<AuthConfig, SecurityError> {
        let path_buf = || path.to_owned();
        let text = std::fs::read_to_string(path).map_err(|source| SecurityError::AuthRead {
            path: path_buf(),
            source,
        })?;
        serde_saphyr::from_str(&text).map_err(|e| SecurityError::AuthInvalid {
            path: path_buf(),
            source: Box::new(e),
        })
    }

    /// `true` when no credential is configured (authentication off).
    pub fn is_empty(&self) -> bool {
        self.bearer_token_sha256.is_empty() && self.basic.is_empty()
    }
}

/// Why TLS or authentication settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A PEM file held nothing usable.
    #[error("{what} {} holds no usable PEM {expected}: {detail}", path.display())]
    Pem {
        /// What the file is.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What was expected in it.
        expected: &'static str,
        /// The parser's complaint.
        detail: String,
    },
    /// rustls refused the combination.
    #[error("TLS configuration rejected: {0}")]
    Tls(String),
    /// The auth file could not be read.
    #[error("cannot read the auth file {}", path.display())]
    AuthRead {
        /// Its path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The auth file is not a valid credentials list (`bearer_token_sha256`,
    /// `basic`).
    #[error("invalid auth file {}", path.display())]
    AuthInvalid {
        /// Its path.
        path: PathBuf,
        /// The YAML error (boxed: it is large).
        source: Box<serde_saphyr::Error>,
    },
    /// A configured hash is malformed.
    #[error("invalid {what}: {detail}")]
    Hash {
        /// Which setting.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|source| SecurityError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

fn certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let pem = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SecurityError::Pem {
            what,
            path: path.to_owned(),
            expected: "certificates",
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(SecurityError::Pem {
            what,
            path: path.to_owned(),
            expected: "certificates",
            detail: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// Build the rustls server configuration (HTTP/1.1 only) from `tls`.
pub fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, SecurityError> {
    let chain = certs("TLS certificate", &tls.cert)?;
    let key_pem = read("TLS private key", &tls.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| SecurityError::Pem {
        what: "TLS private key",
        path: tls.key.clone(),
        expected: "private key",
        detail: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SecurityError::Tls(e.to_string()))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs("client CA", ca)? {
                roots
                    .add(c)
                    .map_err(|e| SecurityError::Tls(format!("client CA {}: {e}", ca.display())))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| SecurityError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| SecurityError::Tls(format!("certificate and key do not match: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Checks credentials; cheap to clone.
#[derive(Debug, Clone)]
pub struct Authenticator {
    tokens: Arc<Vec<[u8; 32]>>,
    basic: Arc<Vec<BasicUser>>,
    /// SHA-256 of `user:password` pairs that bcrypt already accepted.
    accepted: Arc<Mutex<HashSet<[u8; 32]>>>,
}

impl Authenticator {
    /// Validate `config` once.
    pub fn new(config: &AuthConfig) -> Result<Self, SecurityError> {
        let mut tokens = Vec::new();
        for hex in &config.bearer_token_sha256 {
            let bytes = decode_hex(hex.trim())
                .filter(|b| b.len() == 32)
                .ok_or_else(|| SecurityError::Hash {
                    what: "bearer_token_sha256",
                    detail: "expected 64 hex digits (e.g. `printf %s TOKEN | sha256sum`)".into(),
                })?;
            tokens.push(bytes.try_into().expect("length checked"));
        }
        for u in &config.basic {
            if !u.password_bcrypt.starts_with("$2") {
                return Err(SecurityError::Hash {
                    what: "password_bcrypt",
                    detail: format!(
                        "user {:?}: expected a bcrypt hash starting with $2",
                        u.username
                    ),
                });
            }
        }
        Ok(Self {
            tokens: Arc::new(tokens),
            basic: Arc::new(config.basic.clone()),
            accepted: Arc::default(),
        })
    }

    /// `true` if the `Authorization` header value carries valid credentials.
    pub fn check(&self, authorization: &str) -> bool {
        if let Some(token) = authorization.strip_prefix("Bearer ") {
            let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
            // Compare against every token in constant time.
            return self
                .tokens
                .iter()
                .fold(false, |ok, t| ok | bool::from(t.ct_eq(&digest)));
        }
        let Some(b64) = authorization.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(&raw).into();
        if self
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&digest)
        {
            return true;
        }
        let Ok(raw) = std::str::from_utf8(&raw) else {
            return false;
        };
        let Some((user, password)) = raw.split_once(':') else {
            return false;
        };
        let ok = self
            .basic
            .iter()
            .filter(|u| u.username == user)
            .any(|u| bcrypt::verify(password, &u.password_bcrypt).unwrap_or(false));
        if ok {
            self.accepted
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(digest);
        }
        ok
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Middleware: 401 unless the request carries valid credentials.
/// `/healthz` stays open: it says nothing but "ok".
pub async fn require_auth(State(auth): State<Authenticator>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let ok = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| auth.check(v));
    if ok {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"onionwatch\"")],
            "authentication required\n",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha_hex(s: &str) -> String {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn auth_file_loads_and_says_which_file_failed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.yaml");
        std::fs::write(&path, "bearer_token_sha256: [ab]\n").unwrap();
        let auth = AuthConfig::load(&path).unwrap();
        assert_eq!(auth.bearer_token_sha256, ["ab"]);

        let missing = AuthConfig::load(&dir.path().join("none.yaml")).unwrap_err();
        assert!(
            matches!(missing, SecurityError::AuthRead { .. }),
            "{missing}"
        );
        std::fs::write(&path, "bearer: [ab]\n").unwrap();
        let invalid = AuthConfig::load(&path).unwrap_err();
        assert_eq!(
            invalid.to_string(),
            format!("invalid auth file {}", path.display())
        );
    }

    #[test]
    fn bearer_and_basic_credentials() {
        let auth = Authenticator::new(&AuthConfig {
            bearer_token_sha256: vec![sha_hex("s3cret-token")],
            basic: vec![BasicUser {
                username: "prom".into(),
                password_bcrypt: bcrypt::hash("pw", 4).unwrap(),
            }],
        })
        .unwrap();
        assert!(auth.check("Bearer s3cret-token"));
        assert!(!auth.check("Bearer s3cret-tokem"));
        assert!(!auth.check("Bearer "));
        let b = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(auth.check(&b("prom:pw")));
        assert!(auth.check(&b("prom:pw")), "cached path");
        assert!(!auth.check(&b("prom:px")));
        assert!(!auth.check(&b("other:pw")));
        assert!(!auth.check(&b("no-colon")));
        assert!(!auth.check("Basic !!!not-base64"));
        assert!(!auth.check("Digest x"));
        assert!(!auth.check(""));
    }

    #[test]
    fn malformed_hashes_are_refused_at_load() {
        let bad_token = AuthConfig {
            bearer_token_sha256: vec!["abc".into()],
            ..AuthConfig::default()
        };
        assert!(Authenticator::new(&bad_token)
            .unwrap_err()
            .to_string()
            .contains("64 hex"));
        let bad_user = AuthConfig {
            basic: vec![BasicUser {
                username: "u".into(),
                password_bcrypt: "plaintext".into(),
            }],
            ..AuthConfig::default()
        };
        assert!(Authenticator::new(&bad_user).is_err());
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("0a"), Some(vec![10]));
    }

    #[test]
    fn unreadable_or_empty_pem_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let err = server_config(&TlsConfig {
            cert: empty.clone(),
            key: empty.clone(),
            client_ca: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("empty.pem"), "{err}");
        let err = server_config(&TlsConfig {
            cert: dir.path().join("missing.pem"),
            key: empty,
            client_ca: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
