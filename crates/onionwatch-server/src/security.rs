//! TLS (optionally mutual) and authentication for the endpoint.
//!
//! Secrets are stored hashed in the configuration: bearer tokens as SHA-256
//! hex (tokens are long and random, so a fast hash is enough), basic-auth
//! passwords as bcrypt (as Prometheus' own web config does; a user-chosen
//! password needs a slow hash). Successful basic-auth checks are cached by
//! a SHA-256 of the credentials so a scrape does not pay bcrypt every time.
//! bcrypt runs on a bounded share of tokio's blocking pool, never on the
//! async workers, and an unknown user name costs a bcrypt run like a known
//! one ([`Authenticator`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

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
    /// Read the YAML file of accepted credentials at `path` and check its
    /// hashes, so a bad file is refused at start and on reload alike.
    pub fn load(path: &Path) -> Result<AuthConfig, SecurityError> {
        let text = read("auth file", path)?;
        let config: AuthConfig = std::str::from_utf8(&text)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_saphyr::from_str(t).map_err(|e| e.to_string()))
            .map_err(|detail| SecurityError::AuthFile {
                path: path.to_owned(),
                detail,
            })?;
        Credentials::new(&config).map_err(|e| SecurityError::AuthFile {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        Ok(config)
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
    /// An auth file is not valid YAML of [`AuthConfig`].
    #[error(
        "invalid auth file {}: {detail} (expected `bearer_token_sha256: [HEX…]` and/or \
         `basic: [{{username: U, password_bcrypt: '$2…'}}]`)",
        path.display()
    )]
    AuthFile {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A `--web.config.file` is not a usable exporter-toolkit web
    /// configuration (see [`crate::WebConfig`]).
    #[error("invalid web configuration file {}: {detail}", path.display())]
    WebConfig {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A reload would turn authentication off.
    #[error(
        "the new credentials are empty: reloading them would turn authentication off, so the old \
         ones stay (restart without them to turn authentication off)"
    )]
    EmptyReload,
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

/// How a password is checked against a bcrypt hash; tests inject slow or
/// counting ones.
type Verify = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Remembered successful basic-auth credentials at most; the cache is
/// emptied when full (bcrypt ignores bytes past 72, so one valid user could
/// otherwise fill it with endless variants of its password).
const ACCEPTED_MAX: usize = 64;

/// The credentials of one configuration (replaced whole on reload, which
/// also forgets the cached successes of the old one).
#[derive(Debug)]
struct Credentials {
    tokens: Vec<[u8; 32]>,
    basic: Vec<BasicUser>,
    /// The costliest configured hash: unknown users are checked against it,
    /// so they cost a bcrypt run like known ones and answer as late.
    decoy: Option<String>,
    /// SHA-256 of `user:password` pairs that bcrypt already accepted.
    accepted: Mutex<HashSet<[u8; 32]>>,
}

impl Credentials {
    fn new(config: &AuthConfig) -> Result<Self, SecurityError> {
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
        let decoy = config
            .basic
            .iter()
            .max_by_key(|u| bcrypt_cost(&u.password_bcrypt))
            .map(|u| u.password_bcrypt.clone());
        Ok(Self {
            tokens,
            basic: config.basic.clone(),
            decoy,
            accepted: Mutex::default(),
        })
    }

    fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.basic.is_empty()
    }

    fn bearer(&self, token: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Compare against every token in constant time.
        self.tokens
            .iter()
            .fold(false, |ok, t| ok | bool::from(t.ct_eq(&digest)))
    }

    fn cached(&self, digest: &[u8; 32]) -> bool {
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(digest)
    }

    fn remember(&self, digest: [u8; 32]) {
        let mut accepted = self.accepted.lock().unwrap_or_else(|e| e.into_inner());
        if accepted.len() >= ACCEPTED_MAX {
            accepted.clear();
        }
        accepted.insert(digest);
    }

    /// bcrypt `password` against `user`'s hashes, or against the decoy when
    /// no user has that name: the answer takes as long either way, so it does
    /// not tell which user names exist.
    fn verify_basic(&self, verify: &Verify, user: &str, password: &str) -> bool {
        let mut ok = false;
        let mut known = false;
        for u in self.basic.iter().filter(|u| u.username == user) {
            known = true;
            ok |= verify(password, &u.password_bcrypt);
        }
        if !known {
            if let Some(decoy) = &self.decoy {
                let _ = verify(password, decoy);
            }
        }
        ok && known
    }
}

fn bcrypt_cost(hash: &str) -> u32 {
    hash.split('$')
        .nth(2)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// The credentials of an `Authorization` header value, by scheme (matched
/// case-insensitively, RFC 7235).
enum Presented<'a> {
    Bearer(&'a str),
    Basic(Vec<u8>),
    Unusable,
}

fn presented(authorization: &str) -> Presented<'_> {
    let Some((scheme, rest)) = authorization.trim().split_once([' ', '\t']) else {
        return Presented::Unusable;
    };
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Presented::Bearer(rest)
    } else if scheme.eq_ignore_ascii_case("basic") {
        match base64::engine::general_purpose::STANDARD.decode(rest) {
            Ok(raw) => Presented::Basic(raw),
            Err(_) => Presented::Unusable,
        }
    } else {
        Presented::Unusable
    }
}

/// The outcome of [`Authenticator::authorize`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid credentials (or none configured).
    Allowed,
    /// Missing or invalid credentials: answer 401.
    Denied,
    /// Every password check slot is busy: answer 503 and let the client
    /// retry, rather than queue bcrypt work without bound.
    Busy,
}

/// Checks credentials; cheap to clone (clones share the credentials, the
/// password check slots and [`Authenticator::reload`]).
///
/// bcrypt takes tens to hundreds of milliseconds on purpose, so basic-auth
/// passwords are checked on tokio's blocking pool, at most
/// [`Authenticator::password_checks`] at a time: the async workers keep
/// answering `/healthz`, bearer tokens and cached credentials meanwhile.
/// When every slot is busy a new password check is refused at once with
/// [`Verdict::Busy`] (503 with `Retry-After`) instead of queueing, so a flood
/// of wrong passwords costs bounded CPU and memory. Successful credentials
/// are cached, so a scraper that authenticated once is not slowed by such a
/// flood.
#[derive(Clone)]
pub struct Authenticator {
    credentials: Arc<RwLock<Arc<Credentials>>>,
    slots: Arc<tokio::sync::Semaphore>,
    slot_count: usize,
    verify: Verify,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("credentials", &self.current())
            .field("password_check_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

/// Password checks at once: half the cores (at least 1, at most 4), so
/// bcrypt never takes every core from the async workers.
fn default_slots() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get() / 2)
        .clamp(1, 4)
}

impl Authenticator {
    /// Validate `config` once.
    pub fn new(config: &AuthConfig) -> Result<Self, SecurityError> {
        Self::with_verifier(
            config,
            default_slots(),
            Arc::new(|password, hash| bcrypt::verify(password, hash).unwrap_or(false)),
        )
    }

    fn with_verifier(
        config: &AuthConfig,
        slots: usize,
        verify: Verify,
    ) -> Result<Self, SecurityError> {
        Ok(Self {
            credentials: Arc::new(RwLock::new(Arc::new(Credentials::new(config)?))),
            slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            slot_count: slots,
            verify,
        })
    }

    fn current(&self) -> Arc<Credentials> {
        self.credentials
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many basic-auth passwords are checked at once at most.
    pub fn password_checks(&self) -> usize {
        self.slot_count
    }

    /// `true` when no credential is configured: every request passes.
    pub fn is_open(&self) -> bool {
        self.current().is_empty()
    }

    /// Replace the credentials with `config`'s (and forget cached
    /// successes). A malformed hash, or an empty `config` while credentials
    /// are in force (which would turn authentication off), leaves the old
    /// credentials in place.
    pub fn reload(&self, config: &AuthConfig) -> Result<(), SecurityError> {
        let new = Credentials::new(config)?;
        if new.is_empty() && !self.is_open() {
            return Err(SecurityError::EmptyReload);
        }
        *self.credentials.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new);
        Ok(())
    }

    /// `true` if the `Authorization` header value carries valid credentials.
    ///
    /// This runs bcrypt on the calling thread: for tools and tests. The
    /// endpoint uses [`Authenticator::authorize`].
    pub fn check(&self, authorization: &str) -> bool {
        let creds = self.current();
        match presented(authorization) {
            Presented::Bearer(token) => creds.bearer(token),
            Presented::Basic(raw) => {
                let digest: [u8; 32] = Sha256::digest(&raw).into();
                if creds.cached(&digest) {
                    return true;
                }
                let Some((user, password)) = user_password(&raw) else {
                    return false;
                };
                let ok = creds.verify_basic(&self.verify, user, password);
                if ok {
                    creds.remember(digest);
                }
                ok
            }
            Presented::Unusable => false,
        }
    }

    /// Judge an `Authorization` header value (`None` when absent) without
    /// blocking the async workers: see the [type documentation](Authenticator).
    pub async fn authorize(&self, authorization: Option<&str>) -> Verdict {
        let creds = self.current();
        if creds.is_empty() {
            return Verdict::Allowed;
        }
        let allowed = |ok: bool| {
            if ok {
                Verdict::Allowed
            } else {
                Verdict::Denied
            }
        };
        let raw = match authorization.map(presented) {
            Some(Presented::Bearer(token)) => return allowed(creds.bearer(token)),
            Some(Presented::Basic(raw)) => raw,
            Some(Presented::Unusable) | None => return Verdict::Denied,
        };
        let digest: [u8; 32] = Sha256::digest(&raw).into();
        if creds.cached(&digest) {
            return Verdict::Allowed;
        }
        if user_password(&raw).is_none() {
            return Verdict::Denied;
        }
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            return Verdict::Busy;
        };
        let verify = self.verify.clone();
        let checked = creds.clone();
        let ok = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let (user, password) = user_password(&raw).expect("checked above");
            checked.verify_basic(&verify, user, password)
        })
        .await
        .unwrap_or(false);
        if ok {
            creds.remember(digest);
        }
        allowed(ok)
    }
}

fn user_password(raw: &[u8]) -> Option<(&str, &str)> {
    std::str::from_utf8(raw).ok()?.split_once(':')
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

/// Middleware: 401 unless the request carries valid credentials (503 when
/// every password check slot is busy, see [`Authenticator`]).
/// `/healthz`, `/-/healthy` and `/-/ready` stay open: they say nothing but
/// "ok" or "not ready", and service managers probe them without credentials.
pub async fn require_auth(State(auth): State<Authenticator>, req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/healthz" | "/-/healthy" | "/-/ready") {
        return next.run(req).await;
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    match auth.authorize(authorization).await {
        Verdict::Allowed => next.run(req).await,
        Verdict::Denied => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"onionwatch\"")],
            "authentication required\n",
        )
            .into_response(),
        Verdict::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "too many password checks in progress, retry in a second (bearer tokens and \
             credentials that succeeded before are not limited)\n",
        )
            .into_response(),
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
        let token = sha_hex("t");
        std::fs::write(&path, format!("bearer_token_sha256: [{token}]\n")).unwrap();
        let auth = AuthConfig::load(&path).unwrap();
        assert_eq!(auth.bearer_token_sha256, [token]);

        let missing = AuthConfig::load(&dir.path().join("none.yaml")).unwrap_err();
        assert!(matches!(missing, SecurityError::Read { .. }), "{missing}");
        std::fs::write(&path, "bearer: [ab]\n").unwrap();
        let invalid = AuthConfig::load(&path).unwrap_err();
        let prefix = format!("invalid auth file {}: ", path.display());
        assert!(invalid.to_string().starts_with(&prefix), "{invalid}");
        // A malformed hash is refused at load, not only when used.
        std::fs::write(&path, "bearer_token_sha256: [ab]\n").unwrap();
        let bad_hash = AuthConfig::load(&path).unwrap_err();
        assert!(bad_hash.to_string().starts_with(&prefix), "{bad_hash}");
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
        // Schemes are case-insensitive (RFC 7235), extra blanks are allowed.
        assert!(auth.check("bearer s3cret-token"));
        assert!(auth.check("BEARER  s3cret-token"));
        assert!(!auth.check("bearer s3cret-tokem"));
        assert!(auth.check(&b("prom:pw").replacen("Basic", "basic", 1)));
        assert!(!auth.check("Bearers3cret-token"));
        assert!(!auth.check(""));
    }

    /// A verifier that counts its runs and remembers the hashes it was given.
    fn counting() -> (Verify, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let verify: Verify = Arc::new(move |password: &str, hash: &str| {
            s.lock().unwrap().push(hash.to_owned());
            password == "pw"
        });
        (verify, seen)
    }

    fn basic(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[tokio::test]
    async fn unknown_users_cost_a_password_check_like_known_ones() {
        let (verify, seen) = counting();
        let config = AuthConfig {
            bearer_token_sha256: Vec::new(),
            basic: vec![
                BasicUser {
                    username: "cheap".into(),
                    password_bcrypt: "$2b$04$cheap".into(),
                },
                BasicUser {
                    username: "prom".into(),
                    password_bcrypt: "$2b$12$costly".into(),
                },
            ],
        };
        let auth = Authenticator::with_verifier(&config, 1, verify).unwrap();
        let runs = |seen: &Arc<Mutex<Vec<String>>>| seen.lock().unwrap().len();

        assert_eq!(
            auth.authorize(Some(&basic("prom:wrong"))).await,
            Verdict::Denied
        );
        assert_eq!(runs(&seen), 1, "a known user is checked once");
        assert_eq!(
            auth.authorize(Some(&basic("nobody:wrong"))).await,
            Verdict::Denied
        );
        assert_eq!(runs(&seen), 2, "an unknown user is checked once too");
        assert_eq!(
            seen.lock().unwrap()[1],
            "$2b$12$costly",
            "against the costliest configured hash"
        );
        // The right password of a user under another name is still refused.
        assert_eq!(
            auth.authorize(Some(&basic("nobody:pw"))).await,
            Verdict::Denied
        );
        assert!(!auth.check(&basic("nobody:pw")));
        assert_eq!(runs(&seen), 4);
        // Nothing to check for a header that carries no user and password.
        assert_eq!(
            auth.authorize(Some(&basic("no-colon"))).await,
            Verdict::Denied
        );
        assert_eq!(auth.authorize(None).await, Verdict::Denied);
        assert_eq!(runs(&seen), 4);
        assert_eq!(
            auth.authorize(Some(&basic("prom:pw"))).await,
            Verdict::Allowed
        );
        assert_eq!(
            auth.authorize(Some(&basic("prom:pw"))).await,
            Verdict::Allowed
        );
        assert_eq!(runs(&seen), 5, "a success is cached");
    }

    /// `GET path` over a fresh connection, written now and read later.
    struct Pending(std::net::TcpStream);

    impl Pending {
        fn send(addr: std::net::SocketAddr, path: &str, authorization: Option<&str>) -> Pending {
            use std::io::Write;
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            // Bounds a broken server (the test then fails), not a timing.
            s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let auth = authorization
                .map(|a| format!("Authorization: {a}\r\n"))
                .unwrap_or_default();
            write!(
                s,
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
            )
            .unwrap();
            Pending(s)
        }

        /// The status line, or "" if none came.
        fn status(mut self) -> String {
            use std::io::Read;
            let mut out = Vec::new();
            let _ = self.0.read_to_end(&mut out);
            String::from_utf8_lossy(&out)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        }
    }

    #[test]
    fn slow_password_checks_leave_the_endpoint_answering() {
        use std::sync::Condvar;
        // Each check announces itself, then waits until the gate opens.
        let (entered_tx, entered) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let g = gate.clone();
        let verify: Verify = Arc::new(move |password: &str, _hash: &str| {
            let _ = entered_tx.send(());
            let (open, cv) = &*g;
            let mut open = open.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            password == "pw"
        });
        let config = AuthConfig {
            bearer_token_sha256: vec![sha_hex("tok")],
            basic: vec![BasicUser {
                username: "prom".into(),
                password_bcrypt: "$2b$10$fake".into(),
            }],
        };
        const SLOTS: usize = 2;
        let auth = Authenticator::with_verifier(&config, SLOTS, verify).unwrap();
        // As many workers as slow checks: if the checks ran on the workers,
        // nothing else could be answered while they wait.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(SLOTS)
            .enable_all()
            .build()
            .unwrap();
        let app = crate::router(Arc::new(crate::Registry::default()))
            .layer(axum::middleware::from_fn_with_state(auth, require_auth));
        let listener = rt
            .block_on(crate::bind("127.0.0.1:0".parse().unwrap(), false))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(crate::serve_on(listener, app, std::future::pending()));

        let slow = [
            Pending::send(addr, "/metrics", Some(&basic("prom:pw"))),
            Pending::send(addr, "/metrics", Some(&basic("prom:bad"))),
        ];
        for _ in 0..SLOTS {
            entered
                .recv_timeout(std::time::Duration::from_secs(20))
                .expect("the password checks started");
        }
        // Both checks are in flight (the gate is closed): the others are answered.
        let healthz = Pending::send(addr, "/healthz", None).status();
        let bearer = Pending::send(addr, "/metrics", Some("Bearer tok")).status();
        let overflow = Pending::send(addr, "/metrics", Some(&basic("prom:other"))).status();
        let entered_meanwhile = entered.try_iter().count();
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let slow: Vec<String> = slow.into_iter().map(Pending::status).collect();
        assert_eq!(healthz, "HTTP/1.1 200 OK");
        assert_eq!(bearer, "HTTP/1.1 200 OK");
        assert_eq!(
            overflow, "HTTP/1.1 503 Service Unavailable",
            "no third check is queued"
        );
        assert_eq!(entered_meanwhile, 0);
        assert_eq!(slow, ["HTTP/1.1 200 OK", "HTTP/1.1 401 Unauthorized"]);
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
