//! A SOCKS5 dialer for tor's `SocksPort` (RFC 1928 + RFC 1929).
//!
//! Host names, onion addresses included, are sent to tor unresolved
//! (`ATYP = DOMAINNAME`) so that tor does the lookup. Distinct
//! username/password pairs put streams on distinct circuits, because tor's
//! SocksPort isolates by SOCKS credentials (`IsolateSOCKSAuth`, on by default).
//! Connecting and the handshake together are bounded by a timeout
//! ([`DEFAULT_TIMEOUT`], or the one given to [`connect_timeout`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), onionwatch_tor::socks::SocksError> {
//! use onionwatch_tor::socks::{connect, Isolation};
//! let proxy = "127.0.0.1:9050".parse().unwrap();
//! let stream = connect(proxy, "example.onion", 80, Some(&Isolation::new("probe-1"))).await?;
//! # drop(stream); Ok(()) }
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The bound [`connect`] puts on connecting and the handshake: a little over
/// tor's own `SocksTimeout` (2 minutes), so that tor's typed answer comes
/// first whenever tor gives one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(150);

/// Credentials that select a circuit: streams with different credentials
/// never share a circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    username: String,
    password: String,
}

impl Isolation {
    /// Isolation keyed by `token` (used as both username and password).
    ///
    /// # Panics
    /// Never; tokens longer than 255 bytes are truncated at a char boundary.
    pub fn new(token: impl Into<String>) -> Self {
        let mut token = token.into();
        truncate_to(&mut token, 255);
        Self {
            username: token.clone(),
            password: token,
        }
    }

    /// The SOCKS username: what tor's `CIRC` events give as
    /// `SOCKS_USERNAME` once a stream with it is attached.
    pub fn username(&self) -> &str {
        &self.username
    }
}

fn truncate_to(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// A failure reported by tor in the SOCKS5 reply (`REP` field).
///
/// Codes `0xF0..=0xF7` are tor's extended errors for onion services; tor sends
/// them only when the SocksPort has the `ExtendedErrors` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocksReply {
    /// 0x01
    GeneralFailure,
    /// 0x02
    NotAllowed,
    /// 0x03
    NetworkUnreachable,
    /// 0x04
    HostUnreachable,
    /// 0x05
    ConnectionRefused,
    /// 0x06: tor uses it for circuit/stream timeouts.
    TtlExpired,
    /// 0x07
    CommandNotSupported,
    /// 0x08
    AddressTypeNotSupported,
    /// 0xF0: no descriptor for the onion service could be fetched.
    OnionDescriptorNotFound,
    /// 0xF1: the descriptor could not be parsed or validated.
    OnionDescriptorInvalid,
    /// 0xF2: every introduction point failed.
    OnionIntroFailed,
    /// 0xF3: the rendezvous circuit failed.
    OnionRendezvousFailed,
    /// 0xF4: the service requires client authorization and none is set.
    OnionMissingClientAuth,
    /// 0xF5: the client authorization key was refused.
    OnionWrongClientAuth,
    /// 0xF6: the onion address is malformed (bad checksum or version).
    OnionInvalidAddress,
    /// 0xF7: introduction timed out.
    OnionIntroTimedOut,
    /// Any other code.
    Other(u8),
}

impl SocksReply {
    /// Map a SOCKS5 `REP` byte (non-zero) to a reply.
    pub fn from_code(code: u8) -> Self {
        use SocksReply::*;
        match code {
            0x01 => GeneralFailure,
            0x02 => NotAllowed,
            0x03 => NetworkUnreachable,
            0x04 => HostUnreachable,
            0x05 => ConnectionRefused,
            0x06 => TtlExpired,
            0x07 => CommandNotSupported,
            0x08 => AddressTypeNotSupported,
            0xF0 => OnionDescriptorNotFound,
            0xF1 => OnionDescriptorInvalid,
            0xF2 => OnionIntroFailed,
            0xF3 => OnionRendezvousFailed,
            0xF4 => OnionMissingClientAuth,
            0xF5 => OnionWrongClientAuth,
            0xF6 => OnionInvalidAddress,
            0xF7 => OnionIntroTimedOut,
            other => Other(other),
        }
    }

    /// The raw `REP` byte.
    pub fn code(self) -> u8 {
        use SocksReply::*;
        match self {
            GeneralFailure => 0x01,
            NotAllowed => 0x02,
            NetworkUnreachable => 0x03,
            HostUnreachable => 0x04,
            ConnectionRefused => 0x05,
            TtlExpired => 0x06,
            CommandNotSupported => 0x07,
            AddressTypeNotSupported => 0x08,
            OnionDescriptorNotFound => 0xF0,
            OnionDescriptorInvalid => 0xF1,
            OnionIntroFailed => 0xF2,
            OnionRendezvousFailed => 0xF3,
            OnionMissingClientAuth => 0xF4,
            OnionWrongClientAuth => 0xF5,
            OnionInvalidAddress => 0xF6,
            OnionIntroTimedOut => 0xF7,
            Other(c) => c,
        }
    }

    /// A short, stable, lower-case name, fit for a metric label value.
    pub fn as_str(self) -> &'static str {
        use SocksReply::*;
        match self {
            GeneralFailure => "general_failure",
            NotAllowed => "not_allowed",
            NetworkUnreachable => "network_unreachable",
            HostUnreachable => "host_unreachable",
            ConnectionRefused => "connection_refused",
            TtlExpired => "ttl_expired",
            CommandNotSupported => "command_not_supported",
            AddressTypeNotSupported => "address_type_not_supported",
            OnionDescriptorNotFound => "onion_service_descriptor_not_found",
            OnionDescriptorInvalid => "onion_service_descriptor_invalid",
            OnionIntroFailed => "onion_service_introduction_failed",
            OnionRendezvousFailed => "onion_service_rendezvous_failed",
            OnionMissingClientAuth => "onion_service_missing_client_auth",
            OnionWrongClientAuth => "onion_service_wrong_client_auth",
            OnionInvalidAddress => "onion_service_invalid_address",
            OnionIntroTimedOut => "onion_service_introduction_timed_out",
            Other(_) => "other",
        }
    }
}

impl fmt::Display for SocksReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.as_str(), self.code())
    }
}

/// Why a SOCKS connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum SocksError {
    /// The TCP connection to the SOCKS port failed.
    #[error(
        "cannot connect to the SOCKS port {proxy}: {source} (is tor running with SocksPort there?)"
    )]
    Connect {
        /// The SOCKS port.
        proxy: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// I/O failed during the handshake.
    #[error("SOCKS handshake with {proxy} failed: {source}")]
    Io {
        /// The SOCKS port.
        proxy: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The peer does not speak SOCKS5 as tor does.
    #[error("{proxy} is not a SOCKS5 proxy: {detail}")]
    Protocol {
        /// The SOCKS port.
        proxy: SocketAddr,
        /// What was wrong.
        detail: String,
    },
    /// The target host name does not fit in a SOCKS5 request.
    #[error("host name {0:?} is empty or longer than 255 bytes")]
    BadHost(String),
    /// No complete answer in time.
    #[error("no stream to {target} through the SOCKS port {proxy} within {after:?} (tor may still be building circuits: allow more time; or check that {proxy} is tor's SocksPort)")]
    Timeout {
        /// The SOCKS port.
        proxy: SocketAddr,
        /// `host:port` asked for.
        target: String,
        /// The limit.
        after: Duration,
    },
    /// Tor answered the CONNECT with a failure.
    #[error("tor could not open a stream to {target}: {reply}")]
    Reply {
        /// `host:port` asked for.
        target: String,
        /// Tor's reply code.
        reply: SocksReply,
    },
}

impl SocksError {
    /// Tor's reply code, when tor answered with a failure.
    pub fn reply(&self) -> Option<SocksReply> {
        match self {
            SocksError::Reply { reply, .. } => Some(*reply),
            _ => None,
        }
    }
}

/// Open a stream to `host:port` through the SOCKS5 port at `proxy`, within
/// [`DEFAULT_TIMEOUT`].
///
/// With `isolation`, the stream goes on a circuit of its own (per distinct
/// credentials); without, tor may reuse a circuit.
pub async fn connect(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    isolation: Option<&Isolation>,
) -> Result<TcpStream, SocksError> {
    connect_timeout(proxy, host, port, isolation, DEFAULT_TIMEOUT).await
}

/// [`connect`] within `limit` instead of [`DEFAULT_TIMEOUT`].
pub async fn connect_timeout(
    proxy: SocketAddr,
    host: &str,
    port: u16,
    isolation: Option<&Isolation>,
    limit: Duration,
) -> Result<TcpStream, SocksError> {
    let open = async {
        let mut stream = TcpStream::connect(proxy)
            .await
            .map_err(|source| SocksError::Connect { proxy, source })?;
        handshake(&mut stream, proxy, host, port, isolation).await?;
        Ok(stream)
    };
    tokio::time::timeout(limit, open)
        .await
        .map_err(|_| SocksError::Timeout {
            proxy,
            target: format!("{host}:{port}"),
            after: limit,
        })?
}

/// Run the SOCKS5 handshake on an already connected stream.
pub async fn handshake<S>(
    stream: &mut S,
    proxy: SocketAddr,
    host: &str,
    port: u16,
    isolation: Option<&Isolation>,
) -> Result<(), SocksError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    if host.is_empty() || host.len() > 255 {
        return Err(SocksError::BadHost(host.to_owned()));
    }
    let io = |source| SocksError::Io { proxy, source };
    let protocol = |detail: String| SocksError::Protocol { proxy, detail };

    // Greeting: offer exactly one method so tor's choice is unambiguous.
    let method = if isolation.is_some() { 0x02 } else { 0x00 };
    stream.write_all(&[0x05, 0x01, method]).await.map_err(io)?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.map_err(io)?;
    if choice[0] != 0x05 {
        return Err(protocol(format!("greeting reply version {}", choice[0])));
    }
    if choice[1] != method {
        return Err(protocol(format!(
            "proxy chose method 0x{:02X}, we offered 0x{method:02X}",
            choice[1]
        )));
    }

    if let Some(iso) = isolation {
        let mut auth = Vec::with_capacity(3 + iso.username.len() + iso.password.len());
        auth.push(0x01);
        auth.push(iso.username.len() as u8);
        auth.extend_from_slice(iso.username.as_bytes());
        auth.push(iso.password.len() as u8);
        auth.extend_from_slice(iso.password.as_bytes());
        stream.write_all(&auth).await.map_err(io)?;
        let mut status = [0u8; 2];
        stream.read_exact(&mut status).await.map_err(io)?;
        if status[1] != 0x00 {
            return Err(protocol(format!(
                "username/password refused (status {})",
                status[1]
            )));
        }
    }

    let mut req = Vec::with_capacity(7 + host.len());
    req.extend_from_slice(&[0x05, 0x01, 0x00, 0x03, host.len() as u8]);
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&req).await.map_err(io)?;

    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await.map_err(io)?;
    if head[0] != 0x05 {
        return Err(protocol(format!("reply version {}", head[0])));
    }
    // Read the bound address even on failure so the reply is consumed whole.
    let addr_len = match head[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await.map_err(io)?;
            len[0] as usize
        }
        other => return Err(protocol(format!("reply address type {other}"))),
    };
    let mut rest = vec![0u8; addr_len + 2];
    stream.read_exact(&mut rest).await.map_err(io)?;
    if head[1] != 0x00 {
        return Err(SocksError::Reply {
            target: format!("{host}:{port}"),
            reply: SocksReply::from_code(head[1]),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    const PROXY: &str = "127.0.0.1:9050";

    /// Play the proxy side with canned bytes and return what the client wrote.
    async fn run(
        reply: Vec<u8>,
        isolation: Option<Isolation>,
        host: &str,
    ) -> (Result<(), SocksError>, Vec<u8>) {
        let (mut client, mut server) = duplex(4096);
        let server_task = tokio::spawn(async move {
            server.write_all(&reply).await.unwrap();
            server.shutdown().await.unwrap();
            let mut seen = Vec::new();
            let _ = server.read_to_end(&mut seen).await;
            seen
        });
        let res = handshake(
            &mut client,
            PROXY.parse().unwrap(),
            host,
            80,
            isolation.as_ref(),
        )
        .await;
        drop(client);
        (res, server_task.await.unwrap())
    }

    #[tokio::test]
    async fn success_without_auth_sends_domain_name() {
        let reply = vec![5, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let (res, seen) = run(reply, None, "abc.onion").await;
        res.unwrap();
        let mut want = vec![5, 1, 0, 5, 1, 0, 3, 9];
        want.extend_from_slice(b"abc.onion");
        want.extend_from_slice(&[0, 80]);
        assert_eq!(seen, want);
    }

    #[tokio::test]
    async fn auth_sends_credentials() {
        let reply = vec![5, 2, 1, 0, 5, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let (res, seen) = run(reply, Some(Isolation::new("p1")), "h").await;
        res.unwrap();
        assert_eq!(&seen[..3], &[5, 1, 2]);
        assert_eq!(&seen[3..10], &[1, 2, b'p', b'1', 2, b'p', b'1']);
    }

    #[tokio::test]
    async fn extended_errors_are_typed() {
        use SocksReply::*;
        // tor's src/lib/net/socks5_status.h (proposal 304).
        for (code, want) in [
            (0xF0, OnionDescriptorNotFound),
            (0xF1, OnionDescriptorInvalid),
            (0xF2, OnionIntroFailed),
            (0xF3, OnionRendezvousFailed),
            (0xF4, OnionMissingClientAuth),
            (0xF5, OnionWrongClientAuth),
            (0xF6, OnionInvalidAddress),
            (0xF7, OnionIntroTimedOut),
        ] {
            let reply = vec![5, 0, 5, code, 0, 1, 0, 0, 0, 0, 0, 0];
            let (res, _) = run(reply, None, "x.onion").await;
            let err = res.unwrap_err();
            assert_eq!(err.reply(), Some(want), "0x{code:02X}");
            assert!(err.to_string().contains("onion_service"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_proxy_that_never_answers_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        // Accept, then hold the connection without a word.
        let _held = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(stream);
        });
        let limit = Duration::from_millis(200);
        let res = tokio::time::timeout(
            Duration::from_secs(10),
            connect_timeout(proxy, "x.onion", 80, None, limit),
        )
        .await
        .expect("bounded by its own timeout");
        let err = res.unwrap_err();
        assert!(
            matches!(err, SocksError::Timeout { after, ref target, .. } if after == limit && target == "x.onion:80"),
            "{err:?}"
        );
        assert!(err.to_string().contains(&proxy.to_string()), "{err}");
    }

    #[tokio::test]
    async fn truncated_and_foreign_replies_fail_cleanly() {
        // Nothing at all.
        let (res, _) = run(vec![], None, "h").await;
        assert!(matches!(res, Err(SocksError::Io { .. })));
        // An HTTP server, not a SOCKS proxy.
        let (res, _) = run(b"HTTP/1.0 400 Bad Request\r\n\r\n".to_vec(), None, "h").await;
        assert!(matches!(res, Err(SocksError::Protocol { .. })), "{res:?}");
        // Cut inside the bound address.
        let (res, _) = run(vec![5, 0, 5, 0, 0, 4, 1, 2], None, "h").await;
        assert!(matches!(res, Err(SocksError::Io { .. })));
        // Unknown address type.
        let (res, _) = run(vec![5, 0, 5, 0, 0, 9, 0, 0], None, "h").await;
        assert!(matches!(res, Err(SocksError::Protocol { .. })));
    }

    #[tokio::test]
    async fn bad_host_is_rejected_before_io() {
        let long = "a".repeat(256);
        let (res, _) = run(vec![], None, &long).await;
        assert!(matches!(res, Err(SocksError::BadHost(_))));
        let (res, _) = run(vec![], None, "").await;
        assert!(matches!(res, Err(SocksError::BadHost(_))));
    }

    #[test]
    fn isolation_token_is_bounded() {
        let iso = Isolation::new("é".repeat(200));
        assert!(iso.username.len() <= 255);
        assert!(iso.username.is_char_boundary(iso.username.len()));
    }

    #[test]
    fn codes_round_trip() {
        for c in 1..=255u8 {
            assert_eq!(SocksReply::from_code(c).code(), c);
        }
    }
}
