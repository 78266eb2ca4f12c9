//! Closing circuits on a control port that may come and go.
//!
//! [`CircuitCloser`] keeps one connection to a tor's control port, opens it
//! on first use, and sends `CLOSECIRCUIT`. A connection that tor closed
//! since the last use is replaced once, transparently; a control port that
//! cannot be reached is not tried again before
//! [`CircuitCloser::reconnect_pause`] has passed, so a burst of closes
//! against a dead tor costs one connection attempt, not one each. Errors
//! are returned (to be logged by the caller), never panics.
//!
//! The [`CloseExecutor`](super::CloseExecutor), which the gateway's
//! escalation and the access-log policy share, uses it.
//!
//! ```no_run
//! # async fn demo() {
//! use onionwatch_tor::control::{Auth, CircuitCloser, CloseOutcome};
//! let mut closer = CircuitCloser::new("127.0.0.1:9051".parse().unwrap(), Auth::default());
//! match closer.close(48).await {
//!     Ok(CloseOutcome::Closed) => println!("closed"),
//!     Ok(CloseOutcome::UnknownCircuit) => println!("already gone"),
//!     Err(e) => eprintln!("{e}"),
//! }
//! # }
//! ```

use std::time::{Duration, Instant};

use super::{Auth, ConnectOptions, ControlAddr, ControlClient, ControlError, EventStream};

/// Default shortest pause between two connection attempts to a failing
/// control port.
pub const RECONNECT_PAUSE: Duration = Duration::from_secs(5);

/// What `CLOSECIRCUIT` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// Tor closed the circuit (`250 OK`).
    Closed,
    /// Tor did not know the circuit (`552`): already gone, or an id of
    /// another tor instance.
    UnknownCircuit,
}

/// Why a circuit could not be closed.
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// Connecting or authenticating failed.
    #[error("cannot connect to tor's control port {addr} to close circuits: {source}")]
    Connect {
        /// The control port.
        addr: ControlAddr,
        /// What failed.
        source: ControlError,
    },
    /// The last connection attempt failed less than the reconnect pause ago.
    #[error("not closing circuits through {addr}: it could not be reached {ago:?} ago (next try after {pause:?})")]
    Paused {
        /// The control port.
        addr: ControlAddr,
        /// Time since the failed attempt.
        ago: Duration,
        /// The reconnect pause.
        pause: Duration,
    },
    /// Tor refused the command or the connection broke during it.
    #[error("CLOSECIRCUIT {circuit} on {addr} failed: {source}")]
    Command {
        /// The control port.
        addr: ControlAddr,
        /// The circuit.
        circuit: u32,
        /// What failed.
        source: ControlError,
    },
}

/// One control-port connection used to close circuits; see the module
/// documentation.
#[derive(Debug)]
pub struct CircuitCloser {
    addr: ControlAddr,
    auth: Auth,
    options: ConnectOptions,
    reconnect_pause: Duration,
    /// The event stream is kept so that the connection's reader never sees
    /// its consumer gone.
    client: Option<(ControlClient, EventStream)>,
    last_failure: Option<Instant>,
}

impl CircuitCloser {
    /// A closer for the control port `addr`; nothing is connected yet.
    /// Commands time out after 10 s; the reconnect pause is
    /// [`RECONNECT_PAUSE`].
    pub fn new(addr: ControlAddr, auth: Auth) -> Self {
        let options = ConnectOptions {
            command_timeout: Some(Duration::from_secs(10)),
            ..ConnectOptions::default()
        };
        Self::with_options(addr, auth, options, RECONNECT_PAUSE)
    }

    /// A closer with explicit connection options and reconnect pause.
    pub fn with_options(
        addr: ControlAddr,
        auth: Auth,
        options: ConnectOptions,
        reconnect_pause: Duration,
    ) -> Self {
        CircuitCloser {
            addr,
            auth,
            options,
            reconnect_pause,
            client: None,
            last_failure: None,
        }
    }

    /// The control port.
    pub fn addr(&self) -> &ControlAddr {
        &self.addr
    }

    /// Whether this closer talks to `addr` with `auth` (to tell whether a
    /// reloaded configuration needs a new closer).
    pub fn targets(&self, addr: &ControlAddr, auth: &Auth) -> bool {
        self.addr == *addr && self.auth == *auth
    }

    /// The shortest pause between connection attempts after a failure.
    pub fn reconnect_pause(&self) -> Duration {
        self.reconnect_pause
    }

    /// A connection is open now.
    pub fn is_connected(&self) -> bool {
        self.client.as_ref().is_some_and(|(c, _)| !c.is_closed())
    }

    /// Send `CLOSECIRCUIT circuit`, connecting first if needed, and once
    /// more on a fresh connection if tor had closed the previous one.
    pub async fn close(&mut self, circuit: u32) -> Result<CloseOutcome, CloseError> {
        let mut reconnected = false;
        loop {
            let client = self.client().await?;
            match client.close_circuit(circuit).await {
                Ok(()) => return Ok(CloseOutcome::Closed),
                Err(e) if e.is_unknown_entity() => return Ok(CloseOutcome::UnknownCircuit),
                Err(e) if e.is_closed() && !reconnected => {
                    tracing::debug!(control = %self.addr, "control connection was closed; reconnecting: {e}");
                    self.client = None;
                    reconnected = true;
                }
                Err(source) => {
                    self.client = None;
                    return Err(CloseError::Command {
                        addr: self.addr.clone(),
                        circuit,
                        source,
                    });
                }
            }
        }
    }

    async fn client(&mut self) -> Result<ControlClient, CloseError> {
        if let Some((c, _)) = &self.client {
            if !c.is_closed() {
                return Ok(c.clone());
            }
        }
        self.client = None;
        if let Some(at) = self.last_failure {
            let ago = at.elapsed();
            if ago < self.reconnect_pause {
                return Err(CloseError::Paused {
                    addr: self.addr.clone(),
                    ago,
                    pause: self.reconnect_pause,
                });
            }
        }
        match ControlClient::connect_with(&self.addr, self.auth.clone(), self.options.clone()).await
        {
            Ok((client, events)) => {
                tracing::info!(control = %self.addr, "connected to tor's control port to close circuits");
                self.last_failure = None;
                self.client = Some((client.clone(), events));
                Ok(client)
            }
            Err(source) => {
                self.last_failure = Some(Instant::now());
                Err(CloseError::Connect {
                    addr: self.addr.clone(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    const NULL_INFO: &str =
        "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n";

    /// A fake tor on TCP: knows circuit 7 only, and closes each connection
    /// after `per_conn` CLOSECIRCUIT commands. Returns the address and the
    /// number of connections accepted.
    async fn fake_tor(per_conn: usize) -> (ControlAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = ControlAddr::Tcp(listener.local_addr().unwrap());
        let conns = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&conns);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let mut closes = 0;
                    while let Ok(Some(line)) = lines.next_line().await {
                        let reply = match line.as_str() {
                            l if l.starts_with("PROTOCOLINFO 1") => NULL_INFO.to_owned(),
                            "AUTHENTICATE" => "250 OK\r\n".to_owned(),
                            "CLOSECIRCUIT 7" => "250 OK\r\n".to_owned(),
                            l if l.starts_with("CLOSECIRCUIT ") => {
                                format!("552 Unknown circuit \"{}\"\r\n", &l[13..])
                            }
                            _ => "510 Unrecognized command\r\n".to_owned(),
                        };
                        if w.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        if line.starts_with("CLOSECIRCUIT") {
                            closes += 1;
                            if closes == per_conn {
                                return; // tor closes the connection
                            }
                        }
                    }
                });
            }
        });
        (addr, conns)
    }

    fn quick(addr: ControlAddr, pause: Duration) -> CircuitCloser {
        let options = ConnectOptions {
            timeout: Duration::from_secs(5),
            command_timeout: Some(Duration::from_secs(5)),
            ..ConnectOptions::default()
        };
        CircuitCloser::with_options(addr, Auth::Null, options, pause)
    }

    #[tokio::test]
    async fn closes_known_circuits_and_reports_unknown_ones() {
        let (addr, conns) = fake_tor(usize::MAX).await;
        let mut closer = quick(addr.clone(), RECONNECT_PAUSE);
        assert!(!closer.is_connected());
        assert_eq!(closer.close(7).await.unwrap(), CloseOutcome::Closed);
        assert!(closer.is_connected());
        assert_eq!(
            closer.close(u32::MAX).await.unwrap(),
            CloseOutcome::UnknownCircuit
        );
        assert_eq!(conns.load(Ordering::SeqCst), 1, "one connection reused");
        assert!(closer.targets(&addr, &Auth::Null));
        assert!(!closer.targets(&addr, &Auth::default()));
    }

    #[tokio::test]
    async fn a_connection_closed_by_tor_is_replaced_transparently() {
        let (addr, conns) = fake_tor(1).await;
        let mut closer = quick(addr, RECONNECT_PAUSE);
        for _ in 0..3 {
            assert_eq!(closer.close(7).await.unwrap(), CloseOutcome::Closed);
        }
        assert_eq!(conns.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_dead_control_port_is_retried_only_after_the_pause() {
        // A port with nothing listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let addr = ControlAddr::Tcp(port);
        let mut closer = quick(addr.clone(), Duration::from_secs(3600));
        let e = closer.close(7).await.unwrap_err();
        assert!(matches!(e, CloseError::Connect { .. }), "{e}");
        let e = closer.close(7).await.unwrap_err();
        assert!(matches!(e, CloseError::Paused { .. }), "{e}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
        // Without a pause every call tries again.
        let mut eager = quick(addr, Duration::ZERO);
        for _ in 0..2 {
            let e = eager.close(7).await.unwrap_err();
            assert!(matches!(e, CloseError::Connect { .. }), "{e}");
        }
    }
}
