//! Access to tor: an existing tor (control port + SOCKS port) or a private
//! tor launched with a temporary DataDirectory, and the routing of HS_DESC
//! events to the probes waiting for them.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onionwatch_tor::control::{
    Auth, ConnectOptions, ControlAddr, ControlClient, ControlError, Event, EventStream,
};
use tokio::sync::mpsc;

use crate::config::{Config, ControlPassword, ControlPort};

/// Why tor could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TorError {
    /// The control port failed.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// `tor` could not be started.
    #[error("cannot start {}: {source} (is tor installed? `apt-get install tor`, or set tor_binary)", binary.display())]
    Spawn {
        /// The binary.
        binary: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The temporary DataDirectory or torrc could not be written.
    #[error("cannot prepare the launched tor's directory: {0}")]
    Dir(std::io::Error),
    /// tor exited during start-up.
    #[error("the launched tor exited during start-up ({status}); its log ends with:\n{log}")]
    Exited {
        /// Exit status.
        status: String,
        /// Tail of its notice log.
        log: String,
    },
    /// tor did not get ready in time.
    #[error("the launched tor did not {what} within {after:?}; its log ends with:\n{log}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The bound.
        after: Duration,
        /// Tail of its notice log.
        log: String,
    },
    /// `tor_address` is neither an IP address nor a name that resolves.
    #[error(
        "tor_address {host:?} does not resolve: {detail} (give an IP address, or a host name \
         this machine resolves, such as a Compose service name)"
    )]
    Address {
        /// The configured value.
        host: String,
        /// What the resolver said.
        detail: String,
    },
    /// The configured tor could not be launched.
    #[error("cannot launch tor")]
    Launch(#[source] Box<TorError>),
    /// The configured existing tor could not be used.
    #[error("cannot use the tor at control {control}, SOCKS {socks}")]
    Use {
        /// Its control port.
        control: ControlAddr,
        /// Its SOCKS port.
        socks: SocketAddr,
        /// Why.
        #[source]
        source: Box<TorError>,
    },
}

/// Subscribers by onion service id.
type Subscribers = HashMap<String, Vec<(u64, mpsc::UnboundedSender<Event>)>>;

/// Routes HS_DESC / HS_DESC_CONTENT events by onion service id.
#[derive(Default)]
struct Router {
    subs: Mutex<Subscribers>,
    next: AtomicU64,
}

impl Router {
    fn route(&self, event: Event) {
        let key = match &event {
            Event::HsDesc(d) => d.address.clone(),
            Event::HsDescContent(c) => c.address.clone(),
            _ => return,
        };
        let subs = self.subs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = subs.get(&key) {
            for (_, tx) in list {
                let _ = tx.send(event.clone());
            }
        }
    }
}

/// Events for one onion service id while alive.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Event>,
    router: Arc<Router>,
    key: String,
    id: u64,
}

impl Subscription {
    /// The next event for this onion service (`None` if tor's connection closed).
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.router.subs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = subs.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                subs.remove(&self.key);
            }
        }
    }
}

/// A tor the prober uses: its control connection, SOCKS port, and the
/// launched process if we started it (killed on drop).
pub struct Tor {
    control: ControlClient,
    socks: SocketAddr,
    router: Arc<Router>,
    reader: tokio::task::JoinHandle<()>,
    launched: Option<LaunchedTor>,
}

impl std::fmt::Debug for Tor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tor")
            .field("socks", &self.socks)
            .field("launched", &self.launched.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Tor {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Tor {
    /// The tor `c` describes: a private one launched with a temporary
    /// DataDirectory (`launch_tor`), or the one at `tor_address`
    /// (`socks_port`, `control_port`, `control_password`).
    pub async fn from_config(c: &Config) -> Result<Tor, TorError> {
        let ip = resolve_tor_address(&c.tor_address).await?;
        let socks = SocketAddr::new(ip, c.socks_port);
        let control = match &c.control_port {
            ControlPort::Tcp(p) => ControlAddr::Tcp(SocketAddr::new(ip, *p)),
            ControlPort::Unix(p) => ControlAddr::Unix(p.clone()),
        };
        if c.launch_tor {
            tracing::info!(%socks, %control, "launching a private tor (temporary DataDirectory)");
            let o = LaunchOptions {
                binary: c.tor_binary.clone(),
                socks,
                control,
                circuit_stream_timeout: c.circuit_stream_timeout,
                metrics_port: c.metrics_port.clone(),
                metrics_port_policy: c.metrics_port_policy.clone(),
                extra: c.tor_config.clone(),
                bootstrap_timeout: Duration::from_secs(120),
            };
            return Tor::launch(&o)
                .await
                .map_err(|e| TorError::Launch(Box::new(e)));
        }
        let auth = match &c.control_password {
            Some(ControlPassword::Password(p)) => Auth::Password(p.clone()),
            _ => Auth::Auto { password: None },
        };
        Tor::connect(&control, auth, socks)
            .await
            .map_err(|e| TorError::Use {
                control,
                socks,
                source: Box::new(e),
            })
    }

    /// Use an existing tor.
    pub async fn connect(
        control: &ControlAddr,
        auth: Auth,
        socks: SocketAddr,
    ) -> Result<Tor, TorError> {
        let opts = ConnectOptions {
            command_timeout: Some(Duration::from_secs(60)),
            event_capacity: 65_536,
            ..ConnectOptions::default()
        };
        let (client, events) = ControlClient::connect_with(control, auth, opts).await?;
        client.set_events(&["HS_DESC", "HS_DESC_CONTENT"]).await?;
        Ok(Self::from_parts(client, events, socks, None))
    }

    fn from_parts(
        control: ControlClient,
        mut events: EventStream,
        socks: SocketAddr,
        launched: Option<LaunchedTor>,
    ) -> Tor {
        let router = Arc::new(Router::default());
        let r = router.clone();
        let reader = tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                r.route(e);
            }
        });
        Tor {
            control,
            socks,
            router,
            reader,
            launched,
        }
    }

    /// Launch a private tor and use it.
    pub async fn launch(options: &LaunchOptions) -> Result<Tor, TorError> {
        let (launched, control_addr) = LaunchedTor::start(options).await?;
        let auth = Auth::Cookie {
            path: Some(launched.dir.path().join("control_auth_cookie")),
        };
        let mut tor = Self::connect(&control_addr, auth, options.socks).await?;
        tor.launched = Some(launched);
        tor.wait_bootstrapped(options.bootstrap_timeout).await?;
        Ok(tor)
    }

    async fn wait_bootstrapped(&mut self, limit: Duration) -> Result<(), TorError> {
        let deadline = Instant::now() + limit;
        loop {
            let phase = self.control.bootstrap_phase().await?;
            if phase.progress >= 100 {
                return Ok(());
            }
            if let Some(l) = self.launched.as_mut() {
                l.check_alive()?;
            }
            if Instant::now() >= deadline {
                return Err(TorError::Timeout {
                    what: "bootstrap to 100%",
                    after: limit,
                    log: self
                        .launched
                        .as_ref()
                        .map(|l| l.log_tail())
                        .unwrap_or_default(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The control client.
    pub fn control(&self) -> &ControlClient {
        &self.control
    }

    /// The SOCKS port.
    pub fn socks(&self) -> SocketAddr {
        self.socks
    }

    /// The launched tor's process id, if we launched it.
    pub fn launched_pid(&self) -> Option<u32> {
        self.launched.as_ref().and_then(|l| l.child.id())
    }

    /// Events about `service_id` (56 chars) from now on.
    pub fn subscribe(&self, service_id: &str) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.router.next.fetch_add(1, Ordering::Relaxed);
        self.router
            .subs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(service_id.to_owned())
            .or_default()
            .push((id, tx));
        Subscription {
            rx,
            router: self.router.clone(),
            key: service_id.to_owned(),
            id,
        }
    }

    /// Kill the launched tor now (also happens on drop).
    pub async fn shutdown(mut self) {
        if let Some(mut l) = self.launched.take() {
            let _ = l.child.kill().await;
        }
    }
}

/// Longest wait for the resolver.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);

/// `tor_address` as an IP address: an address as it is, a host name
/// (Onionprobe's Compose setup uses `tor_address: tor`) resolved once, at
/// start. An IPv4 address is preferred, as Onionprobe's `gethostbyname`
/// only gives those.
pub async fn resolve_tor_address(host: &str) -> Result<IpAddr, TorError> {
    let host = host.trim();
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    let error = |detail: String| TorError::Address {
        host: host.to_owned(),
        detail,
    };
    let found = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, 0)))
        .await
        .map_err(|_| error(format!("no answer within {RESOLVE_TIMEOUT:?}")))?
        .map_err(|e| error(e.to_string()))?
        .map(|a| a.ip())
        .collect::<Vec<_>>();
    found
        .iter()
        .find(|ip| ip.is_ipv4())
        .or(found.first())
        .copied()
        .ok_or_else(|| error("the resolver returned no address".into()))
}

/// How to launch tor.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The binary.
    pub binary: PathBuf,
    /// SOCKS listener.
    pub socks: SocketAddr,
    /// Control listener.
    pub control: ControlAddr,
    /// `CircuitStreamTimeout`.
    pub circuit_stream_timeout: u32,
    /// `MetricsPort`.
    pub metrics_port: Option<String>,
    /// `MetricsPortPolicy`.
    pub metrics_port_policy: String,
    /// Extra torrc lines.
    pub extra: Vec<String>,
    /// Bound on bootstrapping.
    pub bootstrap_timeout: Duration,
}

/// A tor process we started, with its temporary DataDirectory; killed and
/// removed on drop.
pub struct LaunchedTor {
    child: tokio::process::Child,
    dir: tempfile::TempDir,
}

impl LaunchedTor {
    /// The torrc text for `o` with DataDirectory `dir`.
    pub fn torrc(o: &LaunchOptions, dir: &std::path::Path) -> String {
        let d = dir.display();
        let mut s = format!(
            "DataDirectory {d}\nRunAsDaemon 0\nPidFile {d}/tor.pid\nLog notice file {d}/notice.log\n\
             SocksPort {} ExtendedErrors\n",
            o.socks
        );
        match &o.control {
            ControlAddr::Tcp(a) => s.push_str(&format!("ControlPort {a}\n")),
            ControlAddr::Unix(p) => s.push_str(&format!("ControlPort unix:{}\n", p.display())),
        }
        s.push_str(&format!(
            "CookieAuthentication 1\nCookieAuthFile {d}/control_auth_cookie\n\
             CircuitStreamTimeout {}\n__OwningControllerProcess {}\n",
            o.circuit_stream_timeout,
            std::process::id()
        ));
        if let Some(m) = &o.metrics_port {
            s.push_str(&format!("MetricsPort {m}\n"));
            if !o.metrics_port_policy.is_empty() {
                s.push_str(&format!("MetricsPortPolicy {}\n", o.metrics_port_policy));
            }
        }
        for line in &o.extra {
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    async fn start(o: &LaunchOptions) -> Result<(LaunchedTor, ControlAddr), TorError> {
        let dir = tempfile::Builder::new()
            .prefix("onionwatch-tor-")
            .tempdir()
            .map_err(TorError::Dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
                .map_err(TorError::Dir)?;
        }
        let torrc = dir.path().join("torrc");
        std::fs::write(&torrc, Self::torrc(o, dir.path())).map_err(TorError::Dir)?;
        let child = tokio::process::Command::new(&o.binary)
            .arg("-f")
            .arg(&torrc)
            .arg("--quiet")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| TorError::Spawn {
                binary: o.binary.clone(),
                source,
            })?;
        let mut me = LaunchedTor { child, dir };
        // tor writes the cookie once its control port listens.
        let cookie = me.dir.path().join("control_auth_cookie");
        let limit = Duration::from_secs(30);
        let deadline = Instant::now() + limit;
        loop {
            me.check_alive()?;
            let listening = match &o.control {
                ControlAddr::Tcp(a) => tokio::net::TcpStream::connect(a).await.is_ok(),
                ControlAddr::Unix(p) => p.exists(),
            };
            if listening && cookie.exists() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(TorError::Timeout {
                    what: "open its control port",
                    after: limit,
                    log: me.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok((me, o.control.clone()))
    }

    fn check_alive(&mut self) -> Result<(), TorError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(TorError::Exited {
                status: status.to_string(),
                log: self.log_tail(),
            }),
            _ => Ok(()),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("notice.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tor_address_host_names_resolve_and_unknown_ones_are_named() {
        assert_eq!(
            resolve_tor_address("localhost").await.unwrap(),
            IpAddr::from([127, 0, 0, 1])
        );
        assert_eq!(
            resolve_tor_address(" ::1 ").await.unwrap(),
            "::1".parse::<IpAddr>().unwrap()
        );
        let err = resolve_tor_address("no-such-tor.invalid")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"no-such-tor.invalid\" does not resolve"),
            "{err}"
        );
    }

    #[test]
    fn torrc_has_a_private_data_directory_and_ownership() {
        let o = LaunchOptions {
            binary: "tor".into(),
            socks: "127.0.0.1:19050".parse().unwrap(),
            control: "127.0.0.1:19051".parse().unwrap(),
            circuit_stream_timeout: 60,
            metrics_port: Some("127.0.0.1:9936".into()),
            metrics_port_policy: "reject *".into(),
            extra: vec!["UseBridges 0".into()],
            bootstrap_timeout: Duration::from_secs(90),
        };
        let t = LaunchedTor::torrc(&o, std::path::Path::new("/tmp/x"));
        assert!(t.contains("DataDirectory /tmp/x\n"));
        assert!(t.contains("SocksPort 127.0.0.1:19050 ExtendedErrors\n"));
        assert!(t.contains("ControlPort 127.0.0.1:19051\n"));
        assert!(t.contains(&format!(
            "__OwningControllerProcess {}\n",
            std::process::id()
        )));
        assert!(t.contains("MetricsPort 127.0.0.1:9936\nMetricsPortPolicy reject *\n"));
        assert!(t.contains("CircuitStreamTimeout 60\n"));
        assert!(t.ends_with("UseBridges 0\n"));
    }
}
