//! An asynchronous client for tor's control port (control-spec).
//!
//! One connection carries both commands and asynchronous events. A
//! background task owns the reading side: it hands each command's reply to
//! the command waiting for it (replies come in command order) and sends
//! events (`650 ...`) to the [`EventStream`]. If the connection ends or tor
//! breaks the protocol, every waiting command gets
//! [`ControlError::Closed`], later commands fail at once, and the event
//! stream ends: nothing waits forever. Connecting and authenticating are
//! bounded by [`ConnectOptions::timeout`], each command by
//! [`ConnectOptions::command_timeout`].
//!
//! Authentication ([`Auth`]) trusts the control port as little as it can:
//! [`Auth::Auto`] prefers `SAFECOOKIE` (tor proves it knows the cookie and
//! the cookie never crosses the wire); for plain `COOKIE`, which sends the
//! file's content, the file tor names must be a regular 32-byte file named
//! like a cookie (`control_auth_cookie`, `control.authcookie`, any name
//! ending in `cookie`: [`is_cookie_file_name`]), so a fake control port
//! cannot have us read and send any file it names. A cookie path the
//! operator gives ([`Auth::Cookie`] with a path, `control_cookie`) is used
//! as given.
//!
//! Dropping the last clone of a [`ControlClient`] closes the connection;
//! tor then removes the onion services this connection added without
//! `Detach`.
//!
//! Configurations name a control port with a [`ControlTarget`] (address and
//! credentials). Circuits are closed through a [`CircuitCloser`] (one
//! connection, reconnected when lost), usually behind the [`CloseExecutor`]
//! (a bounded queue and a background task).
//!
//! ```no_run
//! # async fn demo() -> Result<(), onionwatch_tor::control::ControlError> {
//! use onionwatch_tor::control::{Auth, ControlAddr, ControlClient, Event};
//! let addr: ControlAddr = "127.0.0.1:9051".parse().unwrap(); // or "unix:/run/tor/control"
//! let (tor, mut events) = ControlClient::connect(&addr, Auth::Auto { password: None }).await?;
//! println!("bootstrap {}%", tor.bootstrap_phase().await?.progress);
//! tor.set_events(&["HS_DESC"]).await?;
//! tor.hs_fetch("2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion", &[]).await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::HsDesc(d) = event {
//!         println!("{:?} {} from {:?}", d.action, d.address, d.hsdir);
//!     }
//! }
//! # Ok(()) }
//! ```

mod args;
mod auth;
mod client;
mod closer;
mod events;
mod executor;
mod reply;
mod target;
mod types;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use auth::{
    is_cookie_file_name, read_cookie, read_named_cookie, safecookie_client_hash,
    safecookie_server_hash, Auth, AuthMethod, ProtocolInfo, COOKIE_LEN,
};
pub use client::{ControlClient, EventStream};
pub use closer::{CircuitCloser, CloseError, CloseOutcome, RECONNECT_PAUSE};
pub use events::{Event, HsDescAction, HsDescContent, HsDescEvent, StatusEvent, StatusKind};
pub use executor::{CloseExecutor, CloseHandler, ClosePlan, CloseQueue, CloseResult, CLOSE_QUEUE};
pub use reply::{
    ProtocolError, Reply, ReplyLine, ReplyParser, DEFAULT_MAX_LINE, DEFAULT_MAX_REPLY,
};
pub use target::ControlTarget;
pub use types::{
    onion_service_id, AddOnion, AddOnionReply, BootstrapPhase, CircStatus, Circuit,
    ClientAuthAdded, ListenerKind, OnionFlag, OnionKey, Signal,
};

/// Where tor's control port listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAddr {
    /// `ControlPort 127.0.0.1:9051`.
    Tcp(SocketAddr),
    /// `ControlPort unix:/path` (the form Onionspray and EOTK use).
    Unix(PathBuf),
}

/// A control address that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tor control address {0:?}: expected IP:PORT (e.g. 127.0.0.1:9051) or unix:/path/to/socket")]
pub struct ParseControlAddrError(pub String);

impl FromStr for ControlAddr {
    type Err = ParseControlAddrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ParseControlAddrError(s.to_owned()));
            }
            return Ok(ControlAddr::Unix(PathBuf::from(path)));
        }
        s.parse()
            .map(ControlAddr::Tcp)
            .map_err(|_| ParseControlAddrError(s.to_owned()))
    }
}

impl fmt::Display for ControlAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlAddr::Tcp(a) => write!(f, "{a}"),
            ControlAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// Limits and timeouts of a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Bound on connecting, `PROTOCOLINFO` and authentication together.
    pub timeout: Duration,
    /// Bound on each later command; `None` waits as long as the connection
    /// lives.
    pub command_timeout: Option<Duration>,
    /// Longest reply line accepted.
    pub max_line: usize,
    /// Largest reply accepted.
    pub max_reply: usize,
    /// Events buffered for the [`EventStream`]; beyond that, new events are
    /// dropped (and counted) rather than stalling command replies.
    pub event_capacity: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            timeout: Duration::from_secs(10),
            command_timeout: Some(Duration::from_secs(60)),
            max_line: DEFAULT_MAX_LINE,
            max_reply: DEFAULT_MAX_REPLY,
            event_capacity: 4096,
        }
    }
}

/// Why the connection ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// Tor closed the connection.
    #[error("tor closed the connection")]
    Eof,
    /// Reading or writing failed.
    #[error("I/O error: {0}")]
    Io(String),
    /// Tor (or whatever answered) broke the control protocol.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// A command was cancelled half-written, so the stream was unusable.
    #[error("a command was cancelled while being written")]
    Cancelled,
}

/// A control-port failure.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The connection could not be opened.
    #[error("cannot connect to tor's control port {addr}: {source} (is tor running with ControlPort there, and may this user open it?)")]
    Connect {
        /// The control address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Whatever answered does not speak the control protocol.
    #[error("{addr} is not a tor control port: {detail} (check the ControlPort address; a SocksPort, MetricsPort or web server answers differently)")]
    NotControlPort {
        /// The control address.
        addr: String,
        /// What was seen.
        detail: String,
    },
    /// No complete answer in time.
    #[error("{addr} did not answer {stage} within {after:?} (is it a tor ControlPort? is tor overloaded?)")]
    Timeout {
        /// The control address.
        addr: String,
        /// What was being waited for (`connect`, `PROTOCOLINFO`, a command).
        stage: String,
        /// The limit.
        after: Duration,
    },
    /// Tor refused the credentials (515).
    #[error("tor refused {method} authentication: {message} (check the password, or that the cookie belongs to this tor)")]
    AuthFailed {
        /// The method tried.
        method: AuthMethod,
        /// Tor's message.
        message: String,
    },
    /// The cookie file could not be read.
    #[error("cannot read tor's control auth cookie {}: {source} (check its permissions: run as the tor user or a member of its group, e.g. debian-tor)", path.display())]
    CookieUnreadable {
        /// The cookie path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The cookie file is not 32 bytes long.
    #[error("{} is not a tor control auth cookie: it has {len} bytes, a cookie has exactly 32 bytes", path.display())]
    CookieWrongLength {
        /// The cookie path.
        path: PathBuf,
        /// Bytes found (33 means "more than 32").
        len: usize,
    },
    /// The cookie file tor named does not look like one, so its content
    /// is not sent (a fake control port could name any file).
    #[error("the control port names {} as its cookie file, which does not look like a tor cookie ({reason}): its content is not sent. If it really is this tor's cookie, give its path explicitly (control_cookie in the configuration, --control-cookie)", path.display())]
    CookieNotTorCookie {
        /// The path tor named.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Cookie authentication was asked for, but no file is known.
    #[error("tor did not name its cookie file (COOKIEFILE) and none was given")]
    NoCookieFile,
    /// SAFECOOKIE: tor's proof did not match our cookie.
    #[error("tor's SAFECOOKIE server hash does not match the cookie in {}: the file belongs to another tor (or tor restarted and rewrote it)", path.display())]
    ServerHashMismatch {
        /// The cookie path.
        path: PathBuf,
    },
    /// The method asked for is not offered by tor.
    #[error("tor does not offer {method} authentication (it offers {}); enable it in torrc or choose another method", offered.join(", "))]
    MethodNotOffered {
        /// The method asked for.
        method: String,
        /// What tor offers.
        offered: Vec<String>,
    },
    /// Auto authentication found nothing it could use.
    #[error("no usable authentication method (tor offers {}): {detail}", offered.join(", "))]
    NoUsableMethod {
        /// What tor offers.
        offered: Vec<String>,
        /// Why none fits.
        detail: String,
    },
    /// The system random generator failed.
    #[error("cannot get random bytes for the SAFECOOKIE nonce: {0}")]
    Random(String),
    /// Tor answered a command with an error status.
    #[error("tor refused {command:?}: {status} {message}")]
    Tor {
        /// Tor's status (4xx or 5xx).
        status: u16,
        /// Tor's message.
        message: String,
        /// The command (secrets left out).
        command: String,
    },
    /// The connection is closed; the command may or may not have run.
    #[error("connection to tor's control port {addr} closed: {reason}")]
    Closed {
        /// The control address.
        addr: String,
        /// Why.
        reason: CloseReason,
    },
    /// A successful reply of an unexpected shape.
    #[error("unexpected reply to {command}: {detail}")]
    BadReply {
        /// The command keyword.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// An argument that cannot be put in a command (spaces, line breaks,
    /// malformed address...).
    #[error("invalid argument {value:?} for {what}: {reason}")]
    InvalidArgument {
        /// What the argument is.
        what: &'static str,
        /// The value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

impl ControlError {
    /// Tor's status, for [`ControlError::Tor`].
    pub fn tor_status(&self) -> Option<u16> {
        match self {
            ControlError::Tor { status, .. } => Some(*status),
            ControlError::AuthFailed { .. } => Some(515),
            _ => None,
        }
    }

    /// Tor refused an argument: 512 (syntax error in argument), 513
    /// (unrecognized argument, e.g. a bad onion address), 552 (unrecognized
    /// entity, e.g. an unknown circuit) or 553 (invalid configuration value).
    pub fn is_invalid_argument(&self) -> bool {
        matches!(self.tor_status(), Some(512 | 513 | 552 | 553))
    }

    /// 552: the circuit, stream, onion service... does not exist.
    pub fn is_unknown_entity(&self) -> bool {
        self.tor_status() == Some(552)
    }

    /// 551 (e.g. `Not found in cache`).
    pub fn is_not_found(&self) -> bool {
        self.tor_status() == Some(551)
    }

    /// The connection is gone (a new one is needed).
    pub fn is_closed(&self) -> bool {
        matches!(self, ControlError::Closed { .. })
    }
}

#[cfg(test)]
mod tests;
