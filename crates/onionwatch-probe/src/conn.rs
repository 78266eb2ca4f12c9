//! The connection step: one attempt at an HTTP(S) GET or a TCP connect
//! through tor's SOCKS port, with per-phase timings, TLS and certificate
//! details.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use onionwatch_tor::socks::{self, Isolation, SocksError, SocksReply};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;

/// Why an attempt failed; [`ConnError::reason`] is a stable label value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// Tor refused the stream with a SOCKS5 reply (extended errors included).
    #[error("tor could not open a stream to the onion service: {0}")]
    Socks(SocksReply),
    /// The SOCKS port itself failed (not listening, not SOCKS).
    #[error("{0}")]
    Proxy(String),
    /// The stream did not open within `http_connect_timeout`.
    #[error("no stream to the onion service within {0:?} (http_connect_timeout)")]
    ConnectTimeout(Duration),
    /// TLS failed (handshake error or timeout).
    #[error("TLS handshake with the onion service failed: {0}")]
    Tls(String),
    /// `tls_verify` is on and the certificate does not verify.
    #[error("the onion service's certificate is not valid: {0} (set tls_verify: false for self-signed certificates)")]
    Certificate(String),
    /// An HTTP protocol error.
    #[error("HTTP error from the onion service: {0}")]
    Http(String),
    /// No response (or body data) within `http_read_timeout`.
    #[error("the onion service did not answer within {0:?} (http_read_timeout)")]
    ReadTimeout(Duration),
    /// The redirect limit was reached (Python requests' `TooManyRedirects`).
    #[error("more than {max} redirects (the next one to {next})")]
    TooManyRedirects {
        /// Redirects followed.
        max: u32,
        /// Where the one over the limit pointed.
        next: String,
    },
    /// A `Location` that cannot be followed (unsupported scheme, malformed).
    #[error("cannot follow the redirect to {location:?}: {why}")]
    Redirect {
        /// The `Location` header.
        location: String,
        /// What is wrong with it.
        why: String,
    },
}

impl ConnError {
    /// A short, stable reason for labels and JSON.
    pub fn reason(&self) -> &'static str {
        match self {
            ConnError::Socks(r) => r.as_str(),
            ConnError::Proxy(_) => "socks_proxy_error",
            ConnError::ConnectTimeout(_) => "connection_timeout",
            ConnError::Tls(_) => "tls_error",
            ConnError::Certificate(_) => "certificate_invalid",
            ConnError::Http(_) => "http_error",
            ConnError::ReadTimeout(_) => "read_timeout",
            ConnError::TooManyRedirects { .. } => "too_many_redirects",
            ConnError::Redirect { .. } => "invalid_redirect",
        }
    }
}

/// The certificate as seen (verified or not).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CertInfo {
    /// notBefore, POSIX seconds.
    pub not_before: i64,
    /// notAfter, POSIX seconds.
    pub not_after: i64,
    /// notAfter minus now (negative once expired).
    pub expiry_seconds: i64,
    /// The onion host matches the CN or a DNS SAN.
    pub match_hostname: bool,
    /// Issuer DN.
    pub issuer: String,
    /// Subject DN.
    pub subject: String,
    /// DNS subjectAltNames.
    pub subject_alt_names: Vec<String>,
    /// Serial number, decimal.
    pub serial: String,
    /// X.509 version (3 for v3).
    pub version: u32,
    /// SHA-1 fingerprint, `AA:BB:…`.
    pub sha1: String,
    /// SHA-256 fingerprint, `AA:BB:…`.
    pub sha256: String,
    /// `notBefore` as Python's `%b %d %H:%M:%S %Y %Z`.
    pub not_before_text: String,
    /// `notAfter` likewise.
    pub not_after_text: String,
}

/// What TLS negotiated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TlsInfo {
    /// `TLSv1.3` or `TLSv1.2`.
    pub version: String,
    /// `NAME PROTOCOL BITS`, as Python's `ssl` reports it.
    pub cipher: String,
    /// The chain verified against the web PKI for the host name.
    pub certificate_valid: bool,
    /// Why it did not, if it did not.
    pub certificate_error: Option<String>,
    /// The leaf certificate.
    pub certificate: Option<CertInfo>,
}

/// One attempt's outcome.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    /// Stream open (and TLS done), from the start of the attempt.
    pub connect: Option<Duration>,
    /// Response head received, from the start.
    pub first_byte: Option<Duration>,
    /// Whole attempt.
    pub total: Duration,
    /// HTTP status.
    pub status: Option<u16>,
    /// The body read (at most the limit).
    pub body: Vec<u8>,
    /// The body was longer than the limit.
    pub truncated: bool,
    /// TLS details (https): of the last hop on the endpoint's own onion
    /// service that did TLS.
    pub tls: Option<TlsInfo>,
    /// The failure, if any.
    pub error: Option<ConnError>,
    /// Redirects followed.
    pub redirects: u32,
    /// The URL of the last response, when redirects were followed.
    pub url: Option<String>,
    /// A redirect that was not followed because it leaves the onion
    /// service: its target URL (the 3xx is the final status).
    pub redirect_not_followed: Option<String>,
    /// `Location` of the last response, if it is a redirect.
    location: Option<String>,
}

/// Redirects followed at most, as Python requests (and so Onionprobe).
pub const MAX_REDIRECTS: u32 = 30;

/// Whether and how far redirects are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirects {
    /// Redirects followed at most; one more ends the attempt with
    /// [`ConnError::TooManyRedirects`].
    pub max: u32,
    /// Follow redirects that leave the onion service (to another onion
    /// service, or a clearnet site through an exit); otherwise such a
    /// redirect's 3xx is the final answer.
    pub elsewhere: bool,
}

/// What to connect to and how.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// tor's SOCKS port.
    pub socks: SocketAddr,
    /// Host name (with subdomains).
    pub host: &'a str,
    /// Port.
    pub port: u16,
    /// Path and query (`None`: TCP connect only).
    pub path: Option<&'a str>,
    /// Use TLS.
    pub tls: bool,
    /// Refuse invalid certificates.
    pub tls_verify: bool,
    /// Trust anchors for certificate verification ([`trust_roots`]).
    pub roots: Arc<rustls::RootCertStore>,
    /// Stream isolation.
    pub isolation: Isolation,
    /// Stream open bound.
    pub connect_timeout: Duration,
    /// TLS handshake bound.
    pub tls_timeout: Duration,
    /// Per-read bound.
    pub read_timeout: Duration,
    /// Body bytes kept.
    pub max_body: usize,
    /// Follow HTTP redirects (`None`: the first answer is final).
    pub redirects: Option<Redirects>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Run one attempt, following redirects as `req.redirects` says: each hop
/// over a fresh stream (same isolation), each bounded by the request's
/// timeouts. Never panics.
pub async fn attempt(req: &Request<'_>) -> Attempt {
    let start = Instant::now();
    let mut out = Attempt::default();
    let home = service_of(req.host);
    let mut hop = Hop {
        tls: req.tls,
        host: req.host.to_ascii_lowercase(),
        port: req.port,
        path: req.path.unwrap_or("/").to_owned(),
    };
    let result = loop {
        let hop_req = Request {
            host: &hop.host,
            port: hop.port,
            path: req.path.map(|_| hop.path.as_str()),
            tls: hop.tls,
            ..req.clone()
        };
        let own = service_of(&hop.host) == home;
        let tls_before = out.tls.take();
        out.status = None;
        out.body.clear();
        out.truncated = false;
        out.location = None;
        let r = run(&hop_req, start, &mut out).await;
        // TLS details describe the endpoint's own onion service only.
        if !own || out.tls.is_none() {
            out.tls = out.tls.take().filter(|_| own).or(tls_before);
        }
        if let Err(e) = r {
            break Err(e);
        }
        let (Some(policy), Some(location)) = (req.redirects, out.location.take()) else {
            break Ok(());
        };
        let next = match hop.follow(&location) {
            Ok(next) => next,
            Err(why) => break Err(ConnError::Redirect { location, why }),
        };
        if !policy.elsewhere && service_of(&next.host) != home {
            out.redirect_not_followed = Some(next.url());
            break Ok(());
        }
        if out.redirects >= policy.max {
            break Err(ConnError::TooManyRedirects {
                max: policy.max,
                next: next.url(),
            });
        }
        out.redirects += 1;
        out.url = Some(next.url());
        hop = next;
    };
    out.total = start.elapsed();
    if let Err(e) = result {
        out.error = Some(e);
    }
    out
}

/// The onion service a host belongs to (its 56-character id), or the host
/// itself when it is not an onion service address.
fn service_of(host: &str) -> String {
    match host.parse::<onionwatch_tor::onion::OnionAddress>() {
        Ok(a) => a.service_id().to_owned(),
        Err(_) => host.to_ascii_lowercase(),
    }
}

/// One request of a redirect chain.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hop {
    tls: bool,
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
}

/// Statuses whose `Location` is followed (Python requests' `REDIRECT_STATI`).
fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Longest `Location` followed.
const MAX_LOCATION: usize = 8192;

impl Hop {
    fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    fn default_port(tls: bool) -> u16 {
        if tls {
            443
        } else {
            80
        }
    }

    fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == Self::default_port(self.tls) {
            format!("{}://{host}{}", self.scheme(), self.path)
        } else {
            format!("{}://{host}:{}{}", self.scheme(), self.port, self.path)
        }
    }

    /// The hop a `Location` header points to, resolved against this one as
    /// RFC 3986 says (absolute, scheme-relative, absolute-path, relative
    /// path, query only); the fragment is dropped.
    fn follow(&self, location: &str) -> Result<Hop, String> {
        let location = location.trim();
        if location.is_empty() || location.len() > MAX_LOCATION {
            return Err(format!("empty or longer than {MAX_LOCATION} bytes"));
        }
        if location.chars().any(char::is_control) {
            return Err("it contains control characters".into());
        }
        let location = location.split('#').next().unwrap_or_default();
        let scheme_end = location.find(':').filter(|&i| {
            let s = &location[..i];
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !s.contains('/')
        });
        if let Some(i) = scheme_end {
            let tls = match location[..i].to_ascii_lowercase().as_str() {
                "http" => false,
                "https" => true,
                other => return Err(format!("the scheme {other:?} is not http or https")),
            };
            let rest = location[i + 1..]
                .strip_prefix("//")
                .ok_or("an absolute URL without //host")?;
            return Self::with_authority(tls, rest);
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Self::with_authority(self.tls, rest);
        }
        let path = if location.starts_with('/') {
            location.to_owned()
        } else {
            let (base_path, _) = self.path.split_once('?').unwrap_or((&self.path, ""));
            if location.starts_with('?') {
                format!("{base_path}{location}")
            } else {
                let dir = &base_path[..=base_path.rfind('/').unwrap_or(0)];
                format!("{dir}{location}")
            }
        };
        Ok(Hop {
            path: normalize_path(&path),
            ..self.clone()
        })
    }

    /// `host[:port][/path][?query]` after `scheme://`.
    fn with_authority(tls: bool, rest: &str) -> Result<Hop, String> {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err("credentials in a redirect URL are not followed".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or("an unclosed [ in the host")?;
            (h, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'))
        {
            return Err(format!("{host:?} is not a host name"));
        }
        let port = match port {
            None | Some("") => Self::default_port(tls),
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{p:?} is not a port"))?,
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        };
        Ok(Hop {
            tls,
            host,
            port,
            path: normalize_path(&path),
        })
    }
}

/// Remove `.` and `..` segments from the path part (RFC 3986 5.2.4) and
/// percent-encode bytes not allowed in a request target, as requests does.
fn normalize_path(path: &str) -> String {
    let (p, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = p.split('/').skip(1).collect();
    for (i, seg) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *seg {
            "." => {
                if last {
                    out.push("");
                }
            }
            ".." => {
                out.pop();
                if last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let mut s = format!("/{}", out.join("/"));
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    let mut encoded = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    encoded
}

async fn run(req: &Request<'_>, start: Instant, out: &mut Attempt) -> Result<(), ConnError> {
    let tcp = match socks::connect_timeout(
        req.socks,
        req.host,
        req.port,
        Some(&req.isolation),
        req.connect_timeout,
    )
    .await
    {
        Err(SocksError::Timeout { .. }) => {
            return Err(ConnError::ConnectTimeout(req.connect_timeout))
        }
        Err(SocksError::Reply { reply, .. }) => return Err(ConnError::Socks(reply)),
        Err(e) => return Err(ConnError::Proxy(e.to_string())),
        Ok(s) => s,
    };
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Io> = if req.tls {
        let (s, info) = tls_handshake(req, tcp).await?;
        out.tls = Some(info);
        match s {
            Some(s) => Box::new(s),
            None => {
                let tls = out.tls.as_ref().expect("set above");
                return Err(ConnError::Certificate(
                    tls.certificate_error.clone().unwrap_or_default(),
                ));
            }
        }
    } else {
        Box::new(tcp)
    };
    out.connect = Some(start.elapsed());
    let Some(path) = req.path else {
        return Ok(());
    };

    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, conn) = match timeout(
        req.read_timeout,
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(io),
    )
    .await
    {
        Err(_) => return Err(ConnError::ReadTimeout(req.read_timeout)),
        Ok(Err(e)) => return Err(ConnError::Http(e.to_string())),
        Ok(Ok(x)) => x,
    };
    let conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let default_port = if req.tls { 443 } else { 80 };
    let host_header = if req.port == default_port {
        req.host.to_owned()
    } else {
        format!("{}:{}", req.host, req.port)
    };
    let request = http::Request::builder()
        .method(http::Method::GET)
        .uri(path)
        .header(http::header::HOST, host_header)
        .header(
            http::header::USER_AGENT,
            concat!("onionwatch/", env!("CARGO_PKG_VERSION")),
        )
        .header(http::header::ACCEPT, "*/*")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| ConnError::Http(format!("cannot build the request for {path:?}: {e}")))?;
    let resp = match timeout(req.read_timeout, sender.send_request(request)).await {
        Err(_) => return Err(ConnError::ReadTimeout(req.read_timeout)),
        Ok(Err(e)) => return Err(ConnError::Http(e.to_string())),
        Ok(Ok(r)) => r,
    };
    out.first_byte = Some(start.elapsed());
    out.status = Some(resp.status().as_u16());
    if is_redirect(resp.status().as_u16()) {
        out.location = resp
            .headers()
            .get(http::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let mut body = resp.into_body();
    loop {
        match timeout(req.read_timeout, body.frame()).await {
            Err(_) => return Err(ConnError::ReadTimeout(req.read_timeout)),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(ConnError::Http(e.to_string())),
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let room = req.max_body - out.body.len();
                    if data.len() > room {
                        out.body.extend_from_slice(&data[..room]);
                        out.truncated = true;
                        break;
                    }
                    out.body.extend_from_slice(data);
                }
            }
        }
    }
    drop(conn);
    Ok(())
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

// ---------------------------------------------------------------- TLS

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

fn web_pki_roots() -> Arc<rustls::RootCertStore> {
    static R: OnceLock<Arc<rustls::RootCertStore>> = OnceLock::new();
    R.get_or_init(|| {
        Arc::new(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
    })
    .clone()
}

/// The bundled web PKI roots plus `extra` CA certificates (DER, e.g. from
/// `tls_ca_file`). Returns the number of extra certificates rustls refused
/// as trust anchors along with the store.
pub fn trust_roots(extra: &[Vec<u8>]) -> (Arc<rustls::RootCertStore>, usize) {
    if extra.is_empty() {
        return (web_pki_roots(), 0);
    }
    let mut store = (*web_pki_roots()).clone();
    let (_, refused) =
        store.add_parsable_certificates(extra.iter().map(|d| CertificateDer::from(d.clone())));
    (Arc::new(store), refused)
}

/// Verifies with webpki, records the outcome, and only aborts the
/// handshake on failure when `enforce` (tls_verify) is set.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    enforce: bool,
    outcome: Mutex<Option<Result<(), String>>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(r.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        match r {
            Ok(v) => Ok(v),
            Err(e) if self.enforce => Err(e),
            Err(_) => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// Handshake; `Ok((None, info))` when the certificate was refused
/// (`tls_verify`), with the reason in `info`.
async fn tls_handshake(
    req: &Request<'_>,
    tcp: tokio::net::TcpStream,
) -> Result<(Option<TlsStream>, TlsInfo), ConnError> {
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(req.roots.clone(), provider())
            .build()
            .map_err(|e| ConnError::Tls(format!("cannot build the certificate verifier: {e}")))?;
    let verifier = Arc::new(RecordingVerifier {
        inner,
        enforce: req.tls_verify,
        outcome: Mutex::new(None),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(req.host.to_owned())
        .map_err(|e| ConnError::Tls(format!("{:?} is not a TLS server name: {e}", req.host)))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let result = timeout(req.tls_timeout, connector.connect(name, tcp)).await;
    let outcome = verifier
        .outcome
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    match result {
        Err(_) => Err(ConnError::Tls(format!(
            "no TLS handshake within {:?} (tls_connect_timeout)",
            req.tls_timeout
        ))),
        Ok(Err(e)) => match outcome {
            // The verifier refused the certificate (tls_verify).
            Some(Err(why)) if req.tls_verify => Ok((
                None,
                TlsInfo {
                    version: String::new(),
                    cipher: String::new(),
                    certificate_valid: false,
                    certificate_error: Some(why),
                    certificate: None,
                },
            )),
            _ => Err(ConnError::Tls(e.to_string())),
        },
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            let version = match conn.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_owned(),
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_owned(),
                Some(v) => format!("{v:?}"),
                None => String::new(),
            };
            let cipher = conn
                .negotiated_cipher_suite()
                .map(|s| cipher_text(s.suite(), &version))
                .unwrap_or_default();
            let certificate = conn
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| cert_info(der.as_ref(), req.host));
            let (valid, error) = match outcome {
                Some(Ok(())) => (true, None),
                Some(Err(e)) => (false, Some(e)),
                None => (false, Some("no certificate was verified".into())),
            };
            Ok((
                Some(stream),
                TlsInfo {
                    version,
                    cipher,
                    certificate_valid: valid,
                    certificate_error: error,
                    certificate,
                },
            ))
        }
    }
}

/// `TLS_AES_256_GCM_SHA384 TLSv1.3 256`, as Python's `SSLSocket.cipher()`.
fn cipher_text(suite: rustls::CipherSuite, version: &str) -> String {
    let name = suite
        .as_str()
        .map(|s| s.replacen("TLS13_", "TLS_", 1))
        .unwrap_or_else(|| format!("{suite:?}"));
    let bits = if name.contains("AES_128") {
        128
    } else if name.contains("AES_256") || name.contains("CHACHA20") {
        256
    } else {
        0
    };
    format!("{name} {version} {bits}")
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn fingerprint<D: digest::Digest>(der: &[u8]) -> String {
    D::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Python's `%b %d %H:%M:%S %Y %Z` for a UTC time.
pub(crate) fn python_date(t: time::OffsetDateTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{} {:02} {:02}:{:02}:{:02} {} UTC",
        MONTHS[usize::from(u8::from(t.month())) - 1],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    )
}

/// Read the leaf certificate. `None` only if it is not X.509 at all.
pub fn cert_info(der: &[u8], host: &str) -> Option<CertInfo> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            if let GeneralName::DNSName(d) = n {
                sans.push((*d).to_owned());
            }
        }
    }
    let cns: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
        .collect();
    let match_hostname = cns
        .iter()
        .chain(sans.iter())
        .any(|pattern| hostname_matches(pattern, host));
    Some(CertInfo {
        not_before: not_before.unix_timestamp(),
        not_after: not_after.unix_timestamp(),
        expiry_seconds: not_after.unix_timestamp() - now_secs(),
        match_hostname,
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
        subject_alt_names: sans,
        serial: cert.tbs_certificate.serial.to_string(),
        version: cert.version().0 + 1,
        sha1: fingerprint::<tor_llcrypto::d::Sha1>(der),
        sha256: fingerprint::<tor_llcrypto::d::Sha256>(der),
        not_before_text: python_date(not_before),
        not_after_text: python_date(not_after),
    })
}

/// Case-insensitive exact match, or `*.rest` matching one extra label. A
/// wildcard needs at least two labels after it (`*.onion` matches nothing).
pub fn hostname_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    if let Some(rest) = pattern.strip_prefix("*.") {
        if !rest.contains('.') || rest.contains('*') {
            return false;
        }
        return match host.split_once('.') {
            Some((label, h_rest)) => !label.is_empty() && h_rest == rest,
            None => false,
        };
    }
    !pattern.contains('*') && pattern == host
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_matching() {
        let a = "abc.onion";
        assert!(hostname_matches("ABC.onion", a));
        assert!(hostname_matches("abc.onion.", a));
        assert!(hostname_matches("*.abc.onion", "www.abc.onion"));
        assert!(!hostname_matches("*.abc.onion", "abc.onion"));
        assert!(!hostname_matches("*.abc.onion", "a.b.abc.onion"));
        assert!(
            !hostname_matches("*.onion", a),
            "*.onion must not match a bare onion"
        );
        assert!(!hostname_matches("*", a));
        assert!(!hostname_matches("a*.onion", a));
        assert!(!hostname_matches("", a));
        assert!(!hostname_matches("*.*.onion", "x.y.onion"));
    }

    #[test]
    fn dates_like_python() {
        let at = |t| python_date(time::OffsetDateTime::from_unix_timestamp(t).unwrap());
        assert_eq!(at(0), "Jan 01 00:00:00 1970 UTC");
        assert_eq!(at(1_798_160_756), "Dec 25 01:05:56 2026 UTC");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connect_timeout_longer_than_the_socks_default_is_kept() {
        // Never accepted: the handshake waits until a timeout ends it.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let limit = socks::DEFAULT_TIMEOUT * 2;
        let req = Request {
            socks: silent.local_addr().unwrap(),
            host: "x.onion",
            port: 80,
            path: None,
            tls: false,
            tls_verify: false,
            roots: Arc::new(rustls::RootCertStore::empty()),
            isolation: Isolation::new("t"),
            connect_timeout: limit,
            tls_timeout: limit,
            read_timeout: limit,
            max_body: 0,
            redirects: None,
        };
        let a = attempt(&req).await;
        assert_eq!(a.error, Some(ConnError::ConnectTimeout(limit)), "{a:?}");
    }

    #[test]
    fn locations_resolve_like_python_requests() {
        let a = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";
        let base = Hop {
            tls: false,
            host: a.into(),
            port: 80,
            path: "/dir/page?x=1".into(),
        };
        let url = |l: &str| base.follow(l).map(|h| h.url());
        let at = |p: &str| Ok(format!("http://{a}{p}"));
        assert_eq!(url("/final"), at("/final"));
        assert_eq!(url("final"), at("/dir/final"));
        assert_eq!(url("../up/./x"), at("/up/x"));
        assert_eq!(url("?y=2"), at("/dir/page?y=2"));
        assert_eq!(url("/a b#frag"), at("/a%20b"));
        assert_eq!(url("/../../etc"), at("/etc"));
        assert_eq!(
            url(&format!("HTTPS://WWW.{a}/s")),
            Ok(format!("https://www.{a}/s"))
        );
        assert_eq!(url(&format!("//{a}:8080")), Ok(format!("http://{a}:8080/")));
        assert_eq!(
            url("http://[::1]:81?q"),
            Ok("http://[::1]:81/?q".to_owned())
        );
        assert_eq!(
            url(&format!("https://{a}:443/")),
            Ok(format!("https://{a}/"))
        );
        for bad in [
            "",
            "ftp://x/",
            "javascript:alert(1)",
            "http://user:pw@x/",
            "http://x:0/",
            "http://x:99999/",
            "http:///nohost",
            "http://[::1/",
            "http://a b/",
            "/a\r\nSet-Cookie: x",
        ] {
            assert!(base.follow(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(service_of(&format!("www.{a}")), service_of(a));
        assert_ne!(service_of("example.com"), service_of(a));
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(cert_info(b"", "x").is_none());
        assert!(cert_info(&[0x30, 0x82, 0xFF, 0xFF, 1, 2, 3], "x").is_none());
    }
}
