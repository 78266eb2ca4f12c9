//! Starting, waiting for and tearing down the whole network.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use onionwatch_tor::socks::Isolation;
use serde::Serialize;
use tokio::time::sleep;

use crate::backend::Backend;
use crate::config::{BackendKind, ControlKind, NetworkConfig, ServiceConfig, ServiceTorConfig};
use crate::error::{Error, Result};
use crate::keys::{hash_password, make_authority};
use crate::node::{private_dir, tail, Role, TorNode};
use crate::ports::{free_port, loopback};
use crate::torrc::{self, DirAuthorityLine};

/// How often readiness waits look again. Polling is fine here: tor offers no
/// cheaper signal for "consensus reached and descriptors reachable".
const POLL: Duration = Duration::from_millis(200);

/// The client tor's endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    /// SOCKS5 port (`ExtendedErrors`, isolation by SOCKS auth).
    pub socks: SocketAddr,
    /// Control port (TCP).
    pub control: SocketAddr,
    /// Its cookie file (cookie or safecookie authentication).
    pub cookie: PathBuf,
}

/// One onion service and the endpoints of the tor hosting it.
#[derive(Debug, Clone, Serialize)]
pub struct OnionInfo {
    /// `<56 chars>.onion`.
    pub address: String,
    /// The hosting tor's control port: `127.0.0.1:P` or `unix:/path`.
    pub control: String,
    /// The hosting tor's cookie file.
    pub cookie: PathBuf,
    /// The hosting tor's MetricsPort, if enabled.
    pub metrics: Option<SocketAddr>,
    /// Where tor sends the onion service's connections.
    pub backend: SocketAddr,
    /// Nickname of the hosting tor (onion services sharing a tor share it).
    pub tor: String,
    /// Whether tor sends a PROXY v1 line with the circuit id first.
    pub export_circuit_id: bool,
    /// The built-in backend's access log (nginx `combined` format; the
    /// client address is the circuit-id address when `export_circuit_id`).
    pub access_log: Option<PathBuf>,
}

/// What a caller needs to use the network; `--format json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkInfo {
    /// The client tor.
    pub client: ClientInfo,
    /// Every onion service, in configuration order.
    pub onions: Vec<OnionInfo>,
    /// The directory holding every node's data and logs.
    pub dir: PathBuf,
}

/// The endpoints as lines for people (`onionwatch testnet up`'s text
/// output), ending with a curl command through the first onion service.
impl std::fmt::Display for NetworkInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "private Tor network ready (data in {})",
            self.dir.display()
        )?;
        writeln!(f, "client SOCKS:    {}", self.client.socks)?;
        let (control, cookie) = (self.client.control, self.client.cookie.display());
        writeln!(f, "client control:  {control} (cookie {cookie})")?;
        for o in &self.onions {
            writeln!(f, "onion service:   {}", o.address)?;
            let cookie = o.cookie.display();
            writeln!(
                f,
                "  tor {}: control {} (cookie {cookie})",
                o.tor, o.control
            )?;
            if let Some(m) = o.metrics {
                writeln!(f, "  MetricsPort:   http://{m}/metrics")?;
            }
            writeln!(f, "  backend:       {}", o.backend)?;
        }
        if let Some(first) = self.onions.first() {
            let socks = self.client.socks;
            writeln!(
                f,
                "try: curl --socks5-hostname {socks} http://{}/",
                first.address
            )?;
        }
        Ok(())
    }
}

/// A running private Tor network. Dropping it kills every tor it started.
#[derive(Debug)]
pub struct TestNetwork {
    info: NetworkInfo,
    nodes: Vec<TorNode>,
    _backends: Vec<Backend>,
    // Declared last so it is removed after the nodes are dead.
    _tempdir: Option<tempfile::TempDir>,
}

impl TestNetwork {
    /// Start the network and wait until the client has bootstrapped and a GET
    /// through every onion service has succeeded.
    ///
    /// Must run inside a tokio runtime (the built-in backends are tasks).
    pub async fn start(config: NetworkConfig) -> Result<Self> {
        config.validate().map_err(Error::Config)?;
        let started = Instant::now();
        let deadline = started + config.ready_timeout;
        let mut net = Self::launch(&config, deadline).await?;
        net.wait_ready(&config, deadline).await?;
        tracing::info!(elapsed = ?started.elapsed(), onions = net.info.onions.len(), "test network ready");
        Ok(net)
    }

    /// Endpoints of the client and the onion services.
    pub fn info(&self) -> &NetworkInfo {
        &self.info
    }

    /// The tor processes.
    pub fn nodes(&self) -> &[TorNode] {
        &self.nodes
    }

    /// Kill the tor named `nickname` (e.g. `hs1`), as a crash would.
    /// `Err(Config)` if no node has that name.
    pub fn kill_node(&mut self, nickname: &str) -> Result<()> {
        self.node_mut(nickname)?.kill();
        Ok(())
    }

    /// Start the tor named `nickname` again (killing it first if it runs),
    /// with its torrc, ports, keys and onion addresses unchanged.
    pub fn restart_node(&mut self, nickname: &str) -> Result<()> {
        self.node_mut(nickname)?.restart()
    }

    fn node_mut(&mut self, nickname: &str) -> Result<&mut TorNode> {
        self.nodes
            .iter_mut()
            .find(|n| n.nickname == nickname)
            .ok_or_else(|| {
                Error::Config(format!(
                    "no tor node named {nickname:?} in the test network"
                ))
            })
    }

    /// Pids of every tor still running.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(TorNode::pid).collect()
    }

    /// `Err(NodeDied)` naming the first tor that has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.nodes.iter_mut().try_for_each(TorNode::check_alive)
    }

    /// Keep the network running until `stop` completes, looking every second
    /// whether a tor died (`Err(NodeDied)` then, as [`TestNetwork::check_alive`]).
    pub async fn run_until(&mut self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tick.tick() => self.check_alive()?,
            }
        }
    }

    /// Kill every tor and stop the backends (what `Drop` does, made explicit).
    pub fn shutdown(mut self) {
        self.nodes.iter_mut().for_each(TorNode::kill);
    }

    async fn launch(config: &NetworkConfig, deadline: Instant) -> Result<Self> {
        let (tempdir, root) = match &config.dir {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
                (None, dir.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("onionwatch-testnet-")
                    .tempdir()
                    .map_err(Error::io("create a temporary directory"))?;
                let root = t.path().to_owned();
                (Some(t), root)
            }
        };
        let tor = &config.tor;

        // If anything below fails, `nodes` drops and kills what started.
        let (authorities, mut nodes) = start_authorities(config, &root, deadline).await?;
        let mut relays = Vec::new();
        for i in 0..config.relays {
            let nick = format!("relay{i}");
            let dir = root.join(&nick);
            private_dir(&dir)?;
            let common = torrc::common(&nick, &dir, &authorities);
            relays.push(NodeSpec {
                nick,
                role: Role::Relay,
                dir,
                ports: 2,
                torrc: Box::new(move |p| common.clone() + &torrc::relay(p[0], p[1], false)),
            });
        }
        nodes.extend(
            start_tier(config, &relays, deadline)
                .await?
                .into_iter()
                .map(|(n, _)| n),
        );
        // Onion-service tors start only once the consensus lists every relay
        // as Running and Stable: started earlier, with the 3 authorities
        // alone, they cannot build 4-hop intro circuits, and tor then stops
        // launching them for 300 s after ~30 failures ("exceeded its circuit
        // launch limit"), longer than any readiness wait.
        wait_for_full_consensus(
            &mut nodes,
            authorities[0].dir_port,
            3 + config.relays,
            deadline,
            &root.join("auth0").join("notice.log"),
        )
        .await?;

        // The onion-service tors and the client, all at once.
        let mut tier = Vec::new();
        let mut backends = Vec::new();
        let mut onions = Vec::new();
        for (t, tor_cfg) in config.service_tors.iter().enumerate() {
            let nick = format!("hs{t}");
            let dir = root.join(&nick);
            private_dir(&dir)?;
            let mut services = String::new();
            for (s, svc) in tor_cfg.services.iter().enumerate() {
                let (backend, access_log) = match &svc.backend {
                    BackendKind::BuiltIn => {
                        let log = dir.join(format!("access-{s}.log"));
                        let b = Backend::start(format!("{nick}-{s}"), svc.response, Some(&log))
                            .await
                            .map_err(Error::io("start the built-in backend"))?;
                        let addr = b.addr();
                        backends.push(b);
                        (addr, Some(log))
                    }
                    BackendKind::Address(a) => (*a, None),
                };
                let hs_dir = dir.join(format!("hs{s}"));
                private_dir(&hs_dir)?;
                services.push_str(&format!(
                    "HiddenServiceDir {}\nHiddenServicePort 80 {backend}\n",
                    hs_dir.display()
                ));
                if svc.export_circuit_id {
                    services.push_str("HiddenServiceExportCircuitID haproxy\n");
                }
                if svc.pow_defenses {
                    services.push_str("HiddenServicePoWDefensesEnabled 1\n");
                }
                if let Some((rate, burst)) = svc.intro_dos {
                    services.push_str(&format!(
                        "HiddenServiceEnableIntroDoSDefense 1\nHiddenServiceEnableIntroDoSRatePerSec {rate}\nHiddenServiceEnableIntroDoSBurstPerSec {burst}\n"
                    ));
                }
                onions.push((
                    hs_dir,
                    OnionInfo {
                        address: String::new(),
                        control: String::new(),
                        cookie: dir.join("control_auth_cookie"),
                        metrics: None,
                        backend,
                        tor: nick.clone(),
                        export_circuit_id: svc.export_circuit_id,
                        access_log,
                    },
                ));
            }
            let common = torrc::common(&nick, &dir, &authorities);
            let ports = usize::from(tor_cfg.control == ControlKind::Tcp)
                + usize::from(tor_cfg.metrics_port);
            tier.push(NodeSpec {
                nick,
                role: Role::OnionService,
                dir: dir.clone(),
                ports,
                torrc: Box::new(move |p| {
                    let (control, metrics) = service_tor_endpoints(tor_cfg, &dir, p);
                    let mut text = common.clone() + "SocksPort 0\n" + &torrc::control(&control);
                    if let Some(m) = metrics {
                        text.push_str(&format!(
                            "MetricsPort {m}\nMetricsPortPolicy {}\n",
                            tor_cfg.metrics_policy
                        ));
                    }
                    text + &services
                }),
            });
        }

        let dir = root.join("client");
        private_dir(&dir)?;
        let mut common = torrc::common("client", &dir, &authorities);
        if let Some(password) = &config.client_password {
            common.push_str(&format!(
                "HashedControlPassword {}\n",
                hash_password(tor, password).await?
            ));
        }
        tier.push(NodeSpec {
            nick: "client".into(),
            role: Role::Client,
            dir: dir.clone(),
            ports: 2,
            torrc: Box::new(move |p| {
                format!("{common}SocksPort {} ExtendedErrors\n", loopback(p[0]))
                    + &torrc::control(&loopback(p[1]).to_string())
            }),
        });
        let mut started = start_tier(config, &tier, deadline).await?;
        let (client, ports) = started.pop().expect("the client is started last");
        let (socks, control) = (loopback(ports[0]), loopback(ports[1]));
        for ((node, ports), tor_cfg) in started.into_iter().zip(&config.service_tors) {
            let (control, metrics) = service_tor_endpoints(tor_cfg, &node.dir, &ports);
            for (_, onion) in onions.iter_mut().filter(|(_, o)| o.tor == node.nickname) {
                onion.control = control.clone();
                onion.metrics = metrics;
            }
            nodes.push(node);
        }
        nodes.push(client);

        let mut net = Self {
            info: NetworkInfo {
                client: ClientInfo {
                    socks,
                    control,
                    cookie: dir.join("control_auth_cookie"),
                },
                onions: Vec::new(),
                dir: root,
            },
            nodes,
            _backends: backends,
            _tempdir: tempdir,
        };
        // tor writes `hostname` within a second of starting.
        let deadline = deadline.min(Instant::now() + Duration::from_secs(30));
        for (hs_dir, mut onion) in onions {
            let hostname = hs_dir.join("hostname");
            onion.address = net
                .poll(
                    deadline,
                    &format!("{}", hostname.display()),
                    &hostname,
                    || read_hostname(&hostname),
                )
                .await?;
            net.info.onions.push(onion);
        }
        Ok(net)
    }

    /// Poll `ready` until it yields, a node dies, or `deadline` passes.
    async fn poll<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        log: &Path,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Result<T> {
        let start = Instant::now();
        loop {
            if let Some(v) = ready() {
                return Ok(v);
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    waited: start.elapsed(),
                    log: log.to_owned(),
                    tail: tail(log, 15),
                });
            }
            sleep(POLL).await;
        }
    }

    async fn wait_ready(&mut self, config: &NetworkConfig, deadline: Instant) -> Result<()> {
        let client_log = self.info.dir.join("client").join("notice.log");
        self.poll(
            deadline,
            "the client tor to bootstrap to 100%",
            &client_log.clone(),
            || {
                fs::read_to_string(&client_log)
                    .ok()
                    .filter(|l| l.contains("Bootstrapped 100%"))
                    .map(|_| ())
            },
        )
        .await?;

        let socks = self.info.client.socks;
        for i in 0..self.info.onions.len() {
            let onion = self.info.onions[i].clone();
            let svc = config_service(config, i);
            let built_in =
                matches!(svc.backend, BackendKind::BuiltIn).then_some(svc.response.status);
            let hs_log = self.info.dir.join(&onion.tor).join("notice.log");
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                let left = deadline.saturating_duration_since(Instant::now());
                let last_error = match tokio::time::timeout(
                    left.min(Duration::from_secs(30)),
                    reach(
                        socks,
                        &onion.address,
                        built_in,
                        &format!("ready-{i}-{attempt}"),
                    ),
                )
                .await
                {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => e,
                    Err(_) => "timed out".into(),
                };
                tracing::debug!(onion = %onion.address, attempt, error = %last_error, "not reachable yet");
                self.check_alive()?;
                if Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        what: format!(
                            "onion service {} to be reachable (last error: {last_error})",
                            onion.address
                        ),
                        waited: config.ready_timeout,
                        log: hs_log.clone(),
                        tail: format!(
                            "{}\nlast lines of {}:\n{}",
                            tail(&hs_log, 15),
                            client_log.display(),
                            tail(&client_log, 15)
                        ),
                    });
                }
                sleep(POLL).await;
            }
        }
        Ok(())
    }
}

/// Poll the authority's consensus until `relays` relays are in it with the
/// Running and Stable flags.
async fn wait_for_full_consensus(
    nodes: &mut [TorNode],
    dir_port: u16,
    relays: usize,
    deadline: Instant,
    log: &Path,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let usable = fetch_consensus(dir_port).await.map_or(0, |text| {
            text.lines()
                .filter(|l| l.starts_with("s ") && l.contains(" Running") && l.contains(" Stable"))
                .count()
        });
        if usable >= relays {
            tracing::debug!(relays, waited = ?start.elapsed(), "the consensus lists every relay");
            return Ok(());
        }
        nodes.iter_mut().try_for_each(TorNode::check_alive)?;
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!(
                    "a consensus with {relays} Running and Stable relays ({usable} so far)"
                ),
                waited: start.elapsed(),
                log: log.to_owned(),
                tail: tail(log, 15),
            });
        }
        sleep(POLL).await;
    }
}

/// The current consensus from an authority's DirPort (`None` until there is
/// one: tor answers 404 before its first vote; `None` too after 5 s).
async fn fetch_consensus(dir_port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(loopback(dir_port)).await?;
        s.write_all(b"GET /tor/status-vote/current/consensus HTTP/1.0\r\n\r\n")
            .await?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).await?;
        std::io::Result::Ok(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&body);
    text.starts_with("HTTP/1.0 200").then(|| text.into_owned())
}

/// One reachability attempt, on a fresh circuit (`token` isolates it).
/// A built-in backend (`built_in` = its configured status) must answer a
/// GET with its own body; for any other backend an open stream is proof
/// enough (it may not speak HTTP).
async fn reach(
    socks: SocketAddr,
    address: &str,
    built_in: Option<u16>,
    token: &str,
) -> Result<(), String> {
    let iso = Isolation::new(token);
    let Some(status) = built_in else {
        return onionwatch_tor::socks::connect(socks, address, 80, Some(&iso))
            .await
            .map(drop)
            .map_err(|e| e.to_string());
    };
    let r = crate::http::get(socks, address, 80, "/", Some(&iso))
        .await
        .map_err(|e| e.to_string())?;
    if r.status == status && r.body.contains("onionwatch testnet backend") {
        Ok(())
    } else {
        Err(format!("unexpected answer: HTTP {} {:?}", r.status, r.body))
    }
}

/// `count` free ports for `nick`, shown to the [`crate::PortHook`] if any.
fn pick_ports(config: &NetworkConfig, nick: &str, count: usize) -> Result<Vec<u16>> {
    let ports = (0..count)
        .map(|_| free_port())
        .collect::<std::io::Result<Vec<u16>>>()
        .map_err(Error::io("pick a free port"))?;
    if let Some(hook) = &config.port_hook {
        hook.call(nick, &ports);
    }
    Ok(ports)
}

/// A tor to start on `ports` ports picked for it; `torrc` writes its
/// configuration from them.
struct NodeSpec<'a> {
    nick: String,
    role: Role,
    dir: PathBuf,
    ports: usize,
    torrc: Torrc<'a>,
}

type Torrc<'a> = Box<dyn Fn(&[u16]) -> String + 'a>;

/// Start every tor of `specs` at once, then wait until each has bound its
/// ports. One that found a port taken starts again alone, on fresh ports.
/// Returns the nodes, in order, with the ports they listen on.
async fn start_tier(
    config: &NetworkConfig,
    specs: &[NodeSpec<'_>],
    deadline: Instant,
) -> Result<Vec<(TorNode, Vec<u16>)>> {
    let spawn = |s: &NodeSpec| -> Result<(TorNode, Vec<u16>)> {
        let ports = pick_ports(config, &s.nick, s.ports)?;
        let node = TorNode::spawn(&config.tor, &s.nick, s.role, &s.dir, &(s.torrc)(&ports))?;
        Ok((node, ports))
    };
    // If anything below fails, `started` drops and kills what started.
    let mut started = specs.iter().map(spawn).collect::<Result<Vec<_>>>()?;
    for (spec, slot) in specs.iter().zip(&mut started) {
        retry_on_clash(&spec.nick, async |retry| {
            if retry {
                *slot = spawn(spec)?;
            }
            slot.0.wait_started(deadline).await
        })
        .await?;
    }
    Ok(started)
}

/// Run `start`, and once more (`start(true)`, which picks fresh ports) if a
/// port it picked was taken first: the race [`free_port`] cannot close. A
/// second clash is [`Error::PortClash`].
async fn retry_on_clash<T>(what: &str, mut start: impl AsyncFnMut(bool) -> Result<T>) -> Result<T> {
    match start(false).await {
        Err(e) if e.is_port_clash() => {
            tracing::warn!(what, "a port was taken; starting again on fresh ports");
            start(true).await.map_err(Error::clash_again)
        }
        other => other,
    }
}

/// Make the 3 authorities' keys and start them. Every node's torrc names
/// every authority's ports, so a port clash restarts all three on fresh
/// ports (with fresh keys: the certificate holds the DirPort), once.
async fn start_authorities(
    config: &NetworkConfig,
    root: &Path,
    deadline: Instant,
) -> Result<(Vec<DirAuthorityLine>, Vec<TorNode>)> {
    let gencert = tor_gencert(&config.tor);
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.join(format!("auth{i}"))).collect();
    retry_on_clash("the authorities", async |retry| {
        let mut ports = Vec::new();
        for (i, d) in dirs.iter().enumerate() {
            if retry {
                fs::remove_dir_all(d).map_err(Error::io(format!("remove {}", d.display())))?;
            }
            private_dir(d)?;
            ports.push(pick_ports(config, &format!("auth{i}"), 2)?);
        }
        // ~1 s of RSA each, so in parallel.
        let key = |i: usize| make_authority(&config.tor, &gencert, &dirs[i], ports[i][1]);
        let (a, b, c) = tokio::try_join!(key(0), key(1), key(2))?;
        let authorities: Vec<DirAuthorityLine> = [a, b, c]
            .into_iter()
            .zip(&ports)
            .enumerate()
            .map(|(i, (id, p))| DirAuthorityLine {
                nickname: format!("auth{i}"),
                or_port: p[0],
                dir_port: p[1],
                v3ident: id.v3ident,
                fingerprint: id.fingerprint,
            })
            .collect();
        // On an error `started` drops: those tors are killed before a retry.
        let mut started = Vec::new();
        for (a, dir) in authorities.iter().zip(&dirs) {
            let text = torrc::common(&a.nickname, dir, &authorities)
                + &torrc::relay(a.or_port, a.dir_port, true);
            started.push(TorNode::spawn(
                &config.tor,
                &a.nickname,
                Role::Authority,
                dir,
                &text,
            )?);
        }
        for node in &mut started {
            node.wait_started(deadline).await?;
        }
        Ok((authorities, started))
    })
    .await
}

/// The control endpoint and MetricsPort of an onion-service tor, from the
/// ports picked for it (control first, if TCP).
fn service_tor_endpoints(
    cfg: &ServiceTorConfig,
    dir: &Path,
    ports: &[u16],
) -> (String, Option<SocketAddr>) {
    let mut ports = ports.iter().copied();
    let control = match cfg.control {
        ControlKind::Tcp => loopback(ports.next().expect("a control port")).to_string(),
        ControlKind::Unix => format!("unix:{}", dir.join("control.sock").display()),
    };
    let metrics = cfg
        .metrics_port
        .then(|| loopback(ports.next().expect("a MetricsPort")));
    (control, metrics)
}

fn config_service(config: &NetworkConfig, index: usize) -> &ServiceConfig {
    config
        .service_tors
        .iter()
        .flat_map(|t| &t.services)
        .nth(index)
        .expect("onion index within the configuration")
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        // Nodes kill themselves on drop; do it here first so the tempdir
        // removal never races a tor still writing into it.
        self.nodes.iter_mut().for_each(TorNode::kill);
    }
}

fn read_hostname(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let host = text.trim();
    (host.len() == 62 && host.ends_with(".onion")).then(|| host.to_owned())
}

/// `tor-gencert` next to the tor binary if there is one, else from PATH.
fn tor_gencert(tor: &Path) -> PathBuf {
    match tor.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && dir.join("tor-gencert").exists() => {
            dir.join("tor-gencert")
        }
        _ => PathBuf::from("tor-gencert"),
    }
}
