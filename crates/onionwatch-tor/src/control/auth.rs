//! `PROTOCOLINFO` and `AUTHENTICATE` (control-spec §3.5, §3.21, §3.24).

use std::fmt;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::AsyncReadExt;

use super::args::{hex, quote, tokenize, unhex, unquote, Token};
use super::{ControlClient, ControlError, Reply};

type HmacSha256 = Hmac<Sha256>;

const SERVER_KEY: &[u8] = b"Tor safe cookie authentication server-to-controller hash";
const CLIENT_KEY: &[u8] = b"Tor safe cookie authentication controller-to-server hash";

/// Length of tor's `control_auth_cookie`.
pub const COOKIE_LEN: usize = 32;

/// An authentication method offered by tor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMethod {
    /// No authentication configured.
    Null,
    /// `HashedControlPassword`.
    HashedPassword,
    /// The cookie file's contents, in hex.
    Cookie,
    /// HMAC challenge-response over the cookie (never sends the cookie).
    SafeCookie,
    /// A method this crate does not know.
    Other(String),
}

impl AuthMethod {
    fn parse(s: &str) -> Self {
        match s {
            "NULL" => Self::Null,
            "HASHEDPASSWORD" => Self::HashedPassword,
            "COOKIE" => Self::Cookie,
            "SAFECOOKIE" => Self::SafeCookie,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The name tor uses.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Null => "NULL",
            Self::HashedPassword => "HASHEDPASSWORD",
            Self::Cookie => "COOKIE",
            Self::SafeCookie => "SAFECOOKIE",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to `PROTOCOLINFO 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolInfo {
    /// Methods tor accepts.
    pub methods: Vec<AuthMethod>,
    /// Where tor keeps its cookie, when cookie methods are offered.
    pub cookie_file: Option<PathBuf>,
    /// tor's version, e.g. `0.4.9.11`.
    pub tor_version: Option<String>,
}

impl ProtocolInfo {
    /// Parse a successful `PROTOCOLINFO` reply; `None` if it is not one
    /// (the first line must be `PROTOCOLINFO 1` and an `AUTH` line must
    /// follow).
    pub fn parse(reply: &Reply) -> Option<Self> {
        let first = reply.lines.first()?;
        if !reply.is_ok() || !first.text.starts_with("PROTOCOLINFO") {
            return None;
        }
        let mut info = ProtocolInfo {
            methods: Vec::new(),
            cookie_file: None,
            tor_version: None,
        };
        let mut saw_auth = false;
        for line in &reply.lines[1..] {
            if let Some(rest) = line.text.strip_prefix("AUTH ") {
                saw_auth = true;
                for t in tokenize(rest) {
                    if let Token::Pair(k, v) = t {
                        if k == "METHODS" {
                            info.methods = v
                                .split(',')
                                .filter(|m| !m.is_empty())
                                .map(AuthMethod::parse)
                                .collect();
                        }
                    }
                }
                // Re-read the path as bytes: tor octal-escapes non-ASCII bytes.
                if let Some(at) = rest.find("COOKIEFILE=\"") {
                    let (bytes, _) = unquote(&rest.as_bytes()[at + "COOKIEFILE=".len()..]);
                    info.cookie_file = Some(path_from_bytes(bytes));
                }
            } else if let Some(rest) = line.text.strip_prefix("VERSION ") {
                for t in tokenize(rest) {
                    if let Token::Pair(k, v) = t {
                        if k == "Tor" {
                            info.tor_version = Some(v);
                        }
                    }
                }
            }
        }
        saw_auth.then_some(info)
    }

    fn offers(&self, m: &AuthMethod) -> bool {
        self.methods.contains(m)
    }

    fn offered(&self) -> Vec<String> {
        self.methods.iter().map(|m| m.as_str().to_owned()).collect()
    }
}

#[cfg(unix)]
fn path_from_bytes(b: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(b))
}

#[cfg(not(unix))]
fn path_from_bytes(b: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&b).into_owned())
}

/// How to authenticate to tor.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// Pick from what tor offers: `SAFECOOKIE`, else `COOKIE`, when offered
    /// and tor's cookie file is readable (for `COOKIE`, which sends it, only
    /// a file named like a cookie: [`read_named_cookie`]); else the
    /// password, if given and `HASHEDPASSWORD` is offered; else `NULL`.
    /// [`ControlClient::auth_method`] tells which was used.
    Auto {
        /// A control password, if one is known.
        password: Option<String>,
    },
    /// `NULL` (no authentication configured in tor).
    Null,
    /// `COOKIE`, reading `path` or the file named by tor (then only a file
    /// named like a cookie: [`read_named_cookie`]).
    Cookie {
        /// Overrides tor's `COOKIEFILE` (e.g. when tor runs in a container).
        path: Option<PathBuf>,
    },
    /// `SAFECOOKIE`, reading `path` or the file named by tor.
    SafeCookie {
        /// Overrides tor's `COOKIEFILE`.
        path: Option<PathBuf>,
    },
    /// `HASHEDPASSWORD` with this password.
    Password(String),
}

impl Default for Auth {
    fn default() -> Self {
        Auth::Auto { password: None }
    }
}

impl fmt::Debug for Auth {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Auto { password } => write!(
                f,
                "Auto {{ password: {} }}",
                if password.is_some() {
                    "<secret>"
                } else {
                    "None"
                }
            ),
            Auth::Null => f.write_str("Null"),
            Auth::Cookie { path } => write!(f, "Cookie {{ path: {path:?} }}"),
            Auth::SafeCookie { path } => write!(f, "SafeCookie {{ path: {path:?} }}"),
            Auth::Password(_) => f.write_str("Password(<secret>)"),
        }
    }
}

/// `HMAC-SHA256(server-to-controller key, cookie | client nonce | server nonce)`:
/// what tor must send as `SERVERHASH`.
pub fn safecookie_server_hash(cookie: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> [u8; 32] {
    hmac(SERVER_KEY, cookie, client_nonce, server_nonce)
}

/// `HMAC-SHA256(controller-to-server key, cookie | client nonce | server nonce)`:
/// what the controller sends with `AUTHENTICATE`.
pub fn safecookie_client_hash(cookie: &[u8], client_nonce: &[u8], server_nonce: &[u8]) -> [u8; 32] {
    hmac(CLIENT_KEY, cookie, client_nonce, server_nonce)
}

fn hmac(key: &[u8], cookie: &[u8], cn: &[u8], sn: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(cookie);
    mac.update(cn);
    mac.update(sn);
    mac.finalize().into_bytes().into()
}

/// Whether `path`'s file name is one tor gives its cookie: tor's default
/// `control_auth_cookie` (in its DataDirectory), Debian's
/// `control.authcookie`, Onionspray-style `tor-control.cookie`: any name
/// ending in `cookie`, in any case.
pub fn is_cookie_file_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().ends_with("cookie"))
}

/// Read the cookie file tor named for `COOKIE` authentication, which sends
/// the file's content: only a file named like a cookie
/// ([`is_cookie_file_name`]) of exactly 32 bytes. Otherwise a fake control
/// port offering only `COOKIE` could make us read and send any 32-byte
/// file it names. A path the operator gives is read with [`read_cookie`].
pub async fn read_named_cookie(path: &Path) -> Result<[u8; COOKIE_LEN], ControlError> {
    if !is_cookie_file_name(path) {
        return Err(ControlError::CookieNotTorCookie {
            path: path.to_owned(),
            reason: "tor names it control_auth_cookie, packagers a name ending in `cookie`".into(),
        });
    }
    read_cookie(path).await
}

/// Read a cookie file, refusing anything but a regular file of exactly 32
/// bytes (reads at most 33, so a wrong path such as a device cannot exhaust
/// memory, and a FIFO is never opened).
pub async fn read_cookie(path: &Path) -> Result<[u8; COOKIE_LEN], ControlError> {
    let unreadable = |source| ControlError::CookieUnreadable {
        path: path.to_owned(),
        source,
    };
    let meta = tokio::fs::metadata(path).await.map_err(unreadable)?;
    if !meta.is_file() {
        return Err(ControlError::CookieNotTorCookie {
            path: path.to_owned(),
            reason: "not a regular file".into(),
        });
    }
    let file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let mut buf = Vec::with_capacity(COOKIE_LEN + 1);
    file.take(COOKIE_LEN as u64 + 1)
        .read_to_end(&mut buf)
        .await
        .map_err(unreadable)?;
    buf.as_slice()
        .try_into()
        .map_err(|_| ControlError::CookieWrongLength {
            path: path.to_owned(),
            len: buf.len(),
        })
}

/// Authenticate `client` as `auth` asks, given tor's `PROTOCOLINFO`; returns
/// the method used.
pub(crate) async fn authenticate(
    client: &ControlClient,
    auth: &Auth,
    info: &ProtocolInfo,
) -> Result<AuthMethod, ControlError> {
    let require = |m: AuthMethod| {
        if info.offers(&m) {
            Ok(())
        } else {
            Err(ControlError::MethodNotOffered {
                method: m.as_str().to_owned(),
                offered: info.offered(),
            })
        }
    };
    let cookie_path = |given: &Option<PathBuf>| {
        given
            .clone()
            .or_else(|| info.cookie_file.clone())
            .ok_or(ControlError::NoCookieFile)
    };
    match auth {
        Auth::Null => {
            require(AuthMethod::Null)?;
            null(client).await
        }
        Auth::Password(p) => {
            require(AuthMethod::HashedPassword)?;
            password(client, p).await
        }
        Auth::Cookie { path } => {
            require(AuthMethod::Cookie)?;
            // The cookie is sent: a path tor names must look like a cookie.
            let c = match path {
                Some(given) => read_cookie(given).await?,
                None => read_named_cookie(&cookie_path(path)?).await?,
            };
            cookie(client, &c).await
        }
        Auth::SafeCookie { path } => {
            require(AuthMethod::SafeCookie)?;
            let path = cookie_path(path)?;
            safe_cookie(client, &path, &read_cookie(&path).await?).await
        }
        Auth::Auto { password: pass } => auto(client, info, pass.as_deref()).await,
    }
}

/// [`Auth::Auto`]. Reading the cookie sends nothing, so an unreadable cookie
/// can still fall back to the password; a refused `AUTHENTICATE` cannot (tor
/// closes the connection after it).
async fn auto(
    client: &ControlClient,
    info: &ProtocolInfo,
    pass: Option<&str>,
) -> Result<AuthMethod, ControlError> {
    let safe = info.offers(&AuthMethod::SafeCookie);
    let mut cookie_err = None;
    if safe || info.offers(&AuthMethod::Cookie) {
        // SAFECOOKIE never sends the cookie; plain COOKIE does, so then the
        // file tor names must look like a cookie.
        let read = match &info.cookie_file {
            Some(path) if safe => read_cookie(path).await.map(|c| (path, c)),
            Some(path) => read_named_cookie(path).await.map(|c| (path, c)),
            None => Err(ControlError::NoCookieFile),
        };
        match read {
            Ok((path, c)) if safe => return safe_cookie(client, path, &c).await,
            Ok((_, c)) => return cookie(client, &c).await,
            Err(e) => cookie_err = Some(e),
        }
    }
    if let (Some(p), true) = (pass, info.offers(&AuthMethod::HashedPassword)) {
        return password(client, p).await;
    }
    if info.offers(&AuthMethod::Null) {
        return null(client).await;
    }
    // The cookie error says which file and what to check.
    if let Some(e) = cookie_err {
        return Err(e);
    }
    let detail = if info.offers(&AuthMethod::HashedPassword) {
        "tor wants a control password (HashedControlPassword) and none was given"
    } else {
        "tor offers no method this client supports"
    };
    Err(ControlError::NoUsableMethod {
        offered: info.offered(),
        detail: detail.into(),
    })
}

async fn null(client: &ControlClient) -> Result<AuthMethod, ControlError> {
    send_auth(client, AuthMethod::Null, "AUTHENTICATE".into()).await
}

async fn password(client: &ControlClient, password: &str) -> Result<AuthMethod, ControlError> {
    send_auth(
        client,
        AuthMethod::HashedPassword,
        format!("AUTHENTICATE {}", quote(password)),
    )
    .await
}

async fn cookie(client: &ControlClient, cookie: &[u8]) -> Result<AuthMethod, ControlError> {
    send_auth(
        client,
        AuthMethod::Cookie,
        format!("AUTHENTICATE {}", hex(cookie)),
    )
    .await
}

async fn safe_cookie(
    client: &ControlClient,
    path: &Path,
    cookie: &[u8],
) -> Result<AuthMethod, ControlError> {
    let mut client_nonce = [0u8; 32];
    getrandom::fill(&mut client_nonce).map_err(|e| ControlError::Random(e.to_string()))?;
    let reply = client
        .command(&format!("AUTHCHALLENGE SAFECOOKIE {}", hex(&client_nonce)))
        .await?;
    let bad = |detail: &str| ControlError::BadReply {
        command: "AUTHCHALLENGE".into(),
        detail: format!("{detail}: {:?}", reply.message()),
    };
    let mut server_hash = None;
    let mut server_nonce = None;
    for t in tokenize(reply.message()) {
        match t {
            Token::Pair(k, v) if k == "SERVERHASH" => server_hash = unhex(&v),
            Token::Pair(k, v) if k == "SERVERNONCE" => server_nonce = unhex(&v),
            _ => {}
        }
    }
    let (Some(server_hash), Some(server_nonce)) = (server_hash, server_nonce) else {
        return Err(bad("no hex SERVERHASH and SERVERNONCE"));
    };
    if server_nonce.len() != 32 {
        return Err(bad("SERVERNONCE is not 32 bytes"));
    }
    let mut mac = HmacSha256::new_from_slice(SERVER_KEY).expect("HMAC takes any key length");
    mac.update(cookie);
    mac.update(&client_nonce);
    mac.update(&server_nonce);
    if mac.verify_slice(&server_hash).is_err() {
        return Err(ControlError::ServerHashMismatch {
            path: path.to_owned(),
        });
    }
    let answer = safecookie_client_hash(cookie, &client_nonce, &server_nonce);
    send_auth(
        client,
        AuthMethod::SafeCookie,
        format!("AUTHENTICATE {}", hex(&answer)),
    )
    .await
}

async fn send_auth(
    client: &ControlClient,
    method: AuthMethod,
    line: String,
) -> Result<AuthMethod, ControlError> {
    match client.command(&line).await {
        Ok(_) => Ok(method),
        Err(ControlError::Tor {
            status: 515,
            message,
            ..
        }) => Err(ControlError::AuthFailed { method, message }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ReplyParser;

    fn reply(text: &str) -> Reply {
        let mut p = ReplyParser::default();
        text.split_terminator('\n')
            .find_map(|l| p.push(l.as_bytes()).unwrap())
            .unwrap()
    }

    #[test]
    fn protocolinfo_parses() {
        let r = reply(
            "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE,HASHEDPASSWORD COOKIEFILE=\"/var/lib/tor/control_auth_cookie\"\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n",
        );
        let info = ProtocolInfo::parse(&r).unwrap();
        assert_eq!(
            info.methods,
            [
                AuthMethod::Cookie,
                AuthMethod::SafeCookie,
                AuthMethod::HashedPassword
            ]
        );
        assert_eq!(
            info.cookie_file.as_deref(),
            Some(Path::new("/var/lib/tor/control_auth_cookie"))
        );
        assert_eq!(info.tor_version.as_deref(), Some("0.4.9.11"));

        let r = reply("250-PROTOCOLINFO 1\n250-AUTH METHODS=NULL,FUTURE\n250 OK\n");
        let info = ProtocolInfo::parse(&r).unwrap();
        assert_eq!(
            info.methods,
            [AuthMethod::Null, AuthMethod::Other("FUTURE".into())]
        );
        assert_eq!((info.cookie_file, info.tor_version), (None, None));
    }

    #[cfg(unix)]
    #[test]
    fn cookie_path_escapes_are_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let r = reply("250-PROTOCOLINFO 1\n250-AUTH METHODS=COOKIE COOKIEFILE=\"/a \\\"b\\\"/\\303\\251/\\377\"\n250 OK\n");
        let path = ProtocolInfo::parse(&r).unwrap().cookie_file.unwrap();
        assert_eq!(path.as_os_str().as_bytes(), b"/a \"b\"/\xc3\xa9/\xff");
    }

    #[test]
    fn protocolinfo_rejects_other_replies() {
        for text in [
            "250 OK\n",
            "250-PROTOCOLINFO 1\n250 OK\n",
            "514 Authentication required.\n",
            "250-VERSION Tor=\"1\"\n250 OK\n",
        ] {
            assert_eq!(ProtocolInfo::parse(&reply(text)), None, "{text:?}");
        }
    }

    #[test]
    fn safecookie_known_answers() {
        // Computed independently with Python's hmac module.
        let cookie: Vec<u8> = (0u8..32).collect();
        let cn = [0xaa; 32];
        let sn = [0xbb; 32];
        assert_eq!(
            hex(&safecookie_server_hash(&cookie, &cn, &sn)),
            SERVER_HASH_KAT
        );
        assert_eq!(
            hex(&safecookie_client_hash(&cookie, &cn, &sn)),
            CLIENT_HASH_KAT
        );
    }

    const SERVER_HASH_KAT: &str =
        "7780ba467c566548b61da5b927043df643cc6fb18e6258718f47591a09909213";
    const CLIENT_HASH_KAT: &str =
        "ecd5845c1ed9b11354fed620d989e9f34243606e0f7f97c0f3c8a9303a06d468";

    #[tokio::test]
    async fn cookie_files_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, [7u8; 32]).unwrap();
        assert_eq!(read_cookie(&good).await.unwrap(), [7u8; 32]);

        let short = dir.path().join("short");
        std::fs::write(&short, [7u8; 31]).unwrap();
        let e = read_cookie(&short).await.unwrap_err();
        assert!(
            matches!(e, ControlError::CookieWrongLength { len: 31, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("32 bytes"), "{e}");

        let long = dir.path().join("long");
        std::fs::write(&long, [7u8; 1000]).unwrap();
        assert!(matches!(
            read_cookie(&long).await,
            Err(ControlError::CookieWrongLength { len: 33, .. })
        ));

        let missing = dir.path().join("missing");
        let e = read_cookie(&missing).await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("missing") && msg.contains("debian-tor"),
            "{msg}"
        );

        // A directory is unreadable as a cookie, not a panic.
        assert!(read_cookie(dir.path()).await.is_err());
    }

    #[test]
    fn cookie_file_names() {
        for good in [
            "/var/lib/tor/control_auth_cookie",
            "/run/tor/control.authcookie",
            "/opt/onionspray/projects/shop/tor-control.cookie",
            "CONTROL.COOKIE",
        ] {
            assert!(is_cookie_file_name(Path::new(good)), "{good}");
        }
        for bad in [
            "/etc/passwd",
            "/home/u/.ssh/id_ed25519",
            "/var/lib/tor/keys/secret_id_key",
            "/var/lib/tor/cookie/x",
            "/",
            "",
        ] {
            assert!(!is_cookie_file_name(Path::new(bad)), "{bad}");
        }
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let s = format!(
            "{:?} {:?}",
            Auth::Password("hunter2".into()),
            Auth::Auto {
                password: Some("hunter2".into())
            }
        );
        assert!(!s.contains("hunter2"), "{s}");
    }
}
