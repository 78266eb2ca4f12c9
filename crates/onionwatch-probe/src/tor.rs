//! Access to tor: an existing tor (control port + SOCKS port) or a private
//! tor launched with a temporary DataDirectory, and the routing of HS_DESC
//! and onion-service CIRC events to the probes waiting for them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onionwatch_tor::control::{
    Auth, Circuit, ConnectOptions, ControlAddr, ControlClient, ControlError, Event, EventStream,
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
    /// The control connection is down and the pause after a failed attempt
    /// to re-open it is not over.
    #[error("tor's control port {control} is not usable ({last}); the next attempt to reconnect is in {retry_in:.1?}")]
    Down {
        /// Its control port.
        control: ControlAddr,
        /// Until the next attempt.
        retry_in: Duration,
        /// Why the last attempt failed.
        last: String,
    },
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

/// Subscribers by onion service id: (subscription id, connection
/// generation, sender).
type Subscribers = HashMap<String, Vec<(u64, u64, mpsc::UnboundedSender<Event>)>>;

/// Routes HS_DESC / HS_DESC_CONTENT events, and CIRC events of
/// onion-service circuits (`REND_QUERY`), by onion service id.
#[derive(Default)]
struct Router {
    subs: Mutex<Subscribers>,
    next: AtomicU64,
    /// Numbers the control connections; a subscription belongs to the one
    /// live when it was made.
    generation: AtomicU64,
    /// The circuits of each subscribed onion service seen so far: a later
    /// subscription ignores them (circuits of earlier probes, which may
    /// close or change state during a later one).
    seen: Mutex<SeenCircuits>,
}

/// Most circuit ids remembered per onion service: an attempt builds a few,
/// and an earlier probe's joined rendezvous circuit is also recognised by
/// its `SOCKS_USERNAME`.
const SEEN_PER_SERVICE: usize = 1024;
/// Most onion services whose circuits are remembered (least recently
/// subscribed forgotten first): `/probe?target=` lets a scraper name any.
const SEEN_SERVICES: usize = 4096;

/// Circuit ids by onion service id, with the subscription number that last
/// used each service.
#[derive(Default)]
struct SeenCircuits(HashMap<String, (u64, VecDeque<u32>)>);

impl SeenCircuits {
    fn record(&mut self, service: &str, id: u32) {
        if let Some((_, ids)) = self.0.get_mut(service) {
            if !ids.contains(&id) {
                if ids.len() >= SEEN_PER_SERVICE {
                    ids.pop_front();
                }
                ids.push_back(id);
            }
        }
    }

    /// The circuits seen for `service` so far; marks it used by `sub`.
    fn snapshot(&mut self, service: &str, sub: u64) -> HashSet<u32> {
        if !self.0.contains_key(service) && self.0.len() >= SEEN_SERVICES {
            let oldest = self.0.iter().min_by_key(|(_, (used, _))| *used);
            if let Some(key) = oldest.map(|(k, _)| k.clone()) {
                self.0.remove(&key);
            }
        }
        let (used, ids) = self.0.entry(service.to_owned()).or_default();
        *used = sub;
        ids.iter().copied().collect()
    }
}

impl Router {
    fn lock(&self) -> std::sync::MutexGuard<'_, Subscribers> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn route(&self, event: Event) {
        // CIRC_MINOR (a purpose or HS_STATE change: introduction
        // acknowledged, rendezvous joined) has CIRC's syntax with the
        // change as status; routed as a CIRC event.
        let event = match event {
            Event::Unknown { keyword, raw } if keyword == "CIRC_MINOR" => {
                let line = raw.lines().next().unwrap_or("");
                match Circuit::parse(line.strip_prefix("CIRC_MINOR ").unwrap_or("")) {
                    Some(c) => Event::Circ(c),
                    None => return,
                }
            }
            other => other,
        };
        let key = match &event {
            Event::HsDesc(d) => d.address.clone(),
            Event::HsDescContent(c) => c.address.clone(),
            // An onion-service circuit names its service (client side:
            // introduction and rendezvous circuits); others are dropped here.
            Event::Circ(c) => match &c.rend_query {
                Some(q) => q.clone(),
                None => return,
            },
            _ => return,
        };
        let subs = self.lock();
        if let Some(list) = subs.get(&key) {
            if let Event::Circ(c) = &event {
                // Under the subscribers' lock: a subscription made now
                // either gets this event or counts the circuit as earlier.
                self.seen().record(&key, c.id);
            }
            for (_, _, tx) in list {
                let _ = tx.send(event.clone());
            }
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, SeenCircuits> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`Tor::subscribe`].
    fn subscribe(self: &Arc<Self>, service_id: &str) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation.load(Ordering::SeqCst);
        let mut subs = self.lock();
        subs.entry(service_id.to_owned())
            .or_default()
            .push((id, generation, tx));
        let earlier = self.seen().snapshot(service_id, id);
        drop(subs);
        Subscription {
            rx,
            router: self.clone(),
            key: service_id.to_owned(),
            id,
            earlier,
        }
    }

    /// The connection `generation` closed: its subscribers learn it at once
    /// (`recv` gives `None`) instead of waiting out their timeout.
    fn closed(&self, generation: u64) {
        let mut subs = self.lock();
        subs.retain(|_, list| {
            list.retain(|(_, g, _)| *g > generation);
            !list.is_empty()
        });
        // A restarted tor numbers its circuits from 1 again.
        self.seen().0.clear();
    }
}

/// Events for one onion service id while alive.
pub struct Subscription {
    rx: mpsc::UnboundedReceiver<Event>,
    router: Arc<Router>,
    key: String,
    id: u64,
    /// The service's circuits seen before this subscription.
    earlier: HashSet<u32>,
}

impl Subscription {
    /// The next event for this onion service (`None` once the control
    /// connection it was made on has closed).
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event already routed to this subscription, without
    /// waiting.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Whether `c` may be a circuit of the stream isolated by `username`
    /// opened after this subscription: not a circuit of the service seen
    /// before it (an earlier probe's), and not one whose `SOCKS_USERNAME`
    /// (set once a stream is attached) names another stream.
    pub fn is_attempt_circuit(&self, c: &Circuit, username: &str) -> bool {
        !self.earlier.contains(&c.id) && c.other.get("SOCKS_USERNAME").is_none_or(|u| u == username)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = self.router.lock();
        if let Some(list) = subs.get_mut(&self.key) {
            list.retain(|(id, _, _)| *id != self.id);
            if list.is_empty() {
                subs.remove(&self.key);
            }
        }
    }
}

/// The first pause after a failed attempt to re-open tor's control
/// connection; it doubles after each failure up to [`REOPEN_MAX_PAUSE`], so
/// a tor that stays down costs one attempt per pause, not one per probe.
const REOPEN_FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause between attempts to re-open the control connection.
const REOPEN_MAX_PAUSE: Duration = Duration::from_secs(30);

/// A tor the prober uses: its control connection, SOCKS port, and the
/// launched process if we started it (killed on drop).
///
/// A control connection that closed (tor killed, restarted, or it closed
/// the connection) is re-opened on the next use, with authentication and
/// the HS_DESC subscription again; a launched tor that exited is launched
/// again. Failed attempts are spaced by a pause that doubles from 1 s up to
/// 30 s; meanwhile uses fail at once with [`TorError::Down`].
pub struct Tor {
    socks: SocketAddr,
    control_addr: ControlAddr,
    router: Arc<Router>,
    live: Mutex<Live>,
    reopen: tokio::sync::Mutex<Reopen>,
    reconnects: AtomicU64,
    relaunches: AtomicU64,
}

/// The current control connection and the task routing its events.
struct Live {
    control: ControlClient,
    reader: tokio::task::JoinHandle<()>,
}

/// How to get a control connection again.
enum Source {
    /// An existing tor, with these credentials.
    Existing(Auth),
    /// A tor we launch (`tor` is `None` after a failed relaunch).
    Launched {
        options: Box<LaunchOptions>,
        tor: Option<LaunchedTor>,
    },
}

/// Re-opening state, behind an async lock so one task re-opens while the
/// others wait for its outcome.
struct Reopen {
    source: Source,
    /// The pause after the next failure.
    pause: Duration,
    /// No attempt before this, after a failure.
    next_try: Option<Instant>,
    /// Why the last attempt failed.
    last_error: String,
}

impl std::fmt::Debug for Tor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tor")
            .field("socks", &self.socks)
            .field("control", &self.control_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Tor {
    fn drop(&mut self) {
        self.live
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .reader
            .abort();
    }
}

/// `e` and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// A control connection subscribed to HS_DESC, HS_DESC_CONTENT, CIRC and
/// CIRC_MINOR (the client's introduction and rendezvous circuits tell
/// where a failed connection stopped: see [`crate::probe::stage`]).
async fn open(addr: &ControlAddr, auth: Auth) -> Result<(ControlClient, EventStream), TorError> {
    let opts = ConnectOptions {
        command_timeout: Some(Duration::from_secs(60)),
        event_capacity: 65_536,
        ..ConnectOptions::default()
    };
    let (client, events) = ControlClient::connect_with(addr, auth, opts).await?;
    client
        .set_events(&["HS_DESC", "HS_DESC_CONTENT", "CIRC", "CIRC_MINOR"])
        .await?;
    Ok((client, events))
}

/// Start tor as `o` says, connect to it and wait until it bootstrapped.
async fn start_launched(
    o: &LaunchOptions,
) -> Result<(LaunchedTor, ControlClient, EventStream), TorError> {
    let (mut launched, addr) = LaunchedTor::start(o).await?;
    let (client, events) = open(&addr, launched.auth()).await?;
    wait_bootstrapped(&client, &mut launched, o.bootstrap_timeout).await?;
    Ok((launched, client, events))
}

async fn wait_bootstrapped(
    control: &ControlClient,
    launched: &mut LaunchedTor,
    limit: Duration,
) -> Result<(), TorError> {
    let deadline = Instant::now() + limit;
    loop {
        let phase = control.bootstrap_phase().await?;
        if phase.progress >= 100 {
            return Ok(());
        }
        launched.check_alive()?;
        if Instant::now() >= deadline {
            return Err(TorError::Timeout {
                what: "bootstrap to 100%",
                after: limit,
                log: launched.log_tail(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
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
        let (client, events) = open(control, auth.clone()).await?;
        Ok(Self::new(
            control.clone(),
            socks,
            client,
            events,
            Source::Existing(auth),
        ))
    }

    /// Launch a private tor and use it.
    pub async fn launch(options: &LaunchOptions) -> Result<Tor, TorError> {
        let (launched, client, events) = start_launched(options).await?;
        let source = Source::Launched {
            options: Box::new(options.clone()),
            tor: Some(launched),
        };
        Ok(Self::new(
            options.control.clone(),
            options.socks,
            client,
            events,
            source,
        ))
    }

    fn new(
        control_addr: ControlAddr,
        socks: SocketAddr,
        control: ControlClient,
        events: EventStream,
        source: Source,
    ) -> Tor {
        let router = Arc::new(Router::default());
        let reader = Self::route(&router, events);
        Tor {
            socks,
            control_addr,
            router,
            live: Mutex::new(Live { control, reader }),
            reopen: tokio::sync::Mutex::new(Reopen {
                source,
                pause: REOPEN_FIRST_PAUSE,
                next_try: None,
                last_error: String::new(),
            }),
            reconnects: AtomicU64::new(0),
            relaunches: AtomicU64::new(0),
        }
    }

    /// Route the events of a new connection; its subscribers are let go
    /// when it closes.
    fn route(router: &Arc<Router>, mut events: EventStream) -> tokio::task::JoinHandle<()> {
        let generation = router.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let r = router.clone();
        tokio::spawn(async move {
            while let Some(e) = events.recv().await {
                r.route(e);
            }
            r.closed(generation);
        })
    }

    fn live(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The control connection if it is still open.
    fn open_client(&self) -> Option<ControlClient> {
        let live = self.live();
        (!live.control.is_closed()).then(|| live.control.clone())
    }

    /// The control client: the current connection, or a new one if it
    /// closed (a launched tor that exited is launched again first). Fails at
    /// once with [`TorError::Down`] during the pause after a failed attempt.
    pub async fn control(&self) -> Result<ControlClient, TorError> {
        if let Some(c) = self.open_client() {
            return Ok(c);
        }
        let mut r = self.reopen.lock().await;
        // Another task may have re-opened it while this one waited.
        if let Some(c) = self.open_client() {
            return Ok(c);
        }
        let now = Instant::now();
        if let Some(at) = r.next_try.filter(|at| now < *at) {
            return Err(TorError::Down {
                control: self.control_addr.clone(),
                retry_in: at - now,
                last: r.last_error.clone(),
            });
        }
        if r.next_try.is_none() {
            tracing::warn!(control = %self.control_addr, "the control connection to tor closed; re-opening it");
        }
        match self.reopen(&mut r).await {
            Ok(c) => {
                r.pause = REOPEN_FIRST_PAUSE;
                r.next_try = None;
                Ok(c)
            }
            Err(e) => {
                let pause = r.pause;
                r.next_try = Some(Instant::now() + pause);
                r.pause = (pause * 2).min(REOPEN_MAX_PAUSE);
                r.last_error = chain(&e);
                tracing::warn!(
                    control = %self.control_addr,
                    "cannot re-open the control connection to tor, next attempt in {pause:?}: {}",
                    r.last_error
                );
                Err(e)
            }
        }
    }

    async fn reopen(&self, r: &mut Reopen) -> Result<ControlClient, TorError> {
        let (client, events) = match &mut r.source {
            Source::Existing(auth) => open(&self.control_addr, auth.clone()).await?,
            Source::Launched { options, tor } => {
                let exited = match tor.as_mut() {
                    Some(l) => l.exit_status(),
                    None => Some("not running".into()),
                };
                match (exited, tor.as_ref()) {
                    (None, Some(l)) => open(&options.control, l.auth()).await?,
                    (status, _) => {
                        tracing::warn!(
                            status = status.as_deref().unwrap_or("?"),
                            "the launched tor exited; launching it again"
                        );
                        // Its ports and directory go before the new one binds them.
                        *tor = None;
                        let (l, client, events) = start_launched(options)
                            .await
                            .map_err(|e| TorError::Launch(Box::new(e)))?;
                        let n = self.relaunches.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::warn!(pid = l.child.id(), relaunches = n, "launched tor again");
                        *tor = Some(l);
                        (client, events)
                    }
                }
            }
        };
        let reader = Self::route(&self.router, events);
        let old = std::mem::replace(
            &mut *self.live(),
            Live {
                control: client.clone(),
                reader,
            },
        );
        old.reader.abort();
        let n = self.reconnects.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::warn!(control = %self.control_addr, reconnects = n, "re-opened the control connection to tor");
        Ok(client)
    }

    /// Control connections re-opened since the start (after tor closed
    /// one, or a relaunch).
    pub fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    /// Times the launched tor was launched again after it exited.
    pub fn relaunches(&self) -> u64 {
        self.relaunches.load(Ordering::Relaxed)
    }

    /// The SOCKS port.
    pub fn socks(&self) -> SocketAddr {
        self.socks
    }

    /// The launched tor's process id, if we launched it and it runs.
    pub async fn launched_pid(&self) -> Option<u32> {
        match &self.reopen.lock().await.source {
            Source::Launched { tor: Some(l), .. } => l.child.id(),
            _ => None,
        }
    }

    /// Events about `service_id` (56 chars) from now on, until the current
    /// control connection closes.
    pub fn subscribe(&self, service_id: &str) -> Subscription {
        self.router.subscribe(service_id)
    }

    /// Kill the launched tor now (also happens on drop).
    pub async fn shutdown(self) {
        if let Source::Launched { tor: Some(l), .. } = &mut self.reopen.lock().await.source {
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

    /// Cookie authentication with the cookie in its DataDirectory.
    fn auth(&self) -> Auth {
        Auth::Cookie {
            path: Some(self.dir.path().join("control_auth_cookie")),
        }
    }

    /// How it ended, if it has.
    fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
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

    #[test]
    fn an_attempt_counts_its_own_circuits_not_an_earlier_probes() {
        let q = "abcdefghijklmnopabcdefghijklmnopabcdefghijklmnopabcdefgh";
        let router = Arc::new(Router::default());
        let circ = |line: &str| Circuit::parse(line).unwrap();
        let earlier = router.subscribe(q);
        // An earlier probe's rendezvous circuit, joined, its stream attached.
        let old = format!(
            "7 BUILT $A~a PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_JOINED REND_QUERY={q} SOCKS_USERNAME=\"old-1\""
        );
        router.route(Event::Circ(circ(&old)));
        // An earlier probe's introduction circuit, never attached.
        router.route(Event::Circ(circ(&format!(
            "8 LAUNCHED PURPOSE=HS_CLIENT_INTRO REND_QUERY={q}"
        ))));
        drop(earlier);

        let mut now = router.subscribe(q);
        let closing = format!(
            "7 CLOSED $A~a PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_JOINED REND_QUERY={q} SOCKS_USERNAME=\"old-1\" REASON=DESTROYED REMOTE_REASON=CHANNEL_CLOSED"
        );
        router.route(Event::Circ(circ(&closing)));
        for line in [
            format!("8 FAILED PURPOSE=HS_CLIENT_INTRO REND_QUERY={q} REASON=TIMEOUT"),
            format!("9 LAUNCHED PURPOSE=HS_CLIENT_INTRO REND_QUERY={q}"),
            format!("10 BUILT $A~a PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_JOINED REND_QUERY={q} SOCKS_USERNAME=\"new-1\""),
            // A concurrent probe's stream of the same service.
            format!("11 BUILT $A~a PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_JOINED REND_QUERY={q} SOCKS_USERNAME=\"other-1\""),
        ] {
            router.route(Event::Circ(circ(&line)));
        }
        let mut mine = Vec::new();
        while let Some(e) = now.try_recv() {
            match e {
                Event::Circ(c) if now.is_attempt_circuit(&c, "new-1") => mine.push(c.id),
                _ => {}
            }
        }
        assert_eq!(mine, [9, 10]);

        // After the control connection closed (a restarted tor numbers its
        // circuits from 1 again), no id is "earlier".
        router.closed(u64::MAX);
        let again = router.subscribe(q);
        assert!(again.is_attempt_circuit(
            &circ(&format!(
                "7 LAUNCHED PURPOSE=HS_CLIENT_INTRO REND_QUERY={q}"
            )),
            "x"
        ));
    }

    #[test]
    fn onion_service_circuit_events_reach_that_service_only() {
        let q = "abcdefghijklmnopabcdefghijklmnopabcdefghijklmnopabcdefgh";
        let router = Arc::new(Router::default());
        let sub = |key: &str| {
            let (tx, rx) = mpsc::unbounded_channel();
            router
                .lock()
                .entry(key.to_owned())
                .or_default()
                .push((0, 0, tx));
            rx
        };
        let (mut mine, mut other) = (sub(q), sub("x"));
        let circ = |line: &str| Circuit::parse(line).unwrap();
        router.route(Event::Circ(circ(&format!(
            "7 BUILT $A~a PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_ESTABLISHED_IDLE REND_QUERY={q}"
        ))));
        router.route(Event::Unknown {
            keyword: "CIRC_MINOR".into(),
            raw: format!("CIRC_MINOR 7 PURPOSE_CHANGED $A~a PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_ESTABLISHED_WAITING REND_QUERY={q} OLD_PURPOSE=HS_CLIENT_REND OLD_HS_STATE=HSCR_ESTABLISHED_IDLE"),
        });
        // No service named, not a circuit, or garbage: dropped.
        router.route(Event::Circ(circ("8 BUILT $A~a PURPOSE=GENERAL")));
        router.route(Event::Unknown {
            keyword: "CIRC_MINOR".into(),
            raw: "CIRC_MINOR \u{0}garbage".into(),
        });
        let states: Vec<String> = std::iter::from_fn(|| mine.try_recv().ok())
            .map(|e| match e {
                Event::Circ(c) => c.hs_state.unwrap_or_default(),
                e => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(
            states,
            ["HSCR_ESTABLISHED_IDLE", "HSCR_ESTABLISHED_WAITING"]
        );
        assert!(other.try_recv().is_err());
    }

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
