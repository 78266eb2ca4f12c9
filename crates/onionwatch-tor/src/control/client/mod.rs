//! The connection: reader task, command queue, handshake. The typed
//! commands built on [`ControlClient::command`] are in `commands`.

mod commands;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::auth::{authenticate, Auth, AuthMethod, ProtocolInfo};
use super::events::Event;
use super::reply::{read_line, LineError, ProtocolError, Reply, ReplyParser};
use super::{CloseReason, ConnectOptions, ControlAddr, ControlError};

type Waiter = oneshot::Sender<Result<Reply, CloseReason>>;

#[derive(Default)]
struct State {
    closed: Option<CloseReason>,
    waiters: VecDeque<Waiter>,
}

/// State shared with the reader task.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Mark the connection closed (the first reason wins) and fail every
    /// waiting command.
    fn close(&self, reason: CloseReason) {
        let mut st = self.lock();
        let reason = st.closed.get_or_insert(reason).clone();
        for w in st.waiters.drain(..) {
            let _ = w.send(Err(reason.clone()));
        }
    }
}

struct Inner {
    addr: String,
    writer: tokio::sync::Mutex<Box<dyn AsyncWrite + Send + Unpin>>,
    shared: Arc<Shared>,
    reader: tokio::task::AbortHandle,
    command_timeout: Option<Duration>,
    protocol_info: OnceLock<ProtocolInfo>,
    auth_method: OnceLock<AuthMethod>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A connection to tor's control port. Cheap to clone; clones share the
/// connection, which closes when the last clone is dropped.
#[derive(Clone)]
pub struct ControlClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

/// The asynchronous events of one connection, in arrival order. Ends
/// (`recv` gives `None`) when the connection closes.
#[derive(Debug)]
pub struct EventStream {
    rx: mpsc::Receiver<Event>,
    dropped: Arc<AtomicU64>,
}

impl EventStream {
    /// The next event, or `None` once the connection is closed and the
    /// buffered events are consumed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is buffered.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Events dropped so far because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Fails the connection if a command is cancelled half-written.
struct WriteGuard<'a> {
    shared: &'a Shared,
    done: bool,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.shared.close(CloseReason::Cancelled);
        }
    }
}

/// Keywords whose arguments are left out of errors: they may hold secrets
/// (or, for PROTOCOLINFO, only padding).
const QUIET_COMMANDS: [&str; 5] = [
    "AUTHENTICATE",
    "AUTHCHALLENGE",
    "ADD_ONION",
    "ONION_CLIENT_AUTH_ADD",
    "PROTOCOLINFO",
];

/// `PROTOCOLINFO 1` padded with more (ignored) version arguments to over
/// 1024 bytes. An HTTP server such as tor's MetricsPort waits for the blank
/// line ending the request headers, which a control port would take as an
/// empty command and close on; but tor's HTTP ports answer `400` at once to
/// headers over 1024 bytes, so whatever answers shows what the port is.
pub(crate) fn protocolinfo_line() -> String {
    let mut line = String::from("PROTOCOLINFO 1");
    while line.len() <= 1100 {
        line.push_str(" 1");
    }
    line
}

fn command_label(line: &str) -> String {
    let keyword = line.split(' ').next().unwrap_or("");
    if QUIET_COMMANDS
        .iter()
        .any(|k| keyword.eq_ignore_ascii_case(k))
    {
        keyword.to_owned()
    } else {
        line.to_owned()
    }
}

fn invalid(what: &'static str, value: &str, reason: &str) -> ControlError {
    ControlError::InvalidArgument {
        what,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}
impl ControlClient {
    /// Connect to `addr`, authenticate, and return the client and its event
    /// stream, with [`ConnectOptions::default`].
    pub async fn connect(
        addr: &ControlAddr,
        auth: Auth,
    ) -> Result<(Self, EventStream), ControlError> {
        Self::connect_with(addr, auth, ConnectOptions::default()).await
    }

    /// [`ControlClient::connect`] with explicit options.
    pub async fn connect_with(
        addr: &ControlAddr,
        auth: Auth,
        opts: ConnectOptions,
    ) -> Result<(Self, EventStream), ControlError> {
        let label = addr.to_string();
        let start = Instant::now();
        let connect_err = |source| ControlError::Connect {
            addr: label.clone(),
            source,
        };
        let timed_out = || ControlError::Timeout {
            addr: label.clone(),
            stage: "connect".into(),
            after: opts.timeout,
        };
        match addr {
            ControlAddr::Tcp(sa) => {
                let stream = tokio::time::timeout(opts.timeout, tokio::net::TcpStream::connect(sa))
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(connect_err)?;
                let _ = stream.set_nodelay(true);
                Self::handshake(stream, label.clone(), auth, opts, start).await
            }
            #[cfg(unix)]
            ControlAddr::Unix(path) => {
                let stream =
                    tokio::time::timeout(opts.timeout, tokio::net::UnixStream::connect(path))
                        .await
                        .map_err(|_| timed_out())?
                        .map_err(connect_err)?;
                Self::handshake(stream, label.clone(), auth, opts, start).await
            }
            #[cfg(not(unix))]
            ControlAddr::Unix(_) => Err(connect_err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "unix sockets are not supported on this platform",
            ))),
        }
    }

    /// Run `PROTOCOLINFO` and authentication over an already open stream
    /// (any transport; `addr` only labels errors).
    pub async fn from_stream<S>(
        stream: S,
        addr: impl Into<String>,
        auth: Auth,
        opts: ConnectOptions,
    ) -> Result<(Self, EventStream), ControlError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::handshake(stream, addr.into(), auth, opts, Instant::now()).await
    }

    async fn handshake<S>(
        stream: S,
        addr: String,
        auth: Auth,
        opts: ConnectOptions,
        start: Instant,
    ) -> Result<(Self, EventStream), ControlError>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let limit = opts.timeout;
        let (client, events) = Self::unauthenticated(stream, addr.clone(), opts);
        let mut stage = "PROTOCOLINFO";
        let res = tokio::time::timeout_at(start + limit, async {
            let reply = match client.raw_command(&protocolinfo_line()).await {
                Ok(r) => r,
                Err(ControlError::Closed { reason, .. }) => {
                    let detail = match reason {
                        CloseReason::Eof => {
                            "it closed the connection without answering PROTOCOLINFO".to_owned()
                        }
                        other => {
                            format!("its answer to PROTOCOLINFO is not control protocol ({other})")
                        }
                    };
                    return Err(ControlError::NotControlPort {
                        addr: addr.clone(),
                        detail,
                    });
                }
                Err(e) => return Err(e),
            };
            if !reply.is_ok() {
                return Err(ControlError::Tor {
                    status: reply.status,
                    message: reply.message().to_owned(),
                    command: "PROTOCOLINFO 1".into(),
                });
            }
            let info = ProtocolInfo::parse(&reply).ok_or_else(|| ControlError::NotControlPort {
                addr: addr.clone(),
                detail: format!("unexpected answer to PROTOCOLINFO: {:?}", reply.message()),
            })?;
            stage = "authentication";
            let method = authenticate(&client, &auth, &info).await?;
            let _ = client.inner.protocol_info.set(info);
            let _ = client.inner.auth_method.set(method);
            Ok(())
        })
        .await;
        match res {
            Ok(Ok(())) => Ok((client, events)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ControlError::Timeout {
                addr,
                stage: stage.into(),
                after: limit,
            }),
        }
    }

    /// Start a client over `stream` without `PROTOCOLINFO` or
    /// authentication (for tests and custom handshakes). Needs a tokio
    /// runtime.
    pub fn unauthenticated<S>(
        stream: S,
        addr: impl Into<String>,
        opts: ConnectOptions,
    ) -> (Self, EventStream)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel(opts.event_capacity.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(reader_task(
            BufReader::new(read),
            shared.clone(),
            tx,
            dropped.clone(),
            ReplyParser::new(opts.max_line, opts.max_reply),
            opts.max_line,
        ));
        let client = ControlClient {
            inner: Arc::new(Inner {
                addr: addr.into(),
                writer: tokio::sync::Mutex::new(Box::new(write)),
                shared,
                reader: task.abort_handle(),
                command_timeout: opts.command_timeout,
                protocol_info: OnceLock::new(),
                auth_method: OnceLock::new(),
            }),
        };
        (client, EventStream { rx, dropped })
    }

    /// What tor said to `PROTOCOLINFO` (tor version, auth methods); `None`
    /// for a client made by [`ControlClient::unauthenticated`].
    pub fn protocol_info(&self) -> Option<&ProtocolInfo> {
        self.inner.protocol_info.get()
    }

    /// The method this connection authenticated with (what
    /// [`Auth::Auto`] chose); `None` for a client made by
    /// [`ControlClient::unauthenticated`].
    pub fn auth_method(&self) -> Option<&AuthMethod> {
        self.inner.auth_method.get()
    }

    /// True once the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.lock().closed.is_some()
    }

    /// Send one command line (without CRLF) and return tor's reply, whatever
    /// its status.
    ///
    /// Dropping this future while the line is being written closes the
    /// connection (a half-written command would corrupt the stream);
    /// dropping it while it waits for the reply is harmless.
    pub async fn raw_command(&self, line: &str) -> Result<Reply, ControlError> {
        if line.contains(['\r', '\n']) {
            return Err(invalid(
                "command",
                &command_label(line),
                "contains a line break",
            ));
        }
        let closed = |reason| ControlError::Closed {
            addr: self.inner.addr.clone(),
            reason,
        };
        let (tx, rx) = oneshot::channel();
        {
            let mut w = self.inner.writer.lock().await;
            {
                let mut st = self.inner.shared.lock();
                if let Some(reason) = &st.closed {
                    return Err(closed(reason.clone()));
                }
                // Enqueue before writing so the reply cannot overtake us.
                st.waiters.push_back(tx);
            }
            let mut guard = WriteGuard {
                shared: &self.inner.shared,
                done: false,
            };
            let mut buf = Vec::with_capacity(line.len() + 2);
            buf.extend_from_slice(line.as_bytes());
            buf.extend_from_slice(b"\r\n");
            let res = async {
                w.write_all(&buf).await?;
                w.flush().await
            }
            .await;
            guard.done = true;
            if let Err(e) = res {
                self.inner.shared.close(CloseReason::Io(e.to_string()));
                self.inner.reader.abort();
            }
        }
        let res = match self.inner.command_timeout {
            Some(limit) => {
                tokio::time::timeout(limit, rx)
                    .await
                    .map_err(|_| ControlError::Timeout {
                        addr: self.inner.addr.clone(),
                        stage: command_label(line),
                        after: limit,
                    })?
            }
            None => rx.await,
        };
        match res {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(reason)) => Err(closed(reason)),
            Err(_) => {
                let reason = self
                    .inner
                    .shared
                    .lock()
                    .closed
                    .clone()
                    .unwrap_or(CloseReason::Eof);
                Err(closed(reason))
            }
        }
    }

    /// Send one command; a non-2xx reply becomes [`ControlError::Tor`].
    pub async fn command(&self, line: &str) -> Result<Reply, ControlError> {
        let reply = self.raw_command(line).await?;
        if reply.is_ok() {
            Ok(reply)
        } else {
            Err(ControlError::Tor {
                status: reply.status,
                message: reply.message().to_owned(),
                command: command_label(line),
            })
        }
    }
}

async fn reader_task<R: AsyncRead + Unpin>(
    mut r: BufReader<R>,
    shared: Arc<Shared>,
    events: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
    mut parser: ReplyParser,
    max_line: usize,
) {
    let mut line = Vec::new();
    let reason = loop {
        match read_line(&mut r, &mut line, max_line).await {
            Ok(true) => {}
            Ok(false) if parser.in_progress() => {
                break CloseReason::Protocol(ProtocolError::Truncated)
            }
            Ok(false) => break CloseReason::Eof,
            Err(LineError::Io(e)) => break CloseReason::Io(e.to_string()),
            Err(LineError::Protocol(e)) => break CloseReason::Protocol(e),
        }
        let reply = match parser.push(&line) {
            Ok(Some(reply)) => reply,
            Ok(None) => continue,
            Err(e) => break CloseReason::Protocol(e),
        };
        if reply.is_event() {
            match events.try_send(Event::parse(&reply)) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    if dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!(
                            "tor control events are not consumed fast enough; dropping some"
                        );
                    }
                }
            }
            continue;
        }
        let waiter = shared.lock().waiters.pop_front();
        match waiter {
            // A waiter that gave up (timeout) is skipped silently.
            Some(w) => drop(w.send(Ok(reply))),
            None => {
                break CloseReason::Protocol(ProtocolError::Unsolicited {
                    status: reply.status,
                });
            }
        }
    };
    tracing::debug!(%reason, "tor control connection closed");
    shared.close(reason);
}
